"""Consistency of a model before any C is generated: what the emitters and kernels assume.

A ``.tflite`` file that parses may still contradict itself (a corrupted byte, a hand edit):
a shape that does not match its buffer or its operator, an index outside a table, a
quantization array of the wrong length, a scale of 0 or NaN. The emitters (``emit*.py``)
and kernels (``firmware/td_kernels*.c``) trust these facts: such a file could crash the
generator or yield C that reads out of bounds. ``validate(g)`` proves what they rely on:

* tables: inputs present where required (-1 only for optional ones); every tensor read is
  a model input, a constant, a state tensor or an earlier operator's output; outputs
  written once, never onto a constant, input or state tensor;
* tensors: rank <= 6, dimensions >= 1 (>= 0 for shape/index parameters), at most 2 GiB,
  constant buffers of exactly shape x dtype-size bytes (``check_buffer``);
* quantization: activations with one finite scale > 0 and a zero point in the dtype's
  range; filters with one finite scale >= 0 and zero point per output channel (or one);
  one int32/int64 bias value per channel;
* operators: TFLM's Prepare shape rules for every operator of the C runtime (filter vs
  input channels, output size vs padding/stride/dilation, FC depth, broadcasting, RESHAPE,
  CONCATENATION, PAD, STRIDED_SLICE, MEAN, LSTM weights and state), options of the
  operator's own type, requantization multipliers in TFLM's range (shift <= 30; <= 14 for
  the 16x8 64-bit form), int16 MUL zero points and 16x8 int64 biases without overflow.

Each violation raises one ``model_rejected`` error naming the operator or tensor and saying
that the file is inconsistent. Operators outside the C runtime get the table checks only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import TinyDeployError
from .support import lstm_problem

if TYPE_CHECKING:  # graph.py calls this module while it reads a model
    from .graph import Graph, Op, Tensor

__all__ = ["FIX", "check_buffer", "validate", "validate_operators", "validate_tables"]

FIX = ("the file is corrupted or was edited inconsistently: re-export it from the original "
       "model (e.g. `tinydeploy quantize MODEL.keras --data DATA.npz --out DIR`)")
MAX_RANK = 6
MAX_BYTES = (1 << 31) - 1  # the kernels' sizes and offsets are int32
MAX_SHIFT = 30  # TFLM's QuantizeMultiplier / MultiplyByQuantizedMultiplier range
MAX_SHIFT_64 = 14  # MultiplyByQuantizedMultiplier(int64) rounds with 1 << (14 - shift)
DTYPE_RANGE = {"INT8": (-128, 127), "INT16": (-32768, 32767)}  # activation zero points
WEIGHT_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"})

# (fewest inputs, most inputs (None: any), optional input slots); one output each
ARITY: dict[str, tuple[int, int | None, tuple[int, ...]]] = {
    "FULLY_CONNECTED": (2, 3, (2,)), "CONV_2D": (2, 3, (2,)),
    "DEPTHWISE_CONV_2D": (2, 3, (2,)), "TRANSPOSE_CONV": (3, 4, (3,)),
    "MAX_POOL_2D": (1, 1, ()), "AVERAGE_POOL_2D": (1, 1, ()), "SOFTMAX": (1, 1, ()),
    "LOGISTIC": (1, 1, ()), "TANH": (1, 1, ()), "RELU": (1, 1, ()), "RELU6": (1, 1, ()),
    "LEAKY_RELU": (1, 1, ()), "HARD_SWISH": (1, 1, ()), "QUANTIZE": (1, 1, ()),
    "DEQUANTIZE": (1, 1, ()), "RESHAPE": (1, 2, (1,)), "EXPAND_DIMS": (2, 2, ()),
    "SQUEEZE": (1, 1, ()), "ADD": (2, 2, ()), "SUB": (2, 2, ()), "MUL": (2, 2, ()),
    "MAXIMUM": (2, 2, ()), "MINIMUM": (2, 2, ()), "CONCATENATION": (1, None, ()),
    "PAD": (2, 2, ()), "MEAN": (2, 2, ()), "STRIDED_SLICE": (4, 4, ()),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": (24, 24, (9, 10, 11, 16, 17, 20, 21, 22, 23)),
}
# input slots that are parameters (shapes, axes, paddings, slice bounds), not data
PARAMS: dict[str, tuple[int, ...]] = {
    "RESHAPE": (1,), "EXPAND_DIMS": (1,), "PAD": (1,), "MEAN": (1,),
    "STRIDED_SLICE": (1, 2, 3), "TRANSPOSE_CONV": (0,),
}
# builtin options each operator reads
OPTIONS_REQUIRED = {
    "CONV_2D": "Conv2DOptionsT", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptionsT",
    "MAX_POOL_2D": "Pool2DOptionsT", "AVERAGE_POOL_2D": "Pool2DOptionsT",
    "SOFTMAX": "SoftmaxOptionsT", "CONCATENATION": "ConcatenationOptionsT",
    "STRIDED_SLICE": "StridedSliceOptionsT", "TRANSPOSE_CONV": "TransposeConvOptionsT",
    "LEAKY_RELU": "LeakyReluOptionsT",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "UnidirectionalSequenceLSTMOptionsT",
}
# operators whose options the emitters may read (fused activation): absent or their own
OPTIONS_OPTIONAL = {"FULLY_CONNECTED": "FullyConnectedOptionsT", "ADD": "AddOptionsT",
                    "SUB": "SubOptionsT", "MUL": "MulOptionsT"}


class _Inconsistent(Exception):
    """One violation; ``validate`` turns it into the ``model_rejected`` error."""


def _label(text: str) -> str:
    """A name safe for a one-line message (names come from the file, maybe corrupted)."""
    s = "".join(c if c.isprintable() else "?" for c in text)
    return s if len(s) <= 60 else s[:57] + "..."


def tensor_label(t: Tensor) -> str:
    return f"tensor {t.index} '{_label(t.name)}'"


def _error(path: str, where: str, problem: str) -> TinyDeployError:
    return TinyDeployError("model_rejected", path=path,
                           problem=f"inconsistent model, {where}: {problem}", fix=FIX)


def check_buffer(path: str, index: int, name: str, shape: tuple[int, ...], dtype: str,
                 itemsize: int, nbytes: int) -> None:
    """Raise ``model_rejected`` unless a constant buffer of ``nbytes`` holds exactly the
    tensor's elements (called by ``graph.read_graph`` before the data is shaped)."""
    where = f"tensor {index} '{_label(name)}'"
    if any(d < 0 for d in shape):
        raise _error(path, where, f"negative dimension in shape {list(shape)}")
    elements = math.prod(shape)
    if nbytes != elements * itemsize:
        raise _error(path, where, f"its buffer holds {nbytes} bytes but shape {list(shape)} "
                                  f"of {dtype} needs {elements * itemsize}")


