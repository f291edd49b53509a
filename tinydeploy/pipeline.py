"""The whole job in one call: train -> quantize -> check -> generate -> flash -> validate.

What runs depends on the target (an example trains; a ``.keras`` model skips training; an
int8 ``.tflite`` skips training and quantization) and on the board's capability flags in
the board table (a flashable board gets a PlatformIO project and an upload; a pseudo-board
serves the model on a pseudo-terminal). The result is one ``deploy.json`` plus the
validation ``report.html`` extended with stage timings and the quantization numbers.

Layout of ``OUT``: ``train/``, ``quantize/``, ``firmware/`` (flashable boards),
``device/`` (native build), and at the top ``validation.json``, ``samples.csv``,
``report.html``, ``deploy.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import TinyDeployError
from .log import log, stage
from .output import check_output_dir, write_atomic

if TYPE_CHECKING:
    from .cruntime.patch_auto import PatchChoice


@dataclass
class DeployResult:
    out: Path
    board: str
    passed: bool
    model_path: Path
    data_path: Path
    int8_path: Path
    stages: dict[str, float]
    validation: Any  # validate.ValidationResult
    report: Path
    json_path: Path
    quantization: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    flash: dict[str, Any] = field(default_factory=dict)
    arena: dict[str, Any] = field(default_factory=dict)
    device_build: dict[str, Any] = field(default_factory=dict)  # native.json / qemu.json
    reused: list[str] = field(default_factory=list)  # stages skipped as up to date

    @property
    def failure(self) -> str:
        v = self.validation
        return "" if self.passed else f"{v.differing} of {v.samples} samples differ"

    def summary(self) -> str:
        total = sum(self.stages.values())
        timing = ", ".join(f"{k} {s:.1f} s" for k, s in self.stages.items())
        return (f"deployed {self.int8_path.name} to {self.board}: "
                f"{'PASS' if self.passed else 'FAIL'} in {total:.1f} s ({timing})\n"
                f"{self.validation.summary()}\n  deploy.json: {self.json_path}")

    def to_dict(self) -> dict[str, Any]:
        def path(p: Path | str) -> str:  # absolute: valid from any folder
            return str(Path(p).resolve())

        return {"board": self.board, "passed": self.passed, "out": path(self.out),
                "model": path(self.model_path), "data": path(self.data_path),
                "int8_model": path(self.int8_path), "stages_s": self.stages,
                "training": self.training, "quantization": self.quantization,
                "flash": self.flash, "arena": self.arena, "device_build": self.device_build,
                "validation": self.validation.to_dict(), "report": path(self.report),
                "reused": self.reused}


class _Timer:
    def __init__(self) -> None:
        self.stages: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.stages[name] = round(self.stages.get(name, 0.0) + time.monotonic() - start, 3)


def _plain(obj: Any) -> dict[str, Any]:
    """A JSON-able dict of a stage result (its ``to_dict()`` or public fields)."""
    if obj is None:
        return {}
    if hasattr(obj, "to_dict"):
        return json.loads(json.dumps(obj.to_dict(), default=str))
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return json.loads(json.dumps(dataclasses.asdict(obj), default=str))
    return {}


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            rows.update(_flat(v, key + "."))
        else:
            rows[key] = v
    return rows


def _kind(target: str) -> str:
    suffix = Path(target).suffix.lower()
    if suffix == ".tflite":
        return "tflite"
    if suffix in (".keras", ".h5"):
        return "keras"
    return "example"


def _flashable(board: Any) -> bool:
    """A board that needs firmware uploaded (the board table's capability flag)."""
    return bool(board.uploadable)


def _measured_arena(port: str) -> int:
    from .device.link import Link

    with Link(port) as link:
        return int(link.hello().arena_used)


def deploy(target: str | Path, out: str | Path, board: str = "native",
           data: str | Path | None = None, epochs: int | None = None, port: str | None = None,
           samples: int | None = None, tune_arena: bool = False, arena: str | int = "auto",
           runtime: str | None = None, fmt: str = "platformio", tolerance_lsb: int = 0,
           retrain: bool = False, tflm_src: Any = None, io: str = "model",
           patch: PatchChoice = "auto") -> DeployResult:
    """Take an example or model all the way to a validated device; one report.

    Training and quantization are reused when their inputs (example script or model,
    data, epochs, tinydeploy version) and outputs are unchanged since the last deploy
    into ``out`` (a stamp in ``out``); ``retrain=True`` reruns them.

    Args:
        target: example name (``sine``, ``digits``, ``vibration``), ``.py`` example,
            ``.keras`` model (quantized first) or int8 ``.tflite``.
        out: output folder (``train/``, ``quantize/``, ``firmware/``, the report).
        board: board id, or ``sim`` / ``native`` / ``qemu-cm4`` (no hardware).
        data: ``.npz`` data (needed for a model target).
        epochs: override the example's epochs.
        port: serial port of a physical board (default: found by USB VID/PID).
        samples: validate only the first N test samples.
        tune_arena: reflash with the measured arena plus margin (physical boards).
        arena, runtime, fmt: passed to :func:`tinydeploy.generate` (physical boards;
            native / qemu-cm4 build the C runtime, or with ``runtime='tflm'`` -- implied by
            ``tflm_src`` -- the generated TFLite Micro firmware with that ``arena``).
        tolerance_lsb: passed to :func:`tinydeploy.validate`.
        retrain: rerun training and quantization even when up to date.
        tflm_src: with ``runtime='tflm'`` on native / qemu-cm4, the TFLM tree the generated
            TFLite Micro firmware is built against (default ``$TINYDEPLOY_TFLM_SRC``).
        io: the firmware's interface (:mod:`tinydeploy.interface`): ``model`` (the
            model's own; an example or ``.keras`` model is quantized with int8 I/O),
            ``int8`` (a float interface stripped) or ``float`` (an example or ``.keras``
            model is quantized with float32 I/O around its int8 core, ``quantize --io
            float``; a ``.tflite`` must have a float interface).
        patch: the C runtime's patch-based stage: ``auto``, ``off`` or (first op, last op,
            bands) (:mod:`tinydeploy.cruntime.patch_auto`).

    Returns:
        A :class:`DeployResult` (``passed``, stage timings, report path).

    Raises:
        TinyDeployError: bad input (2), model rejected (3), does not fit (4), device or
            link (5), missing tool (7), build failed (8). A failed validation is a
            result with ``passed=False``, not an exception.
    """
    from .boards import get_board
    from .cruntime.patch_auto import parse_choice
    from .interface import check_io_choice
    from .validation import resolve_runtime, tflm_tree_for

    b = get_board(board)
    patch = parse_choice(patch)
    check_io_choice(io)
    runtime = resolve_runtime(runtime, tflm_src, None)  # --tflm-src implies tflm
    _check_passthrough(b, arena, runtime, fmt, tolerance_lsb)
    tree = tflm_tree_for(board, runtime or "c", tflm_src)  # before minutes of training
    target = str(target)
    kind = _kind(target)
    out = check_output_dir(out)  # it, or its nearest existing parent, is a folder
    if kind != "example" and data is None:
        raise TinyDeployError("bad_argument", problem=f"deploying {target} needs --data DATA.npz",
                              fix="pass --data with the .npz data convention (see README)")
    if kind != "example" and not Path(target).is_file():
        raise TinyDeployError("file_not_found", what="model", path=target)
    if data is not None and not Path(data).is_file():
        raise TinyDeployError("file_not_found", what="data file", path=data)
    if kind == "example" and not target.endswith(".py"):
        from .training import example_names

        if target not in example_names():
            raise TinyDeployError("unknown_example", name=target,
                                  choices=", ".join(example_names()) or "(none installed)")
    if tune_arena and runtime == "c":
        raise TinyDeployError("bad_argument",
                              problem="--tune-arena sizes TFLM's tensor arena; the C runtime "
                                      "plans its memory offline (its arena is exact)",
                              fix="drop --tune-arena, or drop --runtime c (TFLM firmware)")
    if tune_arena and not _flashable(b):
        raise TinyDeployError("bad_argument",
                              problem=f"--tune-arena reflashes a board; {board} is not flashed",
                              fix="drop --tune-arena, or deploy to a physical board")
    if _flashable(b):
        # Before minutes of training: PlatformIO and the board must be reachable.
        from .device.flashing import check_port, find_port, pio_command

        pio_command()
        if port is None:
            port = find_port(b)
        else:
            check_port(port)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _pipeline(target, kind, out, b, data, epochs, port, samples, tune_arena,
                         {"arena": arena, "runtime": runtime, "fmt": fmt,
                          "tolerance_lsb": tolerance_lsb, "retrain": retrain, "tree": tree,
                          "tflm_src": tflm_src, "io": io, "patch": patch})
    except BaseException:
        if created and not any(out.iterdir()):
            out.rmdir()  # failed before any stage wrote something: leave nothing behind
        raise


def _check_passthrough(b: Any, arena: str | int, runtime: str | None, fmt: str,
                       tolerance_lsb: int) -> None:
    """Refuse generate/validate options the board cannot use, before any stage runs."""
    if tolerance_lsb < 0:
        raise TinyDeployError("bad_argument", problem="--tolerance-lsb must be >= 0",
                              fix="pass 0 for bit-exact or a positive LSB count")
    if runtime is not None and not b.supports(runtime) and (runtime != "sim" or not b.simulated):
        ok = ", ".join(b.runtimes) or "none (it serves the model itself)"
        raise TinyDeployError("bad_argument", problem=f"board {b.id} cannot run the {runtime} "
                                                      "runtime", fix=f"runtimes of {b.id}: {ok}")
    if _flashable(b):
        if fmt == "arduino":
            raise TinyDeployError("bad_argument",
                                  problem="deploy uploads with PlatformIO; --format arduino "
                                          "makes no PlatformIO project",
                                  fix="pass --format platformio or both")
        return
    ignored = [f"--arena {arena}" if str(arena) != "auto" and runtime != "tflm" else "",
               f"--format {fmt}" if fmt != "platformio" else ""]
    if any(ignored):
        log.warning("%s: ignored for board %s (it builds the C runtime, which plans its own "
                    "memory)", ", ".join(i for i in ignored if i), b.id)


def _train_stage(target: str, out: Path, data: str | Path | None, epochs: int | None,
                 retrain: bool) -> tuple[dict[str, Any], Path, Path, bool]:
    """Train, or reuse ``out/train`` when the example, data and epochs are unchanged."""
    from . import stamps
    from .training import train

    script: Path | str = target
    if not target.endswith(".py"):
        from .resources import examples_dir

        script = examples_dir() / f"{target}.py"
    fp = stamps.fingerprint([script, *([data] if data else [])], target=Path(target).name,
                            epochs=epochs)
    done = None if retrain else stamps.reusable(out, "train", fp)
    if done is not None:
        stage("train", f"up to date, reusing {out / 'train'} (--retrain to force)")
        return (done, out / "train" / Path(done["model_path"]).name,
                out / "train" / Path(done["data_path"]).name, True)
    tr = train(target, out / "train", epochs=epochs, data=data)
    training = _plain(tr)
    stamps.record(out, "train", fp, [Path(tr.model_path), Path(tr.data_path)], training)
    return training, Path(tr.model_path), Path(tr.data_path), False


def _quantize_stage(model_path: Path, data_path: Path, out: Path,
                    retrain: bool, io: str = "int8") -> tuple[dict[str, Any], Path, bool]:
    """Quantize (``io``: the int8 model's interface), or reuse ``out/quantize`` when the
    model, data and interface are unchanged."""
    from . import stamps
    from .quantization import quantize

    fp = stamps.fingerprint([model_path, data_path], **({"io": io} if io != "int8" else {}))
    done = None if retrain else stamps.reusable(out, "quantize", fp)
    if done is not None:
        stage("quantize", f"up to date, reusing {out / 'quantize'} (--retrain to force)")
        return done, out / "quantize" / Path(done["outputs"]["int8"]).name, True
    qr = quantize(model_path, data_path, out / "quantize", io=io)
    quant = _plain(qr)
    stamps.record(out, "quantize", fp, [Path(qr.int8_path)], quant)
    return quant, Path(qr.int8_path), False


def _pipeline(target: str, kind: str, out: Path, b: Any, data: str | Path | None,
              epochs: int | None, port: str | None, samples: int | None,
              tune_arena: bool, opts: dict[str, Any]) -> DeployResult:
    board = b.id
    timer = _Timer()
    training: dict[str, Any] = {}
    quant: dict[str, Any] = {}

    model_path = Path(target)
    data_path = Path(data) if data is not None else out / "train" / "data.npz"
    reused: list[str] = []
    if kind == "example":
        with timer("train"):
            training, model_path, data_path, again = _train_stage(target, out, data, epochs,
                                                                  opts["retrain"])
        reused += ["train"] if again else []
    int8_path = model_path
    if kind != "tflite":
        with timer("quantize"):
            quant, int8_path, again = _quantize_stage(
                model_path, data_path, out, opts["retrain"],
                "float" if opts["io"] == "float" else "int8")
        reused += ["quantize"] if again else []

    from .guard import check
    from .interface import with_io

    with timer("check"):
        facts = check(int8_path)
        if opts["io"] != "model":  # --io int8: the firmware runs the stripped model
            facts = check(with_io(facts, opts["io"]))

    flash_info: dict[str, Any] = {}
    arena_info: dict[str, Any] = {}
    device_build: dict[str, Any] = {}
    from .validation import open_device, tflm_arena, validate, write_html

    if _flashable(b):
        from .device.flashing import flash
        from .render import generate

        fw = out / "firmware"
        with timer("generate"):
            c_runtime = {"patch": opts["patch"]} if opts["runtime"] == "c" else {}
            gen = generate(facts, fw, boards=[b.id], arena=opts["arena"], fmt=opts["fmt"],
                           runtime=opts["runtime"] or "tflm", data=data_path, **c_runtime)
        project = Path(getattr(gen, "platformio_dir", None) or fw)
        with timer("flash"):
            fr = flash(project, b, port=port)
        flash_info = fr.to_dict()
        port = fr.port
        if tune_arena:
            with timer("tune_arena"):
                arena_info = _tune_arena(facts, fw, b, port, opts["tflm_src"], data_path)
        with timer("validate"):
            result = validate(facts, data_path, out, port=port, samples=samples,
                              tolerance_lsb=opts["tolerance_lsb"])
    else:
        stage("deploy", f"{board}: serving the model on a pseudo-terminal")
        start = time.monotonic()
        arena_bytes = None
        if opts["tree"] is not None:  # the TFLM firmware's arena: --arena for the tree
            arena_bytes = tflm_arena(facts, opts["arena"], opts["tree"], board).size
        with open_device(facts, port, board, out / "device", runtime=opts["runtime"] or "c",
                         tflm_src=opts["tree"], arena_bytes=arena_bytes,
                         patch=opts["patch"]) as dev_port:
            # native / emulated: compiling the C runtime; sim: starting the simulator
            compiled = b.native or b.emulated
            timer.stages["build" if compiled else "start"] = round(time.monotonic() - start, 3)
            device_build = {p.stem: json.loads(p.read_text())
                            for p in sorted((out / "device").glob("*.json"))}
            with timer("validate"):
                result = validate(facts, data_path, out, port=dev_port, samples=samples,
                                  tolerance_lsb=opts["tolerance_lsb"], build=device_build)

    res = DeployResult(out=out, board=board, passed=result.passed, model_path=model_path,
                       data_path=data_path, int8_path=int8_path, stages=dict(timer.stages),
                       validation=result, report=result.paths["html"],
                       json_path=out / "deploy.json", quantization=quant, training=training,
                       flash=flash_info, arena=arena_info, device_build=device_build,
                       reused=reused)
    from .report.sections import deploy_sections

    extra = deploy_sections(target, board, int8_path, data_path, res.stages, training, quant,
                            arena_info, flash_info, reused)
    write_html(result, facts, extra=extra, title=f"tinydeploy deploy: {target} on {board}")
    write_atomic(res.json_path, json.dumps(res.to_dict(), indent=2, default=str) + "\n")
    log.info("deploy: %s", "PASS" if res.passed else "FAIL")
    return res


def tuned_arena(used: int) -> int:
    """The measured arena plus the renderer's margin, rounded up to 16 bytes."""
    from .render import with_margin

    return with_margin(used)


def _tune_arena(facts: Any, fw: Path, b: Any, port: str,
                tflm_src: Any = None, data: Any = None) -> dict[str, Any]:
    """With a TFLM tree (``--tflm-src`` or ``$TINYDEPLOY_TFLM_SRC``): regenerate with the
    minimum measured on qemu-cm4 + 16 B (``--arena tuned``) and reflash. Without one: read
    arena_used from the device, regenerate with it plus the margin, reflash."""
    import os

    from .device.flashing import flash
    from .render import generate

    if tflm_src is not None or os.environ.get("TINYDEPLOY_TFLM_SRC"):
        gen = generate(facts, fw, boards=[b.id], arena="tuned", fmt="platformio",
                       tflm_src=tflm_src, data=data)
        stage("tune-arena", f"reflashing with {gen.arena.size} B ({gen.arena.note})")
        fr = flash(Path(gen.platformio_dir or fw), b, port=port)
        return {"arena_measured": gen.arena.predicted, "arena_size": gen.arena.size,
                "how": gen.arena.note, "reflash_s": round(fr.seconds, 3)}
    used = _measured_arena(port)
    arena = tuned_arena(used)
    stage("tune-arena", f"device uses {used} bytes; reflashing with {arena}")
    gen = generate(facts, fw, boards=[b.id], arena=str(arena), fmt="platformio", data=data)
    fr = flash(Path(gen.platformio_dir or fw), b, port=port)
    return {"arena_used": used, "arena_size": arena, "reflash_s": round(fr.seconds, 3)}
