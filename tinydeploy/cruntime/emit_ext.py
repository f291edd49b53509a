"""Extension kernels of the C runtime: SUB, MAXIMUM/MINIMUM, STRIDED_SLICE, TRANSPOSE (as a
strided gather), TRANSPOSE_CONV, EXPAND_DIMS/SQUEEZE, UNIDIRECTIONAL_SEQUENCE_LSTM (int8)
and the 16x8 variants (int16 activations, int8 weights) of FULLY_CONNECTED, CONV_2D,
DEPTHWISE_CONV_2D, ADD, SUB, MUL, PAD, LEAKY_RELU, RESHAPE, QUANTIZE and TRANSPOSE.

Hooked into the int8 emitter (``emit.py``) and the graph check (``graph.py``) through three
functions: ``ext_reason(g, op)`` (None when an extension kernel runs ``op``, else why not;
defined with its op tables in ``support.py``, below the graph check), ``emit(em, op, p)``
(the C statement) and ``scratch_bytes(g, op)`` (arena scratch). Every number is computed as
TFLite Micro's kernel Prepare computes it; kernels are in ``firmware/td_kernels_ext.c``,
``td_kernels_int16.c`` (fast paths: ``emit_int16.py``, ``td_kernels_int16_fast.c``) and
``td_kernels_lstm.c``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..c_names import reserved_safe
from ..errors import TinyDeployError
from . import quant
from .ctext import c_struct as _struct
from .emit_base import (
    SCRATCH_ID,
    _const,
    _nhwc,
    _out_size,
    _pad_total,
    _per_channel,
    _ptr,
    _ref,
    _reject,
    pad_fields,
)
from .emit_gather import ES as _ES
from .emit_gather import GATHER_OPS, gather_fields, permute_fields, slice_copy_plan
from .emit_int16 import (
    conv16_plan,
    conv16_scratch_bytes,
    dw16_rows,
    emit_conv16,
    emit_dw16,
    emit_fc16,
    fc16_fast,
)
from .emit_lstm import emit_lstm
from .graph import FIX_TFLM, Graph, Op, Tensor
from .support import EXT_OPS, ext_reason

if TYPE_CHECKING:
    from .emit import Emitter

__all__ = ["ALIAS_OPS", "EXT_KERNEL_FILES", "EXT_KERNEL_SOURCES", "EXT_OPS", "emit",
           "ext_reason", "reserved_safe", "scratch_bytes", "sigmoid_table_decl",
           "slice_copy_plan", "state_decls"]

EXT_KERNEL_SOURCES = ("td_kernels_ext.c", "td_kernels_int16.c", "td_kernels_int16_fast.c",
                      "td_kernels_lstm.c")
EXT_KERNEL_FILES = ("td_kernels_ext.h", *EXT_KERNEL_SOURCES)
ALIAS_OPS = ("RESHAPE", "EXPAND_DIMS", "SQUEEZE")  # output = input bytes (may share storage)
_RANGE = {"INT8": (-128, 127), "INT16": (-32768, 32767), "INT32": (-(1 << 31), (1 << 31) - 1)}


def scratch_bytes(g: Graph, op: Op) -> int:
    """Arena bytes the operator needs for the duration of its call (0: none)."""
    if ext_reason(g, op) is not None:
        return 0
    if op.name == "CONV_2D":  # 16x8: the fast path's im2col of two windows
        return conv16_scratch_bytes(g, op)
    if op.name == "TRANSPOSE_CONV":  # int32 sums for int8 (as TFLM), int64 for 16x8
        return (8 if g.t(op.outputs[0]).dtype == "INT16" else 4) * g.t(op.outputs[0]).size
    return 0


def state_decls(g: Graph) -> list[dict[str, Any]]:
    """Variable (state) tensors: static arrays that td_reset() sets to TFLM's reset value
    (the zero point for int8, 0 otherwise)."""
    out = []
    for t in g.tensors:
        if t.variable and any(t.index in op.inputs for op in g.ops):
            ctype = {"INT8": "int8_t", "INT16": "int16_t"}.get(t.dtype)
            if ctype is None:
                raise TinyDeployError("model_rejected", path=g.path,
                                      problem=f"state tensor '{t.name}' is {t.dtype}",
                                      fix=FIX_TFLM)
            out.append({"index": t.index, "name": _safe_comment(t.name), "dtype": t.dtype,
                        "ctype": ctype, "size": max(t.size, 1),
                        "reset": t.zp if t.dtype == "INT8" else 0})
    return out


def _safe_comment(text: str) -> str:
    safe = "".join(c if 32 <= ord(c) < 127 else "?" for c in text)
    return safe.replace("*/", "* /").replace("/*", "/ *")[:80]


def sigmoid_table_decl() -> str:
    """td_sigmoid_table: the 256-entry table TFLM's int16 LOGISTIC/TANH interpolate in."""
    path = Path(__file__).with_name("sigmoid_table.json")
    values = json.loads(path.read_text())["values"]
    rows = [", ".join(str(v) for v in values[i:i + 16]) for i in range(0, 256, 16)]
    return ("const uint16_t td_sigmoid_table[256] = {\n  " + ",\n  ".join(rows) + "\n};")


