"""CMSIS-NN kernel arena needs (flavour ``cmsis-nn``: Chirale_TensorFlowLite 2.0.0).

Two parts:

* The CMSIS-NN scratch-buffer sizes, written from the ``arm_*_get_buffer_size`` functions
  of the CMSIS-NN copy the library bundles, for a Cortex-M4 with the DSP extension and no
  MVE (``ARM_MATH_DSP`` set by ``__ARM_FEATURE_DSP``, ``ARM_MATH_MVEI`` unset).
* What each TFLM kernel of that library allocates in its ``Prepare`` (per-channel arrays,
  scratch requests), from the library's ``kernels/cmsis_nn/*.cpp`` and, for operators
  without a CMSIS-NN kernel, its (January 2023) reference kernels.

:func:`cmsis_scratch` / :func:`cmsis_persistent` return ``None`` for an operator they do
not cover; :mod:`.kernels` then uses the reference-kernel rules. Layer 3 of
:mod:`tinydeploy.arena` (after :mod:`.library` and :mod:`.graph`).
"""

from __future__ import annotations

from .graph import INT8, INT16, Graph, Op


# --- CMSIS-NN buffer sizes (DSP, no MVE) ------------------------------------------------------
def convolve_s8_buffer(in_c: int, f_w: int, f_h: int) -> int:
    """arm_convolve_s8_get_buffer_size: two im2col columns of int16."""
    return 2 * in_c * f_w * f_h * 2


def convolve_wrapper_s8_buffer(in_n: int, in_h: int, in_w: int, in_c: int, f_h: int, f_w: int,
                               out_w: int, pad: tuple[int, int], stride: tuple[int, int],
                               dilation: tuple[int, int]) -> int:
    """arm_convolve_wrapper_s8_get_buffer_size (pad/stride/dilation as (w, h))."""
    del in_n
    if pad == (0, 0) and stride == (1, 1) and (f_w, f_h) == (1, 1) and dilation == (1, 1):
        return 0  # arm_convolve_1x1_s8_fast
    if in_h == 1 and out_w % 4 == 0 and dilation[0] == 1 and f_h == 1:
        return convolve_s8_buffer(in_c, f_w, f_h)  # arm_convolve_1_x_n_s8 (same size)
    return convolve_s8_buffer(in_c, f_w, f_h)


def convolve_wrapper_s16_buffer(in_c: int, f_w: int, f_h: int,
                                dilation: tuple[int, int]) -> int:
    """arm_convolve_wrapper_s16_get_buffer_size: the fast kernel (int16 im2col) for small
    filters, none for the generic one."""
    if f_w * f_h * in_c < 512 and dilation == (1, 1):
        return 2 * in_c * f_w * f_h * 2
    return 0


def depthwise_conv_wrapper_s8_buffer(in_n: int, in_c: int, out_c: int, f_w: int, f_h: int,
                                     dilation: tuple[int, int]) -> int:
    """arm_depthwise_conv_wrapper_s8_get_buffer_size: the optimized kernel (depth
    multiplier 1, batch 1, no dilation) needs one int16 im2col of the filter window."""
    if in_c == out_c and in_n == 1 and dilation == (1, 1):
        return in_c * f_w * f_h * 2
    return 0


def avgpool_s8_buffer(channels: int) -> int:
    """arm_avgpool_s8_get_buffer_size: one int32 accumulator per channel."""
    return 4 * channels


def fully_connected_s8_buffer() -> int:
    """arm_fully_connected_s8_get_buffer_size: none."""
    return 0


