"""Library facts: what each operator of a TFLM library allocates in the tensor arena.

First layer of :mod:`tinydeploy.arena` (library facts -> kernel sizes -> allocator replay ->
prediction/measurement -> choice); imports nothing of the package. Two kernel *flavours*:

* ``reference`` -- TFLM's reference kernels at commit 90b983c2 (the ground-truth build).
* ``cmsis-nn`` -- TFLM as bundled by the Chirale_TensorFlowLite 2.0.0 Arduino library
  (TFLM of January 2023 with the CMSIS-NN kernels for conv, depthwise conv, fully
  connected, pooling, softmax, add, mul, SVDF and LSTM), for a Cortex-M4 with the DSP
  extension and no MVE (``ARM_MATH_DSP``, no ``ARM_MATH_MVEI``).

The numbers are *facts extracted* from those sources: ``sizeof`` of each kernel's
``OpData`` (what ``Init`` allocates with ``AllocatePersistentBuffer``) and of the parsed
builtin options, compiled with ``arm-none-eabi-g++ -mcpu=cortex-m4`` (AAPCS: 4-byte
pointers, *short enums* -- an enum whose values fit in a byte takes one byte) and with
x86-64 ``g++`` (8-byte pointers, 4-byte enums); the Prepare-time allocations
(per-channel arrays, LUTs, scratch-buffer requests) are written down from the kernels'
``Prepare`` functions, the CMSIS-NN buffer sizes from the ``arm_*_get_buffer_size``
functions (see :mod:`tinydeploy.arena.cmsis_nn`).
"""

from __future__ import annotations

REFERENCE = "reference"
CMSIS_NN = "cmsis-nn"
FLAVOURS = (REFERENCE, CMSIS_NN)

# sizeof(OpData) allocated by Init: op -> (cortex-m, x86-64). 0: Init allocates nothing.
OPDATA_REFERENCE: dict[str, tuple[int, int]] = {
    "FULLY_CONNECTED": (48, 64), "CONV_2D": (56, 72), "DEPTHWISE_CONV_2D": (56, 72),
    "MAX_POOL_2D": (32, 32), "AVERAGE_POOL_2D": (32, 32), "SOFTMAX": (56, 80),
    "MEAN": (44, 44), "SUM": (44, 44), "REDUCE_MAX": (44, 44), "ADD": (60, 60),
    "SUB": (52, 52), "MUL": (36, 36), "LOGISTIC": (16, 16), "TANH": (16, 16),
    "CONCATENATION": (24, 40), "PAD": (56, 56), "PADV2": (56, 56), "RELU": (28, 28),
    "RELU6": (8, 8), "QUANTIZE": (32, 32), "DEQUANTIZE": (32, 32),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": (688, 688), "LEAKY_RELU": (24, 24),
    "HARD_SWISH": (20, 20), "STRIDED_SLICE": (84, 84), "TRANSPOSE_CONV": (72, 80),
    "PRELU": (28, 28), "DIV": (28, 28), "SVDF": (36, 36),
    "RESHAPE": (0, 0), "SQUEEZE": (0, 0), "EXPAND_DIMS": (0, 0),
}