def validate(g: Graph) -> None:
    """Raise one ``model_rejected`` error for the first inconsistency (see the module)."""
    validate_tables(g)
    validate_operators(g)


def validate_tables(g: Graph) -> None:
    """The first half of ``validate``: tensor tables, data flow, model I/O tensors, and
    enough inputs and an output on every operator to name its dtypes (``graph.py`` then
    refuses, by name, the operators the C runtime lacks before ``validate_operators``)."""
    try:
        _tables(g)
        for op in g.ops:
            lo = ARITY.get(op.name, (0, None, ()))[0]
            if len(op.inputs) < lo or (op.name in ARITY and not op.outputs):
                raise _Inconsistent(f"operator {op.index} {op.name}: {len(op.inputs)} inputs "
                                    f"and {len(op.outputs)} outputs (expected at least {lo} "
                                    "and 1)")
    except _Inconsistent as exc:
        raise _error(g.path, "the model", str(exc)) from None


def validate_operators(g: Graph) -> None:
    """The second half of ``validate``: every operator of the C runtime against its rules."""
    for op in g.ops:
        if op.name in ARITY:
            try:
                _operator(g, op)
            except _Inconsistent as exc:
                raise _error(g.path, f"operator {op.index} {op.name}", str(exc)) from None


# --- tables and data flow ---------------------------------------------------------------
def _tables(g: Graph) -> None:
    n = len(g.tensors)
    for i in (*g.inputs, *g.outputs):
        if not 0 <= i < n:
            raise _Inconsistent(f"model input/output tensor index {i} outside the "
                                f"{n} tensors")
    written: dict[int, int] = {}
    for i in (*g.inputs, *g.outputs):  # used by no operator, they still size the C I/O
        _tensor(g, g.t(i), data=True, quantized=True)
    for i in g.inputs:
        t = g.t(i)
        if t.is_const or t.variable:
            raise _Inconsistent(f"model input {tensor_label(t)} is a constant or state tensor")
        written[i] = -1
    for op in g.ops:
        where = f"operator {op.index} {op.name}: "
        for i in (*op.inputs, *op.outputs):
            if not -1 <= i < n:
                raise _Inconsistent(where + f"tensor index {i} outside the {n} tensors")
        for i in op.inputs:
            if i >= 0 and not g.t(i).is_const and not g.t(i).variable and i not in written:
                raise _Inconsistent(where + f"reads {tensor_label(g.t(i))} before any "
                                            "operator writes it (not a model input either)")
        for i in op.outputs:
            t = g.t(i)
            if i < 0:
                raise _Inconsistent(where + "an output tensor index is -1")
            if i in written or t.is_const or t.variable:
                raise _Inconsistent(where + f"writes {tensor_label(t)}, which is a "
                                            "constant, a state tensor, a model input or "
                                            "written by another operator")
            if i in op.inputs:
                raise _Inconsistent(where + f"reads and writes {tensor_label(t)}")
            written[i] = op.index
    for i in g.outputs:
        if written.get(i, -1) < 0:
            raise _Inconsistent(f"model output {tensor_label(g.t(i))} is written by no "
                                "operator")


