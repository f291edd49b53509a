"""Interpreter-free int8 C runtime: graph IR, offline memory plan, generated C99 sources.

``generate_c(facts, out_dir)`` writes ``td_model.h/.c`` (one kernel call per operator, all
intermediate tensors in one static arena) plus the kernel library from ``firmware/``.
The kernels reproduce TFLite Micro's reference int8 arithmetic bit for bit.
"""

from __future__ import annotations

from .codegen import CResult, build, c_identifier, generate_c
from .planner import Buffer, MemoryPlan, plan

__all__ = ["Buffer", "CResult", "MemoryPlan", "build", "c_identifier", "generate_c", "plan"]
