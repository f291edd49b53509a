"""Screenshots of the validation report: PASS, FAIL with a diagnosis, saturated PASS.

    python scripts/report_screenshots.py [--out docs/report-screenshots]

Runs three validations on the simulated board (digits_cnn on its data; digits_cnn on the
data x16, 47 % of the inputs clipped; sine_mlp on a board computing like a TFLM library
with the per-channel FULLY_CONNECTED defect) and renders the top of each report.html with
``wkhtmltoimage`` (Debian: apt-get install wkhtmltopdf), scaled to 3/4 and palette-reduced.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"


def _runs(work: Path) -> dict[str, Path]:
    from sklearn.datasets import load_digits

    from tinydeploy.data import Dataset
    from tinydeploy.device.sim import start_sim
    from tinydeploy.validation import validate

    d = load_digits()
    x = (d.images[:120] / 16.0).astype(np.float32)[..., None]
    y = d.target[:120].astype(np.float32)
    pages = {}
    for name, factor in (("pass", 1.0), ("saturated-pass", 16.0)):
        xs = x * np.float32(factor)
        npz = Dataset(x_train=xs, y_train=y, x_val=xs, y_val=y, x_test=xs, y_test=y).save(
            work / f"{name}.npz")
        pages[name] = validate(DATA / "digits_cnn.tflite", npz, work / name, board="sim",
                               samples=60).paths["html"]
    s = np.linspace(0, 6, 40, dtype=np.float32)[:, None]
    npz = Dataset(x_train=s, y_train=np.sin(s), x_val=s, y_val=np.sin(s), x_test=s,
                  y_test=np.sin(s)).save(work / "sine.npz")
    with start_sim(DATA / "sine_mlp.tflite", defect="fc_per_channel") as sim:
        pages["fail-known-defect"] = validate(DATA / "sine_mlp.tflite", npz,
                                              work / "fail", port=sim.port).paths["html"]
    return pages


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "report-screenshots")
    a = p.parse_args()
    tool = shutil.which("wkhtmltoimage")
    if tool is None:
        raise SystemExit("wkhtmltoimage not found (apt-get install wkhtmltopdf)")
    from PIL import Image

    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        for name, page in _runs(Path(work)).items():
            png = a.out / f"{name}.png"
            subprocess.run([tool, "-q", "--width", "1150", "--height", "1500",
                            "--disable-javascript", str(page), str(png)], check=True,
                           capture_output=True)
            im = Image.open(png).convert("RGB")
            im = im.resize((im.width * 3 // 4, im.height * 3 // 4), Image.LANCZOS)
            im.quantize(colors=128).save(png, optimize=True)
            print(png)


if __name__ == "__main__":
    main()
