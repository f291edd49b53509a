"""Thin command line over the typed API: parse options, call one function, print, exit.

Every ``TinyDeployError`` becomes one line on stderr and its exit code; no tracebacks
(``--debug`` shows them). Stage modules are imported inside each command so that quick
commands (``boards``, ``carray``) do not pay for importing TensorFlow.
"""

from __future__ import annotations

import contextlib
import functools
import inspect as _inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from . import log as tdlog
from .cli_examples import epilog
from .errors import TinyDeployError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Keras -> int8 TFLite -> microcontroller firmware, validated on device.")
_state: dict[str, Any] = {"debug": False}

Out = Annotated[Path, typer.Option("--out", "-o", help="output folder")]
ModelArg = Annotated[Path, typer.Argument(help="int8 .tflite model")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def _echo_json(obj: object) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


def _echo(result: object, as_json: bool, text: str | None = None) -> None:
    """Print ``result.to_dict()`` as JSON with --json (when the command ends: a failure
    that follows, e.g. a FAIL verdict, joins it as its ``error``: one JSON document),
    else ``text`` or its summary()."""
    if as_json:
        _state["json_doc"] = _plain(result)
    else:
        typer.echo(text if text is not None else result.summary())  # type: ignore[attr-defined]


def _plain(result: object) -> object:
    """A JSON-able view: ``to_dict()``, else a dataclass's fields (+ ``memory()``)."""
    import dataclasses

    if hasattr(result, "to_dict"):
        return result.to_dict()
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        doc = json.loads(json.dumps(dataclasses.asdict(result), default=str))
        if callable(getattr(result, "memory", None)):
            doc["memory"] = result.memory()
        return {k: (str(Path(v).resolve()) if k.endswith(("dir", "path")) and v else v)
                for k, v in doc.items()}
    return result


def _verbosity(ctx: typer.Context, param: object, value: bool) -> None:
    """-v / -q, before or after the subcommand: set the log level (last one wins)."""
    if value:
        name = getattr(param, "name", "")
        tdlog.setup(verbose=name.startswith("verbose"), quiet=name.startswith("quiet"))


def _version(value: bool) -> None:
    if value:
        from ._version import __version__

        typer.echo(f"tinydeploy {__version__}")
        raise typer.Exit()


_VERBOSE = typer.Option("--verbose", "-v", help="debug logging", callback=_verbosity,
                        expose_value=False)
_QUIET = typer.Option("--quiet", "-q", help="warnings and errors only", callback=_verbosity,
                      expose_value=False)


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="warnings and errors only")
                     ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks")] = False,
    version: Annotated[bool, typer.Option("--version", help="print the version and exit",
                                          callback=_version, is_eager=True)] = False,
) -> None:
    tdlog.setup(verbose, quiet=quiet)
    _state["debug"] = debug


