"""Board ``qemu-cm4``: the C runtime as bare-metal Cortex-M4 firmware in QEMU (mps2-an386),
validated over the emulated UART's pseudo-terminal against the Cortex-M4 ground truth and
the TFLM Python runtime."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import needs_tflm
import numpy as np
import pytest

from tinydeploy.boards import BOARDS
from tinydeploy.data import Dataset
from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import load
from tinydeploy.hostref import HostModel, dequantize, quantize_input

for _tool in ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm"):
    if shutil.which(_tool) is None:
        pytest.skip(f"{_tool} not installed (apt-get install gcc-arm-none-eabi "
                    "libnewlib-arm-none-eabi qemu-system-arm)", allow_module_level=True)

from tinydeploy.device.qemu import build_info, build_qemu, start_qemu  # noqa: E402

DATA = Path(__file__).parent / "data"
MODELS = ("sine_mlp", "digits_cnn")


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One firmware build per model (workdirs reused by every test of the module)."""
    root = tmp_path_factory.mktemp("qemu")
    out = {}
    for name in MODELS:
        build_qemu(DATA / f"{name}.tflite", root / name)
        out[name] = root / name
    return out


def _reference_npz(name: str, path: Path) -> Path:
    """x_test = the reference int8 inputs dequantized (they quantize back exactly)."""
    facts = load(DATA / f"{name}.tflite")
    q = np.load(DATA / f"{name}.inputs.npy")
    x = dequantize(q, facts.inputs[0])
    assert np.array_equal(quantize_input(x, facts.inputs[0]), q)
    y = np.zeros(len(x), np.float32)
    return Dataset(x_train=x, y_train=y, x_val=x, y_val=y, x_test=x, y_test=y).save(path)


def test_board_entry_is_flags() -> None:
    b = BOARDS["qemu-cm4"]
    assert b.emulated and b.pty and not b.is_mcu and not b.uploadable
    assert b.qemu_machine == "mps2-an386" and b.core == "Cortex-M4"
    assert b.supports("c") and b.supports("tflm")  # tflm: needs --tflm-src
    assert b.ram_bytes == b.flash_bytes == 4 * 1024 * 1024


def test_firmware_builds_warning_free_and_reports_sizes(builds: dict[str, Path]) -> None:
    gt = json.loads((DATA / "ground_truth.json").read_text())
    for name, work in builds.items():
        info = build_info(work)
        assert info["warnings"] == "" and "-Werror" in info["flags"]
        assert "-mfloat-abi=soft" in info["flags"] and "-mcpu=cortex-m4" in info["flags"]
        assert info["model_sha256"] == load(DATA / f"{name}.tflite").sha256
        assert info["text"] > 0 and info["bss"] > 0
        assert info["flash_bytes"] == info["text"] + info["data"]
        assert info["bss"] >= info["memory"]["arena_bytes"]
        # model weights are in .text: it cannot be smaller than the model's tensors
        assert info["text"] > info["memory"]["weight_bytes"]
        assert gt[name]["cm4_text"] > 0
        elf = work / info["elf"]
        head = elf.read_bytes()[:20]
        assert head[:4] == b"\x7fELF" and head[4] == 1 and head[18] == 40  # ELF32, EM_ARM


def test_build_is_cached(builds: dict[str, Path]) -> None:
    work = builds["sine_mlp"]
    elf = work / build_info(work)["elf"]
    stamp = elf.stat().st_mtime_ns
    assert build_qemu(DATA / "sine_mlp.tflite", work) == elf
    assert elf.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("name", MODELS)
@needs_tflm.mark
def test_validate_is_bit_exact_with_cm4_and_tflm(name: str, builds: dict[str, Path],
                                                  tmp_path: Path) -> None:
    from tinydeploy.validation import validate

    facts = load(DATA / f"{name}.tflite")
    cm4 = np.load(DATA / f"{name}.outputs_cm4.npy")
    # validate builds its own firmware (in a temporary folder) and boots it in QEMU
    r = validate(facts, _reference_npz(name, tmp_path / "data.npz"), tmp_path / "val",
                   board="qemu-cm4")
    assert r.passed and r.samples == len(cm4) and r.differing == 0
    assert r.device["board_id"] == "qemu-cm4" and r.device["runtime"] == "c"
    assert r.device_out.tobytes() == cm4.tobytes()
    host = HostModel(facts).predict(np.load(DATA / f"{name}.inputs.npy"))
    assert host.astype(np.int8).tobytes() == cm4.tobytes() == r.host.tobytes()
    with (tmp_path / "val" / "samples.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    # an emulated board measures instructions only: no time, no cycles in samples.csv
    cycles = [int(row["instructions"]) for row in rows]
    assert len(cycles) == len(cm4) and min(cycles) > 0
    assert all(row["time_us"] == row["cycles"] == "" for row in rows)

    # the same inputs in another build, freshly booted: the same instruction counts
    from tinydeploy.device.link import Link

    q = np.load(DATA / f"{name}.inputs.npy")
    with start_qemu(facts, builds[name]) as proc, Link(proc.port) as link:
        assert link.hello().model_sha256 == facts.sha256
        again = [int(link.infer(q[k].tobytes()).cycles) for k in range(3)]
    assert again == cycles[:3]
    assert not proc.running


def test_missing_tools_name_the_apt_packages(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import tinydeploy.device.qemu as q

    monkeypatch.setattr(q.shutil, "which", lambda name: None)
    with pytest.raises(TinyDeployError) as err:
        build_qemu(DATA / "sine_mlp.tflite", tmp_path / "w")
    assert err.value.code == "tool_missing" and err.value.exit_code == 7
    assert "gcc-arm-none-eabi" in str(err.value) and "qemu-system-arm" in str(err.value)
    assert not (tmp_path / "w").exists()
