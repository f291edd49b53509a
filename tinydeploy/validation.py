"""Validate a model on a device: send the test set over serial, compare with the host.

The host side runs the same quantized model in the TFLM Python runtime (where it is
missing, a stand-in named in the report: ``hostref_native``) on the same quantized inputs
(``hostref.quantize_input``; int8/int16 data of the input's dtype is sent as is), so a
correct device is bit-exact. Only ``x_test`` is needed (``x_test_0``,
``x_test_1``, ... for several inputs; ``y_test`` optional, for accuracy). Every sample
starts from a fresh model state unless ``stateful``: then the samples are one sequence, on
the device and on the host. Before any sample is sent the device's HELLO is checked (model
hash, every input/output shape and dtype). Each
confirmed sample is appended to ``samples.csv`` and flushed at once; a device reset makes
the link re-handshake and the run resumes at the first unconfirmed sample, so every sample
is validated exactly once. Results: ``validation.json``, ``samples.csv``, ``report.html``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import hostref
from .data import check_labels, given_once, input_keys, load_split
from .device.connect import (
    open_device,
    resolve_runtime,
    tflm_arena,
    tflm_tree_for,
)
from .device.hello import as_dict, check_device, crash_in_allocation
from .errors import TinyDeployError
from .facts import ModelFacts, TensorFacts
from .hostref import quantize_input, saturation
from .hostref_native import reference_model
from .interface import with_io
from .log import log, progress, stage
from .output import check_output_dir, write_atomic, write_errors
from .report import headline as report_headline
from .report.run import add_answer, class_names, run_facts
from .verdict import (
    compute_metrics,
    judge,
    units_apart,
)

if TYPE_CHECKING:
    from .cruntime.patch_auto import PatchChoice

__all__ = ["ValidationResult", "check_device", "compute_metrics", "open_device",
           "resolve_runtime", "tflm_arena", "tflm_tree_for", "validate", "write_html"]

MAX_RESETS_PER_SAMPLE = 5
SATURATION_WARN = report_headline.SATURATION_WARN  # more than 1 % of input values clipped
CSV_NAME = "samples.csv"
JSON_NAME = "validation.json"
HTML_NAME = "report.html"
# samples.csv: the same columns on every board; a value the board does not measure is empty
CSV_HEADER = ["index", "host", "device", "max_abs_diff_lsb", "exact", "time_us", "cycles",
              "instructions", "label"]


@dataclass
class ValidationResult:
    passed: bool
    samples: int
    differing: int
    tolerance_lsb: int
    metrics: dict[str, Any]
    device: dict[str, Any]
    paths: dict[str, Path]
    host: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int8))
    device_out: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int8))
    time_us: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))
    layers: list[dict[str, Any]] = field(default_factory=list)  # --profile (profile.py)
    cycles: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))
    report: dict[str, Any] = field(default_factory=dict)  # report_facts: run, classes, ...
    tolerance_float: float | None = None  # allowed |Δ| of float outputs (None: bit-exact)
    explained: int = 0  # samples whose mismatches are known TFLM version differences
    notes: list[dict[str, Any]] = field(default_factory=list)  # those differences
    reference: dict[str, Any] | None = None  # the host reference used (default: tflite-micro)

    @property
    def state(self) -> str:
        """``pass``, ``warning`` (a PASS with a diagnosis warning, e.g. saturated inputs)
        or ``fail``."""
        return str(self.report.get("headline", {}).get(
            "state", "pass" if self.passed else "fail"))

    def warnings(self) -> list[str]:
        """The diagnosis warnings (texts): a PASS that needs a look."""
        return [str(d["text"]) for d in self.report.get("diagnosis", [])
                if d.get("level") == "warning"]

    def summary(self) -> str:
        m = self.metrics
        verdict = "PASS" if self.passed else "FAIL"
        if self.passed and self.explained:
            verdict = "PASS (with a known TFLM version difference, see the note)"
        head = self.report.get("headline")
        first = (report_headline.lines(head, self.report.get("diagnosis", []))
                 if head else [])
        if head and head.get("state") == "warning":
            verdict = "PASS with warnings"
        tol = "bit-exact" if self.tolerance_lsb == 0 else f"|Δ| <= {self.tolerance_lsb} LSB"
        if self.tolerance_float:
            tol += f", float |Δ| <= {self.tolerance_float:g}"
        within = self.samples - self.differing - self.explained
        unit = m.get("diff_unit", "LSB")
        lines = [
            f"{verdict}: {within}/{self.samples} samples within tolerance ({tol})"
            + (f", {self.explained} explained" if self.explained else "")
            + f"; {self.differing} samples differ",
            *first[1:],
            f"  exact match {m['exact_match_rate'] * 100:.2f} % of values, "
            f"max |Δ| {m['max_abs_diff_lsb']} {unit}, mean |Δ| {m['mean_abs_diff_lsb']:.4f} "
            f"{unit}",
            f"  MAE {m['mae']:.6g}, RMSE {m['rmse']:.6g}, cosine {m['cosine_similarity']:.6f}",
        ]
        lines += [f"  compared: {r['text']}" for r in m.get("comparison", [])]
        if not head:  # else the diagnosis lines above carry them
            lines += [f"  note: {x['text']}" for x in self.notes]
        ref = self.report.get("run", {}).get("host_reference")
        if ref:
            lines.append(f"  host reference: {ref}")
        if "top1_agreement" in m:
            lines.append(f"  top-1 agreement {m['top1_agreement'] * 100:.2f} %, accuracy host "
                         f"{m['accuracy_host'] * 100:.2f} % / device "
                         f"{m['accuracy_device'] * 100:.2f} %")
        if "mae_host" in m:
            lines.append(f"  MAE vs labels: host {m['mae_host']:.6g} / device "
                         f"{m['mae_device']:.6g}")
        lat = self.report.get("latency") or {"unit": "µs", "stats": m.get("latency_us", {})}
        st = lat["stats"]
        if st:
            def n(v: float) -> str:  # 1410080, 93.25: no exponent
                return str(int(v)) if float(v).is_integer() else f"{float(v):.2f}"

            lines.append(f"  latency ({lat['unit']}) min {n(st['min'])} / median "
                         f"{n(st['median'])} / p90 {n(st.get('p90', st['max']))} / p99 "
                         f"{n(st.get('p99', st['max']))} / max {n(st['max'])}"
                         + (f"; cycles median {n(lat['cycles']['median'])}"
                            if lat.get("cycles") else ""))
        if not head:
            lines += [f"  cause: {d['text']}" for d in self.report.get("defects", [])]
        lines.append(f"  report: {self.paths.get('html', '')}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "state": self.state, "warnings": self.warnings(),
                "samples": self.samples, "differing": self.differing,
                "explained": self.explained, "known_differences": self.notes,
                "tolerance_lsb": self.tolerance_lsb, "tolerance_float": self.tolerance_float,
                "host_reference": self.reference or hostref.reference(), "metrics": self.metrics,
                "device": self.device,
                "paths": {k: str(Path(v).resolve()) for k, v in self.paths.items()},
                "report": self.report}


def _open_link(port: str, trace: bool) -> Any:
    from .device.link import Link

    return Link(port, trace=trace)


# --- the run ---------------------------------------------------------------------------------
def _text(arrays: list[np.ndarray]) -> str:
    """One sample's values of every output: integers as integers, floats in their shortest
    round-trip form (nothing truncated)."""
    return " ".join(str(v) if np.issubdtype(a.dtype, np.floating) else str(int(v))
                    for a in arrays for v in np.asarray(a).reshape(-1))


def _label(values: np.ndarray) -> str:
    return " ".join(f"{float(v):.6g}" for v in np.asarray(values).reshape(-1))


def _input_samples(x: np.ndarray, t: TensorFacts, data: Path, key: str = "x_test",
                   n: int | None = None) -> np.ndarray:
    """``x`` as [N, *sample shape]: per-sample data (reshaped when only the layout of a
    sample differs), or a value given once broadcast to all ``n`` samples."""
    want = tuple(t.sample_shape)
    if n is not None and given_once(x, want):
        return np.broadcast_to(x, (n, *want))
    if tuple(x.shape[1:]) == want:
        return x
    if int(np.prod(x.shape[1:])) == int(np.prod(want)):
        return x.reshape((len(x), *want))
    raise TinyDeployError("bad_data", path=data,
                          problem=f"{key} samples have shape {tuple(x.shape[1:])}, the model "
                                  f"takes {want}",
                          fix=f"pass [N, {', '.join(map(str, want))}] (the sample axis first)"
                              f", or one value of shape {want} given once for every sample")


def quantize_inputs(xs: list[np.ndarray], facts: ModelFacts, keys: list[str],
                    data: str | Path = "<data>", clipped_out: dict[str, float] | None = None,
                    ) -> list[np.ndarray]:
    """Quantize each input like the firmware expects it (arrays already of the tensor's
    int8/int16 dtype are taken as is; a float32 input gets the float data as it is); log
    one warning when more than 1 % of the values of an input clip to its dtype's range
    (``clipped_out`` gets every input's clipped fraction, for the report).
    Integer data for a float32 input is ``bad_data`` (it would be sent as its values)."""
    q, clipped = [], []
    for key, x, t in zip(keys, xs, facts.inputs, strict=True):
        if t.dtype == "FLOAT32" and not np.issubdtype(x.dtype, np.floating):
            raise TinyDeployError(
                "bad_data", path=data,
                problem=f"{key} holds {x.dtype} values but the model's input '{t.name}' is "
                        "float32 (its QUANTIZE runs on the device)",
                fix="give the float data, or validate with --io int8 (the float interface "
                    "stripped) to send quantized data")
        frac = saturation(x, t)
        if clipped_out is not None:
            clipped_out[key] = frac
        if frac > SATURATION_WARN:
            clipped.append(f"{key} {frac * 100:.1f} %")
        q.append(quantize_input(x, t))
    if clipped:
        log.warning("quantized inputs saturate (values clipped to the dtype range): %s; "
                    "check the data's scaling against the model's input scale",
                    ", ".join(clipped))
    return q


def _split_outputs(data: bytes, facts: ModelFacts, i: int) -> list[np.ndarray]:
    outs, off = [], 0
    for t in facts.outputs:
        if off + t.nbytes > len(data):
            break
        outs.append(np.frombuffer(data, dtype=t.numpy_dtype, count=t.elements,
                                  offset=off).reshape(t.sample_shape))
        off += t.nbytes
    if off != len(data) or len(outs) != len(facts.outputs):
        raise TinyDeployError("protocol_error",
                              problem=f"sample {i}: {len(data)} output bytes, expected "
                                      f"{sum(t.nbytes for t in facts.outputs)}")
    return outs


def _flat(arrays: list[np.ndarray]) -> np.ndarray:
    """One row per sample: every output's values concatenated (int64, or float64 when an
    output is float) -- for the report's plots only; the verdict compares per output."""
    kind = np.float64 if any(np.issubdtype(a.dtype, np.floating) for a in arrays) else np.int64
    return np.concatenate([a.reshape(len(a), -1).astype(kind) for a in arrays], axis=1)