# --- operators --------------------------------------------------------------------------
def _operator(g: Graph, op: Op) -> None:
    lo, hi, optional = ARITY[op.name]
    n_in = len(op.inputs)
    if n_in < lo or (hi is not None and n_in > hi) or len(op.outputs) != 1:
        want = f"{lo}" if lo == hi else f"{lo} to {hi if hi is not None else 'any'}"
        raise _Inconsistent(f"{n_in} inputs and {len(op.outputs)} outputs (expected {want} "
                            "inputs and 1 output)")
    for k, i in enumerate(op.inputs):
        if i < 0 and k not in optional:
            raise _Inconsistent(f"required input {k} is missing (index -1)")
    _options(op)
    params = PARAMS.get(op.name, ())
    for k, i in enumerate((*op.inputs, *op.outputs)):
        if i >= 0:
            filt = op.name in WEIGHT_OPS and k == 1  # per-channel: _weights
            _tensor(g, g.t(i), data=k not in params or k >= n_in, quantized=not filt)
    if op.name in WEIGHT_OPS:
        _weights(g, op)
    check = _CHECKS.get(op.name)
    if check is not None:
        check(g, op)
    _multipliers(g, op)


def _options(op: Op) -> None:
    name = type(op.options).__name__ if op.options is not None else None
    if op.name in OPTIONS_REQUIRED:
        if name != OPTIONS_REQUIRED[op.name]:
            raise _Inconsistent(f"options of type {name or 'none'}, expected "
                                f"{OPTIONS_REQUIRED[op.name][:-1]}")
    elif op.name in OPTIONS_OPTIONAL and name not in (None, OPTIONS_OPTIONAL[op.name]):
        raise _Inconsistent(f"options of type {name}, expected "
                            f"{OPTIONS_OPTIONAL[op.name][:-1]} or none")