def _act_range(g: Graph, op: Op, y: Tensor) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8 or int16 outputs."""
    lo, hi = _RANGE[y.dtype]
    a = int(getattr(op.options, "fusedActivationFunction", 0) or 0)
    if a == 0:
        return lo, hi

    def q(v: float) -> int:
        return quant.quantize_value(v, y.scale, y.zp)

    if a == 1:
        return max(lo, q(0.0)), hi
    if a == 3:
        return max(lo, q(0.0)), min(hi, q(6.0))
    if a == 2:
        return max(lo, q(-1.0)), min(hi, q(1.0))
    raise _reject(g, f"{op.name}: fused activation {a} is not supported")


# --- dispatcher ------------------------------------------------------------------------
def emit(em: Emitter, op: Op, p: str) -> str | None:
    """The C statement for ``op`` if an extension kernel runs it, else None."""
    if ext_reason(em.g, op) is not None:
        return None
    fn = _EMITTERS.get(op.name)
    if fn is None:  # pragma: no cover - ext_reason and the table agree
        return None
    return str(fn(em, op, p))


def _alias(em: Emitter, op: Op, p: str) -> str:
    x = em.g.t(op.inputs[0])
    src, dst = _ref(em, op.inputs[0]), em.loc(op.outputs[0])
    if src == dst:
        return f"/* {op.name} {op.index}: in place */"
    return f"td_copy({x.nbytes}, {src}, {dst});"


def _binary_fields(em: Emitter, op: Op) -> dict[str, object]:
    return em._binary_shape(op)


def _add_sub(em: Emitter, op: Op, p: str) -> str:
    g = em.g
    a, b, y = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    left_shift = 15 if y.dtype == "INT16" else 20
    # double(in1) / double(2 * max): what the TFLM runtime computes (bit-exact with the
    # tflite-micro Python runtime on int8 and int16 SUB; 90b983c2's sub_common.cc reads as
    # float32 arithmetic for SUB, which the runtime does not reproduce)
    twice_d = 2.0 * max(a.scale, b.scale)
    r1, r2 = a.scale / twice_d, b.scale / twice_d
    ro = twice_d / ((1 << left_shift) * y.scale)
    m1, s1 = quant.quantize_multiplier(r1)
    m2, s2 = quant.quantize_multiplier(r2)
    mo, so = quant.quantize_multiplier(ro)
    lo, hi = _act_range(g, op, y)
    fields = {**_binary_fields(em, op), "in1_offset": -a.zp, "in2_offset": -b.zp,
              "out_offset": y.zp, "left_shift": left_shift, "in1_mult": m1, "in1_shift": s1,
              "in2_mult": m2, "in2_shift": s2, "out_mult": mo, "out_shift": so,
              "act_min": lo, "act_max": hi}
    return _binary_call(em, op, p, fields, "TD_BIN_SUB" if op.name == "SUB" else "TD_BIN_ADD")


def _binary_call(em: Emitter, op: Op, p: str, fields: dict[str, object], kind: str) -> str:
    em.decls.append(_struct("td_binary_params", p, fields))
    es = _ES[em.g.t(op.outputs[0]).dtype]
    return (f"td_binary_ext(&{p}, {kind}, {es}, {_ref(em, op.inputs[0])}, "
            f"{_ref(em, op.inputs[1])}, {em.loc(op.outputs[0])});")


def _mul16(em: Emitter, op: Op, p: str) -> str:
    g = em.g
    a, b, y = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    mo, so = quant.quantize_multiplier(a.scale * b.scale / y.scale)
    lo, hi = _act_range(g, op, y)
    fields = {**_binary_fields(em, op), "in1_offset": -a.zp, "in2_offset": -b.zp,
              "out_offset": y.zp, "left_shift": 0, "in1_mult": 0, "in1_shift": 0,
              "in2_mult": 0, "in2_shift": 0, "out_mult": mo, "out_shift": so,
              "act_min": lo, "act_max": hi}
    return _binary_call(em, op, p, fields, "TD_BIN_MUL")


def _max_min(em: Emitter, op: Op, p: str) -> str:
    g = em.g
    a, b, y = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    for t in (a, b):  # TFLM compares raw values: the quantization must agree
        if (t.scale, t.zp) != (y.scale, y.zp):
            raise _reject(g, f"{op.name} input '{t.name}' quantization differs from its "
                             "output's")
    fields = {**_binary_fields(em, op), "in1_offset": 0, "in2_offset": 0, "out_offset": 0,
              "left_shift": 0, "in1_mult": 0, "in1_shift": 0, "in2_mult": 0,
              "in2_shift": 0, "out_mult": 0, "out_shift": 0,
              "act_min": _RANGE[y.dtype][0], "act_max": _RANGE[y.dtype][1]}
    return _binary_call(em, op, p, fields,
                        "TD_BIN_MAX" if op.name == "MAXIMUM" else "TD_BIN_MIN")


def _gathered(em: Emitter, op: Op, p: str) -> str:
    """STRIDED_SLICE, TRANSPOSE, RESIZE_NEAREST_NEIGHBOR: one strided gather (emit_gather);
    a TRANSPOSE with short output rows: td_permute (emit_gather.permute_fields)."""
    perm = permute_fields(em.g, op)
    if perm is not None:
        em.decls.append(_struct("td_permute_params", p, perm))
        return f"td_permute(&{p}, {_ref(em, op.inputs[0])}, {em.loc(op.outputs[0])});"
    fields = gather_fields(em.g, op)
    em.decls.append(_struct("td_strided_slice_params", p, fields))
    return f"td_strided_slice(&{p}, {_ref(em, op.inputs[0])}, {em.loc(op.outputs[0])});"


def _transpose_conv(em: Emitter, op: Op, p: str) -> str:
    g = em.g
    w, x = g.t(op.inputs[1]), g.t(op.inputs[2])
    y = g.t(op.outputs[0])
    bias = g.t(op.inputs[3]) if len(op.inputs) > 3 and op.inputs[3] >= 0 else None
    n, ih, iw, ic = _nhwc(x)
    _, oh, ow, oc = _nhwc(y)
    woc, fh, fw, wic = _nhwc(w)
    if w.dtype != "INT8" or w.data is None or woc != oc or wic != ic:
        raise _reject(g, "TRANSPOSE_CONV needs constant int8 weights [out_c, h, w, in_c]")
    in16 = x.dtype == "INT16"
    if bias is not None and bias.dtype != ("INT64" if in16 else "INT32"):
        raise _reject(g, f"TRANSPOSE_CONV bias is {bias.dtype}")
    o = op.options
    sh, sw = int(o.strideH), int(o.strideW)
    pad = int(o.padding)
    # TFLM: ComputePaddingHeightWidth with the OUTPUT size as the "input" size
    pad_h = _pad_total(sh, 1, oh, fh, _out_size(pad, oh, fh, sh, 1))
    pad_w = _pad_total(sw, 1, ow, fw, _out_size(pad, ow, fw, sw, 1))
    mults, shifts = _per_channel(x, w, y, oc)
    lo, hi = _act_range(g, op, y)
    fields = {"batches": n, "in_h": ih, "in_w": iw, "in_c": ic, "out_h": oh, "out_w": ow,
              "out_c": oc, "f_h": fh, "f_w": fw, "stride_h": sh, "stride_w": sw,
              "pad_h": pad_h, "pad_w": pad_w, "out_offset": y.zp,
              "in_offset": 0 if in16 else -x.zp,  # TFLM's 16x8 kernel has no input offset
              "act_min": lo, "act_max": hi, "in16": int(in16), "filter": _const(em, w),
              "bias": _const(em, bias) if bias is not None else 0,
              "mult": em.int_array(p + "_mult", mults),
              "shift": em.int_array(p + "_shift", shifts)}
    em.decls.append(_struct("td_tconv_params", p, fields))
    fn, acc = ("td_transpose_conv", "int64_t") if in16 else ("td_transpose_conv8", "int32_t")
    scratch = f"({acc} *)(void *){em.loc(_scratch_id(op))}"
    return f"{fn}(&{p}, {_ref(em, op.inputs[2])}, {em.loc(op.outputs[0])}, {scratch});"


def _scratch_id(op: Op) -> int:
    return SCRATCH_ID + op.index


def _conv16(em: Emitter, op: Op, p: str) -> str:
    depthwise = op.name == "DEPTHWISE_CONV_2D"
    fast = not depthwise and conv16_plan(em.g, op) is not None
    fields = _conv16_fields(em, op, p, depthwise, plain_filter=not fast)
    io = (f"{_ptr(em, op.inputs[0], 'int16_t', True)}, "
          f"{_ptr(em, op.outputs[0], 'int16_t', False)});")
    if fast:  # int32 sums proven exact (emit_int16.py)
        scratch = em.loc(_scratch_id(op)) if scratch_bytes(em.g, op) else "0"
        return emit_conv16(em, op, p, fields[0], fields[1], scratch) + io
    em.decls.append(_struct("td_conv_params", p, fields[0]))
    if depthwise and fields[0]["depth_mult"] == 1 and dw16_rows(em.g, op) is not None:
        return emit_dw16(em, op, p, fields[1]) + io
    fn = "td_depthwise_conv2d_16" if depthwise else "td_conv2d_16"
    return f"{fn}(&{p}, {fields[1]}, " + io


def _conv16_fields(em: Emitter, op: Op, p: str, depthwise: bool, plain_filter: bool = True
                   ) -> tuple[dict[str, object], int]:
    g = em.g
    x, y, w = g.t(op.inputs[0]), g.t(op.outputs[0]), g.t(op.inputs[1])
    bias = g.t(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    n, ih, iw, ic = _nhwc(x)
    _, oh, ow, oc = _nhwc(y)
    _, fh, fw, wc = _nhwc(w)
    if w.dtype != "INT8" or w.data is None or (bias is not None and
                                                bias.dtype not in ("INT32", "INT64")):
        raise _reject(g, f"{op.name} 16x8 needs constant int8 weights, int32/int64 bias")
    if not depthwise and wc != ic:
        raise _reject(g, "grouped CONV_2D is not supported")
    o = op.options
    sh, sw = int(o.strideH), int(o.strideW)
    dh, dw = int(o.dilationHFactor or 1), int(o.dilationWFactor or 1)
    for insz, f, s, d, outsz in ((ih, fh, sh, dh, oh), (iw, fw, sw, dw, ow)):
        if _out_size(int(o.padding), insz, f, s, d) != outsz:
            raise _reject(g, f"{op.name} output shape does not match padding")
    mults, shifts = _per_channel(x, w, y, oc)
    lo, hi = _act_range(g, op, y)
    bias64 = int(bias is not None and bias.dtype == "INT64")
    if bias is None:  # TFLM: the options' quantized_bias_type decides (int32 = 2)
        bias64 = int(int(getattr(o, "quantizedBiasType", 0) or 0) != 2)
    fields = {"batches": n, "in_h": ih, "in_w": iw, "in_c": ic, "out_h": oh, "out_w": ow,
              "out_c": oc, "f_h": fh, "f_w": fw, "stride_h": sh, "stride_w": sw,
              "dil_h": dh, "dil_w": dw,
              "pad_h": _pad_total(sh, dh, ih, fh, oh), "pad_w": _pad_total(sw, dw, iw, fw, ow),
              "depth_mult": oc // ic if depthwise else 1,
              "in_offset": -x.zp, "out_offset": y.zp, "act_min": lo, "act_max": hi,
              "filter": _const(em, w) if plain_filter else 0,
              "bias": (f"(const int32_t *)(const void *){_const(em, bias)}"
                       if bias is not None else 0),
              "mult": em.int_array(p + "_mult", mults),
              "shift": em.int_array(p + "_shift", shifts)}
    return fields, bias64


def _fc16(em: Emitter, op: Op, p: str) -> str:
    g = em.g
    x, y, w = g.t(op.inputs[0]), g.t(op.outputs[0]), g.t(op.inputs[1])
    bias = g.t(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    if w.dtype != "INT8" or w.data is None or len(w.shape) != 2:
        raise _reject(g, "FULLY_CONNECTED 16x8 needs constant 2-D int8 weights")
    if bias is not None and bias.dtype not in ("INT32", "INT64"):
        raise _reject(g, f"FULLY_CONNECTED bias is {bias.dtype}")
    oc, accum = w.shape
    per_channel = len(w.scales) > 1
    mults, shifts = _per_channel(x, w, y, oc) if per_channel else (
        [quant.quantize_multiplier(x.scale * w.scale / y.scale)[0]],
        [quant.quantize_multiplier(x.scale * w.scale / y.scale)[1]])
    lo, hi = _act_range(g, op, y)
    fast = fc16_fast(g, op)
    fields = {"batches": x.size // accum, "accum": accum, "out_c": oc, "in_offset": -x.zp,
              "filter_offset": -w.zp, "out_offset": y.zp, "act_min": lo, "act_max": hi,
              "per_channel": int(per_channel), "filter": 0 if fast else _const(em, w),
              "bias": (f"(const int32_t *)(const void *){_const(em, bias)}"
                       if bias is not None else 0),
              "mult": em.int_array(p + "_mult", mults),
              "shift": em.int_array(p + "_shift", shifts)}
    if bias is None:  # TFLM: the options' quantized_bias_type decides (int32 = 2)
        bias64 = int(int(getattr(op.options, "quantizedBiasType", 0) or 0) != 2)
    else:
        bias64 = int(bias.dtype == "INT64")
    io = (f"{_ptr(em, op.inputs[0], 'int16_t', True)}, "
          f"{_ptr(em, op.outputs[0], 'int16_t', False)});")
    if fast:  # int32 sums proven exact (emit_int16.py)
        return emit_fc16(em, op, p, fields, bias64) + io
    em.decls.append(_struct("td_fc_params", p, fields))
    return f"td_fully_connected_16(&{p}, {bias64}, " + io


def _quantize(em: Emitter, op: Op, p: str) -> str:
    g = em.g
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    mult, shift = quant.quantize_multiplier(x.scale / y.scale)
    lo, hi = _RANGE[y.dtype]
    fields = {"size": x.size, "in_zp": x.zp, "out_zp": y.zp, "mult": mult, "shift": shift,
              "act_min": lo, "act_max": hi}
    em.decls.append(_struct("td_requant_params", p, fields))
    return (f"td_requantize_ext(&{p}, {_ES[x.dtype]}, {_ES[y.dtype]}, "
            f"{_ref(em, op.inputs[0])}, {em.loc(op.outputs[0])});")


def _pad16(em: Emitter, op: Op, p: str) -> str:
    em.decls.append(_struct("td_pad_params", p, pad_fields(em.g, op)))
    return f"td_pad_ext(&{p}, 2, {_ref(em, op.inputs[0])}, {em.loc(op.outputs[0])});"


def _leaky16(em: Emitter, op: Op, p: str) -> str:
    g = em.g
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    fields = {"size": x.size, "in_zp": x.zp, "out_zp": y.zp,
              **quant.leaky_relu_params(x.scale, y.scale, op.options.alpha)}
    em.decls.append(_struct("td_leaky_relu_params", p, fields))
    return (f"td_leaky_relu_16(&{p}, {_ptr(em, op.inputs[0], 'int16_t', True)}, "
            f"{_ptr(em, op.outputs[0], 'int16_t', False)});")


_EMITTERS: dict[str, Any] = {
    "SUB": _add_sub, "ADD": _add_sub, "MUL": _mul16, "MAXIMUM": _max_min,
    "MINIMUM": _max_min, "TRANSPOSE_CONV": _transpose_conv,
    **{name: _gathered for name in GATHER_OPS},
    "EXPAND_DIMS": _alias, "SQUEEZE": _alias, "RESHAPE": _alias,
    "CONV_2D": _conv16, "DEPTHWISE_CONV_2D": _conv16, "FULLY_CONNECTED": _fc16,
    "QUANTIZE": _quantize, "PAD": _pad16, "LEAKY_RELU": _leaky16,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": emit_lstm,
}
