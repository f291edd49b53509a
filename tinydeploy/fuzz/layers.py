"""Layers without weights: pooling, element-wise and binary operators, data movement,
activations and the (re)quantization boundaries, each with random shapes (any rank where
the operator allows: rank-1 and batch-free tensors too) and quantization. ``BUILDERS`` maps
every operator kind (weighted ones from :mod:`.weighted`) to its generator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..tflm_py import schema
from . import weighted
from .net import RANGES, Invalid, Layer, Net, act_quant, log_uniform
from .weighted import out_size

__all__ = ["BUILDERS", "Builder"]

Builder = Callable[[Net, int, Layer], int]


def _img(net: Net, x: int) -> tuple[int, ...]:
    s = net.t(x).shape
    if len(s) != 4:
        raise Invalid(f"needs a 4-D input, got {s}")
    return s


def _int_only(net: Net, x: int, dtypes: tuple[str, ...] = ("INT8", "INT16")) -> Any:
    t = net.t(x)
    if t.dtype not in dtypes:
        raise Invalid(f"{t.dtype} input")
    return t


def _pool(name: str) -> Builder:
    def build(net: Net, x: int, lay: Layer) -> int:
        b, h, w, c = _img(net, x)
        _int_only(net, x, ("INT8",))
        pad = lay.pick("padding", lambda r: int(r.integers(2)))
        fh = lay.pick("fh", lambda r: int(r.choice([1, 2, 2, 3, 3, 4, 5, 7])))
        fw = lay.pick("fw", lambda r: fh if r.random() < 0.7 else int(r.integers(1, 8)))
        sh = lay.pick("stride_h", lambda r: int(r.choice([1, 2, 2, 3])))
        sw = lay.pick("stride_w", lambda r: sh if r.random() < 0.8 else int(r.integers(1, 4)))
        act = lay.pick("act", lambda r: int(r.choice([0, 0, 0, 1, 3])))
        oh, ow = out_size(pad, h, fh, sh, 1), out_size(pad, w, fw, sw, 1)
        if oh < 1 or ow < 1:
            raise Invalid("window larger than the input")
        y = net.like(x, (b, oh, ow, c))
        o = schema.Pool2DOptionsT()
        o.padding, o.strideH, o.strideW = pad, sh, sw
        o.filterHeight, o.filterWidth, o.fusedActivationFunction = fh, fw, act
        net.op(name, [x], [y], o, "Pool2DOptions", macs=b * oh * ow * c * fh * fw)
        return y
    return build


def _random_data(r: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    lo, hi = RANGES[dtype]
    return r.integers(lo, hi + 1, size=shape).astype(np.int8 if dtype == "INT8" else np.int16)


def _other_shape(net: Net, x: int, lay: Layer) -> tuple[int, ...]:
    """The second operand's shape: x's, some dimensions 1 (broadcast), or fewer leading
    dimensions."""
    s = net.t(x).shape
    mode = lay.pick("bcast", lambda r: str(r.choice(["none", "none", "dims", "rank"])))
    if mode == "dims":
        flags = lay.pick("bcast_dims", lambda r: [int(v) for v in r.integers(0, 2, len(s))])
        return tuple(1 if f else d for f, d in zip(flags[:len(s)] + [0] * len(s), s,
                                                    strict=False))
    if mode == "rank" and len(s) > 1:
        drop = lay.pick("bcast_drop", lambda r: int(r.integers(1, len(s))))
        return tuple(s[min(drop, len(s) - 1):])
    return tuple(s)


def _operand(net: Net, x: int, lay: Layer, shape: tuple[int, ...], scale: float, zp: int
             ) -> int:
    """The second operand: another graph input, a constant or x itself."""
    t = net.t(x)
    src = lay.pick("other", lambda r: str(r.choice(["input", "input", "const", "self"])))
    if src == "self" and shape == t.shape and (scale, zp) == (t.scale, t.zp):
        return x
    if src == "const":
        data = _random_data(lay.data_rng(7), shape, t.dtype)
        return net.const(data, t.dtype, [scale], [zp])
    return net.input(shape, t.dtype, scale, zp)


def _binary(name: str) -> Builder:
    def build(net: Net, x: int, lay: Layer) -> int:
        t = _int_only(net, x)
        i16 = t.dtype == "INT16"
        same = name in ("MAXIMUM", "MINIMUM") or lay.pick(
            "other", lambda r: str(r.choice(["input", "input", "const", "self"]))) == "self"
        if same:
            sb, zb = t.scale, t.zp
        else:
            sb, zb = lay.pick("b_q", lambda r: list(act_quant(r, t.dtype)))
        shape = _other_shape(net, x, lay) if lay.p.get("other") != "self" else t.shape
        other = _operand(net, x, lay, shape, sb, zb)
        pair = [other, x] if lay.pick("swap", lambda r: bool(r.random() < 0.3)) else [x, other]
        if name in ("MAXIMUM", "MINIMUM"):
            y = net.like(x)
            net.op(name, pair, [y], schema.MaximumMinimumOptionsT(), "MaximumMinimumOptions")
            return y
        big = max(t.scale, net.t(other).scale)
        f = lay.pick("factor", lambda r: log_uniform(r, 0.05, 8.0))
        if name == "MUL":
            y_scale = t.scale * net.t(other).scale * (3000.0 if i16 else 60.0) * f
        else:
            y_scale = big * f
        zp = 0 if i16 else lay.pick("out_zp", lambda r: act_quant(r, "INT8")[1])
        out_shape = tuple(np.broadcast_shapes(t.shape, net.t(other).shape))
        y = net.act(out_shape, t.dtype, y_scale, zp)
        act = lay.pick("act", lambda r: int(r.choice([0, 0, 0, 1, 3, 2])))
        cls = {"ADD": schema.AddOptionsT, "SUB": schema.SubOptionsT, "MUL": schema.MulOptionsT}
        o = cls[name]()
        o.fusedActivationFunction = act
        if name != "MUL":
            o.potScaleInt16 = False
        net.op(name, pair, [y], o, name.title().replace("_", "") + "Options",
               ("saturating",) if f < 0.15 else ())
        return y
    return build


def concatenation(net: Net, x: int, lay: Layer) -> int:
    t = _int_only(net, x, ("INT8",))
    rank = len(t.shape)
    axis = lay.pick("axis", lambda r: int(r.integers(-rank, rank)))
    if not -rank <= axis < rank:
        raise Invalid("axis outside the rank")
    a = axis % rank
    n = lay.pick("n_other", lambda r: int(r.integers(1, 3)))
    ins = [x]
    for k in range(n):
        d = lay.pick(f"size{k}", lambda r: int(r.integers(1, 9)))
        shape = tuple(d if i == a else s for i, s in enumerate(t.shape))
        src = lay.pick(f"src{k}", lambda r: str(r.choice(["input", "const"])))
        if src == "const":
            ins.append(net.const(_random_data(lay.data_rng(k), shape, t.dtype), t.dtype,
                                 [t.scale], [t.zp]))
        else:
            ins.append(net.input(shape, t.dtype, t.scale, t.zp))
    if lay.pick("first_last", lambda r: bool(r.random() < 0.3)):
        ins = ins[1:] + ins[:1]
    out = tuple(sum(net.t(i).shape[a] for i in ins) if i == a else s
                for i, s in enumerate(t.shape))
    y = net.like(x, out)
    o = schema.ConcatenationOptionsT()
    o.axis = axis
    net.op("CONCATENATION", ins, [y], o, "ConcatenationOptions")
    return y


def pad(net: Net, x: int, lay: Layer) -> int:
    t = _int_only(net, x)
    pads = lay.pick("pads", lambda r: [[int(v) for v in r.integers(0, 4, 2)]
                                       for _ in range(len(t.shape))])
    if len(pads) != len(t.shape):
        raise Invalid("paddings do not match the rank")
    y = net.like(x, tuple(s + a + b for s, (a, b) in zip(t.shape, pads, strict=True)))
    net.op("PAD", [x, net.const(np.asarray(pads, dtype=np.int32), "INT32")], [y],
           schema.PadOptionsT(), "PadOptions")
    return y


def mean(net: Net, x: int, lay: Layer) -> int:
    t = _int_only(net, x, ("INT8",))
    rank = len(t.shape)
    axes = lay.pick("axes", lambda r: sorted({int(a) for a in r.choice(
        rank, size=int(r.integers(1, rank + 1)))}))
    if any(a >= rank for a in axes):
        raise Invalid("axis outside the rank")
    neg = lay.pick("negative", lambda r: bool(r.random() < 0.2))
    keep = lay.pick("keep_dims", lambda r: bool(r.random() < 0.5))
    shape = tuple(1 if i in axes else s for i, s in enumerate(t.shape)) if keep else \
        tuple(s for i, s in enumerate(t.shape) if i not in axes)
    scale, zp = lay.pick("out_q", lambda r: list(act_quant(r, "INT8")))
    y = net.act(shape or (1,), "INT8", scale, zp)
    o = schema.ReducerOptionsT()
    o.keepDims = keep
    net.op("MEAN", [x, net.ints([a - rank if neg else a for a in axes])], [y], o,
           "ReducerOptions", macs=t.size)
    return y


def _factor_shape(r: np.random.Generator, size: int) -> list[int]:
    rank = int(r.integers(1, 5))
    dims = [1] * rank
    n, p = size, 2
    while n > 1:
        while n % p:
            p += 1
        dims[int(r.integers(rank))] *= p
        n //= p
    return dims


def reshape(net: Net, x: int, lay: Layer) -> int:
    t = _int_only(net, x)
    shape = lay.pick("shape", lambda r: _factor_shape(r, t.size))
    if int(np.prod(shape)) != t.size:
        raise Invalid("new shape has another size")
    y = net.like(x, tuple(shape))
    o = schema.ReshapeOptionsT()
    o.newShape = list(shape)
    net.op("RESHAPE", [x, net.ints(list(shape))], [y], o, "ReshapeOptions")
    return y


def expand_dims(net: Net, x: int, lay: Layer) -> int:
    t = _int_only(net, x)
    rank = len(t.shape)
    if rank >= 5:
        raise Invalid("rank too high")
    axis = lay.pick("axis", lambda r: int(r.integers(-rank - 1, rank + 1)))
    if not -rank - 1 <= axis <= rank:
        raise Invalid("axis outside the rank")
    a = axis % (rank + 1)
    y = net.like(x, (*t.shape[:a], 1, *t.shape[a:]))
    net.op("EXPAND_DIMS", [x, net.ints([axis])], [y], schema.ExpandDimsOptionsT(),
           "ExpandDimsOptions")
    return y


def squeeze(net: Net, x: int, lay: Layer) -> int:
    t = _int_only(net, x)
    ones = [i for i, s in enumerate(t.shape) if s == 1]
    if not ones or len(ones) == len(t.shape):
        raise Invalid("no dimension of size 1 to squeeze")
    dims = lay.pick("dims", lambda r: [] if r.random() < 0.3 else sorted({int(v) for v in
                                      r.choice(ones, size=int(r.integers(1, len(ones) + 1)))}))
    if any(d not in ones for d in dims):
        raise Invalid("squeezed dimension is not 1")
    gone = dims or ones
    y = net.like(x, tuple(s for i, s in enumerate(t.shape) if i not in gone))
    o = schema.SqueezeOptionsT()
    o.squeezeDims = list(dims)
    net.op("SQUEEZE", [x], [y], o, "SqueezeOptions")
    return y


def strided_slice(net: Net, x: int, lay: Layer) -> int:
    t = _int_only(net, x)
    rank = len(t.shape)
    if rank > 4:  # TFLM: "input dim should not exceed 4"
        raise Invalid("rank too high")

    def draw(r: np.random.Generator) -> dict[str, Any]:
        spec: dict[str, Any] = {"begin": [], "end": [], "strides": []}
        for n in t.shape:
            s = int(r.choice([1, 1, 1, 2, 3, -1]))
            spec["begin"].append(int(r.integers(-n, n)))
            spec["end"].append(int(r.integers(-n, n + 1)))
            spec["strides"].append(s)
        spec["begin_mask"] = int(r.integers(0, 1 << rank)) if r.random() < 0.4 else 0
        spec["end_mask"] = int(r.integers(0, 1 << rank)) if r.random() < 0.4 else 0
        spec["shrink"] = int(1 << int(r.integers(rank))) if r.random() < 0.25 else 0
        return spec

    sp = lay.pick("slice", draw)
    if len(sp["begin"]) != rank:
        raise Invalid("slice spec does not match the rank")
    shape = []
    for d, n in enumerate(t.shape):
        b, e, s = sp["begin"][d], sp["end"][d], sp["strides"][d]
        if sp["shrink"] >> d & 1:
            if not -n <= b < n:
                raise Invalid("shrunk index outside the tensor")
            sp["strides"][d] = 1
            continue
        lo, hi, st = slice(None if sp["begin_mask"] >> d & 1 else b,
                           None if sp["end_mask"] >> d & 1 else e, s).indices(n)
        shape.append(len(range(lo, hi, st)))
    if any(v < 1 for v in shape):
        raise Invalid("empty slice")
    y = net.like(x, tuple(shape))
    o = schema.StridedSliceOptionsT()
    o.beginMask, o.endMask, o.shrinkAxisMask = sp["begin_mask"], sp["end_mask"], sp["shrink"]
    net.op("STRIDED_SLICE", [x, net.ints(sp["begin"]), net.ints(sp["end"]),
                             net.ints(sp["strides"])], [y], o, "StridedSliceOptions")
    return y


def softmax(net: Net, x: int, lay: Layer) -> int:
    _int_only(net, x, ("INT8",))
    y = net.act(net.t(x).shape, "INT8", 1.0 / 256, -128)
    o = schema.SoftmaxOptionsT()
    o.beta = lay.pick("beta", lambda r: 1.0 if r.random() < 0.6 else log_uniform(r, 0.1, 4.0))
    net.op("SOFTMAX", [x], [y], o, "SoftmaxOptions")
    return y


def _fixed_out(name: str, scale: float, zp: int) -> Builder:
    def build(net: Net, x: int, lay: Layer) -> int:
        _int_only(net, x, ("INT8",))
        y = net.act(net.t(x).shape, "INT8", scale, zp)
        net.op(name, [x], [y])
        return y
    return build


def _requant_out(net: Net, x: int, lay: Layer, lo: float = 0.05, hi: float = 8.0) -> int:
    t = net.t(x)
    f = lay.pick("factor", lambda r: log_uniform(r, lo, hi))
    zp = 0 if t.dtype == "INT16" else lay.pick("out_zp", lambda r: act_quant(r, "INT8")[1])
    return net.act(t.shape, t.dtype, t.scale * f, zp)


def relu(net: Net, x: int, lay: Layer) -> int:
    _int_only(net, x, ("INT8",))
    y = _requant_out(net, x, lay)
    net.op("RELU", [x], [y])
    return y


def relu6(net: Net, x: int, lay: Layer) -> int:
    _int_only(net, x, ("INT8",))
    y = net.like(x)
    net.op("RELU6", [x], [y])
    return y


def leaky_relu(net: Net, x: int, lay: Layer) -> int:
    _int_only(net, x)
    y = _requant_out(net, x, lay, 0.1, 4.0)
    o = schema.LeakyReluOptionsT()
    o.alpha = lay.pick("alpha", lambda r: float(np.float32(
        r.choice([log_uniform(r, 0.01, 0.99), 1.5, 0.0, 1.0]))))
    net.op("LEAKY_RELU", [x], [y], o, "LeakyReluOptions")
    return y


def hard_swish(net: Net, x: int, lay: Layer) -> int:
    _int_only(net, x, ("INT8",))
    y = _requant_out(net, x, lay, 0.01, 2.0)
    net.op("HARD_SWISH", [x], [y], schema.HardSwishOptionsT(), "HardSwishOptions")
    return y


def quantize(net: Net, x: int, lay: Layer) -> int:
    """QUANTIZE: float32 -> int8, int8 -> int8 / int16, int16 -> int8 / int16 (``to``)."""
    t = net.t(x)
    to = lay.pick("to", lambda r: "INT8")
    if t.dtype == "FLOAT32":
        if to != "INT8":
            raise Invalid("float input quantizes to int8 here")
        scale, zp = lay.pick("q", lambda r: list(act_quant(r, "INT8")))
    elif t.dtype in RANGES:
        r16 = to == "INT16"
        f = lay.pick("factor", lambda r: log_uniform(r, 0.3, 3.0))
        base = t.scale * (1 / 256 if r16 and t.dtype == "INT8" else
                          256 if t.dtype == "INT16" and not r16 else 1)
        scale = base * f
        zp = 0 if r16 else lay.pick("out_zp", lambda r: act_quant(r, "INT8")[1])
    else:
        raise Invalid(f"QUANTIZE of {t.dtype}")
    y = net.act(t.shape, to, scale, zp)
    net.op("QUANTIZE", [x], [y], schema.QuantizeOptionsT(), "QuantizeOptions")
    return y


def dequantize(net: Net, x: int, lay: Layer) -> int:
    _int_only(net, x, ("INT8",))
    y = net.act(net.t(x).shape, "FLOAT32", None)
    net.op("DEQUANTIZE", [x], [y], schema.DequantizeOptionsT(), "DequantizeOptions")
    return y


BUILDERS: dict[str, Builder] = {
    "CONV_2D": weighted.conv2d, "DEPTHWISE_CONV_2D": weighted.depthwise,
    "FULLY_CONNECTED": weighted.fully_connected, "TRANSPOSE_CONV": weighted.transpose_conv,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": weighted.lstm,
    "MAX_POOL_2D": _pool("MAX_POOL_2D"), "AVERAGE_POOL_2D": _pool("AVERAGE_POOL_2D"),
    "ADD": _binary("ADD"), "SUB": _binary("SUB"), "MUL": _binary("MUL"),
    "MAXIMUM": _binary("MAXIMUM"), "MINIMUM": _binary("MINIMUM"),
    "CONCATENATION": concatenation, "PAD": pad, "MEAN": mean, "RESHAPE": reshape,
    "EXPAND_DIMS": expand_dims, "SQUEEZE": squeeze, "STRIDED_SLICE": strided_slice,
    "SOFTMAX": softmax, "LOGISTIC": _fixed_out("LOGISTIC", 1.0 / 256, -128),
    "TANH": _fixed_out("TANH", 1.0 / 128, 0), "RELU": relu, "RELU6": relu6,
    "LEAKY_RELU": leaky_relu, "HARD_SWISH": hard_swish, "QUANTIZE": quantize,
    "DEQUANTIZE": dequantize,
}
