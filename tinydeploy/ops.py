"""Operator table: builtin operator name -> TFLM ``MicroMutableOpResolver`` method.

An operator missing from ``TFLM_OPS`` is one TFLite Micro cannot run; an operator whose
entry has ``int8=False`` exists in TFLM but has no int8 kernel. The table is data: the guard,
the firmware renderer and the C runtime all read it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OpInfo:
    name: str  # schema BuiltinOperator name, e.g. "FULLY_CONNECTED"
    resolver: str  # MicroMutableOpResolver method, e.g. "AddFullyConnected"
    int8: bool = True  # TFLM has an int8 kernel for it
    int16: bool = False  # TFLM has an int16 (16x8) kernel for it (INT16_OPS below)


# Operators whose TFLM kernel (90b983c2) takes int16 activations (16x8 models): the
# kernels that handle kTfLiteInt16, plus the type-agnostic data-movement ops.
INT16_OPS: frozenset[str] = frozenset({
    "ABS", "ADD", "AVERAGE_POOL_2D", "BATCH_MATMUL", "CAST", "CONCATENATION", "CONV_2D",
    "DEPTHWISE_CONV_2D", "DEQUANTIZE", "EQUAL", "EXPAND_DIMS", "FILL", "FULLY_CONNECTED",
    "GREATER", "GREATER_EQUAL", "LEAKY_RELU", "LESS", "LESS_EQUAL", "LOGISTIC", "MAXIMUM",
    "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "NOT_EQUAL", "PACK", "PAD", "PADV2", "PRELU",
    "QUANTIZE", "REDUCE_MAX", "RELU", "RELU6", "RESHAPE", "RESIZE_NEAREST_NEIGHBOR",
    "REVERSE_V2", "RSQRT", "SELECT_V2", "SHAPE", "SLICE", "SOFTMAX", "SPLIT", "SPLIT_V",
    "SQUARED_DIFFERENCE", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "SVDF", "TANH",
    "TRANSPOSE", "TRANSPOSE_CONV", "UNIDIRECTIONAL_SEQUENCE_LSTM", "UNPACK",
})


def _table(*rows: tuple[str, str] | tuple[str, str, bool]) -> dict[str, OpInfo]:
    return {r[0]: OpInfo(*r, int16=r[0] in INT16_OPS) for r in rows}  # type: ignore[misc]


TFLM_OPS: dict[str, OpInfo] = _table(
    ("ABS", "AddAbs"),
    ("ADD", "AddAdd"),
    ("ADD_N", "AddAddN"),
    ("ARG_MAX", "AddArgMax"),
    ("ARG_MIN", "AddArgMin"),
    ("ASSIGN_VARIABLE", "AddAssignVariable"),
    ("AVERAGE_POOL_2D", "AddAveragePool2D"),
    ("BATCH_MATMUL", "AddBatchMatMul"),
    ("BATCH_TO_SPACE_ND", "AddBatchToSpaceNd"),
    ("BROADCAST_ARGS", "AddBroadcastArgs"),
    ("BROADCAST_TO", "AddBroadcastTo"),
    ("CALL_ONCE", "AddCallOnce"),
    ("CAST", "AddCast"),
    ("CEIL", "AddCeil", False),
    ("CONCATENATION", "AddConcatenation"),
    ("CONV_2D", "AddConv2D"),
    ("COS", "AddCos", False),
    ("CUMSUM", "AddCumSum"),
    ("DEPTH_TO_SPACE", "AddDepthToSpace"),
    ("DEPTHWISE_CONV_2D", "AddDepthwiseConv2D"),
    ("DEQUANTIZE", "AddDequantize"),
    ("DIV", "AddDiv"),
    ("ELU", "AddElu"),
    ("EMBEDDING_LOOKUP", "AddEmbeddingLookup"),
    ("EQUAL", "AddEqual"),
    ("EXP", "AddExp", False),
    ("EXPAND_DIMS", "AddExpandDims"),
    ("FILL", "AddFill"),
    ("FLOOR", "AddFloor", False),
    ("FLOOR_DIV", "AddFloorDiv", False),
    ("FLOOR_MOD", "AddFloorMod", False),
    ("FULLY_CONNECTED", "AddFullyConnected"),
    ("GATHER", "AddGather"),
    ("GATHER_ND", "AddGatherNd"),
    ("GREATER", "AddGreater"),
    ("GREATER_EQUAL", "AddGreaterEqual"),
    ("HARD_SWISH", "AddHardSwish"),
    ("IF", "AddIf"),
    ("L2_NORMALIZATION", "AddL2Normalization"),
    ("L2_POOL_2D", "AddL2Pool2D", False),
    ("LEAKY_RELU", "AddLeakyRelu"),
    ("LESS", "AddLess"),
    ("LESS_EQUAL", "AddLessEqual"),
    ("LOG", "AddLog", False),
    ("LOG_SOFTMAX", "AddLogSoftmax"),
    ("LOGICAL_AND", "AddLogicalAnd"),
    ("LOGICAL_NOT", "AddLogicalNot"),
    ("LOGICAL_OR", "AddLogicalOr"),
    ("LOGISTIC", "AddLogistic"),
    ("MAX_POOL_2D", "AddMaxPool2D"),
    ("MAXIMUM", "AddMaximum"),
    ("MEAN", "AddMean"),
    ("MINIMUM", "AddMinimum"),
    ("MIRROR_PAD", "AddMirrorPad"),
    ("MUL", "AddMul"),
    ("NEG", "AddNeg", False),
    ("NOT_EQUAL", "AddNotEqual"),
    ("PACK", "AddPack"),
    ("PAD", "AddPad"),
    ("PADV2", "AddPadV2"),
    ("PRELU", "AddPrelu"),
    ("QUANTIZE", "AddQuantize"),
    ("READ_VARIABLE", "AddReadVariable"),
    ("REDUCE_MAX", "AddReduceMax"),
    ("RELU", "AddRelu"),
    ("RELU6", "AddRelu6"),
    ("RESHAPE", "AddReshape"),
    ("RESIZE_BILINEAR", "AddResizeBilinear"),
    ("RESIZE_NEAREST_NEIGHBOR", "AddResizeNearestNeighbor"),
    ("REVERSE_V2", "AddReverseV2"),
    ("ROUND", "AddRound", False),
    ("RSQRT", "AddRsqrt"),
    ("SELECT_V2", "AddSelectV2"),
    ("SHAPE", "AddShape"),
    ("SIN", "AddSin", False),
    ("SLICE", "AddSlice"),
    ("SOFTMAX", "AddSoftmax"),
    ("SPACE_TO_BATCH_ND", "AddSpaceToBatchNd"),
    ("SPACE_TO_DEPTH", "AddSpaceToDepth"),
    ("SPLIT", "AddSplit"),
    ("SPLIT_V", "AddSplitV"),
    ("SQRT", "AddSqrt", False),
    ("SQUARE", "AddSquare", False),
    ("SQUARED_DIFFERENCE", "AddSquaredDifference"),
    ("SQUEEZE", "AddSqueeze"),
    ("STRIDED_SLICE", "AddStridedSlice"),
    ("SUB", "AddSub"),
    ("SUM", "AddSum"),
    ("SVDF", "AddSvdf"),
    ("TANH", "AddTanh"),
    ("TRANSPOSE", "AddTranspose"),
    ("TRANSPOSE_CONV", "AddTransposeConv"),
    ("UNIDIRECTIONAL_SEQUENCE_LSTM", "AddUnidirectionalSequenceLSTM"),
    ("UNPACK", "AddUnpack"),
    ("VAR_HANDLE", "AddVarHandle"),
    ("WHILE", "AddWhile"),
    ("ZEROS_LIKE", "AddZerosLike"),
)

# Operators the interpreter-free C runtime (tinydeploy.cruntime) implements.
C_RUNTIME_OPS: frozenset[str] = frozenset({
    "FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D",
    "RESHAPE", "SOFTMAX", "ADD", "MUL", "LOGISTIC", "TANH", "CONCATENATION", "PAD", "MEAN",
    "QUANTIZE", "DEQUANTIZE", "RELU", "RELU6", "LEAKY_RELU", "HARD_SWISH",
})


def resolver_calls(op_names: list[str]) -> list[str]:
    """The ``AddXxx`` calls for a model's distinct ops, in first-use order."""
    return [TFLM_OPS[name].resolver for name in dict.fromkeys(op_names)]
