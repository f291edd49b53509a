"""Per-operator C emission: constant parameter structs and one kernel call per operator.

Every number a kernel needs (multipliers, shifts, ranges, padding, strides) is computed
here, in Python, the way TFLM's Prepare computes it (see ``quant.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..errors import TinyDeployError
from . import f32thr, fixedpoint, quant
from .ctext import c_struct as _struct
from .emit_base import (
    MAX_RANK,
    _nhwc,
    _out_size,
    _pad_total,
    c_array,
    folded_bias,
    interleave_rows,
    pad_fields,
)
from .graph import FIX_TFLM, Graph, Op, Tensor, float_boundary
from .variants import (
    DW16,
    INTERLEAVED4,
    PLAIN,
    RQ4,
    VARIANTS,
    check_call,
    fast_variant,
    needs_general,
    rq4_quads,
    rq_pairs,
)

ADD_LUT_MIN = 512  # int8 ADD outputs from which td_add_lut's 2 KB of tables pay off


def float_lit(x: float) -> str:
    s = f"{np.float32(x):.9g}"
    if "e" not in s and "." not in s and "inf" not in s:
        s += ".0"
    return s + "f"


def scratch_bytes(op: Op, g: Graph, cols: int = 2) -> int:
    """Arena bytes an operator's kernel needs besides its tensors (the static memory plan
    reserves them for the operator alone): CONV_2D gathers the receptive fields of ``cols``
    (1 or 2) output pixels (im2col) unless it is an unpadded 1x1 convolution, and with two
    widens them to int16 (4 bytes per 4 k and pixel, td_kernels_gemm.c); DEPTHWISE_CONV_2D
    needs none."""
    if op.name != "CONV_2D":
        return 0
    x, y, w = g.t(op.inputs[0]), g.t(op.outputs[0]), g.t(op.inputs[1])
    if len(w.shape) != 4 or len(x.shape) != 4 or len(y.shape) != 4:
        return 0
    _, fh, fw, ic = w.shape
    kk = fh * fw * ic
    raw = 0 if fh == 1 and fw == 1 else cols * kk  # a 1x1 is never padded: read directly
    # a pixel pair's fields widened to int16 (td_kernels_gemm.c), word-aligned in the kernel
    wide = 16 * (kk // 4) + 3 if cols >= 2 and kk >= 4 else 0
    return raw + wide


def dw16_layout(w: np.ndarray) -> np.ndarray:
    """td_depthwise_conv2d_fastw's filter (variants.DW16, td_kernels.h): the depthwise
    weights [1][f_h][f_w][c] as int16 pairs, per group of four channels g and tap t the words
    {w[t][4g] | w[t][4g+2] << 16, w[t][4g+1] | w[t][4g+3] << 16}, channels past c zero."""
    c = w.shape[-1]
    taps = np.asarray(w, np.int64).reshape(-1, c)
    cp = -(-c // 4) * 4
    padded = np.zeros((taps.shape[0], cp), np.int64)
    padded[:, :c] = taps
    grp = padded.reshape(taps.shape[0], cp // 4, 4).transpose(1, 0, 2)  # [g][t][lane]
    lo, hi = grp[..., [0, 1]] & 0xFFFF, grp[..., [2, 3]] & 0xFFFF
    return ((lo | (hi << 16)) ^ 0x80000000).astype(np.int64).reshape(-1) - 0x80000000


class Emitter:
    """Collects declarations; ``emit(op)`` returns the C statement for one operator.

    ``loc(i)``: the C expression of tensor i's storage; ``scratch(op_index)``: that of the
    operator's im2col scratch and how many pixels' receptive fields it holds
    (``scratch_bytes``), None when the plan has none. ``add_lut_min``: int8 ADDs from this
    many outputs take td_add_lut (the fuzzer lowers it to reach the path in small models)."""

    def __init__(self, g: Graph, loc: Callable[[int], str],
                 scratch: Callable[[int], tuple[str, int] | None] | None = None,
                 add_lut_min: int = ADD_LUT_MIN) -> None:
        self.g = g
        self.add_lut_min = add_lut_min
        self.loc = loc
        self.scratch = scratch or (lambda _i: None)
        self.decls: list[str] = []
        self.const_names: dict[int, str] = {}
        self.weight_bytes = 0  # constant tensor data
        self.param_bytes = 0  # multipliers/shifts arrays
        self.layouts: dict[str, str] = {}  # constant array -> its layout (variants.py)
        self.arrays: dict[str, list[int]] = {}  # int32 parameter arrays by name
        self.clamp: dict[int, tuple[int, int]] = {}  # op -> range of a fused RELU (fusion.py)

    # --- helpers -------------------------------------------------------------------------
    def ref(self, i: int) -> str:
        t = self.g.t(i)
        if t.is_const:
            return self.const(t)
        return self.loc(i)

    def const(self, t: Tensor) -> str:
        if t.index not in self.const_names:
            ctype = {"INT8": "int8_t", "INT32": "int32_t"}.get(t.dtype)
            if ctype is None or t.data is None:
                raise TinyDeployError("model_rejected", path=self.g.path,
                                      problem=f"constant '{t.name}' is {t.dtype}",
                                      fix=FIX_TFLM)
            name = f"td_w{t.index}"
            self.decls.append(c_array(name, ctype, t.data))
            self.const_names[t.index] = name
            self.layouts[name] = PLAIN
            self.weight_bytes += int(t.data.size) * (1 if ctype == "int8_t" else 4)
        return self.const_names[t.index]

    def int_array(self, name: str, values: Sequence[int]) -> str:
        self.decls.append(c_array(name, "int32_t", values))
        self.arrays[name] = [int(v) for v in values]
        self.param_bytes += 4 * len(values)
        return name

    def requant(self, p: str, pairs: Sequence[tuple[int, int]], rq: bool) -> dict[str, object]:
        """The per-channel requantization fields of a conv/FC struct.

        Args:
            p: the struct's name (array name prefix); pairs: TFLM (multiplier, shift) per
            channel; rq: the form of a fast variant (variants.RQ), else TFLM's arrays.

        Returns:
            ``rq`` ({mult, -shift - 1} pairs, variants.rq_pairs), or ``mult``/``shift``
            arrays for the reference variants.
        """
        if rq:
            return {"rq": self.int_array(p + "_rq", rq_pairs(pairs)), "mult": 0, "shift": 0}
        return {"mult": self.int_array(p + "_mult", [m for m, _ in pairs]),
                "shift": self.int_array(p + "_shift", [s for _, s in pairs])}

    def call(self, function: str, ctype: str, p: str, fields: dict[str, object], op: Op
             ) -> str:
        """Declare the kernel's parameter struct and return its call, after checking that
        the arrays are in the layouts the variant reads (variants.check_call). A *_fast
        variant becomes its general instance where the ``rq`` table needs it."""
        if function.endswith(("_fast", "_fastw", "_fastm")):
            stride = 4 if VARIANTS[function].requant == RQ4 else 2
            function = fast_variant(function, self.arrays[str(fields["rq"])], stride)
        check_call(function, fields, self.layouts, self.arrays, self.g.path)
        self.decls.append(_struct(ctype, p, fields))
        return f"{function}(&{p}, {self.ref(op.inputs[0])}, {self.loc(op.outputs[0])});"

    def act(self, op: Op, out: Tensor) -> tuple[int, int]:
        a = int(getattr(op.options, "fusedActivationFunction", 0) or 0)
        try:
            lo, hi = quant.activation_range(a, out.scale, out.zp)
            return self.clamp.get(op.index, (lo, hi))  # fused: the intersection
        except ValueError as exc:
            raise TinyDeployError("model_rejected", path=self.g.path,
                                  problem=f"{op.name}: {exc}", fix=FIX_TFLM) from exc

    def emit(self, op: Op) -> str:
        from .emit_ext import emit as emit_ext  # extension kernels (emit_ext.py) first

        ext = emit_ext(self, op, f"td_p{op.index}")
        if ext is not None:
            return ext
        fn = getattr(self, "_" + op.name.lower(), None)
        if fn is None:
            raise TinyDeployError("unsupported_op", path=self.g.path, op=op.name,
                                  runtime="the C runtime (--runtime c)", fix=FIX_TFLM)
        return str(fn(op, f"td_p{op.index}"))

    def _io(self, op: Op) -> tuple[Tensor, Tensor]:
        return self.g.t(op.inputs[0]), self.g.t(op.outputs[0])

    def _need_zp(self, op: Op, zp: int) -> None:
        """TFLM's int8 kernel assumes this output zero point (its Prepare checks it)."""
        y = self.g.t(op.outputs[0])
        if y.zp != zp:
            raise TinyDeployError("model_rejected", path=self.g.path,
                                  problem=f"{op.name} output zero point {y.zp}, TFLM's int8 "
                                          f"kernel requires {zp}", fix=FIX_TFLM)

    # --- convolutions ----------------------------------------------------------------------
    def weights(self, name: str, values: np.ndarray, layout: str) -> str:
        """A constant int8 array in a kernel-specific layout (instead of the tensor's),
        word-aligned (TD_ALIGN4: the fast loops read it with LDRD/LDM)."""
        self.decls.append(c_array(name, "int8_t", values).replace(
            f" {name}[", f" TD_ALIGN4 {name}[", 1))
        self.weight_bytes += int(values.size)
        self.layouts[name] = layout
        return name

    def _conv_common(self, op: Op, p: str, depthwise: bool,
                     filter_name: str | None = None, rq: bool = False) -> dict[str, object]:
        x, y = self._io(op)
        w = self.g.t(op.inputs[1])
        bias = self.g.t(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        o = op.options
        n, ih, iw, ic = _nhwc(x)
        _, oh, ow, oc = _nhwc(y)
        _, fh, fw, wc = _nhwc(w)
        if w.dtype != "INT8" or (bias is not None and bias.dtype != "INT32"):
            raise TinyDeployError("model_rejected", path=self.g.path,
                                  problem=f"{op.name} weights {w.dtype}/bias "
                                          f"{bias.dtype if bias else '-'} (need int8/int32)",
                                  fix=FIX_TFLM)
        if not depthwise and wc != ic:
            raise TinyDeployError("model_rejected", path=self.g.path,
                                  problem="grouped CONV_2D is not supported", fix=FIX_TFLM)
        sh, sw = int(o.strideH), int(o.strideW)
        dh, dw = int(o.dilationHFactor or 1), int(o.dilationWFactor or 1)
        for insz, f, s, d, outsz in ((ih, fh, sh, dh, oh), (iw, fw, sw, dw, ow)):
            if _out_size(int(o.padding), insz, f, s, d) != outsz:
                raise TinyDeployError("model_rejected", path=self.g.path,
                                      problem=f"{op.name} output shape does not match padding",
                                      fix=FIX_TFLM)
        scales = w.scales if len(w.scales) > 1 else w.scales * oc
        mults, shifts = zip(*(quant.quantize_multiplier(x.scale * s / y.scale)
                              for s in scales), strict=True)
        lo, hi = self.act(op, y)
        return {
            "batches": n, "in_h": ih, "in_w": iw, "in_c": ic, "out_h": oh, "out_w": ow,
            "out_c": oc, "f_h": fh, "f_w": fw, "stride_h": sh, "stride_w": sw,
            "dil_h": dh, "dil_w": dw,
            "pad_h": _pad_total(sh, dh, ih, fh, oh), "pad_w": _pad_total(sw, dw, iw, fw, ow),
            "depth_mult": oc // ic if depthwise else 1,
            "in_offset": -x.zp, "out_offset": y.zp, "act_min": lo, "act_max": hi,
            "filter": filter_name or self.const(w),
            "bias": self.const(bias) if bias is not None else 0,
            **self.requant(p, list(zip(mults, shifts, strict=True)), rq),
        }

    def _conv_2d(self, op: Op, p: str) -> str:
        x, w = self.g.t(op.inputs[0]), self.g.t(op.inputs[1])
        bias = self.g.t(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        scratch = self.scratch(op.index)
        folded = folded_bias(w.data, bias, -x.zp) if w.dtype == "INT8" else None
        fast = folded is not None and (scratch is not None or scratch_bytes(op, self.g, 1) == 0)
        if fast and w.data is not None and w.index not in self.const_names:
            filt = self.weights(p + "_filter", interleave_rows(w.data), INTERLEAVED4)
            fields = self._conv_common(op, p, False, filt, rq=True)
            self._quads(p, fields)
            fields["bias_eff"] = self.int_array(p + "_bias_eff", folded)  # type: ignore[arg-type]
            fields["scratch"], fields["scratch_cols"] = scratch or (0, 1)
            one = all(fields[k] == v for k, v in (("f_h", 1), ("f_w", 1), ("in_c", 1),
                                                   ("pad_h", 0), ("pad_w", 0)))
            if one and not needs_general(self.arrays[str(fields["rq"])], 4):
                return self.call("td_conv2d_1x1c1", "td_conv_params", p, fields, op)
            return self.call("td_conv2d_fast", "td_conv_params", p, fields, op)
        return self.call("td_conv2d_ref", "td_conv_params", p,
                         self._conv_common(op, p, False), op)

    def _quads(self, p: str, fields: dict[str, object]) -> None:
        """Replace the struct's ``rq`` pair table by its quads (variants.RQ4)."""
        rq = self.arrays[str(fields["rq"])]
        self.decls = [d for d in self.decls
                      if not d.startswith(f"static const int32_t {p}_rq[")]
        self.param_bytes -= 4 * len(rq)
        fields["rq"] = self.int_array(p + "_rq", rq4_quads(rq))

    def _depthwise_conv_2d(self, op: Op, p: str) -> str:
        """Every int8 DEPTHWISE_CONV_2D (any depth multiplier; constant weights, as
        _conv_common requires): td_depthwise_conv2d_fastw on the int16-widened filter."""
        w = self.g.t(op.inputs[1])
        fields = self._conv_common(op, p, True, "0", rq=True)
        self._quads(p, fields)
        fields["filter_w"] = self.int_array(p + "_filter_w", dw16_layout(w.data))
        self.layouts[p + "_filter_w"] = DW16
        self.weight_bytes += 4 * len(self.arrays[p + "_filter_w"])
        self.param_bytes -= 4 * len(self.arrays[p + "_filter_w"])
        return self.call("td_depthwise_conv2d_fastw", "td_conv_params", p, fields, op)

    def fc_fields(self, op: Op) -> tuple[dict[str, object], list[tuple[int, int]]]:
        """An int8 FULLY_CONNECTED's ``td_fc_params`` fields but the filter and
        requantization arrays, and its TFLM (multiplier, shift) pairs (refuses weights the
        C runtime cannot take)."""
        x, y = self._io(op)
        w = self.g.t(op.inputs[1])
        if w.dtype != "INT8" or w.data is None or len(w.shape) != 2:
            raise TinyDeployError("model_rejected", path=self.g.path,
                                  problem=f"FULLY_CONNECTED weights must be constant 2-D int8 "
                                          f"(got {w.dtype} {list(w.shape)})", fix=FIX_TFLM)
        if int(getattr(op.options, "weightsFormat", 0) or 0) != 0:
            raise TinyDeployError("model_rejected", path=self.g.path,
                                  problem="shuffled FULLY_CONNECTED weights", fix=FIX_TFLM)
        oc, accum = w.shape
        per_channel = len(w.scales) > 1
        pairs = [quant.quantize_multiplier(x.scale * s / y.scale) for s in w.scales]
        lo, hi = self.act(op, y)
        fields: dict[str, object] = {
            "batches": x.size // accum, "accum": accum, "out_c": oc,
            "in_offset": -x.zp, "filter_offset": -w.zp, "out_offset": y.zp,
            "act_min": lo, "act_max": hi, "per_channel": int(per_channel),
        }
        return fields, pairs

    def _fully_connected(self, op: Op, p: str) -> str:
        x, w = self.g.t(op.inputs[0]), self.g.t(op.inputs[1])
        bias = self.g.t(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        fields, pairs = self.fc_fields(op)
        fields["bias"] = self.const(bias) if bias is not None else 0
        folded = folded_bias(w.data, bias, -x.zp) if w.zp == 0 else None
        if folded is not None and w.index not in self.const_names:
            fields.update(self.requant(p, pairs, True),
                          filter=self.weights(p + "_filter", interleave_rows(w.data),
                                              INTERLEAVED4),
                          bias_eff=self.int_array(p + "_bias_eff", folded))  # type: ignore[arg-type]
            return self.call("td_fully_connected_fast", "td_fc_params", p, fields, op)
        fields.update(self.requant(p, pairs, False), filter=self.const(w))
        return self.call("td_fully_connected_ref", "td_fc_params", p, fields, op)

    def _pool(self, op: Op, p: str, fn: str) -> str:
        x, y = self._io(op)
        o = op.options
        n, ih, iw, c = _nhwc(x)
        _, oh, ow, _ = _nhwc(y)
        fh, fw, sh, sw = int(o.filterHeight), int(o.filterWidth), int(o.strideH), int(o.strideW)
        if abs(x.scale - y.scale) > 1e-6 or x.zp != y.zp:  # TFLM's pooling Prepare refuses it
            raise TinyDeployError("model_rejected", path=self.g.path,
                                  problem=f"{op.name} input and output quantization differ "
                                          f"({x.scale:g}/{x.zp} vs {y.scale:g}/{y.zp})",
                                  fix=FIX_TFLM)
        lo, hi = self.act(op, y)
        fields = {"batches": n, "in_h": ih, "in_w": iw, "c": c, "out_h": oh, "out_w": ow,
                  "f_h": fh, "f_w": fw, "stride_h": sh, "stride_w": sw,
                  "pad_h": _pad_total(sh, 1, ih, fh, oh), "pad_w": _pad_total(sw, 1, iw, fw, ow),
                  "act_min": lo, "act_max": hi}
        self.decls.append(_struct("td_pool_params", p, fields))
        return f"{fn}(&{p}, {self.ref(op.inputs[0])}, {self.loc(op.outputs[0])});"

    def _max_pool_2d(self, op: Op, p: str) -> str:
        return self._pool(op, p, "td_max_pool")

    def _average_pool_2d(self, op: Op, p: str) -> str:
        return self._pool(op, p, "td_avg_pool")

    # --- activations -------------------------------------------------------------------
    def _softmax(self, op: Op, p: str) -> str:
        x, y = self._io(op)
        self._need_zp(op, -128)
        depth = x.shape[-1] if x.shape else 1
        mult, shift, diff_min = quant.softmax_params(float(op.options.beta), x.scale)
        fields = {"rows": x.size // depth, "depth": depth, "mult": mult, "left_shift": shift,
                  "diff_min": diff_min}
        self.decls.append(_struct("td_softmax_params", p, fields))
        return f"td_softmax(&{p}, {self.ref(op.inputs[0])}, {self.loc(op.outputs[0])});"

    def _sigmoid(self, op: Op, p: str, fn: str) -> str:
        x, _ = self._io(op)
        mult, shift, radius = quant.sigmoid_params(x.scale)
        if x.dtype == "INT8":  # the output depends on the input byte alone: a table
            kind = "logistic" if fn == "td_logistic" else "tanh"
            self.decls.append(c_array(p + "_lut", "int8_t", fixedpoint.sigmoid_lut(
                kind, x.zp, radius, mult, shift)))
            self.param_bytes += 256
            return (f"td_lut8({x.size}, {p}_lut, {self.ref(op.inputs[0])}, "
                    f"{self.loc(op.outputs[0])});")
        fields = {"size": x.size, "in_zp": x.zp, "radius": radius, "mult": mult,
                  "left_shift": shift}
        self.decls.append(_struct("td_sigmoid_params", p, fields))
        return f"{fn}(&{p}, {self.ref(op.inputs[0])}, {self.loc(op.outputs[0])});"

    def _logistic(self, op: Op, p: str) -> str:
        self._need_zp(op, -128)
        return self._sigmoid(op, p, "td_logistic")

    def _tanh(self, op: Op, p: str) -> str:
        self._need_zp(op, 0)
        return self._sigmoid(op, p, "td_tanh")

    def _requant(self, op: Op, p: str, lo: int, hi: int) -> str:
        x, y = self._io(op)
        mult, shift = quant.quantize_multiplier(x.scale / y.scale)
        fields = {"size": x.size, "in_zp": x.zp, "out_zp": y.zp, "mult": mult, "shift": shift,
                  "act_min": lo, "act_max": hi}
        self.decls.append(_struct("td_requant_params", p, fields))
        return f"td_requantize(&{p}, {self.ref(op.inputs[0])}, {self.loc(op.outputs[0])});"

    def _quantize(self, op: Op, p: str) -> str:
        if float_boundary(self.g, op):  # float32 graph input -> int8/int16 (AffineQuantize)
            _, y = self._io(op)
            out = self.loc(op.outputs[0])
            src = f"(const uint8_t *){self.ref(op.inputs[0])}"
            if y.dtype == "INT16":
                return (f"td_quantize_f32_16({y.size}, {float_lit(y.scale)}, {y.zp}, {src}, "
                        f"(int16_t *)(void *){out});")
            # int8: 255 float thresholds (1 KB of constants) instead of a division a value
            self.decls.append(c_array(p + "_thr", "int32_t", f32thr.thresholds(y.scale, y.zp)))
            self.param_bytes += 1020
            return (f"td_quantize_f32_thr({y.size}, {p}_thr, {float_lit(y.scale)}, {y.zp}, "
                    f"{src}, {out});")
        return self._requant(op, p, -128, 127)

    def _dequantize(self, op: Op, p: str) -> str:
        x, _ = self._io(op)
        if not float_boundary(self.g, op):
            raise TinyDeployError("model_rejected", path=self.g.path,
                                  problem="DEQUANTIZE inside the graph", fix=FIX_TFLM)
        if x.dtype == "INT16":  # float32(scale * (q - zp)): one exact float multiply
            return (f"td_dequantize_16({x.size}, {float_lit(x.scale)}, {x.zp}, "
                    f"(const int16_t *)(const void *){self.ref(op.inputs[0])}, "
                    f"(uint8_t *){self.loc(op.outputs[0])});")
        # float32(double(scale) * (q - zp)) for every q: a table of float bit patterns
        q = np.arange(-128, 128, dtype=np.int64)
        table = (np.float64(np.float32(x.scale)) * (q - x.zp)).astype(np.float32)
        self.decls.append(c_array(p + "_lut", "uint32_t", table.view(np.uint32)))
        self.param_bytes += 1024
        return (f"td_dequantize_lut({x.size}, {p}_lut, {self.ref(op.inputs[0])}, "
                f"(uint8_t *){self.loc(op.outputs[0])});")

    def _relu(self, op: Op, p: str) -> str:
        _, y = self._io(op)
        return self._requant(op, p, max(-128, y.zp), 127)

    def _relu6(self, op: Op, p: str) -> str:
        x, _ = self._io(op)
        six = min(127, max(-128, x.zp + quant.tf_round(quant.f32(np.float32(6.0)
                                                                / np.float32(x.scale)))))
        return (f"td_clamp({x.size}, {x.zp}, {six}, {self.ref(op.inputs[0])}, "
                f"{self.loc(op.outputs[0])});")

    def _leaky_relu(self, op: Op, p: str) -> str:
        x, y = self._io(op)
        fields = {"size": x.size, "in_zp": x.zp, "out_zp": y.zp,
                  **quant.leaky_relu_params(x.scale, y.scale, op.options.alpha)}
        self.decls.append(_struct("td_leaky_relu_params", p, fields))
        return f"td_leaky_relu(&{p}, {self.ref(op.inputs[0])}, {self.loc(op.outputs[0])});"

    def _hard_swish(self, op: Op, p: str) -> str:
        x, y = self._io(op)
        om, oe, rm, re_ = quant.hard_swish_params(x.scale, y.scale)
        if oe > 0:  # TFLM's Prepare refuses this too
            raise TinyDeployError("model_rejected", path=self.g.path,
                                  problem="HARD_SWISH output scale below input scale / 128",
                                  fix=FIX_TFLM)
        fields = {"size": x.size, "in_zp": x.zp, "out_zp": y.zp, "out_mult16": om,
                  "out_exp": oe, "relu_mult16": rm, "relu_exp": re_}
        self.decls.append(_struct("td_hard_swish_params", p, fields))
        return f"td_hard_swish(&{p}, {self.ref(op.inputs[0])}, {self.loc(op.outputs[0])});"

    # --- binary -------------------------------------------------------------------------
    def _binary_shape(self, op: Op) -> dict[str, object]:
        a, b = self.g.t(op.inputs[0]), self.g.t(op.inputs[1])
        y = self.g.t(op.outputs[0])
        if len(y.shape) > MAX_RANK:
            raise TinyDeployError("model_rejected", path=self.g.path,
                                  problem=f"{op.name} rank {len(y.shape)} > {MAX_RANK}",
                                  fix=FIX_TFLM)
        dims = [1] * (MAX_RANK - len(y.shape)) + list(y.shape)

        def strides(t: Tensor) -> list[int]:
            s = [1] * (MAX_RANK - len(t.shape)) + list(t.shape)
            out, acc = [0] * MAX_RANK, 1
            for d in range(MAX_RANK - 1, -1, -1):
                out[d] = 0 if s[d] == 1 and dims[d] != 1 else acc
                acc *= s[d]
            return out

        broadcast = tuple(a.shape) != tuple(b.shape) or a.size != y.size
        return {"size": y.size, "broadcast": int(broadcast), "dims": dims,
                "stride1": strides(a), "stride2": strides(b)}

    def _add(self, op: Op, p: str) -> str:
        a, b = self.g.t(op.inputs[0]), self.g.t(op.inputs[1])
        y = self.g.t(op.outputs[0])
        twice_max = 2.0 * max(a.scale, b.scale)
        left_shift = 20
        m1, s1 = quant.quantize_multiplier(a.scale / twice_max)
        m2, s2 = quant.quantize_multiplier(b.scale / twice_max)
        mo, so = quant.quantize_multiplier(twice_max / ((1 << left_shift) * y.scale))
        lo, hi = self.act(op, y)
        fields = {**self._binary_shape(op), "in1_offset": -a.zp, "in2_offset": -b.zp,
                  "out_offset": y.zp, "left_shift": left_shift, "in1_mult": m1,
                  "in1_shift": s1, "in2_mult": m2, "in2_shift": s2, "out_mult": mo,
                  "out_shift": so, "act_min": lo, "act_max": hi}
        self.decls.append(_struct("td_binary_params", p, fields))
        args = f"{self.ref(op.inputs[0])}, {self.ref(op.inputs[1])}, {self.loc(op.outputs[0])}"
        if y.size >= self.add_lut_min:  # the input rescalings as two 1 KB tables (flash)
            luts = [self.int_array(f"{p}_lut{k + 1}", [
                fixedpoint.mbqm((v - t.zp) << left_shift, m, s) for v in range(-128, 128)])
                for k, (t, m, s) in enumerate(((a, m1, s1), (b, m2, s2)))]
            return f"td_add_lut(&{p}, {luts[0]}, {luts[1]}, {args});"
        return f"td_add(&{p}, {args});"

    def _mul(self, op: Op, p: str) -> str:
        a, b = self.g.t(op.inputs[0]), self.g.t(op.inputs[1])
        y = self.g.t(op.outputs[0])
        mo, so = quant.quantize_multiplier(a.scale * b.scale / y.scale)
        lo, hi = self.act(op, y)
        fields = {**self._binary_shape(op), "in1_offset": -a.zp, "in2_offset": -b.zp,
                  "out_offset": y.zp, "left_shift": 0, "in1_mult": 0, "in1_shift": 0,
                  "in2_mult": 0, "in2_shift": 0, "out_mult": mo, "out_shift": so,
                  "act_min": lo, "act_max": hi}
        self.decls.append(_struct("td_binary_params", p, fields))
        return (f"td_mul(&{p}, {self.ref(op.inputs[0])}, {self.ref(op.inputs[1])}, "
                f"{self.loc(op.outputs[0])});")

    # --- data movement ------------------------------------------------------------------
    def _reshape(self, op: Op, p: str) -> str:
        x, _ = self._io(op)
        src, dst = self.ref(op.inputs[0]), self.loc(op.outputs[0])
        if src == dst:
            return f"/* RESHAPE {op.index}: in place */"
        return f"td_copy({x.size}, {src}, {dst});"

    def _concatenation(self, op: Op, p: str) -> str:
        y = self.g.t(op.outputs[0])
        axis = int(op.options.axis)
        rank = len(y.shape)
        axis = axis + rank if axis < 0 else axis
        outer = int(np.prod(y.shape[:axis], dtype=np.int64))
        ins = [self.g.t(i) for i in op.inputs]
        inner = [int(np.prod(t.shape[axis:], dtype=np.int64)) for t in ins]
        self.int_array(p + "_inner", inner)
        ptrs = ", ".join(self.ref(i) for i in op.inputs)
        return (f"{{ const int8_t *const ins[{len(ins)}] = {{{ptrs}}}; "
                f"td_concat({len(ins)}, {outer}, {p}_inner, ins, {self.loc(op.outputs[0])}); }}")

    def _pad(self, op: Op, p: str) -> str:
        self.decls.append(_struct("td_pad_params", p, pad_fields(self.g, op)))
        return f"td_pad(&{p}, {self.ref(op.inputs[0])}, {self.loc(op.outputs[0])});"

    def _mean(self, op: Op, p: str) -> str:
        x, y = self._io(op)
        axes_t = self.g.t(op.inputs[1])
        rank = len(x.shape)
        if axes_t.data is None or rank > MAX_RANK:
            raise TinyDeployError("model_rejected", path=self.g.path,
                                  problem="MEAN needs constant axes and rank <= 6",
                                  fix=FIX_TFLM)
        axes = {int(a) + rank if int(a) < 0 else int(a) for a in axes_t.data.reshape(-1)}
        count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
        mult, shift = quant.mean_multiplier(x.scale, y.scale, count)
        fill = [0] * (MAX_RANK - rank)
        fields = {"rank": rank, "dims": list(x.shape) + fill,
                  "reduce": [int(d in axes) for d in range(rank)] + fill, "count": count,
                  "in_zp": x.zp, "out_zp": y.zp, "mult": mult, "shift": shift}
        self.decls.append(_struct("td_mean_params", p, fields))
        return f"td_mean(&{p}, {self.ref(op.inputs[0])}, {self.loc(op.outputs[0])});"