def run_samples(link: Any, facts: ModelFacts, q_in: list[np.ndarray], port: str,
                writer: Any, csv_file: Any, host: list[np.ndarray], labels: np.ndarray | None,
                stateful: bool = False, emulated: bool = False,
                ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, int]:
    """Send every sample once (all inputs' bytes concatenated); on a device reset re-check
    HELLO and resend the last one. ``stateful``: one sequence, the model state is reset
    only before the first sample (a device reset then ends the run: its state is lost).
    Each row of ``CSV_HEADER`` fills what the board measures and leaves the rest empty:
    ``time_us`` and ``cycles`` (where counted), or on an ``emulated`` board only
    ``instructions``."""
    from .device.link import DeviceReset

    n = len(q_in[0])
    device = [np.zeros((n, *t.sample_shape), dtype=t.numpy_dtype) for t in facts.outputs]
    times = np.zeros(n, dtype=np.int64)
    cycles = np.zeros(n, dtype=np.int64)
    resets = 0
    for i in progress(range(n), n, "validating"):
        tries = 0
        while True:
            try:
                reply = link.infer(b"".join(x[i].tobytes() for x in q_in),
                                   reset=not stateful or i == 0)
                break
            except DeviceReset as reset:
                # the link re-handshook; the sample in flight produced nothing: check the
                # model again (a reset may have booted other firmware) and resend it
                if stateful:
                    raise TinyDeployError(
                        "protocol_error",
                        problem=f"the device reset at sample {i} of a stateful sequence "
                                "(its state is lost)") from None
                tries += 1
                resets += 1
                log.warning("device reset during sample %d; re-checking and resuming", i)
                if tries > MAX_RESETS_PER_SAMPLE:
                    raise TinyDeployError(
                        "protocol_error",
                        problem=f"device reset {tries} times while running sample {i}") from None
                check_device(reset.info or link.hello(), facts, port)
        for k, got in enumerate(_split_outputs(bytes(reply.output), facts, i)):
            device[k][i] = got
        times[i], cycles[i] = int(reply.time_us), int(reply.cycles)
        got_i, want_i = [d[i:i + 1] for d in device], [h[i:i + 1] for h in host]
        delta = max(int(units_apart(h, d).max(initial=0)) for h, d in zip(want_i, got_i,
                                                                           strict=True))
        label = "" if labels is None else _label(labels[i])
        cost = (["", "", int(cycles[i] or times[i] * 1000)] if emulated
                else [int(times[i]), int(cycles[i]) or "", ""])
        writer.writerow([i, _text(want_i), _text(got_i), delta, int(delta == 0), *cost, label])
        csv_file.flush()
    return device, times, cycles, resets


