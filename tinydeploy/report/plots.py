"""The report's plots, embedded in the page as base64 PNG ``<figure>`` snippets.

Plots use matplotlib's Agg backend (no display needed). The page has no external
resources, so the single ``report.html`` can be mailed or attached to a CI run.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(png_b64: str, caption: str) -> str:
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{png_b64}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _latency_figure(values: np.ndarray, unit: str) -> tuple[str, str]:
    """Latency histogram that stays readable with outliers: when the slowest samples lie
    far beyond the 99th percentile, the axis stops at p99 and they are counted in the
    last bar (the caption says how many)."""
    import matplotlib.pyplot as plt

    t = np.asarray(values, dtype=np.float64)
    lo, p99, hi = float(t.min()), float(np.percentile(t, 99)), float(t.max())
    clipped = hi > p99 and (hi - p99) > 3 * max(p99 - lo, 1.0)
    shown = np.minimum(t, p99) if clipped else t
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.hist(shown, bins=min(30, max(1, len(np.unique(shown)))), color="#1565c0")
    what = ("emulated instructions per inference" if unit == "instructions"
            else f"inference time ({unit}, device-reported)")
    ax.set_xlabel(what)
    ax.set_ylabel("samples")
    caption = f"latency histogram: {what}"
    if clipped:
        n = int(np.sum(t > p99))
        caption += (f" (axis clipped at p99 = {p99:.6g}: {n} slower sample(s), up to "
                    f"{hi:.6g}, counted in the last bar)")
    return _figure(_png(fig), caption), caption


def validation_plots(host: np.ndarray, device: np.ndarray, time_us: np.ndarray,
                     unit: str = "µs", regression: dict[str, list[float]] | None = None,
                     ) -> list[str]:
    """The report's plots as ``<figure>`` snippets.

    Args:
        host, device: int outputs (any shape, batch first).
        time_us: one latency value per sample, in ``unit``.
        unit: ``µs`` or ``instructions`` (emulated boards).
        regression: ``{"true", "host", "device"}`` values for a predicted-vs-true plot.

    Returns:
        Host-vs-device scatter, |Δ| histogram (log count axis when anything differs),
        latency histogram (clipped at p99 when outliers would squash it, stated in its
        caption) and, for regressors, predicted vs true.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    figures: list[str] = []
    kind = np.float64 if np.issubdtype(np.asarray(host).dtype, np.floating) else np.int64
    h = np.asarray(host, dtype=kind).reshape(-1)  # never truncated
    d = np.asarray(device, dtype=kind).reshape(-1)
    if h.size:
        fig, ax = plt.subplots(figsize=(4.2, 4))
        ax.scatter(h, d, s=8, alpha=0.5)
        lo, hi = kind(min(h.min(), d.min())), kind(max(h.max(), d.max()))
        ax.plot([lo, hi], [lo, hi], color="gray", lw=0.8, ls="--")
        ax.set_xlabel(f"host output ({'float' if kind is np.float64 else 'int'})")
        ax.set_ylabel(f"device output ({'float' if kind is np.float64 else 'int'})")
        figures.append(_figure(_png(fig), "host vs device outputs"))

        from ..verdict import units_apart

        d_unit = "ULP" if kind is np.float64 else "LSB"  # floats: bit-pattern distance
        diff = units_apart(np.asarray(host).reshape(1, -1), np.asarray(device).reshape(1, -1))[0]
        fig, ax = plt.subplots(figsize=(4.2, 4))
        top = int(diff.max()) if diff.size else 0
        bins = np.arange(0, top + 2) - 0.5 if top <= 40 else np.linspace(-0.5, top + 0.5, 41)
        ax.hist(diff, bins=bins, color="#c62828" if top else "#2e7d32", rwidth=0.9)
        if top:
            ax.set_yscale("log")
        if top <= 40:  # whole LSB ticks, not -0.4 ... 0.4
            ax.set_xticks(np.arange(0, top + 1, max(1, -(-(top + 1) // 10))))
        ax.set_xlabel(f"|device - host| ({d_unit})")
        ax.set_ylabel("output values" + (" (log scale)" if top else ""))
        figures.append(_figure(_png(fig), "error histogram"))
    t = np.asarray(time_us, dtype=np.float64).reshape(-1)
    if t.size:
        figures.append(_latency_figure(t, unit)[0])
    if regression and regression.get("true"):
        fig, ax = plt.subplots(figsize=(4.2, 4))
        true = np.asarray(regression["true"])
        ax.scatter(true, regression["host"], s=10, alpha=0.6, label="host")
        ax.scatter(true, regression["device"], s=10, alpha=0.6, marker="x", label="device")
        lo, hi = float(true.min()), float(true.max())
        ax.plot([lo, hi], [lo, hi], color="gray", lw=0.8, ls="--")
        ax.set_xlabel("true value (label)")
        ax.set_ylabel("predicted value (dequantized)")
        ax.legend()
        figures.append(_figure(_png(fig), "predicted vs true (first output)"))
    return figures
