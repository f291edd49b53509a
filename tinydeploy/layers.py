"""Per-layer analysis (``tinydeploy inspect``), in the spirit of ``stedgeai analyze``.

For each operator of the main subgraph, in execution order: the op, its output shape and
dtype, its parameters (elements and bytes of its constant inputs: weights, biases), its
multiply-accumulates and its activation bytes (output tensors); plus the totals: MACs,
weight bytes and peak activation memory -- both the sum of the non-constant tensors live
at the worst operator and TFLM's greedy plan of the planned tensors and kernel scratch
buffers (:mod:`tinydeploy.arena.replay`, the arena's planned head).

MACs: FULLY_CONNECTED and BATCH_MATMUL = outputs x reduction depth; CONV_2D = outputs x
kernel height x width x input channels; DEPTHWISE_CONV_2D = outputs x kernel area;
TRANSPOSE_CONV = inputs x kernel elements per input; pooling = outputs x window;
recurrent ops (LSTM, SVDF) = their 2-D weight elements x time steps; element-wise ops
(ADD, MUL, activations, SOFTMAX...) = outputs; data movement (RESHAPE, PAD, ...) = 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .facts import ModelFacts, load, op_name, tensor_facts

_ELEMENTWISE = {"ADD", "SUB", "MUL", "DIV", "SQUARED_DIFFERENCE", "MAXIMUM", "MINIMUM",
                "RELU", "RELU6", "RELU_N1_TO_1", "LEAKY_RELU", "PRELU", "HARD_SWISH",
                "LOGISTIC", "TANH", "SOFTMAX", "LOG_SOFTMAX", "EXP", "QUANTIZE",
                "DEQUANTIZE", "MEAN", "SUM", "ABS", "RSQRT", "SQRT", "ELU"}
_POOLS = {"MAX_POOL_2D", "AVERAGE_POOL_2D", "L2_POOL_2D"}
_RECURRENT = {"UNIDIRECTIONAL_SEQUENCE_LSTM", "SVDF", "UNIDIRECTIONAL_SEQUENCE_RNN"}


@dataclass(frozen=True)
class Layer:
    """One operator's numbers (see the module docstring)."""

    index: int
    op: str
    output_shape: list[int]
    dtype: str
    params: int
    param_bytes: int
    macs: int
    activation_bytes: int


def _prod(shape: Any) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _macs(name: str, op: Any, tensors: list[Any], const: list[int], out_elems: int) -> int:
    ins = [int(i) for i in (op.inputs if op.inputs is not None else [])]
    shape = [list(tensors[i].shape) if i >= 0 and tensors[i].shape is not None else []
             for i in ins]
    if name in ("FULLY_CONNECTED", "BATCH_MATMUL") and len(shape) > 1 and shape[1]:
        depth = shape[1][-1] if name == "FULLY_CONNECTED" else shape[1][-2]
        return out_elems * int(depth)
    if name == "CONV_2D" and len(shape) > 1 and len(shape[1]) == 4:
        return out_elems * _prod(shape[1][1:])
    if name == "DEPTHWISE_CONV_2D" and len(shape) > 1 and len(shape[1]) == 4:
        return out_elems * _prod(shape[1][1:3])
    if name == "TRANSPOSE_CONV" and len(shape) > 2 and len(shape[1]) == 4:
        return _prod(shape[2]) * _prod(shape[1][:3])
    if name in _POOLS:
        opts = op.builtinOptions
        window = int(getattr(opts, "filterHeight", 1) or 1) * int(
            getattr(opts, "filterWidth", 1) or 1)
        return out_elems * window
    if name in _RECURRENT:
        steps = shape[0][1] if shape and len(shape[0]) == 3 else 1
        return int(steps) * sum(_prod(shape[k]) for k, i in enumerate(ins)
                                if i in const and len(shape[k]) == 2)
    if name in _ELEMENTWISE:
        return out_elems
    return 0


def _constants(facts: ModelFacts) -> list[int]:
    """Indices of the main subgraph's tensors that hold constant data."""
    m = facts.model
    assert m is not None
    tensors, buffers = m.subgraphs[0].tensors or [], m.buffers or []
    return [i for i, t in enumerate(tensors)
            if 0 < t.buffer < len(buffers) and buffers[t.buffer].data is not None
            and len(buffers[t.buffer].data)]


def _main(model: str | Any) -> tuple[ModelFacts, Any, list[Any], list[Any], Any]:
    """The model's facts, main subgraph, its tensors, the operator codes and constants."""
    facts: ModelFacts = load(model)
    m = facts.model
    assert m is not None
    sub = m.subgraphs[0]
    return facts, sub, sub.tensors or [], m.operatorCodes or [], _constants(facts)