def _tensor(g: Graph, t: Tensor, data: bool, quantized: bool) -> None:
    """Rank, dimensions, size and (int8/int16 data, ``quantized``: per-tensor)
    quantization of one tensor."""
    if len(t.shape) > MAX_RANK:
        raise _Inconsistent(f"{tensor_label(t)} has rank {len(t.shape)} > {MAX_RANK}")
    if any(d < (1 if data else 0) for d in t.shape):
        raise _Inconsistent(f"{tensor_label(t)} has shape {list(t.shape)} (dimensions must "
                            f"be >= {1 if data else 0})")
    elements = math.prod(t.shape)  # Python ints: Tensor.size may wrap for absurd shapes
    if elements * t.itemsize > MAX_BYTES:
        raise _Inconsistent(f"{tensor_label(t)} has {elements} elements: more than 2 GiB")
    if not data or not quantized or t.dtype not in DTYPE_RANGE:
        return
    if len(t.scales) != 1 or len(t.zero_points) > 1:
        raise _Inconsistent(f"{tensor_label(t)} ({t.dtype}) has "
                            f"{len(t.scales)} scales and {len(t.zero_points)} zero points "
                            "(expected 1 each)")
    _scale(t, t.scales[0], positive=True)
    lo, hi = DTYPE_RANGE[t.dtype]
    if not lo <= t.zp <= hi:
        raise _Inconsistent(f"{tensor_label(t)} has zero point {t.zp}, outside {t.dtype} "
                            f"({lo}..{hi})")


def _scale(t: Tensor, s: float, positive: bool) -> None:
    if not math.isfinite(s) or s < 0 or (positive and s == 0):
        raise _Inconsistent(f"{tensor_label(t)} has scale {s:g} (must be finite and "
                            f"{'> 0' if positive else '>= 0'})")


def _channels(g: Graph, op: Op) -> int:
    """The output channel count of a conv / FC / transpose conv (its filter's)."""
    w = g.t(op.inputs[1])
    if op.name == "DEPTHWISE_CONV_2D":
        return w.shape[-1] if w.shape else 1
    return w.shape[0] if w.shape else 1


def _weights(g: Graph, op: Op) -> None:
    """Filter and bias of conv / FC / transpose conv: constant, one scale and zero point
    per output channel (or one), finite scales, a bias value per channel."""
    w = g.t(op.inputs[1])
    oc = _channels(g, op)
    if w.dtype == "INT8" and w.is_const:
        if len(w.scales) not in (1, oc) or len(w.zero_points) not in (0, 1, len(w.scales)):
            raise _Inconsistent(f"filter {tensor_label(w)} has {len(w.scales)} scales and "
                                f"{len(w.zero_points)} zero points for {oc} output channels")
        for s in w.scales:
            _scale(w, s, positive=False)
        if any(not -128 <= z <= 127 for z in w.zero_points):
            raise _Inconsistent(f"filter {tensor_label(w)} has a zero point outside int8")
    k_bias = 3 if op.name == "TRANSPOSE_CONV" else 2
    if len(op.inputs) > k_bias and op.inputs[k_bias] >= 0:
        b = g.t(op.inputs[k_bias])
        if b.size != oc:
            raise _Inconsistent(f"bias {tensor_label(b)} has {b.size} values for {oc} "
                                "output channels")
        x = g.t(op.inputs[2] if op.name == "TRANSPOSE_CONV" else op.inputs[0])
        if x.dtype in DTYPE_RANGE and b.dtype not in ("INT32", "INT64"):
            raise _Inconsistent(f"bias {tensor_label(b)} is {b.dtype} in a quantized layer "
                                "(int32 or int64)")


def _rank(t: Tensor, rank: int) -> tuple[int, ...]:
    if len(t.shape) != rank:
        raise _Inconsistent(f"{tensor_label(t)} has shape {list(t.shape)}, expected "
                            f"rank {rank}")
    return t.shape


def _need(cond: bool, problem: str) -> None:
    if not cond:
        raise _Inconsistent(problem)


def _out_size(padding: int, in_size: int, f: int, stride: int, dil: int) -> int:
    eff = (f - 1) * dil + 1
    if padding == 0:  # SAME
        return (in_size + stride - 1) // stride
    return (in_size - eff + stride) // stride