def _build_facts(folder: Path) -> dict[str, Any]:
    """The build stamps (``native.json``, ``qemu.json``) a pseudo-board left in ``folder``."""
    found: dict[str, Any] = {}
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        with contextlib.suppress(OSError, ValueError):
            found[p.stem] = json.loads(p.read_text())
    return found


def validate(model: str | Path | ModelFacts, data: str | Path, out: str | Path,
             port: str | None = None, board: str | None = None, samples: int | None = None,
             tolerance_lsb: int = 0, trace: bool = False,
             stateful: bool = False, profile: bool = False,
             build: dict[str, Any] | None = None, runtime: str | None = None,
             tflm_src: Any = None, tolerance_float: float | None = None,
             timeout: float | None = None, known_differences: bool = True,
             io: str = "model", arena: str | int = "auto",
             patch: PatchChoice = "auto") -> ValidationResult:
    """Run ``x_test`` on the device, compare with the host, write the three result files.

    The model must pass the guard first (:func:`tinydeploy.guard.check`, the same error
    as ``tinydeploy check``); the host reference runs before any firmware is built. Every
    output is compared in its own dtype (:mod:`tinydeploy.verdict`); a mismatch that is a
    known TFLM version difference (:mod:`tinydeploy.known_diffs`) is a PASS with a note.

    Args:
        model: int8 ``.tflite`` path, bytes or :class:`ModelFacts`.
        data: ``.npz`` with ``x_test`` (``x_test_K`` per input; ``y_test`` optional, for
            task metrics).
        out: output folder for ``samples.csv``, ``validation.json``, ``report.html``.
        port: serial port of a flashed board; or
        board: ``sim``, ``native``, ``qemu-cm4`` (started here) or a board id (port found
            by USB VID/PID).
        samples: validate only the first N test samples.
        tolerance_lsb: allowed max |device - host| per value.
        trace: log a hex dump of every frame.
        stateful: send the samples as one sequence through a stateful model (no reset).
        profile: also measure every layer (boards qemu-cm4, native; ``profile.py``).
        build: build facts of the firmware (``{"qemu": {...text, data, bss}}``) for the
            report's memory table, when the caller built it.
        runtime: what a native / qemu-cm4 board builds: ``c`` (the C runtime) or ``tflm``
            (the generated TFLite Micro firmware, against ``tflm_src``); default ``tflm``
            when ``tflm_src`` is given, else ``c``.
        tflm_src: a TFLM tree (Arduino library or tflite-micro checkout; default
            ``$TINYDEPLOY_TFLM_SRC``), for ``runtime='tflm'``.
        arena: the TFLM firmware's arena on native / qemu-cm4 (``auto``, ``tuned`` or a
            byte count; :func:`tinydeploy.arena.plan.plan_for_tree`).
        patch: the C runtime's patch-based stage on native / qemu-cm4: ``auto``, ``off``
            or (first op, last op, bands) (:mod:`tinydeploy.cruntime.patch_auto`).
        tolerance_float: allowed |device - host| of float outputs (default: bit-exact).
        timeout: seconds one inference may take on the device (default: predicted from
            the model and the board, :mod:`tinydeploy.device.timing`).
        known_differences: count mismatches that are known TFLM version differences as
            explained (PASS with a note); False: as failures.
        io: ``model`` (the model's own interface: float32 inputs get the float data as
            given, float32 outputs are compared by bit pattern) or ``int8`` (its float
            boundary ops stripped, as ``generate --io int8`` does: float data is quantized
            with the stripped QUANTIZE's scale and zero point exactly as TFLM would, and the
            quantized outputs are compared; :mod:`tinydeploy.interface`).

    Returns:
        A :class:`ValidationResult` (``passed``, metrics, report facts, paths).

    Raises:
        TinyDeployError: bad arguments or data (exit 2), a model the guard refuses or the
            protocol cannot carry (3), no device / link failure / other model on the
            device (5).
    """
    from . import profile as prof
    from .guard import check

    facts = check(model)  # what `tinydeploy check` refuses is refused here, the same way
    if io != "model":  # the firmware `generate --io int8` made runs the stripped model
        facts = check(with_io(facts, io))

    from .cruntime.patch_auto import parse_choice

    patch = parse_choice(patch)  # a malformed --patch before the host reference runs
    given_src = tflm_src  # also the stand-in host reference's tree (hostref_native)
    runtime = resolve_runtime(runtime, tflm_src, "c") or "c"
    tflm_src = tflm_tree_for(board, runtime, tflm_src) if not port else None  # fail early
    arena_bytes = None
    if tflm_src is not None:  # the tree's operators and arena, before any build
        arena_bytes = tflm_arena(facts, arena, tflm_src, str(board)).size
    elif str(arena) != "auto":
        log.warning("--arena %s: ignored (it sizes the TFLM firmware; this run %s)", arena,
                    "uses a flashed board" if port else "builds no TFLM firmware")
    if profile and tflm_src is not None:
        raise TinyDeployError("bad_argument", problem="--profile measures the C runtime's layers",
                              fix="drop --profile with --runtime tflm, or use --runtime c")

    if profile and (port or board not in prof.BOARDS):
        raise TinyDeployError("bad_argument", problem="--profile needs a profiling build",
                              fix="use --board qemu-cm4 or --board native with --profile")
    if tolerance_lsb < 0:
        raise TinyDeployError("bad_argument", problem="--tolerance-lsb must be >= 0",
                              fix="pass 0 for bit-exact or a positive LSB count")
    if samples is not None and samples < 1:
        raise TinyDeployError("bad_argument", problem="--samples must be >= 1",
                              fix="pass a positive sample count or omit it")
    for name, value in (("--tolerance-float", tolerance_float), ("--timeout", timeout)):
        if value is not None and not value >= 0:
            raise TinyDeployError("bad_argument", problem=f"{name} must be >= 0",
                                  fix=f"pass a non-negative number of {name[2:]} or omit it")
    hostref.warn_untested()
    tout = facts.outputs[0]
    keys = input_keys("test", len(facts.inputs))
    shapes = [t.sample_shape for t in facts.inputs]
    xs, labels = load_split(data, "test", len(facts.inputs), shapes)
    if labels is not None:
        check_labels(labels, tout.elements, data, output=f"output '{tout.name}'")
    counts = [len(x) for x, s in zip(xs, shapes, strict=True) if not given_once(x, s)]
    xs = [_input_samples(x, t, Path(data), k, max(counts, default=1))
          for x, t, k in zip(xs, facts.inputs, keys, strict=True)]
    if samples is not None:
        if samples > len(xs[0]):
            log.warning("--samples %d but x_test has %d samples: validating all %d", samples,
                        len(xs[0]), len(xs[0]))
        xs = [x[:samples] for x in xs]
        labels = None if labels is None else labels[:samples]
    clipped: dict[str, float] = {}
    q_in = quantize_inputs(xs, facts, keys, data, clipped)
    n = len(q_in[0])
    ref = reference_model(facts, tflm_src or given_src)  # tflite-micro, else a stand-in
    stage("validate", f"{n} samples{', one stateful sequence' if stateful else ''}"
                      f", host reference ({ref.label})")
    try:
        host = ref.predict_all(q_in, stateful=stateful)  # before any build
    finally:
        ref.close()

    out_dir = check_output_dir(out)  # it, or its nearest existing parent, is a folder
    paths = {"csv": out_dir / CSV_NAME, "json": out_dir / JSON_NAME, "html": out_dir / HTML_NAME}
    with tempfile.TemporaryDirectory(prefix="td-validate-") as work, \
            open_device(facts, port, board, Path(work), profile, runtime, tflm_src,
                        arena_bytes, patch) as dev_port:
        stage("validate", f"device on {dev_port}")
        native = board == "native"
        with crash_in_allocation(facts, tflm_src, arena_bytes, native) as started, \
                _open_link(dev_port, trace) as link:
            info = link.hello()
            started["up"] = True
            check_device(info, facts, dev_port, _flavour(board, tflm_src), native)
            device_info = as_dict(info)
            if ref.kind == "c-runtime" and device_info.get("runtime") == "c":
                log.warning("host reference: the C runtime stand-in runs the same kernels as "
                            "this device; the run checks build, link and protocol, not kernels")
            link.infer_seconds = _infer_seconds(facts, device_info, board, runtime, timeout)
            with write_errors(out_dir):  # read-only, full disk: one line
                out_dir.mkdir(parents=True, exist_ok=True)  # not before a device answered
                for stale in (paths["json"], paths["html"]):  # a new run: no old verdict
                    stale.unlink(missing_ok=True)
                f = paths["csv"].open("w", newline="", encoding="utf-8")
            with f, write_errors(paths["csv"]):
                writer = csv.writer(f)
                writer.writerow(CSV_HEADER)
                f.flush()
                try:
                    device, times, cycles, resets = run_samples(
                        link, facts, q_in, dev_port, writer, f, host, labels, stateful,
                        _emulated(device_info, board))
                except (TinyDeployError, KeyboardInterrupt):
                    log.warning("validation stopped; every confirmed sample is in %s",
                                paths["csv"])
                    raise
            device_info["resets"] = resets
            layers = (prof.layers(facts, Path(work) / "profile.txt", str(board))
                      if profile else [])
            link_stats = link.stats() if hasattr(link, "stats") else {"resets": resets}
            build = build if build is not None else _build_facts(Path(work))
    metrics = compute_metrics(host[0], device[0], tout, labels, times, cycles, tolerance_lsb,
                              facts, tolerance_float)
    verdict = judge(host, device, facts, tolerance_lsb, tolerance_float, known_differences)
    if len(facts.outputs) > 1:  # the verdict covers every output; labels go with the first
        per = [compute_metrics(h, d, t, None, times, cycles, tolerance_lsb, facts,
                               tolerance_float)
               for h, d, t in zip(host, device, facts.outputs, strict=True)]
        metrics["samples_differing"] = int(np.sum(~verdict.ok))
        metrics["samples_within_tolerance"] = int(np.sum(verdict.ok))
        metrics["outputs"] = [{k: v for k, v in m.items() if k not in ("latency_us", "cycles")}
                              for m in per]
    metrics["comparison"] = [r.to_dict() for r in verdict.rules]
    if stateful:
        metrics["stateful"] = True
    rep = run_facts(host[0], device[0], tout, labels, times, cycles, tolerance_lsb, metrics,
                          device_info, facts, board, build, tolerance_float, class_names(facts))
    rep["link"] = {**link_stats, "resets": max(resets, int(link_stats.get("resets", 0)))}
    rep["run"]["host_reference"] = ref.label
    if verdict.differing:  # a known library defect that reproduces the device's outputs?
        from .tflm_overrides import explain_mismatch

        rep["defects"] = [m.to_dict() for m in explain_mismatch(facts, q_in, device, stateful)]
    reference = ref.describe()
    add_answer(rep, facts, xs, host, device, metrics, verdict, n, clipped, stateful, reference)
    result = ValidationResult(passed=verdict.differing == 0, samples=n,
                              differing=verdict.differing, tolerance_lsb=tolerance_lsb,
                              metrics=metrics, device=device_info, paths=paths, time_us=times,
                              host=host[0] if len(host) == 1 else _flat(host),
                              device_out=device[0] if len(device) == 1 else _flat(device),
                              layers=layers, cycles=cycles, report=rep,
                              tolerance_float=tolerance_float,
                              explained=int(np.sum(verdict.explained)), notes=verdict.notes,
                              reference=reference)
    doc = result.to_dict()
    if layers:
        doc["layers"] = {"unit": prof.unit(str(board)), "rows": layers}
    doc["model"] = {"path": str(Path(facts.path).resolve()), "sha256": facts.sha256}
    doc["data"] = str(Path(data).resolve())
    write_atomic(paths["json"], json.dumps(doc, indent=2, default=str) + "\n")
    write_html(result, facts)  # the report renders result.layers as its per-layer table
    return result


