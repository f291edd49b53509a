"""Random int8 and 16x8 models for the differential fuzzer, written directly as flatbuffers.

A model is a :class:`Recipe`: an input (shape, dtype, quantization) and a chain of
:class:`~.net.Layer` s built around one *target* operator (every operator and dtype the C
runtime has, the convolutions, FULLY_CONNECTED, pooling and ADD/SUB/MUL most often), with an
optional layer before and after it and, for 16x8 models, optional int8 <-> int16 QUANTIZE
boundaries. ``build`` turns a recipe into ``.tflite`` bytes; ``inputs`` draws samples
(always including saturating ones: every value at the dtype's limits).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .layers import BUILDERS
from .net import RANGES, Invalid, Layer, Net, act_quant
from .spec import GraphSpec, to_tflite
from .weighted import rand_channels

__all__ = ["TARGETS", "Built", "Recipe", "build", "inputs", "random_recipe"]

# (operator, activation dtype, weight): every kernel of the C runtime
TARGETS: list[tuple[str, str, float]] = [
    ("CONV_2D", "INT8", 10), ("DEPTHWISE_CONV_2D", "INT8", 8), ("FULLY_CONNECTED", "INT8", 8),
    ("MAX_POOL_2D", "INT8", 3), ("AVERAGE_POOL_2D", "INT8", 3), ("ADD", "INT8", 3),
    ("SUB", "INT8", 3), ("MUL", "INT8", 3),
    ("CONV_2D", "INT16", 5), ("DEPTHWISE_CONV_2D", "INT16", 4),
    ("FULLY_CONNECTED", "INT16", 4), ("ADD", "INT16", 2), ("SUB", "INT16", 2),
    ("MUL", "INT16", 2), ("TRANSPOSE_CONV", "INT8", 2), ("TRANSPOSE_CONV", "INT16", 1.5),
    ("UNIDIRECTIONAL_SEQUENCE_LSTM", "INT8", 2),
    ("MAXIMUM", "INT8", 1), ("MINIMUM", "INT8", 1), ("MAXIMUM", "INT16", 0.7),
    ("MINIMUM", "INT16", 0.7), ("CONCATENATION", "INT8", 1.5), ("PAD", "INT8", 1.5),
    ("PAD", "INT16", 1), ("MEAN", "INT8", 2), ("RESHAPE", "INT8", 0.8),
    ("RESHAPE", "INT16", 0.6), ("EXPAND_DIMS", "INT8", 0.6), ("EXPAND_DIMS", "INT16", 0.5),
    ("SQUEEZE", "INT8", 0.6), ("SQUEEZE", "INT16", 0.5), ("STRIDED_SLICE", "INT8", 1.5),
    ("STRIDED_SLICE", "INT16", 1), ("SOFTMAX", "INT8", 1.5), ("LOGISTIC", "INT8", 1),
    ("TANH", "INT8", 1), ("RELU", "INT8", 1), ("RELU6", "INT8", 1), ("LEAKY_RELU", "INT8", 1),
    ("LEAKY_RELU", "INT16", 1), ("HARD_SWISH", "INT8", 1), ("QUANTIZE", "INT8", 1.2),
    ("QUANTIZE", "INT16", 1.2), ("DEQUANTIZE", "INT8", 0.7),
]
IMAGE_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "MAX_POOL_2D",
                       "AVERAGE_POOL_2D"})
NEIGHBOURS = {  # layers that may come before / after the target
    ("INT8", True): ["CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "ADD",
                     "MUL", "PAD", "RELU", "LEAKY_RELU", "CONCATENATION", "TANH",
                     "FULLY_CONNECTED", "MEAN", "RESHAPE"],
    ("INT8", False): ["FULLY_CONNECTED", "ADD", "SUB", "MUL", "RESHAPE", "LEAKY_RELU", "PAD",
                      "STRIDED_SLICE", "MEAN", "SOFTMAX", "QUANTIZE", "HARD_SWISH"],
    ("INT16", True): ["CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "PAD", "LEAKY_RELU",
                      "FULLY_CONNECTED", "MUL", "RESHAPE"],
    ("INT16", False): ["FULLY_CONNECTED", "ADD", "SUB", "MUL", "PAD", "LEAKY_RELU",
                       "RESHAPE", "STRIDED_SLICE", "MAXIMUM"],
}


@dataclass
class Recipe:
    """A model: its input and its layers (parameters filled in by the first ``build``)."""

    seed: int
    in_shape: list[int]
    in_dtype: str  # INT8, INT16 or FLOAT32
    in_scale: float | None
    in_zp: int
    layers: list[Layer] = field(default_factory=list)
    target: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "in_shape": self.in_shape, "in_dtype": self.in_dtype,
                "in_scale": self.in_scale, "in_zp": self.in_zp, "target": self.target,
                "layers": [lay.to_dict() for lay in self.layers]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipe:
        return cls(int(d["seed"]), list(d["in_shape"]), d["in_dtype"], d["in_scale"],
                   int(d["in_zp"]), [Layer(x["kind"], int(x["seed"]), dict(x["p"]))
                                     for x in d["layers"]], d.get("target", ""))

    def copy(self) -> Recipe:
        return Recipe.from_dict(json.loads(json.dumps(self.to_dict())))


@dataclass
class Built:
    """A built recipe: the graph, its ``.tflite`` bytes and the generator's per-operator
    tags (intent, e.g. 'saturating'; measured tags come from :mod:`.paths`)."""

    recipe: Recipe
    graph: GraphSpec
    data: bytes
    tags: dict[int, set[str]]
    macs: int


def build(rec: Recipe) -> Built:
    """The model of ``rec`` (draws the parameters still missing). Raises :class:`Invalid`
    when a layer does not fit the tensor it gets."""
    dtype = "INT16" if rec.in_dtype == "INT16" or any(
        lay.kind == "QUANTIZE" and lay.p.get("to") == "INT16" for lay in rec.layers) else "INT8"
    net = Net(dtype)
    x = net.input(tuple(rec.in_shape), rec.in_dtype, rec.in_scale, rec.in_zp)
    for lay in rec.layers:
        t = net.t(x)
        if not t.shape:
            raise Invalid("a scalar tensor feeds another layer")
        if t.dtype == "FLOAT32" and lay.kind != "QUANTIZE":
            raise Invalid("a float tensor feeds a quantized layer")
        try:
            x = BUILDERS[lay.kind](net, x, lay)
        except (ArithmeticError, ValueError, IndexError) as exc:  # an edited (shrunk) recipe
            raise Invalid(f"{lay.kind}: {exc}") from exc
    g = net.g
    if not g.ops or x in g.inputs:
        raise Invalid("no operator")
    if net.t(x).dtype not in ("INT8", "INT16", "FLOAT32"):
        raise Invalid("output dtype")
    g.outputs = [x]
    # several inputs: wider dtypes first (the C runtime's concatenated I/O stays aligned)
    size = {"FLOAT32": 4, "INT16": 2, "INT8": 1}
    g.inputs = sorted(g.inputs, key=lambda i: -size[g.t(i).dtype])
    return Built(rec, g, to_tflite(g), net.tags, net.macs)


def _shape(r: np.random.Generator, image: bool, dtype: str) -> list[int]:
    if image:
        c = rand_channels(r)
        hw = max(1, int(np.sqrt(3000 / c)))
        h, w = (int(v) for v in r.integers(1, min(hw, 18) + 1, size=2))
        if r.random() < 0.7:
            h, w = max(h, 3), max(w, 3)
        return [int(r.choice([1, 1, 1, 1, 2])), h, w, c]
    rank = int(r.choice([1, 1, 2, 2, 3, 3, 4, 5]))
    dims = [int(r.choice([1, 1, 2, 3, 4, 5, 7, 8, 13, 16, 31])) for _ in range(rank)]
    if rank == 1:
        dims = [int(r.integers(1, 80))]
    return dims


def _layer(r: np.random.Generator, kind: str, **p: Any) -> Layer:
    return Layer(kind, int(r.integers(1 << 31)), dict(p))


def _draw(r: np.random.Generator, seed: int, kind: str, dtype: str) -> Recipe:
    image = kind in IMAGE_OPS or (kind in ("CONCATENATION", "PAD", "MEAN", "ADD", "MUL",
                                           "RELU", "LEAKY_RELU") and r.random() < 0.4)
    layers: list[Layer] = []
    in_dtype = dtype
    target_p: dict[str, Any] = {}
    if kind == "UNIDIRECTIONAL_SEQUENCE_LSTM":
        shape = [int(r.integers(1, 3)), int(r.integers(1, 7)), int(r.integers(1, 24))]
    elif dtype == "INT16" and kind in ("CONV_2D", "FULLY_CONNECTED") and r.random() < 0.15:
        # int32 sums of 16x8 products that may overflow: filter rows of more than 516
        # weights of magnitude 127 (segmented sums; the int64 reference loop beyond)
        if kind == "CONV_2D":
            shape = [1, int(r.integers(1, 4)), int(r.integers(7, 10)), int(r.integers(60, 97))]
            target_p = {"kw": 7, "kh": int(r.integers(1, 3)), "padding": 1, "dil_w": 1}
        else:
            shape = [1, int(r.choice([517, 600, 640, 1031, 1200, 2053]))]
        target_p["regime"] = "big-weights"
    else:
        shape = _shape(r, image, dtype)
    to16 = None
    if kind == "QUANTIZE":
        if dtype == "INT8":  # int8 -> int8, or a float input
            in_dtype = "FLOAT32" if r.random() < 0.4 else "INT8"
            to16 = "INT8"
        else:
            in_dtype, to16 = [("INT8", "INT16"), ("INT16", "INT8"), ("INT16", "INT16")][
                int(r.integers(3))]
    elif dtype == "INT16" and r.random() < 0.5:
        in_dtype = "INT8"
        layers.append(_layer(r, "QUANTIZE", to="INT16"))
    elif dtype == "INT8" and r.random() < 0.05:
        in_dtype = "FLOAT32"
        layers.append(_layer(r, "QUANTIZE", to="INT8"))
    near = NEIGHBOURS[(dtype, image)]
    if kind not in ("QUANTIZE", "DEQUANTIZE") and r.random() < 0.3:
        layers.append(_layer(r, str(r.choice(near))))
    layers.append(_layer(r, kind, **({"to": to16} if to16 else target_p)))
    if kind != "DEQUANTIZE" and r.random() < 0.35 and not (kind == "QUANTIZE" and
                                                            to16 != dtype):
        layers.append(_layer(r, str(r.choice(near))))
    if dtype == "INT16" and kind != "QUANTIZE" and r.random() < 0.4:
        layers.append(_layer(r, "QUANTIZE", to="INT8"))
    elif dtype == "INT8" and kind != "DEQUANTIZE" and r.random() < 0.04:
        layers.append(_layer(r, "DEQUANTIZE"))
    scale, zp = act_quant(r, in_dtype) if in_dtype != "FLOAT32" else (None, 0)
    return Recipe(seed, shape, in_dtype, scale, zp, layers, f"{kind}/{dtype}")


def random_recipe(seed: int, max_tries: int = 60) -> Built:
    """A random model (built) for ``seed``: the target operator drawn by ``TARGETS``
    weight; draws that do not fit are redrawn."""
    r = np.random.default_rng([seed, 0])
    w = np.asarray([t[2] for t in TARGETS], dtype=float)
    kind, dtype, _ = TARGETS[int(r.choice(len(TARGETS), p=w / w.sum()))]
    for _ in range(max_tries):
        rec = _draw(r, seed, kind, dtype)
        try:
            return build(rec)
        except Invalid:
            continue
    raise Invalid(f"no valid model for {kind}/{dtype} (seed {seed})")


def inputs(g: GraphSpec, seed: int, n: int) -> list[list[np.ndarray]]:
    """``n`` samples, one array per graph input (model shape): sample 0 every value at the
    dtype's minimum, 1 at its maximum, 2 a random mix of both, the rest uniform (float
    inputs: wide normal values, sample 0 with +-1e4 and 0)."""
    r = np.random.default_rng([seed, 3])
    out: list[list[np.ndarray]] = []
    for k in range(n):
        row = []
        for i in g.inputs:
            t = g.t(i)
            if t.dtype == "FLOAT32":
                v = r.normal(0, 60 * (t.scale or 0.05), size=t.shape)
                if k == 0:
                    v.flat[0], v.flat[-1] = 1e4, -1e4
                    v.flat[len(v.flat) // 2] = 0.0
                row.append(v.astype(np.float32))
                continue
            lo, hi = RANGES[t.dtype]
            if k == 0:
                v = np.full(t.shape, lo)
            elif k == 1:
                v = np.full(t.shape, hi)
            elif k == 2:
                v = r.choice([lo, hi], size=t.shape)
            else:
                v = r.integers(lo, hi + 1, size=t.shape)
            row.append(np.asarray(v, dtype=t.numpy_dtype))
        out.append(row)
    return out