def _window(op: Op, x: Sequence[int], y: Sequence[int], fh: int, fw: int,
            dilated: bool = True) -> None:
    """Strides, dilations, padding and the output size of a windowed operator."""
    o = op.options
    sh, sw = int(o.strideH), int(o.strideW)
    dh = int(o.dilationHFactor) if dilated else 1
    dw = int(o.dilationWFactor) if dilated else 1
    _need(min(sh, sw, dh, dw) >= 1, f"stride {sh}x{sw}, dilation {dh}x{dw} (must be >= 1)")
    _need(int(o.padding) in (0, 1), f"padding code {o.padding} (SAME 0 or VALID 1)")
    _need(min(fh, fw) >= 1, f"filter {fh}x{fw}")
    want = (_out_size(int(o.padding), x[1], fh, sh, dh),
            _out_size(int(o.padding), x[2], fw, sw, dw))
    _need((y[1], y[2]) == want, f"output {y[1]}x{y[2]} but input {x[1]}x{x[2]}, filter "
                                f"{fh}x{fw}, stride {sh}x{sw}, dilation {dh}x{dw} and "
                                f"{('SAME', 'VALID')[int(o.padding)]} padding give "
                                f"{want[0]}x{want[1]}")


def _io(g: Graph, op: Op) -> tuple[Tensor, Tensor]:
    return g.t(op.inputs[0]), g.t(op.outputs[0])


def _conv(g: Graph, op: Op) -> None:
    x, y = _io(g, op)
    w = g.t(op.inputs[1])
    xs, ys, ws = _rank(x, 4), _rank(y, 4), _rank(w, 4)
    _need(xs[0] == ys[0], f"input batch {xs[0]} but output batch {ys[0]}")
    if op.name == "CONV_2D":
        _need(xs[3] % ws[3] == 0, f"input has {xs[3]} channels but the filter {ws[3]}")
        _need(ys[3] == ws[0], f"output has {ys[3]} channels but the filter {ws[0]}")
    else:
        _need(ws[0] == 1, f"depthwise filter shape {list(ws)} (first dimension must be 1)")
        _need(ys[3] == ws[3] and ws[3] % xs[3] == 0,
              f"input {xs[3]}, filter {ws[3]} and output {ys[3]} channels (output = "
              "filter = input x depth multiplier)")
    _window(op, xs, ys, ws[1], ws[2])


def _transpose_conv(g: Graph, op: Op) -> None:
    shape_t, w, x = (g.t(i) for i in op.inputs[:3])
    y = g.t(op.outputs[0])
    xs, ys, ws = _rank(x, 4), _rank(y, 4), _rank(w, 4)
    _need(xs[0] == ys[0], f"input batch {xs[0]} but output batch {ys[0]}")
    _need(ws[3] == xs[3] and ws[0] == ys[3],
          f"filter {list(ws)} for {xs[3]} input and {ys[3]} output channels")
    o = op.options
    sh, sw, pad = int(o.strideH), int(o.strideW), int(o.padding)
    _need(min(sh, sw) >= 1, f"stride {sh}x{sw} (must be >= 1)")
    _need(pad in (0, 1), f"padding code {pad} (SAME 0 or VALID 1)")
    # the input is what a convolution of the output would give (one less: output padding)
    want = (_out_size(pad, ys[1], ws[1], sh, 1), _out_size(pad, ys[2], ws[2], sw, 1))
    _need(want[0] - 1 <= xs[1] <= want[0] and want[1] - 1 <= xs[2] <= want[1],
          f"input {xs[1]}x{xs[2]} but output {ys[1]}x{ys[2]}, filter {ws[1]}x{ws[2]}, stride "
          f"{sh}x{sw} and {('SAME', 'VALID')[pad]} padding come from {want[0]}x{want[1]}")
    if shape_t.data is not None:
        _need([int(v) for v in shape_t.data.reshape(-1)] == list(ys),
              f"output_shape {shape_t.data.reshape(-1).tolist()} but output tensor "
              f"{list(ys)}")


def _pool(g: Graph, op: Op) -> None:
    x, y = _io(g, op)
    xs, ys = _rank(x, 4), _rank(y, 4)
    _need(xs[0] == ys[0] and xs[3] == ys[3], f"input {list(xs)} and output {list(ys)} "
                                             "differ in batch or channels")
    _window(op, xs, ys, int(op.options.filterHeight), int(op.options.filterWidth),
            dilated=False)