def _emulated(device_info: dict[str, Any], board: str | None) -> bool:
    """Does the device count emulated instructions instead of time (qemu-cm4)?"""
    from .boards import BOARDS

    b = BOARDS.get(str(device_info.get("board_id") or board or ""))
    return b is not None and b.emulated


def _flavour(board: str | None, tree: Any) -> str:
    """Kernel flavour of the TFLM library the device runs (the tree's, else the board's)."""
    if tree is not None:
        return str(tree.flavour)
    from .boards import BOARDS, kernel_flavour

    return kernel_flavour(board) if board in BOARDS else "reference"


def _infer_seconds(facts: ModelFacts, device: dict[str, Any], board: str | None,
                   runtime: str, timeout: float | None) -> float:
    """The time one inference may take: ``timeout``, else predicted for the board and
    runtime the device reported in its HELLO (else the ones asked for)."""
    if timeout is not None:
        return float(timeout)
    from .device.timing import infer_seconds

    kind = str(device.get("runtime") or runtime)
    seconds = infer_seconds(facts, device.get("board_id") or board, kind)
    log.debug("one inference may take %.1f s on this device", seconds)
    return seconds


def _tensor_text(t: TensorFacts) -> str:
    q = f", scale {t.scale:.6g}, zero point {t.zero_point}" if t.scale is not None else ""
    return f"{t.name}: {t.dtype} {list(t.shape)}{q}"