@app.command()
def train(
    example: Annotated[str, typer.Argument(help="sine | digits | vibration, or a .keras model")],
    out: Out,
    epochs: Annotated[int | None, typer.Option(help="override the example's epochs")] = None,
    data: Annotated[Path | None, typer.Option(help=".npz data (with a .keras model)")] = None,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Train an example (or fine-tune a .keras model) into OUT/model.keras + OUT/data.npz."""
    from .training import train as run

    result = run(example, out, epochs=epochs, data=data, seed=seed)
    _echo(result, as_json)


@app.command()
def quantize(
    model: Annotated[Path, typer.Argument(help="Keras .keras model")],
    data: Annotated[Path, typer.Option(help=".npz data (see README: data convention)")],
    out: Out,
    rep_samples: Annotated[int, typer.Option(help="representative samples")] = 200,
    io: Annotated[str, typer.Option(
        help="int8 (int8 input and output) | float (float32 input and output around the "
             "int8 core)")] = "int8",
    as_json: JsonOpt = False,
) -> None:
    """Full-int8 quantization with a representative dataset; writes a report."""
    from .quantization import quantize as run

    report = run(model, data, out, rep_samples=rep_samples, io=io)
    _echo(report, as_json)


@app.command()
def check(model: ModelArg, as_json: JsonOpt = False) -> None:
    """Accept a model only if TFLM runs it quantized (full int8, or 16x8)."""
    from .guard import check as run

    facts = run(model)
    scheme = "16x8 (int16 activations, int8 weights)" if facts.quantization == "16x8" \
        else "full-int8"
    state = ", stateful" if facts.stateful else ""
    if facts.interface == "float":
        state += (", float interface (float32 through QUANTIZE/DEQUANTIZE; "
                  "`generate --io int8` strips it)")
    _echo({"ok": True, "model": str(Path(model).resolve()), "sha256": facts.sha256,
           "quantization": facts.quantization, "interface": facts.interface,
           "stateful": facts.stateful, "ops": facts.op_names}, as_json,
          f"ok: {model} is {scheme}{state} and runs on TFLM ({', '.join(facts.op_names)})")


@app.command()
def inspect(model: ModelArg, as_json: JsonOpt = False) -> None:
    """Show the model facts every later stage uses."""
    from .facts import load
    from .layers import analyze, table

    facts = load(model)
    layers = analyze(facts)
    if as_json:
        _echo_json({**facts.to_dict(), **layers})
        return
    from .render import describe

    typer.echo(describe(facts) + "\n\n" + table(layers))


@app.command()
def carray(
    model: Annotated[str, typer.Argument(help="any file (usually a .tflite); --xxd names "
                                         "the array from this path as typed")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder (or .h/.cc path)")],
    name: Annotated[str | None, typer.Option(help="C array name (sanitized)")] = None,
    xxd: Annotated[bool, typer.Option("--xxd", help="byte-identical to `xxd -i FILE`")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write the file as C source (model_data.h/.cc, or xxd -i style); --out - prints it."""
    from .c_array import carray as run
    from .c_array import carray_text

    if str(out) == "-":
        sys.stdout.write(carray_text(model, name=name, xxd=xxd))
        return
    paths = [str(p.resolve()) for p in run(model, out, name=name, xxd=xxd)]
    _echo({"files": paths}, as_json, "\n".join(paths))


@app.command()
def arena(
    model: ModelArg,
    target: Annotated[str, typer.Option(
        help="cortex-m (predicted) | host64 (measured) | qemu-cm4 (measured, needs --tflm-src)")
    ] = "cortex-m",
    flavour: Annotated[str | None, typer.Option(
        help="kernels of the cortex-m prediction: reference | cmsis-nn (default: --board's "
             "library, else reference)")] = None,
    board: Annotated[str | None, typer.Option(
        help="predict for this board's TFLM library (sets --flavour)")] = None,
    tflm_src: Annotated[str | None, typer.Option(
        help="TFLM tree for --target qemu-cm4 (tflite-micro checkout or Arduino library)")
    ] = None,
    timeout: Annotated[float | None, typer.Option(
        help="--target qemu-cm4: seconds one trial's inference may take (default: predicted)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Find the smallest tensor arena (cortex-m: predicted for 32-bit; host64 / qemu-cm4:
    measured)."""
    from .arena.search import arena as run

    if flavour is None and board is not None:
        from .boards import kernel_flavour

        flavour = kernel_flavour(board)
    result = run(model, target=target, flavour=flavour or "reference", tflm_src=tflm_src,
                 timeout=timeout)
    if as_json:
        _echo_json(result.to_dict())
    else:
        typer.echo(result.summary())


@app.command()
def boards(as_json: JsonOpt = False) -> None:
    """List the supported boards."""
    from .boards import BOARDS, table

    if as_json:
        _echo_json([b.to_dict() for b in BOARDS.values()])
    else:
        typer.echo(table())


PATCH_HELP = ("C runtime: auto (the planner runs the first stage patch-based, in row bands, "
              "where that lowers the peak RAM enough for little recomputation) | off | "
              "FIRST:LAST:BANDS (those operators in that many bands, e.g. 0:3:6); "
              "memory.json reports the choice, the bytes saved and the recomputation")


def _patch_option(patch: str | None, runtime: str) -> Any:
    """``--patch`` parsed for the commands that build the C runtime (default ``auto``);
    refused in one line where the TFLM firmware is built."""
    from .cruntime.patch_auto import refuse_for_tflm

    return refuse_for_tflm(patch, runtime, given=patch is not None)


@app.command()
def generate(
    model: ModelArg,
    out: Out,
    board: Annotated[str, typer.Option(help="board id(s), comma separated")] = "nano33ble",
    arena_: Annotated[str, typer.Option(
        "--arena", help="auto (predicted) | tuned (measured on qemu-cm4, needs --tflm-src) | "
                        "a byte count")] = "auto",
    fmt: Annotated[str, typer.Option("--format", help="arduino | platformio | both")] = "both",
    runtime: Annotated[str | None, typer.Option(
        help="tflm | c (interpreter-free C); default tflm")] = None,
    name: Annotated[str | None, typer.Option(
        help="library name (a C identifier; default: the --out folder's name)")] = None,
    labels: Annotated[str | None, typer.Option(
        help="class labels: a,b,c or a file (default: quantization.json beside the model)")
    ] = None,
    data: Annotated[Path | None, typer.Option(
        help=".npz whose x_test[0] the basic example runs (default: data.npz beside it)")
    ] = None,
    tflm_src: Annotated[str | None, typer.Option(
        help="TFLM tree measured for --arena tuned (the board's library)")] = None,
    io: Annotated[str, typer.Option(help=IO_HELP)] = "model",
    patch: Annotated[str | None, typer.Option(help=PATCH_HELP)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Render firmware: Arduino library (API + examples) and/or PlatformIO project.
    Re-generating into the same folder keeps your files (src/main.cpp is yours)."""
    from .device.connect import resolve_runtime
    from .render import generate as run

    runtime = resolve_runtime(runtime, tflm_src, "tflm")
    choice = _patch_option(patch, str(runtime))
    result = run(model, out, boards=board.split(","), arena=arena_, fmt=fmt, runtime=runtime,
                 name=name, labels=labels, data=data, tflm_src=tflm_src, io=io, patch=choice)
    _echo(result, as_json)


@app.command()
def build(
    project: Annotated[Path, typer.Argument(help="generated PlatformIO project folder")],
    board: Annotated[str, typer.Option(help="board id")],
    as_json: JsonOpt = False,
) -> None:
    """Compile with PlatformIO (pio run), output live; no board needed."""
    from .device.building import build as run

    _echo(run(project, board=board), as_json)


@app.command()
def flash(
    project: Annotated[Path, typer.Argument(help="generated PlatformIO project folder")],
    board: Annotated[str, typer.Option(help="board id")],
    port: Annotated[str | None, typer.Option(help="serial port (default: by USB VID/PID)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Build and upload with PlatformIO."""
    from .device.flashing import flash as run

    _echo(run(project, board=board, port=port), as_json)


IO_HELP = ("the firmware's interface: model (the model's own: a float interface takes and "
           "returns float32) | int8 (float QUANTIZE/DEQUANTIZE stripped) | float (require "
           "a float interface)")
RUNTIME_HELP = ("native/qemu-cm4 firmware: c (interpreter-free C, the default) | tflm (the "
                "generated TFLite Micro firmware, needs a tree; --tflm-src implies it)")
ARENA_HELP = ("the TFLM firmware's tensor arena (every board, native/qemu-cm4 with "
              "--runtime tflm too): auto (predicted for the tree's kernels) | tuned "
              "(measured on qemu-cm4) | a byte count")
TFLM_SRC_HELP = ("TFLM source tree for --runtime tflm: an Arduino library folder or a "
                 "tflite-micro checkout [env: TINYDEPLOY_TFLM_SRC]")


@app.command()
def validate(
    model: ModelArg,
    data: Annotated[Path, typer.Option(help=".npz data; x_test (x_test_K per input) is sent")],
    out: Out,
    port: Annotated[str | None, typer.Option(help="serial port of a flashed board")] = None,
    board: Annotated[str | None, typer.Option(help="sim | native | qemu-cm4 | a board id")] = None,
    samples: Annotated[int | None, typer.Option(help="validate the first N test samples")] = None,
    tolerance_lsb: Annotated[int, typer.Option(help="allowed |device-host| in LSB")] = 0,
    trace: Annotated[bool, typer.Option("--trace", help="hex dump of every frame")] = False,
    stateful: Annotated[bool, typer.Option(
        "--stateful", help="send the samples as one sequence (no state reset between them)")
    ] = False,
    profile: Annotated[bool, typer.Option(
        "--profile", help="per-layer instructions (qemu-cm4) / time (native)")] = False,
    as_json: JsonOpt = False,
    runtime: Annotated[str | None, typer.Option(help=RUNTIME_HELP)] = None,
    tflm_src: Annotated[str | None, typer.Option(help=TFLM_SRC_HELP)] = None,
    arena_: Annotated[str, typer.Option("--arena", help=ARENA_HELP)] = "auto",
    tolerance_float: Annotated[float | None, typer.Option(
        help="allowed |device-host| of float32 outputs (default: bit-exact by bit pattern)")
    ] = None,
    timeout: Annotated[float | None, typer.Option(
        help="seconds one inference may take (default: predicted from the model and board)")
    ] = None,
    strict: Annotated[bool, typer.Option(
        "--strict", help="count known TFLM version differences as failures")] = False,
    io: Annotated[str, typer.Option(help=IO_HELP + "; as the firmware was generated")
                  ] = "model",
    patch: Annotated[str | None, typer.Option(help=PATCH_HELP)] = None,
) -> None:
    """Run the test set on the device and compare with host predictions (each output in
    its own dtype)."""
    from .device.connect import resolve_runtime
    from .validation import validate as run

    built = ("none" if port else "sim" if board == "sim"
             else str(resolve_runtime(runtime, tflm_src, "c")))
    choice = _patch_option(patch, built)
    result = run(model, data, out, port=port, board=board, samples=samples,
                 tolerance_lsb=tolerance_lsb, trace=trace, stateful=stateful, profile=profile,
                 runtime=runtime, tflm_src=tflm_src, tolerance_float=tolerance_float,
                 timeout=timeout, known_differences=not strict, io=io, arena=arena_,
                 patch=choice)
    _echo(result, as_json)
    for row in [] if as_json else sorted(result.layers, key=lambda r: -r["cost"])[:5]:
        typer.echo(f"  op {row['index']:3d} {row['op']:22} {row['cost']:14.0f} "
                   f"({row['share_pct']:.1f} %)")
    if not result.passed:
        raise TinyDeployError("validation_failed", report=result.paths["html"],
                              detail=f"{result.differing} of {result.samples} samples differ")


@app.command()
def deploy(
    target: Annotated[str, typer.Argument(help="example name or .keras/.tflite model")],
    out: Out,
    board: Annotated[str, typer.Option(help="sim | native | qemu-cm4 | a board id")] = "native",
    data: Annotated[Path | None, typer.Option(help=".npz data (for a model)")] = None,
    epochs: Annotated[int | None, typer.Option(help="override training epochs")] = None,
    port: Annotated[str | None, typer.Option(help="serial port")] = None,
    samples: Annotated[int | None, typer.Option(help="validate the first N test samples")] = None,
    tune_arena: Annotated[
        bool, typer.Option("--tune-arena", help="reflash with the measured arena")
    ] = False,
    arena_: Annotated[str, typer.Option("--arena", help=ARENA_HELP)] = "auto",
    runtime: Annotated[str | None, typer.Option(
        help="tflm | c (default: tflm on MCU boards, c on native / qemu-cm4)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="generate: platformio | both")
                   ] = "platformio",
    tolerance_lsb: Annotated[int, typer.Option(help="validate: allowed |device-host| in LSB")
                             ] = 0,
    retrain: Annotated[bool, typer.Option("--retrain", help="rerun training and quantization "
                                                            "even when up to date")] = False,
    as_json: JsonOpt = False,
    tflm_src: Annotated[str | None, typer.Option(help=TFLM_SRC_HELP)] = None,
    io: Annotated[str, typer.Option(help=IO_HELP + "; an example or .keras model is "
                                    "quantized with a float interface for float")
                  ] = "model",
    patch: Annotated[str | None, typer.Option(help=PATCH_HELP)] = None,
) -> None:
    """train -> quantize -> check -> generate -> flash -> validate, one report.

    Training and quantization outputs in OUT are reused while their inputs are unchanged
    (--retrain reruns them)."""
    from .boards import get_board
    from .device.connect import resolve_runtime
    from .pipeline import deploy as run

    b = get_board(board)
    default = "tflm" if b.uploadable else "sim" if b.simulated else "c"
    choice = _patch_option(patch, str(resolve_runtime(runtime, tflm_src, default)))
    result = run(target, out, board=board, data=data, epochs=epochs, port=port,
                 samples=samples, tune_arena=tune_arena, arena=arena_, runtime=runtime,
                 fmt=fmt, tolerance_lsb=tolerance_lsb, retrain=retrain, tflm_src=tflm_src,
                 io=io, patch=choice)
    _echo(result, as_json)
    if not result.passed:
        raise TinyDeployError("validation_failed", report=result.report,
                              detail=result.failure)


def _with_common_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add -v/--verbose and -q/--quiet to a command, so they work after the subcommand."""
    sig = _inspect.signature(func, eval_str=True)
    if "verbose_" in sig.parameters:
        return func
    extra = [_inspect.Parameter(name, _inspect.Parameter.KEYWORD_ONLY, default=False,
                                annotation=Annotated[bool, opt])
             for name, opt in (("verbose_", _VERBOSE), ("quiet_", _QUIET))]

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> object:
        kwargs.pop("verbose_", None)
        kwargs.pop("quiet_", None)
        return func(*args, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=[*sig.parameters.values(), *extra])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {}
    return wrapper


def _on_sigterm(signum: int, _frame: object) -> None:
    """SIGTERM unwinds like an exit: staged output and temporary folders are removed."""
    raise SystemExit(128 + signum)


def _error_json(err: TinyDeployError) -> None:
    """The one-line error as a JSON object on stdout (with --json), inside the command's
    own document when it made one (a validation that failed: its results and the error)."""
    error = {"code": err.code, "exit_code": err.exit_code, "message": err.message,
             "hint": err.hint}
    doc = _state.pop("json_doc", None)
    _echo_json({**doc, "error": error} if isinstance(doc, dict) else {"error": error})


def main(argv: list[str] | None = None) -> int:
    import signal

    from . import runinfo

    args = list(sys.argv[1:] if argv is None else argv)
    runinfo.set_command(args)
    with contextlib.suppress(ValueError):  # only the main thread may set handlers
        signal.signal(signal.SIGTERM, _on_sigterm)
    _state.pop("json_doc", None)
    for cmd in app.registered_commands:  # every command, also ones added later in the file
        if cmd.callback is not None:
            cmd.callback = _with_common_options(cmd.callback)
            cmd.epilog = cmd.epilog or epilog(cmd.name or cmd.callback.__name__)
    try:
        try:
            rv = app(args=argv, standalone_mode=False)
        except OSError as exc:  # a write a stage did not wrap: read-only, full disk...
            from .output import WRITE_ERRORS, io_error

            if exc.errno not in WRITE_ERRORS or _state["debug"]:
                raise
            raise io_error(exc, exc.filename or ".") from exc
    except TinyDeployError as err:
        if _state["debug"]:
            raise
        tdlog.console.print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
        if "--json" in args:
            _error_json(err)
        return err.exit_code
    except KeyboardInterrupt:
        tdlog.console.print("interrupted", markup=False)
        return 130
    except SystemExit as exc:  # typer/click exits (e.g. --help)
        return int(exc.code or 0)
    except typer.Abort:
        return 130
    except Exception as exc:  # usage errors: typer's own click copy, or click itself
        import click

        if isinstance(exc, typer.TyperException | click.ClickException) and hasattr(
                exc, "format_message"):
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else "tinydeploy"
            if exc.format_message():  # empty: the help was shown (no arguments given)
                tdlog.console.print(f"error: {exc.format_message()} — see `{where} --help`",
                                    markup=False, highlight=False, soft_wrap=True)
            return int(getattr(exc, "exit_code", 2))
        if isinstance(exc, click.exceptions.Abort):
            return 130
        raise
    if "json_doc" in _state:
        _echo_json(_state.pop("json_doc"))
    if rv == 130:  # click turns Ctrl-C into an exit code when not standalone
        tdlog.console.print("interrupted", markup=False)
        return 130
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