def _fully_connected(g: Graph, op: Op) -> None:
    x, y = _io(g, op)
    w = g.t(op.inputs[1])
    oc, accum = _rank(w, 2)
    _need(x.size % accum == 0, f"input of {x.size} values is no whole number of rows of "
                               f"{accum} (filter {[oc, accum]})")
    _need(y.size == x.size // accum * oc and y.shape[-1:] == (oc,),
          f"output {list(y.shape)} but {x.size // accum} rows x {oc} outputs")


def _same_size(g: Graph, op: Op) -> None:
    x, y = _io(g, op)
    _need(x.size == y.size, f"input {list(x.shape)} and output {list(y.shape)} differ in "
                            "size")


def _softmax(g: Graph, op: Op) -> None:
    _same_size(g, op)
    x, y = _io(g, op)
    _need(x.shape[-1:] == y.shape[-1:], f"input {list(x.shape)} and output "
                                        f"{list(y.shape)} differ in depth")
    beta = float(op.options.beta)
    _need(math.isfinite(beta) and beta > 0, f"beta {beta:g} (must be finite and > 0)")


def _leaky_relu(g: Graph, op: Op) -> None:
    _same_size(g, op)
    alpha = float(op.options.alpha)
    _need(math.isfinite(alpha), f"alpha {alpha:g}")


def _alias(g: Graph, op: Op) -> None:
    x, y = _io(g, op)
    _need(x.dtype == y.dtype and x.size == y.size,
          f"input {x.dtype} {list(x.shape)} and output {y.dtype} {list(y.shape)} differ "
          "(a reshape keeps the bytes)")


def _binary(g: Graph, op: Op) -> None:
    a, b = g.t(op.inputs[0]), g.t(op.inputs[1])
    y = g.t(op.outputs[0])
    rank = len(y.shape)
    _need(len(a.shape) <= rank and len(b.shape) <= rank,
          f"inputs {list(a.shape)} and {list(b.shape)} have more dimensions than the "
          f"output {list(y.shape)}")
    pa = (1,) * (rank - len(a.shape)) + a.shape
    pb = (1,) * (rank - len(b.shape)) + b.shape
    for da, db, dy in zip(pa, pb, y.shape, strict=True):
        _need(da in (1, dy) and db in (1, dy) and dy == max(da, db),
              f"inputs {list(a.shape)} and {list(b.shape)} do not broadcast to the output "
              f"{list(y.shape)}")


def _concatenation(g: Graph, op: Op) -> None:
    y = g.t(op.outputs[0])
    rank = len(y.shape)
    axis = int(op.options.axis)
    _need(rank >= 1 and -rank <= axis < rank, f"axis {axis} for rank {rank}")
    axis %= rank
    total = 0
    for i in op.inputs:
        s = g.t(i).shape
        _need(len(s) == rank and all(s[d] == y.shape[d] for d in range(rank) if d != axis),
              f"input {list(s)} does not fit the output {list(y.shape)} along axis {axis}")
        total += s[axis]
    _need(total == y.shape[axis], f"inputs add up to {total} along axis {axis}, the output "
                                  f"has {y.shape[axis]}")


def _int_values(t: Tensor) -> list[int] | None:
    if t.data is None:
        return None
    _need(t.dtype in ("INT32", "INT64"), f"{tensor_label(t)} is {t.dtype}, expected int32")
    return [int(v) for v in t.data.reshape(-1)]


def _pad(g: Graph, op: Op) -> None:
    x, y = _io(g, op)
    pads = _int_values(g.t(op.inputs[1]))
    if pads is None:
        return  # the emitter refuses non-constant paddings
    rank = len(x.shape)
    _need(len(pads) == 2 * rank and len(y.shape) == rank,
          f"{len(pads)} padding values for input {list(x.shape)}, output {list(y.shape)}")
    _need(min(pads, default=0) >= 0, f"negative padding {pads}")
    want = [x.shape[d] + pads[2 * d] + pads[2 * d + 1] for d in range(rank)]
    _need(list(y.shape) == want, f"output {list(y.shape)}, but input {list(x.shape)} padded "
                                 f"by {pads} is {want}")


