"""Layers with weights: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, TRANSPOSE_CONV (int8 and
16x8) and UNIDIRECTIONAL_SEQUENCE_LSTM (int8), with the quantization regimes the fuzzer
forces: per-tensor / per-channel scales, dead channels (zero weights or a weight scale so
small that the requantization multiplier is 0, denormal float32 scales), shifts >= 0
(effective scale 0.5 .. 8, on every channel or a few), narrow activation ranges, zero
points at the int8 limits, saturating output scales and, for 16x8, weights whose int32
sums could overflow and int32 biases.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..tflm_py import schema
from .net import Invalid, Layer, Net, act_quant, log_uniform

__all__ = ["conv2d", "depthwise", "fully_connected", "lstm", "out_size", "rand_channels",
           "transpose_conv"]

REGIMES_8 = {"base": 5, "dead-zero": 2, "dead-tiny": 1, "denormal": 1, "shift>=0": 2,
             "shift>=0-some": 2, "narrow-act": 1, "saturating": 1, "zp-extreme": 1,
             "big-weights": 1, "huge-bias": 1}
REGIMES_16 = {"base": 5, "dead-zero": 1, "denormal": 1, "shift>=0": 2, "shift>=0-some": 1,
              "narrow-act": 1, "saturating": 1, "big-weights": 2, "int32-bias": 2,
              "huge-bias": 2}
ACTS = (0, 0, 0, 0, 1, 1, 1, 3, 3, 2)  # NONE, RELU, RELU6, RELU_N1_TO_1 (schema codes)


def rand_channels(r: np.random.Generator) -> int:
    """1..67 channels: a third tiny (1..4), a third 5..16, a third 17..67."""
    u = r.random()
    if u < 0.33:
        return int(r.integers(1, 5))
    if u < 0.67:
        return int(r.integers(5, 17))
    return int(r.integers(17, 68))


def _kernel(r: np.random.Generator) -> int:
    return int(r.choice([1, 1, 2, 3, 3, 3, 4, 5, 6, 7]))


def _small(r: np.random.Generator) -> int:
    return int(r.choice([1, 1, 1, 1, 2, 3]))


def _choice(r: np.random.Generator, table: dict[str, int]) -> str:
    names = list(table)
    w = np.asarray([table[n] for n in names], dtype=float)
    return str(names[int(r.choice(len(names), p=w / w.sum()))])


def out_size(padding: int, n: int, f: int, stride: int, dil: int) -> int:
    """TFLM's output size (SAME = 0, VALID = 1)."""
    eff = (f - 1) * dil + 1
    return (n + stride - 1) // stride if padding == 0 else (n - eff + stride) // stride


def _weights(lay: Layer, shape: tuple[int, ...], regime: str) -> np.ndarray:
    """Random int8 weights in one of several distributions."""
    dist = lay.pick("w_dist", lambda r: "extreme" if regime == "big-weights" else
                    ("small" if regime.startswith("shift") and r.random() < 0.7 else
                     str(r.choice(["uniform", "uniform", "small", "sparse", "normal"]))))
    r = lay.data_rng(1)
    if dist == "extreme":
        w = r.choice(np.array([-128, -127, 127], dtype=np.int16), size=shape)
    elif dist == "small":
        w = r.integers(-3, 4, size=shape)
    elif dist == "sparse":
        w = r.integers(-127, 128, size=shape) * (r.random(shape) < 0.25)
    elif dist == "normal":
        w = np.clip(np.round(r.normal(0, 30, size=shape)), -127, 127)
    else:
        w = r.integers(-127, 128, size=shape)
    return np.asarray(w, dtype=np.int8)


