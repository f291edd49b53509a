"""The numbers behind the validation report, as plain JSON-able dicts.

Everything here lands in ``validation.json`` (key ``report``) and is rendered by
:mod:`tinydeploy.report.page`: per-class results (confusion matrices, precision and
recall, host and device vs the labels), the first differing samples, latency percentiles
in the unit the board really measures, memory (arena, firmware sections), and the serial
link's counters.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_DIFFERING = 20  # differing samples listed in the report
MAX_VALUES = 32  # output values shown per differing sample


def percentiles(values: np.ndarray) -> dict[str, float | int]:
    """min / median / p90 / p99 / max / mean / count of ``values`` (empty dict if none).

    Args:
        values: one number per sample.

    Returns:
        A dict; min and max keep an integer type for integer input.
    """
    v = np.asarray(values).reshape(-1)
    if v.size == 0:
        return {}
    cast = int if np.issubdtype(v.dtype, np.integer) else float
    p50, p90, p99 = (float(x) for x in np.percentile(v, [50, 90, 99]))
    return {"count": int(v.size), "min": cast(v.min()), "median": p50, "p90": p90,
            "p99": p99, "max": cast(v.max()), "mean": float(v.mean())}


def latency(time_us: np.ndarray, cycles: np.ndarray, board_id: str) -> dict[str, Any]:
    """Latency facts in the unit the board measures, with the same keys on every board.

    On an emulated board (``qemu-cm4``: ``-icount shift=0``) the device counts emulated
    instructions, which are no time: the unit is ``instructions`` and no µs are given.
    Elsewhere the unit is ``µs`` (device or host clock), with cycle percentiles where the
    MCU counts cycles. ``clock`` is the board's one clock statement
    (:attr:`tinydeploy.boards.Board.clock_text`).

    Args:
        time_us: device-reported time per sample (µs).
        cycles: device-reported cycles per sample (0 where not counted; instructions on an
            emulated board).
        board_id: the board the device reported (or was started as).

    Returns:
        ``{"unit", "what", "stats", "clock", "below_resolution"?, "cycles"?}``;
        ``below_resolution``: the samples that read 0 µs (faster than the 1 µs timer).
    """
    from ..boards import BOARDS

    board = BOARDS.get(board_id)
    clock = board.clock_text if board is not None else "unknown"
    t = np.asarray(time_us, dtype=np.int64).reshape(-1)
    c = np.asarray(cycles, dtype=np.int64).reshape(-1)
    if board is not None and board.emulated:
        counts = c if c.any() else t * 1000  # 1 instruction = 1 ns of virtual time
        return {"unit": "instructions", "stats": percentiles(counts), "clock": clock,
                "what": "emulated instruction count per inference (QEMU -icount shift=0); "
                        "deterministic, not the timing of real silicon"}
    host = board is not None and (board.simulated or board.native)
    out: dict[str, Any] = {
        "unit": "µs", "stats": percentiles(t), "clock": clock,
        "what": ("wall-clock time of one inference on this host" if host
                 else "device-reported inference time")}
    if t.size and int(np.sum(t == 0)):
        out["below_resolution"] = int(np.sum(t == 0))
    if c.any():
        out["cycles"] = percentiles(c)
    return out


def error_stats(reference: np.ndarray, got: np.ndarray, nse: bool = False
                ) -> dict[str, float]:
    """How far ``got`` is from ``reference`` (same shape, dequantized values): the error
    ``got - reference`` as mean, std, MAE, RMSE, max |error|; with ``nse`` also the
    Nash-Sutcliffe efficiency 1 - sum(err^2) / sum((ref - mean(ref))^2) (1: perfect; for
    regressors). Non-finite values are left out. ST Edge AI's "X-cross" numbers."""
    r = np.asarray(reference, np.float64).reshape(-1)
    g = np.asarray(got, np.float64).reshape(-1)
    ok = np.isfinite(r) & np.isfinite(g)
    r, g = r[ok], g[ok]
    if not r.size:
        return {}
    e = g - r
    out = {"mean": float(e.mean()), "std": float(e.std()), "mae": float(np.abs(e).mean()),
           "rmse": float(np.sqrt(np.mean(e * e))), "max_abs": float(np.abs(e).max()),
           "values": int(r.size)}
    if nse:
        spread = float(np.sum((r - r.mean()) ** 2))
        out["nse"] = 1.0 - float(np.sum(e * e)) / spread if spread else float("nan")
    return out