def _mean(g: Graph, op: Op) -> None:
    x, y = _io(g, op)
    axes = _int_values(g.t(op.inputs[1]))
    if axes is None:
        return
    rank = len(x.shape)
    _need(all(-rank <= a < rank for a in axes), f"axes {axes} for rank {rank}")
    reduced = {a % rank for a in axes}
    kept = math.prod(x.shape[d] for d in range(rank) if d not in reduced)
    _need(y.size == kept, f"output {list(y.shape)} but input {list(x.shape)} reduced over "
                          f"{sorted(reduced)} has {kept} values")


def _strided_slice(g: Graph, op: Op) -> None:
    x = g.t(op.inputs[0])
    for k in (1, 2, 3):
        values = _int_values(g.t(op.inputs[k]))
        _need(values is None or len(values) == len(x.shape),
              f"slice {('begin', 'end', 'strides')[k - 1]} has {len(values or [])} values "
              f"for rank {len(x.shape)}")


def _lstm(g: Graph, op: Op) -> None:
    if lstm_problem(g, op) is not None:
        return  # outside the int8 LSTM layout: the emitter refuses it by name
    ins = op.inputs
    x, y = g.t(ins[0]), g.t(op.outputs[0])
    xs = _rank(x, 3)
    time_major = bool(op.options.timeMajor)
    batches, steps, n_in = (xs[1], xs[0], xs[2]) if time_major else xs
    h, c = g.t(ins[18]), g.t(ins[19])
    n_state = h.shape[-1] if h.shape else 1  # as the emitter reads it
    for k in range(1, 9):
        want = (n_state, n_in if k < 5 else n_state)
        _need(g.t(ins[k]).shape == want, f"weights {tensor_label(g.t(ins[k]))} of shape "
                                         f"{list(g.t(ins[k]).shape)}, expected {list(want)}")
    for k in (12, 13, 14, 15):
        _need(g.t(ins[k]).size == n_state, f"bias {tensor_label(g.t(ins[k]))} has "
                                           f"{g.t(ins[k]).size} values for {n_state} units")
    _need(h.size == batches * n_state
          and c.size == batches * n_state,
          f"state tensors {list(h.shape)} / {list(c.shape)} for {batches} x {n_state}")
    _need(y.size == batches * steps * n_state,
          f"output {list(y.shape)} for {batches} x {steps} steps x {n_state} units")


_CHECKS: dict[str, Any] = {
    "CONV_2D": _conv, "DEPTHWISE_CONV_2D": _conv, "TRANSPOSE_CONV": _transpose_conv,
    "MAX_POOL_2D": _pool, "AVERAGE_POOL_2D": _pool, "FULLY_CONNECTED": _fully_connected,
    "SOFTMAX": _softmax, "LEAKY_RELU": _leaky_relu, "LOGISTIC": _same_size,
    "TANH": _same_size, "RELU": _same_size, "RELU6": _same_size, "HARD_SWISH": _same_size,
    "QUANTIZE": _same_size, "DEQUANTIZE": _same_size, "RESHAPE": _alias,
    "EXPAND_DIMS": _alias, "SQUEEZE": _alias, "ADD": _binary, "SUB": _binary,
    "MUL": _binary, "MAXIMUM": _binary, "MINIMUM": _binary,
    "CONCATENATION": _concatenation, "PAD": _pad, "MEAN": _mean,
    "STRIDED_SLICE": _strided_slice, "UNIDIRECTIONAL_SEQUENCE_LSTM": _lstm,
}