def op_macs(model: str | Any) -> list[int]:
    """Multiply-accumulates of each operator of the main subgraph, in execution order
    (see the module docstring; what ``analyze`` reports per layer, without the rest)."""
    facts, sub, tensors, codes, const = _main(model)
    out = []
    for op in sub.operators or []:
        outs = [int(i) for i in (op.outputs if op.outputs is not None else []) if i >= 0]
        elems = tensor_facts(tensors, outs[0]).elements if outs else 0
        out.append(_macs(op_name(codes[op.opcodeIndex]), op, tensors, const, elems))
    return out


def analyze(model: str | Any) -> dict[str, Any]:
    """Per-layer table and totals of a model.

    Args:
        model: ``.tflite`` path, bytes or :class:`ModelFacts`.

    Returns:
        ``{"layers": [Layer as dict...], "totals": {"macs", "params", "weight_bytes",
        "activation_peak_bytes", "activation_planned_bytes"}}``.

    Raises:
        TinyDeployError: unreadable model (``file_not_found``, ``bad_flatbuffer``).
    """
    facts, sub, tensors, codes, const = _main(model)
    const_set = set(const)
    layers: list[Layer] = []
    macs = op_macs(facts)
    for k, op in enumerate(sub.operators or []):
        name = op_name(codes[op.opcodeIndex])
        outs = [int(i) for i in (op.outputs if op.outputs is not None else []) if i >= 0]
        out_facts = [tensor_facts(tensors, i) for i in outs]
        ins = [int(i) for i in (op.inputs if op.inputs is not None else []) if i >= 0]
        params = [tensor_facts(tensors, i) for i in ins if i in const_set]
        first = out_facts[0] if out_facts else None
        layers.append(Layer(
            index=k, op=name, output_shape=list(first.shape) if first else [],
            dtype=first.dtype if first else "-",
            params=sum(p.elements for p in params), param_bytes=sum(p.nbytes for p in params),
            macs=macs[k],
            activation_bytes=sum(t.nbytes for t in out_facts)))
    totals = {"layers": len(layers), "macs": sum(x.macs for x in layers),
              "params": sum(x.params for x in layers), "weight_bytes": facts.weight_bytes,
              "activation_peak_bytes": _live_peak(facts, const_set),
              "activation_planned_bytes": _planned(facts)}
    return {"layers": [asdict(x) for x in layers], "totals": totals}


def _live_peak(facts: ModelFacts, const: set[int]) -> int:
    """Largest sum of non-constant tensor bytes live at one operator (inputs live from the
    start, outputs to the end)."""
    m = facts.model
    assert m is not None
    sub = m.subgraphs[0]
    tensors, ops = sub.tensors or [], sub.operators or []
    n = len(ops)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for t in facts.inputs:
        first[t.index], last[t.index] = 0, 0
    for k, op in enumerate(ops):
        for i in [*(op.inputs if op.inputs is not None else []),
                  *(op.outputs if op.outputs is not None else [])]:
            i = int(i)
            if i < 0 or i in const:
                continue
            first.setdefault(i, k)
            last[i] = max(last.get(i, k), k)
    for t in facts.outputs:
        last[t.index] = max(n - 1, 0)
    size = {i: tensor_facts(tensors, i).nbytes for i in first}
    return max((sum(size[i] for i in first if first[i] <= k <= last[i]) for k in range(n)),
               default=0)


def _planned(facts: ModelFacts) -> int | None:
    """TFLM's greedy plan of the activations and scratch buffers (None if not modelled)."""
    try:
        from .arena.graph import Graph
        from .arena.replay import greedy_plan, planned_buffers

        return int(greedy_plan(planned_buffers(Graph.from_facts(facts))))
    except Exception:  # an op the allocator model does not know: the live peak still holds
        return None


def table(analysis: dict[str, Any]) -> str:
    """The per-layer analysis as a text table with a totals block."""
    head = ("#", "op", "output shape", "dtype", "params", "param B", "MACs", "act. B")
    rows = [(str(x["index"]), x["op"], "x".join(str(d) for d in x["output_shape"]) or "-",
             x["dtype"], f"{x['params']:,}", f"{x['param_bytes']:,}", f"{x['macs']:,}",
             f"{x['activation_bytes']:,}") for x in analysis["layers"]]
    widths = [max(len(r[c]) for r in [head, *rows]) for c in range(len(head))]
    right = {0, 4, 5, 6, 7}

    def line(r: tuple[str, ...]) -> str:
        return "  ".join(v.rjust(w) if c in right else v.ljust(w)
                         for c, (v, w) in enumerate(zip(r, widths, strict=True))).rstrip()

    t = analysis["totals"]
    planned = (f", TFLM greedy plan {t['activation_planned_bytes']:,} B"
               if t.get("activation_planned_bytes") is not None else "")
    out = [line(head), line(tuple("-" * w for w in widths)), *map(line, rows),
           "",
           f"total: {t['layers']} layers, {t['macs']:,} MACs, {t['params']:,} parameters, "
           f"weights {t['weight_bytes']:,} B",
           f"peak activation memory: {t['activation_peak_bytes']:,} B live at once{planned}"]
    return "\n".join(out)
