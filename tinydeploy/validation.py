"""Validate a model on a device: send the test set over serial, compare with the host.

The host side runs the same quantized model in the TFLM Python runtime on the same
quantized inputs (``hostref.quantize_input``; int8/int16 data of the input's dtype is sent
as is), so a correct device is bit-exact. Only ``x_test`` is needed (``x_test_0``,
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
import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import report, report_facts, runinfo
from .data import input_keys, load_split
from .errors import TinyDeployError
from .facts import ModelFacts, TensorFacts, load
from .hostref import HostModel, dequantize, quantize_input, saturation
from .log import log, progress, stage
from .output import check_output_dir

MAX_RESETS_PER_SAMPLE = 5
SATURATION_WARN = 0.01  # warn when more than 1 % of the quantized input values clip
CSV_NAME = "samples.csv"
JSON_NAME = "validation.json"
HTML_NAME = "report.html"


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

    def summary(self) -> str:
        m = self.metrics
        verdict = "PASS" if self.passed else "FAIL"
        tol = "bit-exact" if self.tolerance_lsb == 0 else f"|Δ| <= {self.tolerance_lsb} LSB"
        lines = [
            f"{verdict}: {self.samples - self.differing}/{self.samples} samples within "
            f"tolerance ({tol}); {self.differing} samples differ",
            f"  exact match {m['exact_match_rate'] * 100:.2f} % of values, "
            f"max |Δ| {m['max_abs_diff_lsb']} LSB, mean |Δ| {m['mean_abs_diff_lsb']:.4f} LSB",
            f"  MAE {m['mae']:.6g}, RMSE {m['rmse']:.6g}, cosine {m['cosine_similarity']:.6f}",
        ]
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
        lines += [f"  cause: {d['text']}" for d in self.report.get("defects", [])]
        lines.append(f"  report: {self.paths.get('html', '')}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "samples": self.samples, "differing": self.differing,
                "tolerance_lsb": self.tolerance_lsb, "metrics": self.metrics,
                "device": self.device,
                "paths": {k: str(Path(v).resolve()) for k, v in self.paths.items()},
                "report": self.report}


# --- metrics --------------------------------------------------------------------------
def _predicted_class(q: np.ndarray, out: TensorFacts) -> np.ndarray:
    flat = q.reshape(len(q), -1)
    if flat.shape[1] == 1:  # single sigmoid unit
        return (dequantize(flat[:, 0], out) > 0.5).astype(np.int64)
    return np.argmax(flat, axis=1)


def _stats(values: np.ndarray) -> dict[str, float | int]:
    v = np.asarray(values)
    if v.size == 0:
        return {}
    cast = int if np.issubdtype(v.dtype, np.integer) else float
    return {"min": cast(v.min()), "median": float(np.median(v)), "max": cast(v.max()),
            "mean": float(v.mean())}


def compute_metrics(host: np.ndarray, device: np.ndarray, out: TensorFacts,
                    labels: np.ndarray | None, time_us: np.ndarray, cycles: np.ndarray,
                    tolerance_lsb: int, facts: ModelFacts | None = None) -> dict[str, Any]:
    """Every number of the report for one output tensor (batch axis first)."""
    n = len(host)
    h = host.astype(np.int32).reshape(n, -1)
    d = device.astype(np.int32).reshape(n, -1)
    diff = np.abs(d - h)
    per_sample = diff.max(axis=1) if n else np.zeros(0, np.int32)
    hf, df = dequantize(h, out).astype(np.float64), dequantize(d, out).astype(np.float64)
    err = df - hf
    hn, dn = float(np.linalg.norm(hf)), float(np.linalg.norm(df))
    if hn == 0.0 and dn == 0.0:
        cosine = 1.0
    elif hn == 0.0 or dn == 0.0:
        cosine = 0.0
    else:
        cosine = float(np.dot(hf.ravel(), df.ravel()) / (hn * dn))
    m: dict[str, Any] = {
        "output": out.name,
        "samples": n,
        "values": int(h.size),
        "exact_match_rate": float(np.mean(diff == 0)) if h.size else 1.0,
        "exact_sample_rate": float(np.mean(per_sample == 0)) if n else 1.0,
        "samples_within_tolerance": int(np.sum(per_sample <= tolerance_lsb)),
        "samples_differing": int(np.sum(per_sample > tolerance_lsb)),
        "max_abs_diff_lsb": int(diff.max()) if h.size else 0,
        "mean_abs_diff_lsb": float(diff.mean()) if h.size else 0.0,
        "mae": float(np.mean(np.abs(err))) if h.size else 0.0,
        "rmse": float(np.sqrt(np.mean(err**2))) if h.size else 0.0,
        "l2_relative_error": float(np.linalg.norm(err) / hn) if hn else float(np.linalg.norm(err)),
        "cosine_similarity": cosine,
        "latency_us": _stats(time_us),
    }
    if np.any(cycles):
        m["cycles"] = _stats(cycles)
    if labels is not None and n:
        from .quantization import metric, task_of

        task = task_of(facts, labels) if facts is not None else "regression"
        m["task"] = task
        name, host_score = metric(task, hf, labels)
        m[f"{name}_host"] = host_score
        m[f"{name}_device"] = metric(task, df, labels)[1]
        if task == "classification":
            m["top1_agreement"] = float(np.mean(_predicted_class(h, out)
                                                == _predicted_class(d, out)))
    return m


# --- device checks ---------------------------------------------------------------------
def _as_dict(obj: Any) -> dict[str, Any]:
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    return dict(vars(obj)) if hasattr(obj, "__dict__") else {"value": str(obj)}


def check_device(info: Any, facts: ModelFacts, port: str) -> None:
    """Refuse a device that runs another model or expects other tensors."""
    device_hash = str(info.model_sha256).lower()
    if device_hash != facts.sha256:
        raise TinyDeployError("hash_mismatch", device=device_hash[:16] or "?",
                              path=facts.path, host=facts.sha256[:16], port=port)
    dev_in = tuple(getattr(info, "inputs", None) or (info.input,))
    dev_out = tuple(getattr(info, "outputs", None) or (info.output,))
    for side, devs, hosts in (("inputs", dev_in, facts.inputs),
                              ("outputs", dev_out, facts.outputs)):
        if len(devs) != len(hosts):
            raise TinyDeployError("protocol_error",
                                  problem=f"the device model has {len(devs)} {side}, the "
                                          f"model {len(hosts)}")
    for side, dev, host in [*(("input", d, h) for d, h in zip(dev_in, facts.inputs,
                                                              strict=True)),
                            *(("output", d, h) for d, h in zip(dev_out, facts.outputs,
                                                               strict=True))]:
        dev_shape = tuple(int(d) for d in dev.shape)
        if dev_shape != tuple(host.shape) or str(dev.dtype).upper() != host.dtype:
            raise TinyDeployError(
                "protocol_error",
                problem=f"device {side} is {dev.dtype} {list(dev_shape)} but the model's is "
                        f"{host.dtype} {list(host.shape)}")
        scale, zp = float(host.scale or 0.0), int(host.zero_point or 0)
        if int(dev.zero_point) != zp or not math.isclose(float(dev.scale), scale,
                                                         rel_tol=1e-6, abs_tol=1e-30):
            raise TinyDeployError(
                "protocol_error",
                problem=f"device {side} '{host.name}' has scale {dev.scale:.8g}, zero point "
                        f"{dev.zero_point} but the model's has {scale:.8g}, {zp}")


# --- device connection -------------------------------------------------------------------
@contextlib.contextmanager
def open_device(facts: ModelFacts, port: str | None, board: str | None,
                workdir: Path, profile: bool = False, runtime: str = "c",
                tflm_src: Any = None) -> Iterator[str]:
    """Yield a serial port: the given one, or one served by a pseudo-board (sim, native,
    qemu-cm4). ``profile``: a profiling build writing ``workdir/profile.txt`` (native,
    qemu-cm4). ``runtime="tflm"`` builds the generated TFLite Micro firmware for native /
    qemu-cm4 against the TFLM tree ``tflm_src`` (a path, a ``TflmTree`` or None for
    ``$TINYDEPLOY_TFLM_SRC``) instead of the C runtime."""
    tree = tflm_tree_for(board, runtime, tflm_src) if not port else None
    if port:
        yield port
        return
    if not board:
        raise TinyDeployError("bad_argument", problem="no device given",
                              fix="pass --port PORT of a flashed board, "
                                  "or --board sim|native|qemu-cm4")
    from .boards import get_board

    b = get_board(board)
    if b.simulated:
        from .device.sim import start_sim

        with start_sim(facts) as proc:
            yield proc.port
    elif b.native:
        from .device.native import start_native

        with start_native(facts, workdir, workdir / "profile.txt" if profile else None,
                          tflm=tree) as proc:
            yield proc.port
    elif b.emulated:
        from .device.qemu import start_qemu

        with start_qemu(facts, workdir, b, profile=profile, tflm=tree) as proc:
            yield proc.port
    else:
        from .device.flashing import find_port

        yield find_port(b)


def tflm_tree_for(board: str | None, runtime: str, tflm_src: Any = None) -> Any:
    """The TFLM tree a ``--runtime tflm`` build on native / qemu-cm4 needs (None for the C
    runtime and for boards that build nothing); ``bad_argument`` for an unknown runtime,
    ``tool_missing`` when no tree is given (see ``tflm_build.find_tflm_tree``)."""
    if runtime not in ("c", "tflm"):
        raise TinyDeployError("bad_argument", problem=f"unknown --runtime {runtime!r}",
                              fix="choose one of: c, tflm")
    if runtime != "tflm" or not board:
        return None
    from .boards import get_board
    from .device.tflm_build import TflmTree, find_tflm_tree

    b = get_board(board)
    if not (b.native or b.emulated):
        return None
    return tflm_src if isinstance(tflm_src, TflmTree) else find_tflm_tree(tflm_src)


def _open_link(port: str, trace: bool) -> Any:
    from .device.link import Link

    return Link(port, trace=trace)


# --- the run ---------------------------------------------------------------------------------
def _hex(values: np.ndarray) -> str:
    return " ".join(str(int(v)) for v in np.asarray(values).reshape(-1))


def _label(values: np.ndarray) -> str:
    return " ".join(f"{float(v):.6g}" for v in np.asarray(values).reshape(-1))


def _input_samples(x: np.ndarray, t: TensorFacts, data: Path, key: str = "x_test"
                   ) -> np.ndarray:
    want = tuple(t.shape[1:])
    if tuple(x.shape[1:]) == want:
        return x
    if int(np.prod(x.shape[1:])) == int(np.prod(want)):
        return x.reshape((len(x), *want))
    raise TinyDeployError("bad_data", path=data,
                          problem=f"{key} samples have shape {tuple(x.shape[1:])}, the model "
                                  f"takes {want}",
                          fix="pass the data the model was trained on")


def quantize_inputs(xs: list[np.ndarray], facts: ModelFacts, keys: list[str]
                    ) -> list[np.ndarray]:
    """Quantize each input like the firmware expects it (arrays already of the tensor's
    int8/int16 dtype are taken as is); log one warning when more than 1 % of the values of
    an input clip to its dtype's range."""
    q, clipped = [], []
    for key, x, t in zip(keys, xs, facts.inputs, strict=True):
        frac = saturation(x, t)
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
                                  offset=off).reshape(t.shape[1:]))
        off += t.nbytes
    if off != len(data) or len(outs) != len(facts.outputs):
        raise TinyDeployError("protocol_error",
                              problem=f"sample {i}: {len(data)} output bytes, expected "
                                      f"{sum(t.nbytes for t in facts.outputs)}")
    return outs


