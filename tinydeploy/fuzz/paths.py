"""Which kernel path each layer of a generated C model takes, and its quantization regime.

The path is read from the generated ``td_model.c`` itself (the call and the fields of its
parameter struct: ``bias_eff``/``rq`` of the int8 convolutions, ``wide``/``fold_*`` of the
16x8 fast kernels, the LSTM step function, ``broadcast`` of the binary kernels), so it
reports what the generator really selected:

- ``fast``: the optimized kernel for the whole layer;
- ``partial``: an optimized kernel for part of the work (one-pixel im2col, a 16x8 sum split
  in segments or a reference requantization, the depthwise kernel's edge loop only, ...);
- ``ref``: the reference loop; int8 conv / depthwise / FC name their variant (``fastg``:
  a shift >= 0, ``fastw``/``fastwg``: depthwise, any depth multiplier, on pre-widened
  weights; cruntime/variants.py);
- ``stream``: a FULLY_CONNECTED and its producer run band by band (cruntime/fc_stream.py);
- kernels with one path report its kind (``flat``/``bcast``, ``lut``, ``copy``, ``thr``:
  float input to int8 by thresholds, ...).

Regimes are measured from the model's numbers (``layer_regimes``): per-tensor/per-channel,
a requantization multiplier 0 (zero weights, tiny or denormal weight scale), a shift >= 0,
narrow activation ranges, zero points at -128/127 or far from 0, plus the generator's
intent tags (e.g. 'saturating').
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..cruntime import quant
from ..cruntime.graph import Graph, Op

__all__ = ["LayerPath", "classify", "layer_regimes", "op_label"]

_STRUCT = re.compile(r"static const (\w+) (td_p\d+(?:_fast)?) = \{(.*?)\n\};", re.S)
_FIELD = re.compile(r"\.(\w+) = (\{[^}]*\}|[^,\n]+)")
_INT8_VARIANT = re.compile(r"td_(conv2d|depthwise_conv2d|fully_connected)"
                           r"_(fast|fastg|fastw|fastwg|ref|1x1c1)")
_CALL = re.compile(r"/\* (\d+): (\w+) \*/ (.*)")
# cruntime/transpose.py's block: transposition, the kernel's call, transposition
_TRANSPOSED = re.compile(r"/\* (\d+): \w+ \*/ \{ /\* run transposed[^\n]*\n"
                         r"(?:\s*td_transpose_px\([^\n]*\n)?\s*(\w+\([^\n]*)")
# cruntime/patch.py's band loop: "/* k: OP */" then td_band_*(KERNEL, ...) or, for the
# element-wise operators, "{ /* k: OP */ PARAMS q = ...;" then KERNEL(...)
_BANDED = re.compile(r"/\* (\d+): \w+ \*/(?:\n\s*td_band_\w+\((\w+),| td_\w+_params q = "
                     r"[^\n]*\n\s*(\w+\())")
F32_MIN_NORMAL = 1.1754943508222875e-38


@dataclass
class LayerPath:
    """One operator: ``label`` (e.g. ``CONV_2D/i8``), kernel ``path`` and regime tags."""

    index: int
    label: str
    path: str
    regimes: set[str] = field(default_factory=set)


def _structs(text: str) -> dict[str, dict[str, str]]:
    out = {}
    for m in _STRUCT.finditer(text):
        out[m.group(2)] = {k: v.strip() for k, v in _FIELD.findall(m.group(3))}
    return out


def _set(f: dict[str, str], key: str) -> bool:
    return f.get(key, "0") not in ("0", "")


def _int(f: dict[str, str], key: str, default: int = 0) -> int:
    try:
        return int(f.get(key, default))
    except ValueError:
        return default


def _conv8(fn: str, f: dict[str, str]) -> str:
    """The int8 conv / depthwise / FC variant the generator named (cruntime/variants.py):
    ``fast`` (one-multiply requantization), ``fastg`` (a shift >= 0), ``fastw``/``fastwg``
    (depthwise, int16 weights), ``ref``; ``1x1c1`` (an unpadded 1x1 conv of one channel);
    ``partial`` where the fast variant runs part of its work on a slower branch (one-pixel
    im2col, the depthwise edge loop)."""
    variant = fn.rsplit("_", 1)[1]
    if fn.startswith("td_conv2d_fast") and _int(f, "scratch_cols", 2) < 2:
        return "partial"  # one pixel's field, or a 1x1 on the raw input without the scratch
    return variant


def _path(call: str, s: dict[str, dict[str, str]], k: int) -> str:
    f = s.get(f"td_p{k}", {})
    q = s.get(f"td_p{k}_fast", {})
    fn = call.split("(", 1)[0].strip()
    if "FC streaming" in call:  # producer and FULLY_CONNECTED in one band loop (fc_stream.py)
        return "stream"
    if _INT8_VARIANT.fullmatch(fn):
        return _conv8(fn, f)
    if fn == "td_conv2d_16_fast":
        return "fast" if _int(q, "wide") == 0 and _set(q, "fold_bias") else "partial"
    if fn == "td_depthwise_conv2d_16_fast":
        return "fast" if _set(q, "fold_bias") else "partial"
    if fn == "td_fully_connected_16_fast":
        full = _int(q, "seg") == _int(f, "accum", -1)
        return "fast" if full and _set(q, "fold_bias") else "partial"
    if fn in ("td_conv2d_16", "td_depthwise_conv2d_16", "td_fully_connected_16",
              "td_transpose_conv"):
        return "ref"
    if fn == "td_transpose_conv8":
        return "dot"
    if fn == "td_quantize_f32_thr":  # float input -> int8 by thresholds (cruntime/f32thr)
        return "thr"
    if fn == "td_add_lut":  # the input rescalings from the generator's tables
        return "lut"
    if fn in ("td_add", "td_mul", "td_binary_ext"):
        return "bcast" if _int(f, "broadcast") else "flat"
    if fn in ("td_max_pool", "td_avg_pool"):
        c = _int(f, "c")
        return "simd4" if c % 4 == 0 else ("scalar" if c < 4 else "simd4+tail")
    if fn == "td_mean":
        return _mean_path(f)
    if fn == "td_lstm":
        m = re.search(r"td_lstm_step_(\w+)", s.get(f"td_p{k}", {}).get("_text", ""))
        return {"fast2": "fast", "fast": "partial", "any": "ref"}.get(m.group(1), "?") \
            if m else "?"
    if fn in ("td_copy",) or call.startswith("/*") or call.startswith("{ const int8_t"):
        return "copy" if fn == "td_copy" else ("alias" if call.startswith("/*") else "concat")
    return fn.removeprefix("td_") or "?"


def _mean_path(f: dict[str, str]) -> str:
    """td_mean's strided-sum branch (one contiguous run of reduced axes) or the general."""
    dims = [int(v) for v in f.get("dims", "{}").strip("{}").split(",") if v.strip()]
    red = [int(v) for v in f.get("reduce", "{}").strip("{}").split(",") if v.strip()]
    rank = _int(f, "rank")
    live = [d for d in range(rank) if red[d] and dims[d] > 1]
    if not live:
        return "ref"
    first, end = live[0], live[-1] + 1
    ok = all(red[d] or dims[d] == 1 for d in range(first, end))
    count = int(np.prod([dims[d] for d in range(first, end)], dtype=np.int64))
    return "fast" if ok and count == _int(f, "count") else "ref"