def _labels(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    return (y.argmax(1) if y.shape[1] > 1 else np.round(y[:, 0])).astype(np.int64)


def confusion(truth: np.ndarray, pred: np.ndarray, classes: int) -> list[list[int]]:
    """Confusion matrix: row = true class, column = predicted class."""
    m = np.zeros((classes, classes), dtype=np.int64)
    ok = (truth >= 0) & (truth < classes) & (pred >= 0) & (pred < classes)
    np.add.at(m, (truth[ok], pred[ok]), 1)
    return m.tolist()


def per_class(matrix: list[list[int]]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support per class of a confusion matrix (NaN-free:
    ``None`` where a class was never predicted / never present)."""
    m = np.asarray(matrix, dtype=np.int64)
    rows = []
    for k in range(len(m)):
        tp, predicted, support = int(m[k, k]), int(m[:, k].sum()), int(m[k, :].sum())
        precision = tp / predicted if predicted else None
        recall = tp / support if support else None
        f1 = (2 * precision * recall / (precision + recall)
              if precision and recall else (0.0 if precision is not None
                                            and recall is not None else None))
        rows.append({"class": k, "precision": precision, "recall": recall, "f1": f1,
                     "support": support})
    return rows


def classification(host_pred: np.ndarray, device_pred: np.ndarray, labels: np.ndarray,
                   classes: int, names: list[str] | None = None) -> dict[str, Any]:
    """Confusion matrices and per-class tables, host and device, against the labels.

    Args:
        host_pred, device_pred: predicted class per sample.
        labels: ``y_test`` rows (class indices or one-hot).
        classes: number of classes (the output's width, 2 for one sigmoid unit).
        names: class names (index order); numbers where not given or of another count.

    Returns:
        ``{"classes", "names", "agree", "host": {"confusion", "per_class"}, "device":
        {...}}``; ``agree``: host and device predicted the same class for every sample
        (then the two matrices are one).
    """
    truth = _labels(labels)
    classes = max(classes, int(truth.max()) + 1 if truth.size else 0)
    if not names or len(names) != classes:
        names = [str(k) for k in range(classes)]
    agree = bool(np.array_equal(np.asarray(host_pred), np.asarray(device_pred)))
    out: dict[str, Any] = {"classes": classes, "names": list(names), "agree": agree}
    for side, pred in (("host", host_pred), ("device", device_pred)):
        matrix = confusion(truth, np.asarray(pred, dtype=np.int64), classes)
        out[side] = {"confusion": matrix, "per_class": per_class(matrix)}
    return out


def regression(host: np.ndarray, device: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Predicted vs true values (first output value per sample) for the regressor plot."""
    n = len(labels)
    return {"true": np.asarray(labels, np.float64).reshape(n, -1)[:, 0].tolist(),
            "host": np.asarray(host, np.float64).reshape(n, -1)[:, 0].tolist(),
            "device": np.asarray(device, np.float64).reshape(n, -1)[:, 0].tolist()}


def differing(host: np.ndarray, device: np.ndarray, tolerance_lsb: int,
              host_class: np.ndarray | None = None, device_class: np.ndarray | None = None,
              limit: int = MAX_DIFFERING, apart: np.ndarray | None = None,
              outside: np.ndarray | None = None) -> dict[str, Any]:
    """The first ``limit`` samples outside the tolerance.

    Args:
        host, device: one output's values (batch axis first), in their own dtype.
        tolerance_lsb: allowed max |device - host| (when ``outside`` is not given).
        apart: |device - host| per value in the dtype's unit (LSB, or ULP for floats;
            default: the integer difference).
        outside: per sample, is it outside the tolerance (default: max ``apart`` above
            ``tolerance_lsb``).

    Returns:
        ``{"count", "shown", "rows": [{"index", "max_lsb", "expected", "got",
        "positions"?, "expected_class"?, "got_class"?}]}``; ``expected``/``got`` are the
        outputs as they are (at most ``MAX_VALUES`` of them, starting at the first
        differing one for wide outputs, ``positions`` then says which).
    """
    n = len(host)
    h = np.asarray(host).reshape(n, -1)
    d = np.asarray(device).reshape(n, -1)
    if not np.issubdtype(h.dtype, np.floating):
        h, d = h.astype(np.int64), d.astype(np.int64)
    delta = np.abs(d - h) if apart is None else np.asarray(apart).reshape(n, -1)
    if outside is None:
        outside = delta.max(axis=1) > tolerance_lsb if n else np.zeros(0, bool)
    bad = np.flatnonzero(outside)
    rows = []
    for i in bad[:limit]:
        row: dict[str, Any] = {"index": int(i), "max_lsb": int(delta[i].max())}
        if h.shape[1] <= MAX_VALUES:
            row["expected"], row["got"] = h[i].tolist(), d[i].tolist()
        else:
            start = int(np.flatnonzero(delta[i])[0])
            sl = slice(start, start + MAX_VALUES)
            row["positions"] = [start, min(start + MAX_VALUES, h.shape[1]) - 1]
            row["expected"], row["got"] = h[i, sl].tolist(), d[i, sl].tolist()
        if host_class is not None and device_class is not None:
            row["expected_class"], row["got_class"] = int(host_class[i]), int(device_class[i])
        rows.append(row)
    return {"count": int(len(bad)), "shown": len(rows), "rows": rows}


def memory(device: dict[str, Any], build: dict[str, Any] | None) -> dict[str, Any]:
    """Arena planned and used (from the device's HELLO) and firmware sections (from the
    ELF, where the build recorded them: ``qemu.json`` / ``native.json``)."""
    out: dict[str, Any] = {}
    if device.get("arena_size"):
        out["arena_planned_bytes"] = int(device["arena_size"])
    if device.get("arena_used"):
        out["arena_used_bytes"] = int(device["arena_used"])
    for name, info in (build or {}).items():
        if not isinstance(info, dict):
            continue
        keys = ("text", "data", "bss", "flash_bytes", "ram_bytes")
        sections = {k: int(info[k]) for k in keys if isinstance(info.get(k), int)}
        if sections:
            out["elf"] = {"build": name, **sections}
        plan = info.get("memory")
        if isinstance(plan, dict):  # the C runtime's static memory plan (memory.json)
            out["c_runtime"] = {k: int(plan[k]) for k in
                                ("arena_bytes", "weight_bytes", "param_bytes")
                                if isinstance(plan.get(k), int)}
    return out