def _quant(net: Net, lay: Layer, x: int, w: np.ndarray, oc_axis: int, taps: float,
           allow_wzp: bool = False) -> dict[str, Any]:
    """Weight scales, output quantization, fused activation and bias of a weighted layer
    (``w`` is edited in place for dead channels). ``taps``: products per output."""
    xt = net.t(x)
    i16 = xt.dtype == "INT16"
    regime = lay.pick("regime", lambda r: _choice(r, REGIMES_16 if i16 else REGIMES_8))
    oc = w.shape[oc_axis]
    per_channel = lay.pick("per_channel", lambda r: bool(r.random() < (
        0.85 if regime.startswith(("dead", "denormal", "shift>=0-some")) else 0.55)))
    ws = lay.pick("ws", lambda r: log_uniform(r, 3e-4, 3e-2))
    r = lay.data_rng(2)
    spread = 10 ** r.uniform(0.0 if regime == "shift>=0" else -0.6, 0.6, size=oc)
    scales = ws * spread if per_channel else np.full(oc, ws)
    wv = np.moveaxis(w, oc_axis, 0)  # a view: channel first
    if regime in ("dead-zero", "dead-tiny", "denormal"):
        n_dead = lay.pick("n_dead", lambda r: int(r.integers(1, 4)))
        dead = sorted({int(c) % oc for c in r.integers(0, 1 << 16, size=n_dead)}) \
            if per_channel else list(range(oc))
        tiny = lay.pick("dead_scale", lambda r: float(r.choice(
            {"dead-zero": [1e-10, 1e-13, ws], "dead-tiny": [1e-10, 1e-12, 1e-14],
             "denormal": [1e-39, 3e-41, 1.4e-45]}[regime])))
        for c in dead:
            if regime == "dead-zero":
                wv[c] = 0
            scales[c] = tiny
    x_std = 9000.0 if i16 else 60.0
    target = 6000.0 if i16 else 40.0
    w_std = np.asarray(wv, dtype=np.float64).reshape(oc, -1).std(axis=1) + 0.5
    acc_std = np.sqrt(max(taps, 1.0)) * w_std * x_std
    live = scales > 1e-6
    ws_ref = float(np.median(scales[live])) if live.any() else ws
    acc_ref = float(np.median(acc_std[live])) if live.any() else 1.0
    natural = xt.scale * ws_ref * acc_ref / target
    act = lay.pick("act", lambda r: int(r.choice(ACTS)))
    zp = 0 if i16 else lay.pick("out_zp", lambda r: act_quant(r, "INT8")[1])
    if regime == "shift>=0":
        m = lay.pick("m_target", lambda r: log_uniform(r, 0.5, 8.0))
        y_scale = xt.scale * ws_ref / m
    elif regime == "narrow-act":
        act = lay.p["act"] = lay.pick("narrow_act", lambda r: int(r.choice([3, 2])))
        levels = lay.pick("levels", lambda r: int(r.integers(2, 60)))
        y_scale = (6.0 if act == 3 else 2.0) / levels
        if not i16:
            zp = lay.p["out_zp"] = lay.pick("narrow_zp", lambda r: int(
                r.integers(-128, -60) if act == 3 else r.integers(-60, 60)))
    elif regime == "saturating":
        y_scale = natural * lay.pick("sat", lambda r: log_uniform(r, 0.005, 0.08))
    else:
        y_scale = natural * lay.pick("factor", lambda r: log_uniform(r, 0.3, 3.0))
    if regime == "shift>=0-some":
        for c in sorted({int(c) % oc for c in r.integers(0, 1 << 16, size=3)}):
            scales[c] = float(r.uniform(0.5, 8.0)) * y_scale / xt.scale
    if regime == "zp-extreme" and not i16:
        zp = lay.p["out_zp"] = lay.pick("zp_ext", lambda r: int(r.choice([-128, 127])))
    y_scale = float(np.float32(max(y_scale, 1e-12)))
    scales = [float(np.float32(s)) for s in (scales if per_channel else scales[:1])]
    w_zp = 0
    if allow_wzp and not per_channel and not i16 and regime == "base":
        w_zp = lay.pick("w_zp", lambda r: int(r.choice([0, 0, 0, -3, 5, 17])))
    bias = None
    # int32 bias on a 16x8 depthwise: TFLM reads it as int64 (out of bounds), not tested
    bias_dtype = "INT64" if i16 and (regime != "int32-bias" or oc_axis == 3) else "INT32"
    # TFLM (tflite-micro 0.dev20261023) segfaults on a DEPTHWISE_CONV_2D without bias
    if lay.pick("has_bias", lambda r: bool(r.random() < 0.85)) or oc_axis == 3:
        br = lay.data_rng(3)
        b = br.normal(0, 1, size=oc) * acc_std * float(lay.pick("bias_mag", lambda r: float(
            r.choice([0.1, 0.5, 1.0, 3.0]))))
        lim = 2 ** 31 - 1 if bias_dtype == "INT32" else 2 ** 40
        bias = np.clip(np.round(b), -lim, lim).astype(np.int64)
    if regime == "huge-bias":
        bias = _huge_bias(wv, -xt.zp, bias_dtype, lay.data_rng(4))
    tags = {regime} if regime in ("saturating", "huge-bias") else set()
    return {"scales": scales, "per_channel": per_channel, "y_scale": y_scale, "zp": zp,
            "act": act, "bias": bias, "bias_dtype": bias_dtype, "w_zp": w_zp, "tags": tags,
            "regime": regime}


