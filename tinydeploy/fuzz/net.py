"""The model builder the fuzzer's layer generators share: a :class:`GraphSpec` under
construction, the current tensor, and the random choices of each layer.

A layer is a :class:`Layer` (operator kind, seed, parameters). Its generator draws every
parameter it needs once (``Layer.pick``) and stores it in ``Layer.p``, so rebuilding the
same recipe gives the same model, and the shrinker can edit ``p`` (fewer channels, a
smaller kernel) and rebuild. Weight values come from the seed, never from ``p``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .spec import GraphSpec, OpSpec, TensorSpec

__all__ = ["RANGES", "Invalid", "Layer", "Net", "act_quant", "log_uniform"]

RANGES = {"INT8": (-128, 127), "INT16": (-32768, 32767)}
MAX_TENSOR = 48 * 1024  # elements of any activation tensor
MAX_MACS = 1_500_000  # multiply-accumulates of one layer


class Invalid(Exception):
    """The layer does not fit the tensor it is given (rank, shape, size)."""


@dataclass
class Layer:
    """One operator of a recipe: ``kind`` (e.g. ``CONV_2D``), a seed and the parameters
    drawn so far (JSON values only)."""

    kind: str
    seed: int
    p: dict[str, Any] = field(default_factory=dict)
    _rng: np.random.Generator | None = field(default=None, repr=False, compare=False)

    @property
    def rng(self) -> np.random.Generator:
        """The parameter stream (only used for parameters not drawn yet)."""
        if self._rng is None:
            self._rng = np.random.default_rng([self.seed, 1])
        return self._rng

    def data_rng(self, *salt: int) -> np.random.Generator:
        """A fresh stream for weight/bias values (the same on every rebuild)."""
        return np.random.default_rng([self.seed, 2, *salt])

    def pick(self, key: str, draw: Callable[[np.random.Generator], Any]) -> Any:
        """``p[key]``, drawn with ``draw(rng)`` the first time."""
        if key not in self.p:
            v = draw(self.rng)
            self.p[key] = v.item() if isinstance(v, np.generic) else v
        return self.p[key]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "seed": self.seed, "p": dict(self.p)}


def log_uniform(r: np.random.Generator, lo: float, hi: float) -> float:
    """10 ** uniform(log10 lo, log10 hi), as a float32-representable Python float."""
    return float(np.float32(10 ** r.uniform(np.log10(lo), np.log10(hi))))


def act_quant(r: np.random.Generator, dtype: str) -> tuple[float, int]:
    """A random activation quantization: int16 zero point mostly 0 (what converters
    write; TFLM's 16x8 kernels accept others, the C runtime then takes its reference
    loops); int8 zero points 0, small, anywhere, or at -128 / 127."""
    if dtype == "INT16":
        return log_uniform(r, 1e-5, 3e-3), int(r.integers(-300, 301)) if r.random() < 0.08 \
            else 0
    scale = log_uniform(r, 2e-3, 0.5)
    u = r.random()
    if u < 0.2:
        zp = 0
    elif u < 0.4:
        zp = int(r.integers(-20, 21))
    elif u < 0.8:
        zp = int(r.integers(-128, 128))
    elif u < 0.9:
        zp = -128
    else:
        zp = 127
    return scale, zp


class Net:
    """A model under construction. ``dtype``: the activation dtype of its layers (INT8, or
    INT16 for 16x8 models); ``tags``: per operator index, regime tags the generator knows
    (intent, e.g. 'saturating') besides those measured from the numbers."""

    def __init__(self, dtype: str) -> None:
        self.g = GraphSpec()
        self.dtype = dtype
        self.tags: dict[int, set[str]] = {}
        self.macs = 0

    def t(self, i: int) -> TensorSpec:
        return self.g.t(i)

    def act(self, shape: tuple[int, ...], dtype: str, scale: float | None, zp: int = 0,
            name: str = "") -> int:
        """A new activation tensor (refused when too large)."""
        shape = tuple(int(d) for d in shape)
        if any(d < 1 for d in shape):
            raise Invalid(f"empty tensor {shape}")
        if int(np.prod(shape, dtype=np.int64)) > MAX_TENSOR:
            raise Invalid(f"tensor {shape} too large")
        q = ([float(np.float32(scale))], [int(zp)]) if scale is not None else (None, None)
        return self.g.add(TensorSpec(name or f"t{len(self.g.tensors)}", shape, dtype, *q))

    def like(self, x: int, shape: tuple[int, ...] | None = None) -> int:
        """A tensor with x's dtype and quantization (and x's shape unless given)."""
        t = self.t(x)
        return self.act(shape if shape is not None else t.shape, t.dtype,
                        t.scale if t.scales else None, t.zp)

    def const(self, data: np.ndarray, dtype: str, scales: list[float] | None = None,
              zps: list[int] | None = None, qdim: int = 0, name: str = "") -> int:
        arr = np.asarray(data)
        q = [float(np.float32(s)) for s in scales] if scales is not None else None
        z = (list(zps) if zps is not None else [0] * len(q)) if q is not None else None
        return self.g.add(TensorSpec(name or f"c{len(self.g.tensors)}", tuple(arr.shape),
                                     dtype, q, z, qdim, arr))

    def ints(self, values: list[int]) -> int:
        """A constant int32 vector (shapes, axes, paddings)."""
        return self.const(np.asarray(values, dtype=np.int32), "INT32")

    def op(self, name: str, inputs: list[int], outputs: list[int], options: Any = None,
           options_type: str = "NONE", tags: tuple[str, ...] = (), macs: int = 0,
           intermediates: list[int] | None = None) -> int:
        self.macs += macs
        if macs > MAX_MACS:
            raise Invalid(f"{name}: {macs} MACs")
        self.g.ops.append(OpSpec(name, inputs, outputs, options, options_type,
                                 intermediates or []))
        k = len(self.g.ops) - 1
        self.tags[k] = set(tags)
        return k

    def input(self, shape: tuple[int, ...], dtype: str, scale: float | None, zp: int = 0
              ) -> int:
        i = self.act(shape, dtype, scale, zp, name=f"input{len(self.g.inputs)}")
        self.g.inputs.append(i)
        return i