def _short(dtype: str) -> str:
    return {"INT8": "i8", "INT16": "i16", "FLOAT32": "f32", "INT32": "i32"}.get(dtype, dtype)


def op_label(g: Graph, op: Op) -> str:
    """``NAME/i8`` or ``NAME/16x8``; QUANTIZE/DEQUANTIZE name both dtypes."""
    x = g.t(op.inputs[2] if op.name == "TRANSPOSE_CONV" else op.inputs[0])
    y = g.t(op.outputs[0])
    if op.name in ("QUANTIZE", "DEQUANTIZE"):
        return f"{op.name}/{_short(x.dtype)}->{_short(y.dtype)}"
    return f"{op.name}/{'16x8' if 'INT16' in (x.dtype, y.dtype) else 'i8'}"


WEIGHTED = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"})


def layer_regimes(g: Graph, op: Op) -> set[str]:
    """Regime tags measured from the model's numbers (see the module)."""
    tags: set[str] = set()
    y = g.t(op.outputs[0])
    data_in = [g.t(i) for i in (op.inputs[2:3] if op.name == "TRANSPOSE_CONV"
                                else op.inputs[:2] if op.name in (
                                    "ADD", "SUB", "MUL", "MAXIMUM", "MINIMUM")
                                else op.inputs[:1]) if i >= 0]
    if op.name in WEIGHTED:
        x = g.t(op.inputs[2] if op.name == "TRANSPOSE_CONV" else op.inputs[0])
        w = g.t(op.inputs[1])
        tags.add("per-channel" if len(w.scales) > 1 else "per-tensor")
        axis = 3 if op.name == "DEPTHWISE_CONV_2D" else 0
        oc = w.shape[axis] if w.shape else 1
        scales = w.scales if len(w.scales) > 1 else w.scales * oc
        rows = None if w.data is None else np.moveaxis(np.asarray(w.data), axis, 0).reshape(
            oc, -1)
        for c, s in enumerate(scales):
            m, sh = quant.quantize_multiplier(x.scale * s / y.scale)
            if m == 0:
                tags.add("mult0")
                if 0 < s < F32_MIN_NORMAL:
                    tags.add("mult0:denormal-scale")
                elif rows is not None and not rows[c].any():
                    tags.add("mult0:zero-weights")
                else:
                    tags.add("mult0:tiny-scale")
            elif sh >= 0:
                tags.add("shift>=0")
        if "shift>=0" in tags and all(quant.quantize_multiplier(x.scale * s / y.scale)[1] >= 0
                                      for s in scales):
            tags.add("shift>=0:all")
        if w.zp:
            tags.add("w-zp")
        b = op.inputs[3 if op.name == "TRANSPOSE_CONV" else 2] \
            if len(op.inputs) > (3 if op.name == "TRANSPOSE_CONV" else 2) else -1
        bias_t = g.t(b).dtype if b >= 0 else (
            "INT32" if int(getattr(op.options, "quantizedBiasType", 0) or 0) == 2 else "")
        if x.dtype == "INT16" and bias_t == "INT32":
            tags.add("int32-bias")
    if op.name == "STRIDED_SLICE":
        o = op.options
        if int(o.shrinkAxisMask or 0) & int(o.beginMask or 0):
            tags.add("shrink-and-begin-mask")
        elif int(o.shrinkAxisMask or 0):
            tags.add("shrink")
    act = int(getattr(op.options, "fusedActivationFunction", 0) or 0)
    if y.dtype == "INT8" and act in (1, 2, 3) and y.scales:
        lo, hi = quant.activation_range(act, y.scale, y.zp)
        if hi - lo < 64:
            tags.add("narrow-act")
    for t in [*data_in, y]:
        if t.dtype == "INT16" and t.zp:
            tags.add("i16-zp")
        if t.dtype != "INT8" or not t.scales:
            continue
        if t.zp == -128:
            tags.add("zp=-128")
        elif t.zp == 127:
            tags.add("zp=127")
        elif abs(t.zp) >= 32:
            tags.add("asym-zp")
    ranks = {len(t.shape) for t in [*data_in, y]}
    if 1 in ranks:
        tags.add("rank-1")
    elif op.name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "MAX_POOL_2D",
                         "AVERAGE_POOL_2D") and ranks - {4}:
        tags.add("batch-free" if any(len(t.shape) in (2, 3) for t in data_in) else "rank-5+")
    return tags