def _flat(arrays: list[np.ndarray]) -> np.ndarray:
    """One row per sample: every output's values, int32, concatenated."""
    return np.concatenate([a.reshape(len(a), -1).astype(np.int32) for a in arrays], axis=1)


def run_samples(link: Any, facts: ModelFacts, q_in: list[np.ndarray], port: str,
                writer: Any, csv_file: Any, host: list[np.ndarray], labels: np.ndarray | None,
                stateful: bool = False,
                ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, int]:
    """Send every sample once (all inputs' bytes concatenated); on a device reset re-check
    HELLO and resend the last one. ``stateful``: one sequence, the model state is reset
    only before the first sample (a device reset then ends the run: its state is lost)."""
    from .device.link import DeviceReset

    n = len(q_in[0])
    device = [np.zeros((n, *t.shape[1:]), dtype=t.numpy_dtype) for t in facts.outputs]
    host_flat = _flat(host)
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
        dev_row = _flat([d[i:i + 1] for d in device])[0]
        delta = int(np.max(np.abs(dev_row - host_flat[i])))
        label = "" if labels is None else _label(labels[i])
        writer.writerow([i, _hex(host_flat[i]), _hex(dev_row), delta, int(delta == 0),
                         times[i], cycles[i], label])
        csv_file.flush()
    return device, times, cycles, resets