# sizeof/alignof of the parsed builtin options: op -> ((size, align) cortex-m, x86-64).
BUILTIN_DATA: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "FULLY_CONNECTED": ((5, 1), (16, 4)), "CONV_2D": ((28, 4), (28, 4)),
    "DEPTHWISE_CONV_2D": ((28, 4), (28, 4)), "MAX_POOL_2D": ((40, 4), (40, 4)),
    "AVERAGE_POOL_2D": ((40, 4), (40, 4)), "L2_POOL_2D": ((40, 4), (40, 4)),
    "RESHAPE": ((36, 4), (36, 4)), "SOFTMAX": ((4, 4), (4, 4)),
    "MEAN": ((1, 1), (1, 1)), "SUM": ((1, 1), (1, 1)), "REDUCE_MAX": ((1, 1), (1, 1)),
    "REDUCE_MIN": ((1, 1), (1, 1)), "REDUCE_PROD": ((1, 1), (1, 1)),
    "ADD": ((2, 1), (8, 4)), "SUB": ((2, 1), (8, 4)), "MUL": ((1, 1), (4, 4)),
    "DIV": ((1, 1), (4, 4)), "CONCATENATION": ((8, 4), (8, 4)),
    "SQUEEZE": ((36, 4), (36, 4)), "STRIDED_SLICE": ((24, 4), (24, 4)),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": ((16, 4), (16, 4)),
    "TRANSPOSE_CONV": ((16, 4), (20, 4)), "LEAKY_RELU": ((4, 4), (4, 4)),
    "SHAPE": ((1, 1), (4, 4)), "PACK": ((8, 4), (8, 4)), "UNPACK": ((8, 4), (8, 4)),
    "SPLIT": ((4, 4), (4, 4)), "GATHER": ((8, 4), (8, 4)),
    "RESIZE_NEAREST_NEIGHBOR": ((2, 1), (2, 1)), "RESIZE_BILINEAR": ((2, 1), (2, 1)),
    "SPACE_TO_DEPTH": ((4, 4), (4, 4)), "DEPTH_TO_SPACE": ((4, 4), (4, 4)),
    "ARG_MAX": ((1, 1), (4, 4)), "ARG_MIN": ((1, 1), (4, 4)),
    "L2_NORMALIZATION": ((1, 1), (4, 4)), "CAST": ((2, 1), (8, 4)),
    "MIRROR_PAD": ((1, 1), (4, 4)), "BATCH_MATMUL": ((3, 1), (3, 1)),
    "SVDF": ((8, 4), (12, 4)),
}

# sizeof OpData in Chirale_TensorFlowLite 2.0.0 (arm-none-eabi-g++ -mcpu=cortex-m4, short
# enums, no TF_LITE_STATIC_MEMORY -- the Arduino IDE build); CMSIS-NN kernels wrap the
# reference OpData with a buffer index and shapes.
OPDATA_CHIRALE: dict[str, int] = {
    "FULLY_CONNECTED": 60, "CONV_2D": 60, "DEPTHWISE_CONV_2D": 60, "MAX_POOL_2D": 36,
    "AVERAGE_POOL_2D": 36, "SOFTMAX": 64, "MEAN": 40, "SUM": 40, "REDUCE_MAX": 40,
    "ADD": 60, "SUB": 52, "MUL": 36, "LOGISTIC": 16, "TANH": 16, "CONCATENATION": 24,
    "PAD": 56, "PADV2": 56, "RELU": 28, "RELU6": 2, "QUANTIZE": 32, "DEQUANTIZE": 32,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": 384, "LEAKY_RELU": 24, "HARD_SWISH": 20,
    "TRANSPOSE_CONV": 72, "PRELU": 28, "DIV": 28, "SVDF": 36,
    "STRIDED_SLICE": 84,  # StridedSliceParams: 3 x (int8 count + int32[5]) + 5 x uint16
    "RESHAPE": 0, "SQUEEZE": 0, "EXPAND_DIMS": 0,
}
# builtin options that differ from TFLM 90b983c2 on Cortex-M: (size, alignment)
BUILTIN_DATA_CHIRALE: dict[str, tuple[int, int]] = {
    "FULLY_CONNECTED": (4, 1), "CONV_2D": (24, 4), "STRIDED_SLICE": (20, 4),
}
# struct sizes of that build (TfLiteTensor and TfLiteNode carry the dynamic-memory fields)
CHIRALE_TFLITE_TENSOR = 64
CHIRALE_NODE_AND_REGISTRATION = 44


# Ops whose tables above are complete for the flavour (others are estimated generously).
KNOWN_OPS = frozenset(OPDATA_REFERENCE)
INT16_LUT_BYTES = 2 * 513  # softmax int16: exp and 1/(1+x) tables, 513 int16 each


def opdata_bytes(op: str, abi_index: int, flavour: str = REFERENCE) -> int:
    """sizeof the OpData the kernel's Init allocates (generous estimate if unknown)."""
    if flavour == CMSIS_NN:
        return OPDATA_CHIRALE.get(op, 80)
    if op in OPDATA_REFERENCE:
        return OPDATA_REFERENCE[op][abi_index]
    return (80, 112)[abi_index]


def builtin_data(op: str, abi_index: int, flavour: str = REFERENCE) -> tuple[int, int] | None:
    """(size, alignment) of the op's parsed builtin options, None if none are allocated."""
    if flavour == CMSIS_NN and op in BUILTIN_DATA_CHIRALE:
        return BUILTIN_DATA_CHIRALE[op]
    entry = BUILTIN_DATA.get(op)
    return entry[abi_index] if entry else None