def classify(g: Graph, model_c: str, intent: dict[int, set[str]] | None = None
             ) -> list[LayerPath]:
    """Per operator of ``g`` (the IR of the model ``model_c`` was generated from): its
    label, kernel path and regimes (``intent``: the generator's tags per operator)."""
    structs = _structs(model_c)
    for m in re.finditer(r"static const td_lstm_params (td_p\d+) = \{(.*?)\n\};", model_c,
                         re.S):
        structs.setdefault(m.group(1), {})["_text"] = m.group(2)
    calls = {int(m.group(1)): m.group(3) for m in _CALL.finditer(model_c)}
    for m in _TRANSPOSED.finditer(model_c):  # the kernel's call between the transpositions
        calls[int(m.group(1))] = "transposed:" + m.group(2)
    for m in _BANDED.finditer(model_c):  # inside a patch stage's band loop
        calls[int(m.group(1))] = "patched:" + (m.group(2) or m.group(3))
    out = []
    for op in g.ops:
        call = calls.get(op.index, "")
        how = call.split(":", 1)[0] if call.startswith(("transposed:", "patched:")) else ""
        path = _path(call.removeprefix(how + ":") if how else call, structs, op.index)
        tags = layer_regimes(g, op) | set((intent or {}).get(op.index, set()))
        tags |= {how} if how else set()
        tags -= {"per-channel", "per-tensor"} if op.name not in WEIGHTED else set()
        out.append(LayerPath(op.index, op_label(g, op), path, tags))
    return out