# --- requantization ---------------------------------------------------------------------
def _multipliers(g: Graph, op: Op) -> None:
    """Real multipliers (as the emitters compute them) finite and within TFLM's shift
    range; 16x8 int64 biases that leave their requantization room."""
    x = g.t(op.inputs[2] if op.name == "TRANSPOSE_CONV" else op.inputs[0])
    y = g.t(op.outputs[0])
    quantized = {"INT8", "INT16"}
    if x.dtype not in quantized or y.dtype not in quantized:
        return
    limit = MAX_SHIFT
    reals: list[float] = []
    if op.name in WEIGHT_OPS:
        w = g.t(op.inputs[1])
        if not w.scales:
            return
        reals = [x.scale * s / y.scale for s in w.scales]
        limit = MAX_SHIFT_64 if x.dtype == "INT16" else MAX_SHIFT
    elif op.name in ("ADD", "SUB"):
        a, b = g.t(op.inputs[0]), g.t(op.inputs[1])
        twice = 2.0 * max(a.scale, b.scale)
        reals = [twice / ((1 << (15 if y.dtype == "INT16" else 20)) * y.scale)]
    elif op.name == "MUL":
        b = g.t(op.inputs[1])
        reals = [x.scale * b.scale / y.scale]
        if x.dtype == "INT16":  # the kernel multiplies (a - zp_a) * (b - zp_b) in int32
            _need((32768 + abs(x.zp)) * (32768 + abs(b.zp)) < 1 << 31,
                  f"int16 zero points {x.zp} and {b.zp}: their product overflows int32")
    elif op.name in ("QUANTIZE", "RELU", "MEAN"):
        reals = [x.scale / y.scale]
    elif op.name == "LEAKY_RELU":
        reals = [x.scale / y.scale, x.scale * abs(float(op.options.alpha)) / y.scale]
    elif op.name == "SOFTMAX" and x.dtype == "INT8":  # QuantizeMultiplierGreaterThanOne
        real = float(op.options.beta) * x.scale * (1 << 26)
        _need(real > 1, f"beta x input scale {real / (1 << 26):g} is below 2^-26 (TFLM "
                        "needs its input multiplier above 1)")
    elif op.name in ("LOGISTIC", "TANH") and x.dtype == "INT8":  # CalculateInputRadius
        _need(x.scale * (1 << 27) >= 0.5, f"input scale {x.scale:g} is below 2^-28 (a "
                                          "negative input shift for TFLM)")
    for r in reals:
        if not math.isfinite(r) or r >= 2.0 ** limit:
            raise _Inconsistent(f"requantization multiplier {r:g} (input, weight and output "
                                f"scales) exceeds 2^{limit}")
    if op.name in WEIGHT_OPS and x.dtype == "INT16":
        _bias64(g, op)


def _bias64(g: Graph, op: Op) -> None:
    """16x8 with an int64 bias: the kernels (and TFLM) requantize x = acc + bias as
    (x * reduced + round) with reduced the 16-bit multiplier: that must stay within int64
    for any input."""
    from .quant import quantize_multiplier

    k_bias = 3 if op.name == "TRANSPOSE_CONV" else 2
    if len(op.inputs) <= k_bias or op.inputs[k_bias] < 0:
        return
    b, w = g.t(op.inputs[k_bias]), g.t(op.inputs[1])
    x = g.t(op.inputs[2] if op.name == "TRANSPOSE_CONV" else op.inputs[0])
    y = g.t(op.outputs[0])
    if b.data is None or b.dtype != "INT64" or w.data is None:
        return
    oc = _channels(g, op)
    wv = np.abs(np.asarray(w.data, dtype=np.int64))
    rows = wv.reshape(-1, oc).T if op.name == "DEPTHWISE_CONV_2D" else wv.reshape(oc, -1)
    biases = [abs(int(v)) for v in b.data.reshape(-1)]  # Python ints: |INT64_MIN| too
    scales = w.scales if len(w.scales) == oc else w.scales[:1] * oc
    for c, (row_sum, bias, s) in enumerate(zip(rows.sum(axis=1), biases, scales, strict=True)):
        mult, shift = quantize_multiplier(x.scale * s / y.scale)
        reduced = (mult + (1 << 15)) >> 16 if mult < 0x7FFF0000 else 0x7FFF
        bound = bias + (32768 + abs(x.zp)) * int(row_sum)
        if bound * reduced + (1 << max(14 - shift, 0)) >= 1 << 63:
            raise _Inconsistent(f"bias {tensor_label(b)} value {b.data.reshape(-1)[c]} of "
                                f"channel {c}: the 16x8 requantization of its accumulator "
                                "would overflow int64")
