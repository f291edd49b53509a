"""CLI conventions: --version, --json everywhere, -v/-q after the subcommand, arena checks,
hints that name real flags, a coherent `arena --json`, a re-generate that owns its folder,
carray outputs, absolute paths, deploy reuse and passthrough, README build steps, and the
Python API's discoverability (dir, docstrings, progress without logging setup)."""

from __future__ import annotations

import ast
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import click
import needs_tflm
import pytest
import typer

import tinydeploy
from tinydeploy import cli
from tinydeploy.errors import ERRORS

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
SINE = DATA / "sine_mlp.tflite"
DIGITS = DATA / "digits_cnn.tflite"


def _click() -> click.Group:
    cli.main(["--help"])  # wraps every command with the shared options
    return typer.main.get_command(cli.app)  # type: ignore[return-value]


def _options(cmd: click.Command) -> set[str]:
    return {o for p in cmd.params for o in getattr(p, "opts", [])}


def _json_out(capsys: pytest.CaptureFixture[str], argv: list[str]) -> object:
    capsys.readouterr()
    assert cli.main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"tinydeploy {tinydeploy.__version__}"


def test_every_command_has_json_verbose_and_quiet() -> None:
    group = _click()
    assert {"train", "quantize", "check", "inspect", "carray", "arena", "boards", "generate",
            "flash", "validate", "deploy"} <= set(group.commands)
    for name, cmd in group.commands.items():
        opts = _options(cmd)
        assert {"--json", "-v", "--verbose", "-q", "--quiet"} <= opts, (name, opts)


def test_verbosity_after_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    log = logging.getLogger("tinydeploy")
    assert cli.main(["boards", "-q"]) == 0
    assert log.level == logging.WARNING
    assert cli.main(["boards", "--json", "-v"]) == 0
    assert log.level == logging.DEBUG
    assert cli.main(["-v", "boards", "-q"]) == 0  # the last one wins
    assert log.level == logging.WARNING
    assert cli.main(["boards"]) == 0
    assert log.level == logging.INFO