def _build_facts(folder: Path) -> dict[str, Any]:
    """The build stamps (``native.json``, ``qemu.json``) a pseudo-board left in ``folder``."""
    found: dict[str, Any] = {}
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        with contextlib.suppress(OSError, ValueError):
            found[p.stem] = json.loads(p.read_text())
    return found


def report_facts_of(host: np.ndarray, device: np.ndarray, out: TensorFacts,
                    labels: np.ndarray | None, times: np.ndarray, cycles: np.ndarray,
                    tolerance_lsb: int, metrics: dict[str, Any], device_info: dict[str, Any],
                    facts: ModelFacts, board: str | None,
                    build: dict[str, Any] | None) -> dict[str, Any]:
    """The report facts of one run (see :mod:`tinydeploy.report_facts`); also moves the
    latency of an emulated board out of ``metrics['latency_us']`` (instructions, not µs)."""
    board_id = str(device_info.get("board_id") or board or "")
    lat = report_facts.latency(times, cycles, board_id)
    if lat["unit"] == "instructions":
        metrics.pop("latency_us", None)
        metrics.pop("cycles", None)
        metrics["instructions"] = lat["stats"]
    facts_doc: dict[str, Any] = {
        "run": runinfo.header(board_id, str(device_info.get("runtime", "")), facts.sha256,
                              str(Path(facts.path).resolve()) if Path(facts.path).is_file()
                              else str(facts.path)),
        "latency": lat}
    hc = dc = None
    if labels is not None and len(host) and metrics.get("task") == "classification":
        hc, dc = _predicted_class(host, out), _predicted_class(device, out)
        width = int(np.prod(out.shape[1:])) if out.shape[1:] else 1
        facts_doc["classification"] = report_facts.classification(hc, dc, labels,
                                                                  max(width, 2))
    elif labels is not None and len(host):
        facts_doc["regression"] = report_facts.regression(
            dequantize(host, out), dequantize(device, out), labels)
    facts_doc["differing"] = report_facts.differing(host, device, tolerance_lsb, hc, dc)
    facts_doc["memory"] = report_facts.memory(device_info, build)
    return facts_doc