def _huge_bias(wv: np.ndarray, in_offset: int, dtype: str, r: np.random.Generator
               ) -> np.ndarray:
    """Biases at the edge of their type: int32 ones where bias + in_offset * sum(weights)
    leaves int32 (the generator cannot fold the input offset: reference loops), int64
    ones around 2^48 (the 16x8 kernels cannot fold the requantization)."""
    oc = wv.shape[0]
    if dtype == "INT64":
        return (r.choice([-1, 1], size=oc) * (1 << 48) + r.integers(-9999, 9999, size=oc))
    sums = in_offset * np.asarray(wv, dtype=np.int64).reshape(oc, -1).sum(axis=1)
    sign = np.where(sums < 0, -1, 1)
    return sign * ((1 << 31) - 1 - np.abs(sums) // 2)


def _bias_tensor(net: Net, q: dict[str, Any], sx: float) -> int:
    if q["bias"] is None:
        return -1
    dt = q["bias_dtype"]
    return net.const(q["bias"].astype(np.int32 if dt == "INT32" else np.int64), dt,
                     [sx * s for s in q["scales"]], [0] * len(q["scales"]))


def _img(net: Net, x: int) -> tuple[int, int, int, int]:
    s = net.t(x).shape
    if len(s) != 4:
        raise Invalid(f"needs a 4-D input, got {s}")
    return s[0], s[1], s[2], s[3]


def _geometry(net: Net, lay: Layer, x: int, dil: bool = True) -> dict[str, int]:
    b, h, w, _ = _img(net, x)
    g = {"padding": lay.pick("padding", lambda r: int(r.integers(2))),
         "kh": lay.pick("kh", _kernel)}
    g["kw"] = lay.pick("kw", lambda r: g["kh"] if r.random() < 0.7 else _kernel(r))
    g["sh"] = lay.pick("stride_h", _small)
    g["sw"] = lay.pick("stride_w", lambda r: g["sh"] if r.random() < 0.8 else _small(r))
    g["dh"] = lay.pick("dil_h", _small) if dil else 1
    g["dw"] = lay.pick("dil_w", lambda r: g["dh"] if r.random() < 0.8 else _small(r)) \
        if dil else 1
    g["oh"] = out_size(g["padding"], h, g["kh"], g["sh"], g["dh"])
    g["ow"] = out_size(g["padding"], w, g["kw"], g["sw"], g["dw"])
    if g["oh"] < 1 or g["ow"] < 1:
        raise Invalid("the filter does not fit the input")
    return g


def _conv_options(cls: Any, g: dict[str, int], act: int) -> Any:
    o = cls()
    o.padding, o.strideH, o.strideW = g["padding"], g["sh"], g["sw"]
    o.dilationHFactor, o.dilationWFactor = g["dh"], g["dw"]
    o.fusedActivationFunction = act
    return o


def _out(net: Net, xt_dtype: str, shape: tuple[int, ...], q: dict[str, Any]) -> int:
    return net.act(shape, xt_dtype, q["y_scale"], q["zp"])


def conv2d(net: Net, x: int, lay: Layer) -> int:
    b, _, _, c = _img(net, x)
    g = _geometry(net, lay, x)
    oc = lay.pick("out_c", rand_channels)
    macs = b * g["oh"] * g["ow"] * oc * g["kh"] * g["kw"] * c
    w = _weights(lay, (oc, g["kh"], g["kw"], c), lay.pick("regime", lambda r: _choice(
        r, REGIMES_16 if net.t(x).dtype == "INT16" else REGIMES_8)))
    q = _quant(net, lay, x, w, 0, g["kh"] * g["kw"] * c)
    wt = net.const(w, "INT8", q["scales"], [0] * len(q["scales"]), 0)
    bt = _bias_tensor(net, q, net.t(x).scale)
    y = _out(net, net.t(x).dtype, (b, g["oh"], g["ow"], oc), q)
    o = _conv_options(schema.Conv2DOptionsT, g, q["act"])
    if q["regime"] == "int32-bias" and bt < 0:
        o.quantizedBiasType = schema.TensorType.INT32
    net.op("CONV_2D", [x, wt, bt], [y], o, "Conv2DOptions", tuple(q["tags"]), macs)
    return y


def depthwise(net: Net, x: int, lay: Layer) -> int:
    b, _, _, c = _img(net, x)
    g = _geometry(net, lay, x)
    dm = lay.pick("depth_mult", lambda r: int(r.choice([1, 1, 1, 2, 3, 4, 8]) if c > 1
                                                else r.integers(1, 9)))
    oc = c * dm
    macs = b * g["oh"] * g["ow"] * oc * g["kh"] * g["kw"]
    w = _weights(lay, (1, g["kh"], g["kw"], oc), lay.pick("regime", lambda r: _choice(
        r, REGIMES_16 if net.t(x).dtype == "INT16" else REGIMES_8)))
    q = _quant(net, lay, x, w, 3, g["kh"] * g["kw"])
    wt = net.const(w, "INT8", q["scales"], [0] * len(q["scales"]), 3)
    bt = _bias_tensor(net, q, net.t(x).scale)
    y = _out(net, net.t(x).dtype, (b, g["oh"], g["ow"], oc), q)
    o = _conv_options(schema.DepthwiseConv2DOptionsT, g, q["act"])
    o.depthMultiplier = dm
    net.op("DEPTHWISE_CONV_2D", [x, wt, bt], [y], o, "DepthwiseConv2DOptions",
           tuple(q["tags"]), macs)
    return y


def fully_connected(net: Net, x: int, lay: Layer) -> int:
    xt = net.t(x)
    size = xt.size
    flat = lay.pick("flatten", lambda r: bool(len(xt.shape) > 1 and r.random() < 0.3))
    k = size if flat else xt.shape[-1]
    oc = lay.pick("out_c", lambda r: rand_channels(r) if r.random() < 0.8
                  else int(r.integers(68, 200)))
    keep = lay.pick("keep_dims", lambda r: bool(r.random() < 0.3)) and not flat
    macs = size * oc
    w = _weights(lay, (oc, k), lay.pick("regime", lambda r: _choice(
        r, REGIMES_16 if xt.dtype == "INT16" else REGIMES_8)))
    q = _quant(net, lay, x, w, 0, k, allow_wzp=True)
    wt = net.const(w, "INT8", q["scales"], [q["w_zp"]] * len(q["scales"]), 0)
    bt = _bias_tensor(net, q, xt.scale)
    shape = (*xt.shape[:-1], oc) if keep else (size // k, oc)
    y = _out(net, xt.dtype, shape, q)
    o = schema.FullyConnectedOptionsT()
    o.fusedActivationFunction = q["act"]
    o.keepNumDims = keep
    if q["regime"] == "int32-bias" and bt < 0:
        o.quantizedBiasType = schema.TensorType.INT32
    tags = q["tags"] | ({"w-zp"} if q["w_zp"] else set())
    net.op("FULLY_CONNECTED", [x, wt, bt], [y], o, "FullyConnectedOptions", tuple(tags), macs)
    return y


def transpose_conv(net: Net, x: int, lay: Layer) -> int:
    b, h, w_, c = _img(net, x)
    pad = lay.pick("padding", lambda r: int(r.integers(2)))
    kh = lay.pick("kh", _kernel)
    kw = lay.pick("kw", lambda r: kh if r.random() < 0.7 else _kernel(r))
    sh = lay.pick("stride_h", _small)
    sw = lay.pick("stride_w", lambda r: sh if r.random() < 0.8 else _small(r))
    oc = lay.pick("out_c", rand_channels)
    oh = h * sh if pad == 0 else (h - 1) * sh + kh
    ow = w_ * sw if pad == 0 else (w_ - 1) * sw + kw
    macs = b * h * w_ * c * kh * kw * oc
    wts = _weights(lay, (oc, kh, kw, c), lay.pick("regime", lambda r: _choice(
        r, REGIMES_16 if net.t(x).dtype == "INT16" else REGIMES_8)))
    q = _quant(net, lay, x, wts, 0, kh * kw * c / (sh * sw))
    wt = net.const(wts, "INT8", q["scales"], [0] * len(q["scales"]), 0)
    bt = _bias_tensor(net, q, net.t(x).scale)
    y = _out(net, net.t(x).dtype, (b, oh, ow, oc), q)
    o = schema.TransposeConvOptionsT()
    o.padding, o.strideH, o.strideW = pad, sh, sw
    o.fusedActivationFunction = q["act"]
    shape = net.ints([b, oh, ow, oc])
    net.op("TRANSPOSE_CONV", [shape, wt, x, bt], [y], o, "TransposeConvOptions",
           tuple(q["tags"]), macs)
    return y


def lstm(net: Net, x: int, lay: Layer) -> int:
    """TFLM's int8 UNIDIRECTIONAL_SEQUENCE_LSTM (no peephole/projection/layer norm) on a
    [batch, steps, inputs] tensor: random sizes, weights, biases, scales, cell-state
    scale (a power of two), clip and hidden zero point."""
    xt = net.t(x)
    if xt.dtype != "INT8" or len(xt.shape) != 3:
        raise Invalid("LSTM needs a 3-D int8 input")
    time_major = lay.pick("time_major", lambda r: bool(r.random() < 0.2))
    steps, batch = (xt.shape[0], xt.shape[1]) if time_major else (xt.shape[1], xt.shape[0])
    n_in = xt.shape[2]
    n_state = lay.pick("n_state", lambda r: int(r.integers(1, 24)))
    w_div = lay.pick("w_div", lambda r: float(r.choice([1.0, 1.0, 16.0])))
    big_bias = lay.pick("big_bias", lambda r: bool(r.random() < 0.15))
    h_scale = lay.pick("h_scale", lambda r: log_uniform(r, 0.003, 0.02))
    h_zp = lay.pick("h_zp", lambda r: int(r.integers(-20, 20)))
    cell_pow = lay.pick("cell_pow", lambda r: int(r.integers(10, 15)))
    clip = lay.pick("clip", lambda r: float(r.choice([0.0, 3.0, 10.0])))
    r = lay.data_rng(1)
    ws = [float(r.uniform(0.002, 0.02)) / w_div for _ in range(8)]
    ins = [x]
    for k in range(8):  # input-to-gate (state x n_in), then recurrent (state x state)
        cols = n_in if k < 4 else n_state
        ins.append(net.const(r.integers(-127, 128, size=(n_state, cols)).astype(np.int8),
                             "INT8", [ws[k]], [0]))
    ins += [-1, -1, -1]  # no peepholes
    for k in range(4):
        b = r.integers(-20000, 20000, size=n_state).astype(np.int32)
        if big_bias and k == 0:
            b[0] = 2 ** 30 - 1
        ins.append(net.const(b, "INT32", [xt.scale * 0.01], [0]))
    ins += [-1, -1]  # no projection
    h = net.act((batch, n_state), "INT8", h_scale, h_zp)
    c = net.act((batch, n_state), "INT16", 2.0 ** -cell_pow, 0)
    net.t(h).variable = net.t(c).variable = True
    ins += [h, c, -1, -1, -1, -1]
    y = net.act((steps, batch, n_state) if time_major else (batch, steps, n_state), "INT8",
                h_scale, h_zp)
    from .spec import TensorSpec

    inter = [net.g.add(TensorSpec(f"inter{k}", (0,), "FLOAT32")) for k in range(4)]
    inter.append(net.g.add(TensorSpec("effective_hidden_scale", (0,), "INT8", [h_scale], [0])))
    o = schema.UnidirectionalSequenceLSTMOptionsT()
    o.fusedActivationFunction = 4
    o.cellClip = clip
    o.timeMajor = time_major
    tags = {"big-bias"} if big_bias else set()
    net.op("UNIDIRECTIONAL_SEQUENCE_LSTM", ins, [y], o, "UnidirectionalSequenceLSTMOptions",
           tuple(tags), batch * steps * 4 * n_state * (n_in + n_state), inter)
    return y

