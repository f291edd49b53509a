"""Which of a model's operators a TFLM source tree can run -- checked before any build.

A ``--tflm-src`` tree is read, not trusted to a compiler: its
``MicroMutableOpResolver`` header says which ``Add*`` methods exist (a model whose
operator has none, e.g. ``BATCH_MATMUL`` with Chirale_TensorFlowLite 2.0.0, would only fail
at compile time after minutes of library build), and its kernel sources show known defects
that make a model unrunnable at any arena size (the January 2023 ``TRANSPOSE_CONV`` reads a
16x8 model's bias type without checking that a bias exists). :func:`check_tree_ops` raises
``unsupported_op`` (exit 3) naming the operator, the tree and the way out;
:func:`resolver_ops` is the model's operators with their resolver calls (tinydeploy's op
table: the renderer, the arena probe and the tree check share it).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import TinyDeployError
from ..facts import ModelFacts, op_name
from ..ops import TFLM_OPS

RESOLVER_HEADER = "tensorflow/lite/micro/micro_mutable_op_resolver.h"
INT8, INT16 = 9, 7  # schema TensorType codes
_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
# transpose_conv Prepare: `if (bias->type == kTfLiteInt16)` with no `bias != nullptr` test
_TCONV_BIAS_DEREF = re.compile(r"if\s*\(\s*bias->type\s*==\s*kTfLiteInt16\s*\)")
# a TRANSPOSE_CONV kernel that computes its integer requantization without the fused
# activation (TFLM's reference kernel before February 2026, CMSIS-NN's as of 90b983c2)
_TCONV_NO_ACT = re.compile(r"PopulateConvolutionQuantizationParams\(\s*context\s*,\s*input\s*,"
                           r"\s*filter\s*,\s*bias\s*,\s*output\s*,\s*kTfLiteActNone")


def _top_level_params(text: str) -> list[str]:
    """``text`` (a parameter list) split at commas outside brackets."""
    parts, depth, cur = [], 0, ""
    for c in text:
        depth += c in "(<[{"
        depth -= c in ")>]}"
        if c == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += c
    return [p for p in (*parts, cur) if p.strip()]


@functools.lru_cache(maxsize=16)
def resolver_methods(header: Path) -> frozenset[str]:
    """``Add*`` methods of ``MicroMutableOpResolver`` in ``header`` callable without
    arguments (every parameter has a default)."""
    text = _COMMENTS.sub(" ", header.read_text(encoding="utf-8", errors="replace"))
    out = set()
    for m in re.finditer(r"\bTfLiteStatus\s+(Add\w+)\s*\(", text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += (text[i] == "(") - (text[i] == ")")
            i += 1
        if all("=" in p for p in _top_level_params(text[m.end():i - 1])):
            out.add(m.group(1))
    return frozenset(out)


def _find(tree: Any, rel: str) -> Path | None:
    for d in tree.include_dirs:
        if (Path(d) / rel).is_file():
            return Path(d) / rel
    return None


def _kernel_texts(tree: Any, stem: str, reference: bool = False) -> list[str]:
    """The compiled kernel sources ``stem`` of ``tree`` without comments (``reference``:
    only the reference kernel's, in ``kernels/``)."""
    return [_COMMENTS.sub(" ", src.read_text(encoding="utf-8", errors="replace"))
            for src in tree.sources
            if src.stem == stem and (not reference or src.parent.name == "kernels")]



def _transpose_convs(facts: ModelFacts) -> Iterator[tuple[Any, list[int], int]]:
    """Each TRANSPOSE_CONV of the main subgraph: the operator, its inputs (-1: absent) and
    its activation input's tensor type (-1 when absent)."""
    model = facts.model
    if model is None:
        return
    sub = model.subgraphs[0]
    for op in sub.operators or []:
        if op_name(model.operatorCodes[op.opcodeIndex]) == "TRANSPOSE_CONV":
            ins = [int(i) for i in (op.inputs if op.inputs is not None else [])]
            yield op, ins, (int(sub.tensors[ins[2]].type) if len(ins) > 2 and ins[2] >= 0
                            else -1)


def _unbiased_16x8_transpose_conv(facts: ModelFacts) -> bool:
    """A TRANSPOSE_CONV with int16 activations and no bias input."""
    return any(kind == INT16 and (len(ins) < 4 or ins[3] < 0)
               for _, ins, kind in _transpose_convs(facts))


# TFLM fixed the TRANSPOSE_CONV bias dereference on 2024-05-09 (tflite-micro #2566): a
# library whose TFLM snapshot is older has the defect
TCONV16_BIAS_FIX = "2024-05"
# TFLM's reference TRANSPOSE_CONV applies a fused activation to integer outputs since
# 2026-02-10 (tflite-micro 5b93e5b, #3278); older libraries drop it
TCONV_ACT_FIX = "2026-02"
TCONV_ACT_FIX_TEXT = ("keep the activation a layer of its own after the TRANSPOSE_CONV (the "
                      "TFLiteConverter does so by default), or use the C runtime (--runtime c)")


def fused_act_transpose_convs(facts: ModelFacts) -> int:
    """TRANSPOSE_CONV operators with integer activations and a fused activation."""
    return sum(1 for op, _, kind in _transpose_convs(facts) if kind in (INT8, INT16)
               and int(getattr(op.builtinOptions, "fusedActivationFunction", 0) or 0) != 0)


def check_board_libraries(facts: ModelFacts, boards: list[Any]) -> None:
    """Refuse boards whose TFLM library (by its facts: the month of its TFLM snapshot)
    crashes on the model at any arena size -- a 16x8 TRANSPOSE_CONV without bias before
    :data:`TCONV16_BIAS_FIX` -- or computes it wrong -- an integer TRANSPOSE_CONV with a fused
    activation before :data:`TCONV_ACT_FIX` (``unsupported_op``)."""
    fused = fused_act_transpose_convs(facts)
    for board in boards:
        lib = getattr(board, "tflm_lib", None)
        if fused and lib is not None and str(lib.tflm_date) < TCONV_ACT_FIX:
            raise TinyDeployError(
                "unsupported_op", path=facts.path,
                op=f"TRANSPOSE_CONV with a fused activation ({fused} layer(s))",
                runtime=f"{lib.label} (TFLite Micro of {lib.tflm_date}), the TFLM library of "
                        f"board {board.id}: its kernel drops the activation of integer "
                        "outputs (fixed in TFLM of February 2026)", fix=TCONV_ACT_FIX_TEXT)
    if "TRANSPOSE_CONV" not in facts.op_names or not _unbiased_16x8_transpose_conv(facts):
        return
    for board in boards:
        lib = getattr(board, "tflm_lib", None)
        if lib is not None and str(lib.tflm_date) < TCONV16_BIAS_FIX:
            raise TinyDeployError(
                "unsupported_op", path=facts.path, op="TRANSPOSE_CONV (16x8, without bias)",
                runtime=f"{lib.label} (TFLite Micro of {lib.tflm_date}), the TFLM library of "
                        f"board {board.id}: its kernel reads the missing bias's type in "
                        "Prepare (fixed in TFLM of May 2024)",
                fix="give the layer a bias (use_bias=True) or quantize it int8")


def resolver_ops(facts: ModelFacts) -> list[dict[str, Any]]:
    """The model's distinct ops with their resolver call; refuses any op TFLM lacks."""
    missing = [n for n in facts.op_names if n not in TFLM_OPS]
    if missing:
        raise TinyDeployError("unsupported_op", path=facts.path, op=", ".join(missing),
                              runtime="TFLite Micro (tinydeploy op table)",
                              fix="replace the layer with a supported one (see tinydeploy.ops)")
    return [{"name": o.name, "resolver": TFLM_OPS[o.name].resolver, "count": o.count,
             "version": o.version, "override": None} for o in facts.ops]


def check_tree_ops(facts: ModelFacts, tree: Any) -> None:
    """Refuse a model ``tree`` cannot run, before anything is compiled.

    Raises:
        TinyDeployError: ``unsupported_op`` for an operator the tree's resolver has no
            ``Add*`` method for, or one a known kernel defect of the tree breaks.
    """
    where = f"{tree.name} (the TFLM tree at {tree.root})"
    header = _find(tree, RESOLVER_HEADER)
    if header is not None:
        methods = resolver_methods(header)
        missing = [o["name"] for o in resolver_ops(facts) if o["resolver"] not in methods]
        if missing:
            raise TinyDeployError(
                "unsupported_op", path=facts.path, op=", ".join(missing), runtime=where,
                fix="pass a newer TFLM tree with --tflm-src (a tflite-micro checkout), or "
                    "use the C runtime (--runtime c) if it has the operator")
    if fused_act_transpose_convs(facts) and any(
            _TCONV_NO_ACT.search(text) for text in _kernel_texts(tree, "transpose_conv")):
        raise TinyDeployError(
            "unsupported_op", path=facts.path, op="TRANSPOSE_CONV with a fused activation",
            runtime=where + ": its kernel drops the activation of integer outputs",
            fix=TCONV_ACT_FIX_TEXT + ", or pass a tree whose kernel applies it")
    if "TRANSPOSE_CONV" in facts.op_names and _unbiased_16x8_transpose_conv(facts) \
            and any(_TCONV_BIAS_DEREF.search(text)
                    for text in _kernel_texts(tree, "transpose_conv", reference=True)):
        raise TinyDeployError(
            "unsupported_op", path=facts.path, op="TRANSPOSE_CONV (16x8, without bias)",
            runtime=where + ": its kernel reads the missing bias's type in Prepare",
            fix="give the layer a bias (use_bias=True), quantize it int8, or pass a newer "
                "TFLM tree with --tflm-src")