# --- per-kernel rules -------------------------------------------------------------------------
def _padding(pad_mode: int, size: int, f: int, stride: int, dil: int, out: int) -> int:
    """TFLM's ComputePadding for one dimension (padding 0 = SAME, 1 = VALID)."""
    if pad_mode != 0:
        return 0
    eff = (f - 1) * dil + 1
    return max(((out - 1) * stride + eff - size) // 2, 0)


def _dims4(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    s = (1,) * (4 - len(shape)) + tuple(shape)
    return s[-4], s[-3], s[-2], s[-1]


def cmsis_scratch(g: Graph, op: Op) -> list[int] | None:
    """Scratch-buffer requests of the CMSIS-NN build's kernel, None if not covered."""
    inp, w, out = g.tensor(op, 0), g.tensor(op, 1), g.tensor(op, 0, outputs=True)
    o = op.options
    if op.name == "CONV_2D" and inp is not None and w is not None and out is not None:
        n, ih, iw, ic = _dims4(inp.shape)
        _, fh, fw, _ = _dims4(w.shape)
        _, oh, ow, _ = _dims4(out.shape)
        stride = (o.get("strideW", 1), o.get("strideH", 1))
        dil = (o.get("dilationWFactor", 1), o.get("dilationHFactor", 1))
        pad = (_padding(o.get("padding", 0), iw, fw, stride[0], dil[0], ow),
               _padding(o.get("padding", 0), ih, fh, stride[1], dil[1], oh))
        if inp.dtype == INT8:
            size = convolve_wrapper_s8_buffer(n, ih, iw, ic, fh, fw, ow, pad, stride, dil)
        elif inp.dtype == INT16:
            size = convolve_wrapper_s16_buffer(ic, fw, fh, dil)
        else:
            size = 0
        return [size] if size > 0 else []
    if op.name == "DEPTHWISE_CONV_2D" and inp is not None and w is not None:
        n, _, _, ic = _dims4(inp.shape)
        _, fh, fw, oc = _dims4(w.shape)
        dil = (o.get("dilationWFactor", 1), o.get("dilationHFactor", 1))
        size = depthwise_conv_wrapper_s8_buffer(n, ic, oc, fw, fh, dil) \
            if inp.dtype == INT8 else 0
        return [size] if size > 0 else []
    if op.name == "AVERAGE_POOL_2D" and inp is not None:
        return [avgpool_s8_buffer(_dims4(inp.shape)[3])] if inp.dtype == INT8 else []
    if op.name in ("MAX_POOL_2D", "FULLY_CONNECTED", "SOFTMAX", "ADD", "MUL"):
        return []
    if op.name in ("MEAN", "SUM") and inp is not None and out is not None:
        if inp.dtype in (INT8, INT16):
            elems = 1
            for d in out.shape:
                elems *= max(d, 1)
            return [4 * elems]
        return []
    if op.name == "UNIDIRECTIONAL_SEQUENCE_LSTM":
        hidden, cell = g.tensor(op, 18), g.tensor(op, 19)
        if hidden is not None and cell is not None and len(cell.shape) >= 2:
            n = cell.shape[0] * cell.shape[-1]
            return [2 * n] * 4 + [n]  # four int16 gate buffers, one int8
    return None


def cmsis_persistent(g: Graph, op: Op) -> list[int] | None:
    """Persistent allocations of the CMSIS-NN build's kernel Prepare, None if not covered."""
    inp, w, out = g.tensor(op, 0), g.tensor(op, 1), g.tensor(op, 0, outputs=True)
    if op.name == "FULLY_CONNECTED":
        if inp is not None and out is not None and w is not None and inp.dtype == INT8 \
                and len(out.shape) > 2 and w.shape and w.shape[-1] % 4 == 0:
            return [4 * out.shape[-1]] * 2  # per-channel arrays for the 1x1-conv path
        return []
    if op.name == "CONCATENATION" and out is not None and out.dtype == INT8:
        return [4 * len(op.inputs)] * 2  # input scales and zero points
    if op.name == "UNIDIRECTIONAL_SEQUENCE_LSTM":
        # effective biases: zero point x weights (+ bias), one int32 per row, for each
        # present input-to-gate (inputs 1-4) and recurrent-to-gate (5-8) weight matrix
        sizes = []
        for k in (2, 5, 3, 6, 4, 7, 1, 8):  # forget, cell, output, input gate order
            t = g.tensor(op, k)
            if t is not None and t.shape:
                sizes.append(4 * t.shape[0])
        return sizes
    if op.name in ("MEAN", "SUM"):
        return []
    return None


def cmsis_temps(op: Op) -> list[int] | None:
    """Temp tensors the library's Prepare allocates, in order (None: inputs + outputs)."""
    i, o, m = op.inputs, op.outputs, op.intermediates

    def pick(*idx: int) -> list[int]:
        return [i[k] for k in idx if k < len(i) and i[k] >= 0]

    out = list(o[:1])
    if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):  # Prepare + CalculateOpData*Conv
        return pick(0, 1) + out + pick(0, 1, 2) + out
    if op.name in ("MEAN", "SUM"):  # PrepareMeanOrSumHelper + PrepareSimple
        return pick(0) + out + pick(1) + pick(0, 1) + out
    if op.name == "UNIDIRECTIONAL_SEQUENCE_LSTM":  # the January 2023 integer LSTM
        weights = tuple(range(1, 9))
        return (pick(0, 4, 8) + pick(1, 2, 3, 5, 6, 7, 12, 13, 14, 15)  # dimension checks
                + out + pick(18, 19) + pick(1)
                + pick(19) + out + pick(0, *weights, 18)  # PopulateQuantizedLstmParams
                + m[4:5]  # the hidden-state intermediate (0-3 only with layer norm)
                + pick(0, 18, *weights) + m[4:5] + pick(13, 14, 15, 12))  # effective biases
    return None