def test_json_results(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    doc = _json_out(capsys, ["check", str(SINE), "--json"])
    assert doc["ok"] is True and doc["ops"] == ["FULLY_CONNECTED"]
    doc = _json_out(capsys, ["carray", str(SINE), "--out", str(tmp_path / "c"), "--json"])
    assert [Path(p).name for p in doc["files"]] == ["model_data.h", "model_data.cc"]
    assert all(Path(p).is_absolute() for p in doc["files"])


def test_inspect_has_a_per_layer_table(capsys: pytest.CaptureFixture[str]) -> None:
    doc = _json_out(capsys, ["inspect", str(DIGITS), "--json"])
    layers, totals = doc["layers"], doc["totals"]
    assert [x["op"] for x in layers] == ["CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D",
                                         "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"]
    conv, fc = layers[0], layers[4]
    # conv: 8x8x8 outputs x 3x3x1 kernel; dense: 10 outputs x 128 inputs
    assert conv["macs"] == 8 * 8 * 8 * 9 and conv["output_shape"] == [1, 8, 8, 8]
    assert fc["macs"] == 10 * 128 and fc["params"] == 10 * 128 + 10
    assert fc["param_bytes"] == 10 * 128 + 4 * 10 and fc["dtype"] == "INT8"
    assert totals["macs"] == sum(x["macs"] for x in layers)
    assert totals["weight_bytes"] == doc["weight_bytes"]
    assert totals["activation_peak_bytes"] == 1024  # conv in + conv out (8x8x8 int8 each)
    assert cli.main(["inspect", str(DIGITS)]) == 0
    text = capsys.readouterr().out
    assert "MACs" in text and "FULLY_CONNECTED" in text
    assert f"{totals['macs']:,} MACs" in text and "peak activation memory" in text


def test_arena_json_is_coherent_and_names_the_generate_size(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    doc = _json_out(capsys, ["arena", str(DIGITS), "--board", "nano33ble", "--json"])

    def nulls(obj: object) -> bool:
        if isinstance(obj, dict):
            return any(v is None or nulls(v) for v in obj.values())
        return False

    assert not nulls(doc), doc
    assert doc["kind"] == "predicted" and doc["arena_bytes"] == doc["cortex_m"][
        "predicted_min_bytes"]
    assert "min_bytes" not in doc["host64"]  # not measured for this target
    gen = _json_out(capsys, ["generate", str(DIGITS), "--out", str(tmp_path / "fw"),
                             "--format", "platformio", "--json"])
    assert gen["arena_size"] == doc["generate_bytes"]
    assert Path(gen["out"]).is_absolute()


@needs_tflm.mark  # measured with the TFLM Python runtime
def test_arena_below_the_prediction_warns_below_the_activations_fails(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str]) -> None:
    from tinydeploy.render import generate

    with caplog.at_level(logging.WARNING, logger="tinydeploy"):
        r = generate(DIGITS, tmp_path / "a", boards=["nano33ble"], arena=2000,
                     fmt="platformio")
    assert r.arena.size == 2000 and "WARNING: below the Cortex-M prediction" in r.arena.note
    assert any("--arena 2000 is below the Cortex-M prediction" in m for m in caplog.messages)
    capfd.readouterr()
    assert cli.main(["generate", str(DIGITS), "--out", str(tmp_path / "b"),
                     "--arena", "1000"]) == 4
    err = capfd.readouterr().err
    assert "activations and scratch buffers alone take 1024 B" in err
    assert not (tmp_path / "b").exists()


def _hint_flags() -> set[str]:
    """Every --flag in an error hint: the ERRORS table and the strings passed to
    TinyDeployError(...) anywhere in the package."""
    texts = [hint for _, _, hint in ERRORS.values()]
    for path in (ROOT / "tinydeploy").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "TinyDeployError"):
                texts += [c.value for c in ast.walk(node)
                          if isinstance(c, ast.Constant) and isinstance(c.value, str)]
    return {m for t in texts for m in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", t)}


def test_every_flag_named_in_a_hint_exists() -> None:
    group = _click()
    real = _options(group) | {o for c in group.commands.values() for o in _options(c)}
    flags = _hint_flags()
    assert {"--arena", "--board", "--out"} <= flags  # the scan finds hints at all
    assert flags <= real, flags - real


def test_regenerate_owns_its_folder(tmp_path: Path) -> None:
    from tinydeploy.render import generate

    out = tmp_path / "fw"
    generate(DIGITS, out, boards=["nano33ble"], fmt="both")
    sketch = out / "fw" / "examples" / "validate" / "validate.ino"  # the Arduino library
    assert sketch.is_file() and (out / "platformio.ini").is_file()
    (out / "notes.txt").write_text("mine")
    generate(DIGITS, out, boards=["nano33ble"], fmt="platformio")
    assert not (out / "fw").exists()  # the old sketch is gone
    assert (out / "platformio.ini").is_file() and (out / "notes.txt").read_text() == "mine"
    generate(DIGITS, out, boards=["nano33ble"], fmt="arduino")
    assert not (out / "platformio.ini").exists() and not (out / "src" / "tinydeploy").exists()
    assert not (out / "lib").exists()
    assert [p.name for p in (out / "src").iterdir()] == ["main.cpp"]  # the app: the user's
    assert sketch.is_file() and (out / "notes.txt").is_file()


def test_carray_xxd_to_any_file_and_to_stdout(tmp_path: Path,
                                              capfd: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "x.txt"
    assert cli.main(["carray", str(SINE), "--xxd", "--out", str(target)]) == 0
    assert target.is_file() and target.read_text().startswith("unsigned char ")
    capfd.readouterr()
    assert cli.main(["carray", str(SINE), "--xxd", "--out", "-"]) == 0
    out = capfd.readouterr().out
    assert out == target.read_text()
    assert cli.main(["carray", str(SINE), "--out", "-", "--name", "net"]) == 0
    out = capfd.readouterr().out
    assert "extern const unsigned char net[];" in out and "alignas(16)" in out
    assert not (tmp_path / "-").exists() and not Path("-").exists()


def test_readme_build_steps_work_verbatim(tmp_path: Path) -> None:
    from tinydeploy.arduino_cores import CORE_URLS, core_of
    from tinydeploy.boards import BOARDS
    from tinydeploy.render import generate

    ids = [b.id for b in BOARDS.values() if b.uploadable]
    r = generate(DIGITS, tmp_path / "fw", boards=ids, fmt="both")
    text = (tmp_path / "fw" / "README.md").read_text()
    blocks = "\n".join(re.findall(r"```sh\n(.*?)```", text, re.S))
    for b in (BOARDS[i] for i in ids):
        core, url = core_of(b.arduino_fqbn)
        assert core in CORE_URLS, core  # every board's core has a known install line
        extra = f" --additional-urls {url}" if url else ""
        for line in (f"arduino-cli core install {core}{extra}",
                     f'arduino-cli lib install "{b.tflm_arduino_lib}"',
                     f"arduino-cli compile --fqbn {b.arduino_fqbn} --library {r.sketch} "
                     f"{r.sketch}/examples/validate",
                     f"arduino-cli upload -p PORT --fqbn {b.arduino_fqbn} "
                     f"{r.sketch}/examples/validate",
                     f"pio run -e {b.id}",
                     f"pio run -e {b.id} -t upload --upload-port PORT"):
            assert line in blocks.splitlines() or any(
                ln.startswith(line + " ") or ln == line for ln in blocks.splitlines()), line
    assert "--additional-urls https://www.pjrc.com/teensy/package_teensy_index.json" in blocks


def test_deploy_reuses_quantization_and_passes_options_through(
        sine_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["deploy", str(sine_run.model_keras), "--data", str(sine_run.data_npz), "--board",
            "sim", "--out", str(out), "--samples", "5", "--json"]
    first = _json_out(capsys, argv)
    assert first["reused"] == [] and first["validation"]["tolerance_lsb"] == 0
    second = _json_out(capsys, [*argv, "--tolerance-lsb", "1"])
    assert second["reused"] == ["quantize"]
    assert second["validation"]["tolerance_lsb"] == 1
    assert second["int8_model"] == first["int8_model"] and Path(second["out"]).is_absolute()
    import tinydeploy.quantization as quantization

    def no_quantize(*args: object, **kwargs: object) -> None:
        raise RuntimeError("quantized")

    monkeypatch.setattr(quantization, "quantize", no_quantize)
    with pytest.raises(RuntimeError, match="quantized"):
        cli.main([*argv, "--retrain"])


def test_training_is_reused_only_while_its_inputs_are_unchanged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tinydeploy.training as training
    from tinydeploy.pipeline import _train_stage

    calls: list[int | None] = []

    class Trained:
        def __init__(self, out: Path, epochs: int | None) -> None:
            self.model_path, self.data_path = out / "model.keras", out / "data.npz"
            self.epochs = epochs

        def to_dict(self) -> dict[str, object]:
            return {"name": "sine", "epochs": self.epochs, "model_path": str(self.model_path),
                    "data_path": str(self.data_path)}

    def fake_train(example: str, out: Path, epochs: int | None = None,
                   data: object = None) -> Trained:
        calls.append(epochs)
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.keras").write_text(f"model {epochs}")
        (out / "data.npz").write_text("data")
        return Trained(out, epochs)

    monkeypatch.setattr(training, "train", fake_train)
    assert _train_stage("sine", tmp_path, None, 2, False)[3] is False
    assert _train_stage("sine", tmp_path, None, 2, False)[3] is True  # up to date
    assert _train_stage("sine", tmp_path, None, 2, True)[3] is False  # --retrain
    assert _train_stage("sine", tmp_path, None, 3, False)[3] is False  # other epochs
    (tmp_path / "train" / "model.keras").write_text("edited")  # output changed: retrain
    assert _train_stage("sine", tmp_path, None, 3, False)[3] is False
    assert calls == [2, 2, 3, 3]


def test_deploy_refuses_options_the_board_cannot_use(capfd: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    assert cli.main(["deploy", "sine", "--board", "sim", "--runtime", "tflm", "--out",
                     str(tmp_path / "a")]) == 2
    assert "cannot run the tflm runtime" in capfd.readouterr().err
    assert cli.main(["deploy", "sine", "--board", "nano33ble", "--format", "arduino",
                     "--out", str(tmp_path / "b")]) == 2
    assert "--format platformio or both" in capfd.readouterr().err
    assert cli.main(["deploy", "sine", "--board", "nano33ble", "--runtime", "c",
                     "--tune-arena", "--out", str(tmp_path / "b")]) == 2
    assert "plans its memory offline" in capfd.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_api_is_discoverable_and_documented() -> None:
    import inspect

    names = dir(tinydeploy)
    for name in ("train", "quantize", "check", "inspect", "carray", "arena", "generate",
                 "flash", "validate", "deploy", "load", "load_data", "BOARDS"):
        assert name in names, name
    for name in tinydeploy.__all__:
        obj = getattr(tinydeploy, name)
        if inspect.isfunction(obj):
            doc = inspect.getdoc(obj) or ""
            for part in ("Args:", "Returns:", "Raises:"):
                assert part in doc, (name, part)


def test_api_shows_progress_without_logging_setup() -> None:
    code = ("import tinydeploy as td; from tinydeploy.log import stage; "
            "stage('arena', 'sine_mlp.tflite: predicting the smallest arena (cortex-m)')")
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=60, cwd=ROOT)
    assert plain.returncode == 0, plain.stderr
    assert "[arena] sine_mlp.tflite: predicting" in plain.stderr
    configured = subprocess.run(
        [sys.executable, "-c", "import logging; logging.basicConfig(level=logging.INFO, "
         "format='APP %(name)s %(message)s'); " + code],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    lines = [ln for ln in configured.stderr.splitlines() if "[arena]" in ln]
    assert lines == ["APP tinydeploy [arena] sine_mlp.tflite: predicting the smallest arena "
                     "(cortex-m)"], configured.stderr
