"""Validate a model on a device: send the test set over serial, compare with the host.

The host side runs the same int8 model in the TFLM Python runtime on the same quantized
inputs (``hostref.quantize_input``), so a correct device is bit-exact. Before any sample is
sent the device's HELLO is checked (model hash, input/output shapes and dtypes). Each
confirmed sample is appended to ``samples.csv`` and flushed at once; a device reset makes
the link re-handshake and the run resumes at the first unconfirmed sample, so every sample
is validated exactly once. Results: ``validation.json``, ``samples.csv``, ``report.html``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import report
from .data import load_data
from .errors import TinyDeployError
from .facts import ModelFacts, TensorFacts, load
from .hostref import HostModel, dequantize, quantize_input
from .log import log, progress, stage
from .output import check_output_dir

MAX_RESETS_PER_SAMPLE = 5
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
        lat = m.get("latency_us", {})
        if lat:
            lines.append(f"  latency µs min {lat['min']} / median {lat['median']} / "
                         f"max {lat['max']}" + (f"; cycles median {m['cycles']['median']}"
                                                  if m.get("cycles") else ""))
        lines.append(f"  report: {self.paths.get('html', '')}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "samples": self.samples, "differing": self.differing,
                "tolerance_lsb": self.tolerance_lsb, "metrics": self.metrics,
                "device": self.device, "paths": {k: str(v) for k, v in self.paths.items()}}


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
    for side, dev, host in (("input", info.input, facts.inputs[0]),
                            ("output", info.output, facts.outputs[0])):
        dev_shape = tuple(int(d) for d in dev.shape)
        if dev_shape != tuple(host.shape) or str(dev.dtype).upper() != host.dtype:
            raise TinyDeployError(
                "protocol_error",
                problem=f"device {side} is {dev.dtype} {list(dev_shape)} but the model's is "
                        f"{host.dtype} {list(host.shape)}")


# --- device connection -------------------------------------------------------------------
@contextlib.contextmanager
def open_device(facts: ModelFacts, port: str | None, board: str | None,
                workdir: Path, runtime: str = "c", tflm_src: Any = None) -> Iterator[str]:
    """Yield a serial port: the given one, or one served by a pseudo-board (sim, native,
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

        with start_native(facts, workdir, tflm=tree) as proc:
            yield proc.port
    elif b.emulated:
        from .device.qemu import start_qemu

        with start_qemu(facts, workdir, b, tflm=tree) as proc:
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


def _input_samples(x: np.ndarray, t: TensorFacts, data: Path) -> np.ndarray:
    want = tuple(t.shape[1:])
    if tuple(x.shape[1:]) == want:
        return x
    if int(np.prod(x.shape[1:])) == int(np.prod(want)):
        return x.reshape((len(x), *want))
    raise TinyDeployError("bad_data", path=data,
                          problem=f"x_test samples have shape {tuple(x.shape[1:])}, the model "
                                  f"takes {want}",
                          fix="pass the data the model was trained on")


def run_samples(link: Any, facts: ModelFacts, q_in: np.ndarray, port: str,
                writer: Any, csv_file: Any, host: np.ndarray, labels: np.ndarray | None,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Send every sample once; on a device reset re-check HELLO and resend the last one."""
    from .device.link import DeviceReset

    out = facts.outputs[0]
    n = len(q_in)
    device = np.zeros((n, *out.shape[1:]), dtype=out.numpy_dtype)
    times = np.zeros(n, dtype=np.int64)
    cycles = np.zeros(n, dtype=np.int64)
    resets = 0
    for i in progress(range(n), n, "validating"):
        tries = 0
        while True:
            try:
                reply = link.infer(q_in[i].tobytes())
                break
            except DeviceReset as reset:
                # the link re-handshook; the sample in flight produced nothing: check the
                # model again (a reset may have booted other firmware) and resend it
                tries += 1
                resets += 1
                log.warning("device reset during sample %d; re-checking and resuming", i)
                if tries > MAX_RESETS_PER_SAMPLE:
                    raise TinyDeployError(
                        "protocol_error",
                        problem=f"device reset {tries} times while running sample {i}") from None
                check_device(reset.info or link.hello(), facts, port)
        got = np.frombuffer(bytes(reply.output), dtype=out.numpy_dtype)
        if got.size != out.elements:
            raise TinyDeployError("protocol_error",
                                  problem=f"sample {i}: {got.size} output values, "
                                          f"expected {out.elements}")
        device[i] = got.reshape(out.shape[1:])
        times[i], cycles[i] = int(reply.time_us), int(reply.cycles)
        delta = int(np.max(np.abs(device[i].astype(np.int32) - host[i].astype(np.int32))))
        label = "" if labels is None else _label(labels[i])
        writer.writerow([i, _hex(host[i]), _hex(device[i]), delta, int(delta == 0),
                         times[i], cycles[i], label])
        csv_file.flush()
    return device, times, cycles, resets


def validate(model: str | Path | ModelFacts, data: str | Path, out: str | Path,
             port: str | None = None, board: str | None = None, samples: int | None = None,
             tolerance_lsb: int = 0, trace: bool = False, runtime: str = "c",
             tflm_src: Any = None) -> ValidationResult:
    """Run ``x_test`` on the device, compare with the host, write the three result files.

    ``runtime``/``tflm_src``: what a native / qemu-cm4 board builds (see ``open_device``)."""
    facts = load(model)
    tflm_src = tflm_tree_for(board, runtime, tflm_src) if not port else None  # fail early
    if len(facts.inputs) != 1 or len(facts.outputs) != 1:
        raise TinyDeployError("model_rejected", path=facts.path,
                              problem=f"{len(facts.inputs)} inputs / {len(facts.outputs)} "
                                      "outputs; the serial protocol carries one of each",
                              fix="export a model with one input and one output tensor")
    if tolerance_lsb < 0:
        raise TinyDeployError("bad_argument", problem="--tolerance-lsb must be >= 0",
                              fix="pass 0 for bit-exact or a positive LSB count")
    if samples is not None and samples < 1:
        raise TinyDeployError("bad_argument", problem="--samples must be >= 1",
                              fix="pass a positive sample count or omit it")
    tin, tout = facts.inputs[0], facts.outputs[0]
    dataset = load_data(data)
    x = _input_samples(dataset.x_test, tin, Path(data))
    labels = dataset.y_test
    if samples is not None:
        if samples > len(x):
            log.warning("--samples %d but x_test has %d samples: validating all %d", samples,
                        len(x), len(x))
        x, labels = x[:samples], labels[:samples]
    q_in = quantize_input(x, tin)

    out_dir = check_output_dir(out)  # it, or its nearest existing parent, is a folder
    paths = {"csv": out_dir / CSV_NAME, "json": out_dir / JSON_NAME, "html": out_dir / HTML_NAME}
    header = ["index", "host", "device", "max_abs_diff_lsb", "exact", "time_us", "cycles",
              "label"]
    with tempfile.TemporaryDirectory(prefix="td-validate-") as work, \
            open_device(facts, port, board, Path(work), runtime, tflm_src) as dev_port:
        stage("validate", f"device on {dev_port}")
        with _open_link(dev_port, trace) as link:
            info = link.hello()
            check_device(info, facts, dev_port)
            device_info = _as_dict(info)
            stage("validate", f"{len(q_in)} samples, host reference (TFLM Python runtime)")
            host = HostModel(facts).predict(q_in)
            out_dir.mkdir(parents=True, exist_ok=True)  # not before a device answered
            for stale in (paths["json"], paths["html"]):  # a new run starts: no old verdict
                stale.unlink(missing_ok=True)
            with paths["csv"].open("w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(header)
                f.flush()
                try:
                    device, times, cycles, resets = run_samples(
                        link, facts, q_in, dev_port, writer, f, host, labels)
                except (TinyDeployError, KeyboardInterrupt):
                    log.warning("validation stopped; every confirmed sample is in %s",
                                paths["csv"])
                    raise
            device_info["resets"] = resets
    metrics = compute_metrics(host, device, tout, labels, times, cycles, tolerance_lsb,
                              facts)
    differing = metrics["samples_differing"]
    result = ValidationResult(passed=differing == 0, samples=len(q_in), differing=differing,
                              tolerance_lsb=tolerance_lsb, metrics=metrics, device=device_info,
                              paths=paths, host=host, device_out=device, time_us=times)
    doc = result.to_dict()
    doc["model"] = {"path": facts.path, "sha256": facts.sha256}
    doc["data"] = str(data)
    report.write_atomic(paths["json"], json.dumps(doc, indent=2, default=str) + "\n")
    write_html(result, facts)
    return result


def _tensor_text(t: TensorFacts) -> str:
    q = f", scale {t.scale:.6g}, zero point {t.zero_point}" if t.scale is not None else ""
    return f"{t.name}: {t.dtype} {list(t.shape)}{q}"


def write_html(result: ValidationResult, facts: ModelFacts,
               extra: dict[str, dict[str, Any]] | None = None,
               title: str | None = None) -> Path:
    """(Re)write the HTML report of a validation run, with optional extra sections first."""
    m = dict(result.metrics)
    latency, cyc = m.pop("latency_us", {}), m.pop("cycles", {})
    verdict = {"passed": result.passed, "samples": result.samples,
               "samples differing": result.differing,
               "tolerance": "bit-exact" if result.tolerance_lsb == 0
               else f"{result.tolerance_lsb} LSB"}
    sections: dict[str, dict[str, Any]] = {"Verdict": verdict, **(extra or {})}
    sections["Model"] = {"path": facts.path, "sha256": facts.sha256,
                         "ops": ", ".join(facts.op_names),
                         "input": _tensor_text(facts.inputs[0]),
                         "output": _tensor_text(facts.outputs[0])}
    sections["Device"] = {k: v for k, v in result.device.items()}
    sections["Metrics"] = m
    sections["Latency (µs, device-reported)"] = latency
    if cyc:
        sections["Cycles"] = cyc
    return report.write_report(result.paths["html"],
                               title or f"tinydeploy validation: {facts.name}",
                               result.passed, sections, result.host, result.device_out,
                               result.time_us)
