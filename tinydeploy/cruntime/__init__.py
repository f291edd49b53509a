"""Interpreter-free int8 C runtime: graph IR, offline memory plan, generated C99 sources.

``generate_c(facts, out_dir)`` writes ``td_model.h/.c`` (one kernel call per operator, all
intermediate tensors in one static arena) plus the kernel library from ``firmware/``.
The kernels reproduce TFLite Micro's reference int8 arithmetic bit for bit. Floating point
appears only where a model's input/output is float32 (QUANTIZE of the input, DEQUANTIZE of
the output, by table); ``td_invoke`` then takes/returns raw float32 bytes.

Modules: ``graph`` (IR + refusal of unsupported models), ``consistency`` (refusal of
inconsistent, e.g. corrupted, models before any code generation), ``quant``
(multipliers/shifts as TFLM's Prepare computes them), ``overlap`` (how far an output may
overlap its dying input), ``planner`` (static arena), ``fc_stream`` (a FULLY_CONNECTED's
input computed band by band, never stored whole), ``emit`` (per-op C), ``codegen``
(files), ``harness`` (host compile/run for tests and benchmarks), ``mutation`` (byte-mutated
models through the generator and ASan/UBSan builds).
"""

from __future__ import annotations

from .codegen import CResult, build, c_identifier, generate_c
from .planner import Buffer, MemoryPlan, plan

__all__ = ["Buffer", "CResult", "MemoryPlan", "build", "c_identifier", "generate_c", "plan"]