def write_html(result: ValidationResult, facts: ModelFacts,
               extra: dict[str, dict[str, Any]] | None = None,
               title: str | None = None) -> Path:
    """(Re)write the HTML report of a validation run, with optional extra sections first.

    Args:
        result: the validation result (its ``report`` facts are rendered).
        facts: the model's facts (for the model table).
        extra: more sections, name -> dict (deploy adds stage timings, quantization ...).
        title: page title (default ``tinydeploy validation: MODEL``).

    Returns:
        The path of ``report.html``.
    """
    from .report.page import validation_page
    from .report.plots import validation_plots

    doc = result.to_dict()
    if getattr(result, "layers", None):  # a per-layer profile, when the run made one
        doc.setdefault("layers", result.layers)
    doc["model_facts"] = {"path": facts.path, "sha256": facts.sha256,
                          "size": f"{facts.size_bytes} B",
                          "operators": ", ".join(facts.op_names),
                          "input": "; ".join(_tensor_text(t) for t in facts.inputs),
                          "output": "; ".join(_tensor_text(t) for t in facts.outputs)}
    lat = result.report.get("latency", {})
    unit = lat.get("unit", "µs")
    values = result.time_us
    if unit == "instructions":
        values = result.cycles if np.any(result.cycles) else result.time_us * 1000
    figures = validation_plots(result.host, result.device_out, values, unit,
                                      result.report.get("regression"))
    page = validation_page(doc, extra or {}, figures,
                           title or f"tinydeploy validation: {facts.name}")
    return write_atomic(result.paths["html"], page)