def validate(model: str | Path | ModelFacts, data: str | Path, out: str | Path,
             port: str | None = None, board: str | None = None, samples: int | None = None,
             tolerance_lsb: int = 0, trace: bool = False,
             stateful: bool = False, profile: bool = False,
             build: dict[str, Any] | None = None, runtime: str = "c",
             tflm_src: Any = None) -> ValidationResult:
    """Run ``x_test`` on the device, compare with the host, write the three result files.

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
            (the generated TFLite Micro firmware, against ``tflm_src``).
        tflm_src: a TFLM tree (Arduino library or tflite-micro checkout; default
            ``$TINYDEPLOY_TFLM_SRC``), for ``runtime='tflm'``.

    Returns:
        A :class:`ValidationResult` (``passed``, metrics, report facts, paths).

    Raises:
        TinyDeployError: bad arguments or data (exit 2), a model the protocol cannot carry
            (3), no device / link failure / other model on the device (5).
    """
    facts = load(model)
    from . import profile as prof

    tflm_src = tflm_tree_for(board, runtime, tflm_src) if not port else None  # fail early
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
    tout = facts.outputs[0]
    keys = input_keys("test", len(facts.inputs))
    xs, labels = load_split(data, "test", len(facts.inputs))
    xs = [_input_samples(x, t, Path(data), k) for x, t, k in zip(xs, facts.inputs, keys,
                                                                  strict=True)]
    if samples is not None:
        if samples > len(xs[0]):
            log.warning("--samples %d but x_test has %d samples: validating all %d", samples,
                        len(xs[0]), len(xs[0]))
        xs = [x[:samples] for x in xs]
        labels = None if labels is None else labels[:samples]
    q_in = quantize_inputs(xs, facts, keys)
    n = len(q_in[0])

    out_dir = check_output_dir(out)  # it, or its nearest existing parent, is a folder
    paths = {"csv": out_dir / CSV_NAME, "json": out_dir / JSON_NAME, "html": out_dir / HTML_NAME}
    header = ["index", "host", "device", "max_abs_diff_lsb", "exact", "time_us", "cycles",
              "label"]
    with tempfile.TemporaryDirectory(prefix="td-validate-") as work, \
            open_device(facts, port, board, Path(work), profile, runtime, tflm_src) as dev_port:
        stage("validate", f"device on {dev_port}")
        with _open_link(dev_port, trace) as link:
            info = link.hello()
            check_device(info, facts, dev_port)
            device_info = _as_dict(info)
            stage("validate", f"{n} samples{', one stateful sequence' if stateful else ''}"
                              ", host reference (TFLM Python runtime)")
            host = HostModel(facts).predict_all(q_in, stateful=stateful)
            out_dir.mkdir(parents=True, exist_ok=True)  # not before a device answered
            for stale in (paths["json"], paths["html"]):  # a new run starts: no old verdict
                stale.unlink(missing_ok=True)
            with paths["csv"].open("w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(header)
                f.flush()
                try:
                    device, times, cycles, resets = run_samples(
                        link, facts, q_in, dev_port, writer, f, host, labels, stateful)
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
                              facts)
    if len(facts.outputs) > 1:  # the verdict covers every output; labels go with the first
        per = [compute_metrics(h, d, t, None, times, cycles, tolerance_lsb, facts)
               for h, d, t in zip(host, device, facts.outputs, strict=True)]
        worst = np.abs(_flat(device) - _flat(host)).max(axis=1)
        metrics["samples_differing"] = int(np.sum(worst > tolerance_lsb))
        metrics["samples_within_tolerance"] = int(np.sum(worst <= tolerance_lsb))
        metrics["outputs"] = [{k: v for k, v in m.items() if k not in ("latency_us", "cycles")}
                              for m in per]
    if stateful:
        metrics["stateful"] = True
    rep = report_facts_of(host[0], device[0], tout, labels, times, cycles, tolerance_lsb, metrics,
                          device_info, facts, board, build)
    rep["link"] = {**link_stats, "resets": max(resets, int(link_stats.get("resets", 0)))}
    differing = metrics["samples_differing"]
    if differing and device_info.get("runtime") == "tflm":  # a known TFLM library defect?
        from .tflm_overrides import explain_mismatch

        rep["defects"] = [m.to_dict() for m in explain_mismatch(facts, q_in, device, stateful)]
    result = ValidationResult(passed=differing == 0, samples=n, differing=differing,
                              tolerance_lsb=tolerance_lsb, metrics=metrics, device=device_info,
                              paths=paths, time_us=times,
                              host=host[0] if len(host) == 1 else _flat(host),
                              device_out=device[0] if len(device) == 1 else _flat(device),
                              layers=layers, cycles=cycles, report=rep)
    doc = result.to_dict()
    if layers:
        doc["layers"] = {"unit": prof.unit(str(board)), "rows": layers}
    doc["model"] = {"path": str(Path(facts.path).resolve()), "sha256": facts.sha256}
    doc["data"] = str(Path(data).resolve())
    report.write_atomic(paths["json"], json.dumps(doc, indent=2, default=str) + "\n")
    write_html(result, facts)  # the report renders result.layers as its per-layer table
    return result


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
    from .report_html import validation_page

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
    figures = report.validation_plots(result.host, result.device_out, values, unit,
                                      result.report.get("regression"))
    page = validation_page(doc, extra or {}, figures,
                           title or f"tinydeploy validation: {facts.name}")
    return report.write_atomic(result.paths["html"], page)
