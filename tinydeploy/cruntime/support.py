"""Which operators the C runtime's extension kernels run (``emit_ext.py``), as data and
pure checks on the graph: ``ext_reason(g, op)`` (None when an extension kernel runs ``op``,
else a short reason) and ``lstm_problem(g, op)`` (why an LSTM is outside TFLM's int8
layout). Below the graph check (``graph.py``), the consistency check and the emitters, so
all of them can ask without importing the emitters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .graph import Graph, Op

# operators only the extension runs (any dtype it accepts)
EXT_OPS = frozenset({"SUB", "MAXIMUM", "MINIMUM", "STRIDED_SLICE", "TRANSPOSE_CONV",
                     "EXPAND_DIMS", "SQUEEZE", "UNIDIRECTIONAL_SEQUENCE_LSTM", "TRANSPOSE",
                     "RESIZE_NEAREST_NEIGHBOR"})
# int8 operators that also have a 16x8 kernel here
INT16_OPS = frozenset({"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "SUB", "MUL",
                       "PAD", "LEAKY_RELU", "RESHAPE", "EXPAND_DIMS", "SQUEEZE", "QUANTIZE",
                       "MAXIMUM", "MINIMUM", "STRIDED_SLICE", "TRANSPOSE_CONV", "TRANSPOSE",
                       "RESIZE_NEAREST_NEIGHBOR"})
# QUANTIZE (requantize) pairs TFLM runs, besides int8 -> int8 (emit.py): (in, out)
QUANTIZE_PAIRS = frozenset({("INT8", "INT16"), ("INT16", "INT8"), ("INT16", "INT16"),
                            ("INT8", "INT32"), ("INT16", "INT32"), ("INT32", "INT8"),
                            ("INT32", "INT16")})


def _data_inputs(g: Graph, op: Op) -> list[int]:
    """The activation (non-constant, non-parameter) inputs whose dtype decides the kernel."""
    if op.name == "TRANSPOSE_CONV":
        return [op.inputs[2]]
    if op.name == "UNIDIRECTIONAL_SEQUENCE_LSTM":
        return [op.inputs[0]]
    if op.name in ("ADD", "SUB", "MUL", "MAXIMUM", "MINIMUM"):
        return [i for i in op.inputs[:2] if i >= 0]
    return [op.inputs[0]] if op.inputs and op.inputs[0] >= 0 else []


def _dtypes(g: Graph, op: Op) -> tuple[set[str], set[str]]:
    ins = {g.t(i).dtype for i in _data_inputs(g, op)}
    outs = {g.t(i).dtype for i in op.outputs}
    return ins, outs


def _describe(g: Graph, op: Op) -> str:
    ins, outs = _dtypes(g, op)
    return f"{'/'.join(sorted(ins)) or '-'} in, {'/'.join(sorted(outs)) or '-'} out"


def ext_reason(g: Graph, op: Op) -> str | None:
    """None if an extension kernel runs ``op``; else a short dtype description for the
    refusal (the int8 emitter may still run it: graph.py decides)."""
    ins, outs = _dtypes(g, op)
    types = ins | outs
    if op.name == "QUANTIZE":
        if len(ins) == len(outs) == 1 and (*ins, *outs) in QUANTIZE_PAIRS:
            return None
        return _describe(g, op)
    if op.name == "UNIDIRECTIONAL_SEQUENCE_LSTM":
        if types == {"INT8"} and lstm_problem(g, op) is None:
            return None
        return lstm_problem(g, op) or _describe(g, op)
    if op.name in EXT_OPS and types == {"INT8"}:
        return None
    if op.name in INT16_OPS and types == {"INT16"}:
        return None
    return _describe(g, op)


def lstm_problem(g: Graph, op: Op) -> str | None:
    """Why TFLM's int8 LSTM layout does not hold (None: it does)."""
    ins = op.inputs
    if len(ins) != 24 or len(op.outputs) != 1:
        return "LSTM with other than 24 inputs / 1 output"
    if any(ins[k] >= 0 for k in (9, 10, 11, 16, 17, 20, 21, 22, 23)):
        return "LSTM with peephole, projection or layer-norm tensors"
    if any(ins[k] < 0 for k in (*range(0, 9), *range(12, 16), 18, 19)):
        return "LSTM without input-gate tensors (CIFG)"
    w = [g.t(ins[k]) for k in range(1, 9)]
    if any(t.dtype != "INT8" or not t.is_const or len(t.scales) != 1 for t in w):
        return "LSTM weights other than constant per-tensor int8"
    if any(g.t(ins[k]).dtype != "INT32" or not g.t(ins[k]).is_const for k in range(12, 16)):
        return "LSTM bias other than constant int32"
    h, c = g.t(ins[18]), g.t(ins[19])
    if not (h.variable and c.variable) or h.dtype != "INT8" or c.dtype != "INT16":
        return "LSTM state other than int8 hidden / int16 cell variable tensors"
    act = int(getattr(op.options, "fusedActivationFunction", 0) or 0)
    if act != 4:  # TFLM asserts on any other (the schema's enum has no SIGMOID)
        return f"LSTM cell activation {act} (TFLM runs only TANH)"
    x = g.t(ins[0])
    if len(x.shape) != 3:
        return "LSTM input of rank other than 3"
    return None
