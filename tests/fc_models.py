"""One-operator int8 FULLY_CONNECTED models built from scratch (schema object API), and the
TFLM Python runtime's outputs for them: tests/test_tflm_fc_kernel.py and
benchmarks/tflm_fc_override.py."""

from __future__ import annotations

import needs_tflm
import numpy as np

from tinydeploy.tflm_overrides import pack

ACT = {"none": 0, "relu": 1, "relu_n1_to_1": 2, "relu6": 3}  # fused activation codes


def reference(model: bytes, x: np.ndarray) -> np.ndarray:
    """The TFLM Python runtime's outputs, one row per sample (the whole input tensor each)."""
    needs_tflm.require_tflm()
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(model)
    rows = []
    for sample in x:
        interp.set_input(sample, 0)
        interp.invoke()
        rows.append(np.array(interp.get_output(0)).reshape(-1))
    return np.stack(rows)


def bits(x: float) -> int:
    """The IEEE-754 bits of x as a float32."""
    return int(np.float32(x).view(np.uint32))


def fc_model(rng: np.random.Generator, *, rows: int, accum: int, in_shape: list[int],
             keep: bool, per_channel: bool, bias: bool, act: str, w_zp: int = 0,
             big_channel: bool = False, dead_channel: bool = False) -> tuple[bytes, dict]:
    """A one-operator int8 FULLY_CONNECTED model and its raw parameters."""
    from tinydeploy.tflm_py import schema as s

    lead = int(np.prod(in_shape[:-1]))
    out_shape = [*in_shape[:-1], rows] if keep else [lead, rows]
    in_scale = float(np.float32(rng.uniform(0.005, 0.05)))
    out_scale = float(np.float32(rng.uniform(0.01, 0.3)))
    n_scales = rows if per_channel else 1
    w_scales = np.exp(rng.uniform(np.log(1e-3), np.log(2e-2), n_scales)).astype(np.float32)
    if big_channel:  # multiplier >= 0.5: QuantizeMultiplier shift >= 0
        w_scales[0] = np.float32(0.9 * out_scale / in_scale)
    if dead_channel:  # multiplier below 2^-32: flushed to 0
        w_scales[-1] = np.float32(1e-12)
    weights = rng.integers(-127, 128, size=(rows, accum), dtype=np.int8)
    b_scales = [float(np.float32(in_scale) * np.float32(w)) for w in w_scales]
    bias_q = rng.integers(-4000, 4000, size=rows, dtype=np.int32)
    in_zp, out_zp = int(rng.integers(-128, 128)), int(rng.integers(-100, 100))

    def quant(scale: list[float], zp: list[int], dim: int = 0) -> s.QuantizationParametersT:
        q = s.QuantizationParametersT()
        q.scale, q.zeroPoint, q.quantizedDimension = scale, zp, dim
        return q

    def tensor(name: str, shape: list[int], typ: int, buf: int,
               q: s.QuantizationParametersT) -> s.TensorT:
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer, t.quantization = name.encode(), shape, typ, buf, q
        return t

    bufs = [s.BufferT() for _ in range(3)]
    bufs[1].data = weights.tobytes()
    tensors = [tensor("x", in_shape, s.TensorType.INT8, 0, quant([in_scale], [in_zp])),
               tensor("w", [rows, accum], s.TensorType.INT8, 1,
                      quant([float(w) for w in w_scales], [w_zp] * n_scales)),
               tensor("y", out_shape, s.TensorType.INT8, 0, quant([out_scale], [out_zp]))]
    inputs = [0, 1, -1]
    if bias:
        bufs.append(s.BufferT())
        bufs[3].data = bias_q.tobytes()
        tensors.append(tensor("b", [rows], s.TensorType.INT32, 3,
                              quant(b_scales, [0] * n_scales)))
        inputs[2] = 3
    opts = s.FullyConnectedOptionsT()
    opts.fusedActivationFunction, opts.keepNumDims = ACT[act], keep
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, inputs, [2]
    op.builtinOptionsType, op.builtinOptions = s.BuiltinOptions.FullyConnectedOptions, opts
    sg = s.SubGraphT()
    sg.tensors, sg.inputs, sg.outputs, sg.operators = tensors, [0], [2], [op]
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.FULLY_CONNECTED
    code.version = 1
    m = s.ModelT()
    m.version, m.operatorCodes, m.subgraphs, m.buffers = 3, [code], [sg], bufs
    m.description = b"fc"
    raw = {"in_shape": in_shape, "out_shape": out_shape, "rows": rows, "accum": accum,
           "in_scale": in_scale, "in_zp": in_zp, "out_scale": out_scale, "out_zp": out_zp,
           "w_scales": w_scales, "w_zp": w_zp, "bias": bias_q if bias else None,
           "act": ACT[act], "weights": weights}
    return pack(m), raw
