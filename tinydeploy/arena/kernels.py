"""Kernel sizes: what each operator's Prepare allocates for one kernel flavour.

Layer 3 of :mod:`tinydeploy.arena` (library facts -> kernel sizes -> allocator replay ->
prediction/measurement -> choice): scratch-buffer requests, temporary ``TfLiteTensor``
copies and persistent per-channel arrays. The ``cmsis-nn`` rules of :mod:`.cmsis_nn` come
first for that flavour; the reference kernels' rules (TFLM 90b983c2) cover the rest.
"""

from __future__ import annotations

from .cmsis_nn import cmsis_persistent, cmsis_scratch, cmsis_temps
from .graph import DTYPE_BYTES, INT8, INT16, Graph, Op
from .library import CMSIS_NN, INT16_LUT_BYTES, KNOWN_OPS


def scratch_requests(g: Graph) -> list[tuple[int, int]]:
    """(node index, bytes) of the kernels' RequestScratchBufferInArena calls, in order."""
    out = []
    for k, op in enumerate(g.ops):
        out += [(k, n) for n in op_scratch(g, op)]
    return out


def op_scratch(g: Graph, op: Op) -> list[int]:
    """Scratch-buffer request sizes of one operator's Prepare."""
    if g.flavour == CMSIS_NN:
        got = cmsis_scratch(g, op)
        if got is not None:
            return got
    inp, out = g.tensor(op, 0), g.tensor(op, 0, outputs=True)
    if op.name in ("MEAN", "SUM", "REDUCE_MAX") and inp is not None:
        sizes = []
        if op.name != "REDUCE_MAX" and inp.dtype in (7, 9):  # int16/int8 accumulators
            sizes.append(4 * max(out.nbytes // DTYPE_BYTES.get(out.dtype, 1), 1)
                         if out is not None else 4)
        axes = g.tensor(op, 1)
        n_axes = axes.nbytes // 4 if axes is not None else 1
        sizes += [4 * max(inp.rank, 1), 4 * max(n_axes, 1)]
        return sizes
    if op.name == "TRANSPOSE_CONV":
        return transpose_conv_scratch(g, op)
    if op.name == "UNIDIRECTIONAL_SEQUENCE_LSTM":
        hidden, cell = g.tensor(op, 18), g.tensor(op, 19)
        if hidden is not None and cell is not None and len(hidden.shape) >= 2:
            per = hidden.shape[0] * hidden.shape[-1] * DTYPE_BYTES.get(cell.dtype, 2)
            return [per] * 4
    return []


def transpose_conv_scratch(g: Graph, op: Op) -> list[int]:
    """TRANSPOSE_CONV's Prepare (TFLM 90b983c2 and January 2023 alike): an int32 (int8
    model) or int64 (16x8) accumulator per output element, then in CalculateOpData, for a
    16x8 model with an int16 bias, the bias widened to int64."""
    inp, out, bias = g.tensor(op, 2), g.tensor(op, 0, outputs=True), g.tensor(op, 3)
    if inp is None or out is None or inp.dtype not in (INT8, INT16):
        return []
    elems = out.nbytes // DTYPE_BYTES.get(out.dtype, 1)
    sizes = [(4 if inp.dtype == INT8 else 8) * elems]
    if inp.dtype == INT16 and bias is not None and bias.dtype == INT16:
        sizes.append(8 * (bias.nbytes // 2))
    return sizes


def temp_tensors(g: Graph, op: Op) -> list[int]:
    """Tensors whose temporary TfLiteTensor copies the kernel's Prepare allocates (the
    temp section is only released after the node, so repeats add up)."""
    if g.flavour == CMSIS_NN:
        got = cmsis_temps(op)
        if got is not None:
            return got
    if op.name == "TRANSPOSE_CONV":  # Prepare: output, input, filter; then CalculateOpData
        pick = [op.inputs[k] for k in (2, 1, 3) if k < len(op.inputs) and op.inputs[k] >= 0]
        return op.outputs[:1] + pick[:2] + pick + op.outputs[:1]
    return [t for t in op.inputs + op.outputs if t >= 0]


def kernel_persistent(g: Graph, k: int) -> list[int]:
    """Sizes a kernel allocates with AllocatePersistentBuffer during Prepare."""
    op = g.ops[k]
    w = g.tensor(op, 1)
    if g.flavour == CMSIS_NN:
        got = cmsis_persistent(g, op)
        if got is not None:
            return got
    if op.name in ("CONV_2D", "TRANSPOSE_CONV") and w is not None and w.shape:
        return [4 * w.shape[0]] * 2  # per-output-channel multiplier and shift
    if op.name == "DEPTHWISE_CONV_2D" and w is not None and w.shape:
        return [4 * w.shape[-1]] * 2
    if op.name == "FULLY_CONNECTED":
        return [4 * w.channels] * 2 if w is not None and w.channels > 1 else []
    if op.name == "SOFTMAX":
        inp = g.tensor(op, 0)
        return [INT16_LUT_BYTES // 2] * 2 if inp is not None and inp.dtype == 7 else []
    if op.name not in KNOWN_OPS:  # unknown kernel: assume per-channel requantization
        ch = max((g.tensors[t].channels for t in op.inputs if t >= 0), default=0)
        return [4 * ch] * 2 if ch > 1 else []
    return []
