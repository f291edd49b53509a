"""The model's interface: float32 boundary ops around a quantized core, and stripping them.

TFLiteConverter with only ``optimizations`` and a representative dataset (no
``inference_input_type``) writes a float interface around the int8 (or 16x8) core: every
float32 input is read only by QUANTIZE (float32 -> int8/int16) and every float32 output is
written by DEQUANTIZE (int8/int16 -> float32). Published MCU models ship that way (MIT's
MCUNet). TFLM runs them as they are; :func:`float_boundaries` finds those ops (the guard
accepts a model whose only float tensors they are) and :func:`strip_float_io` removes them
(``generate --io int8``): the quantized tensors become the model's inputs and outputs, and
their scale and zero point are the removed ops' (TFLM's QUANTIZE computes
``q = clamp(round(x / S) + Z)``, ``round`` half away from zero in float32; DEQUANTIZE
``x = float32(S * (q - Z))``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import flatbuffers

from .errors import TinyDeployError
from .facts import ModelFacts, TensorFacts, boundary_pairs, load, read_model, tensor_facts

# generate/validate/deploy --io: the model's own interface, int8 (float boundary ops
# stripped) or float (the model must have a float interface)
IO_CHOICES = ("model", "int8", "float")


@dataclass(frozen=True)
class Boundary:
    """One float boundary op: QUANTIZE of a float32 model input or DEQUANTIZE into a float32
    model output."""

    role: str  # "input" | "output"
    position: int  # index among the model's inputs (outputs)
    op: int  # operator index in the main subgraph
    outer: TensorFacts  # the float32 model tensor
    inner: TensorFacts  # the quantized tensor on the other side of the op

    def text(self) -> str:
        """``input 0 'x': FLOAT32 -> QUANTIZE -> INT8 (scale 0.0235, zero point -128)``."""
        op = "QUANTIZE" if self.role == "input" else "DEQUANTIZE"
        return (f"{self.role} {self.position} '{self.outer.name}': FLOAT32 "
                f"{'->' if self.role == 'input' else '<-'} {op} "
                f"{'->' if self.role == 'input' else '<-'} {self.inner.dtype} (scale "
                f"{self.inner.scale:.9g}, zero point {self.inner.zero_point})")


def float_boundaries(facts: ModelFacts) -> list[Boundary]:
    """The float boundary ops of the model's float32 inputs and outputs (inputs first).

    A float32 input is on the boundary when the only operator reading it is a QUANTIZE into
    a quantized (int8/int16, per-tensor) tensor; a float32 output when a DEQUANTIZE of such
    a tensor writes it and no operator reads it (:func:`tinydeploy.facts.boundary_pairs`).
    Float32 I/O tensors of any other kind are not listed (the guard refuses them)."""
    model = facts.model
    if model is None:
        return []
    sub = model.subgraphs[0]
    tensors = sub.tensors or []
    return [Boundary(role, pos, op, tensor_facts(tensors, outer), tensor_facts(tensors, inner))
            for role, pos, op, outer, inner in boundary_pairs(
                model, facts.op_sequence, [t.index for t in facts.inputs],
                [t.index for t in facts.outputs])]


def float_interface(facts: ModelFacts) -> bool:
    """True if some model input or output is a float32 boundary tensor."""
    return bool(float_boundaries(facts))


def check_io_choice(io: str) -> str:
    """``io`` if it is one of ``IO_CHOICES``, else ``bad_argument``."""
    if io not in IO_CHOICES:
        raise TinyDeployError("bad_argument", problem=f"unknown --io {io!r}",
                              fix="choose --io model (the model's own interface), int8 (float "
                                  "boundary ops stripped) or float (keep a float interface)")
    return io


def with_io(facts: ModelFacts, io: str) -> ModelFacts:
    """The model with the interface ``io`` asks for: as it is (``model``), with its float
    boundary ops stripped (``int8``; a model without them is returned as it is), or as it
    is if it has a float interface (``float``; else ``bad_argument``)."""
    check_io_choice(io)
    if io == "int8" and float_interface(facts):
        return strip_float_io(facts)
    if io == "float" and not float_interface(facts):
        raise TinyDeployError("bad_argument",
                              problem=f"--io float but {facts.path} has no float interface "
                                      "(its inputs and outputs are quantized)",
                              fix="drop --io float, or quantize with `tinydeploy quantize "
                                  "--io float`")
    return facts


def strip_float_io(model: str | ModelFacts | bytes) -> ModelFacts:
    """The model without its float boundary ops: the quantized tensors they read or wrote
    become the model's inputs and outputs (same positions); unused tensors are dropped
    and the others renumbered. The path gets ``_int8io`` before its suffix.

    Args:
        model: a path, loaded facts or the flatbuffer bytes.

    Returns:
        The stripped model's facts (deterministic bytes: the same input gives the same
        model, so its hash matches firmware generated with ``--io int8``).

    Raises:
        TinyDeployError: ``model_rejected`` when the model has no float boundary op."""
    facts = load(model)
    bounds = float_boundaries(facts)
    if not bounds:
        raise TinyDeployError("model_rejected", path=facts.path,
                              problem="no float32 input or output behind QUANTIZE/DEQUANTIZE "
                                      "to strip (the interface is already quantized)",
                              fix="drop --io int8")
    m = read_model(facts.data, facts.path)  # a private copy to edit
    sub = m.subgraphs[0]
    drop_ops = {b.op for b in bounds}
    swap = {b.outer.index: b.inner.index for b in bounds}
    sub.operators = [op for k, op in enumerate(sub.operators or []) if k not in drop_ops]
    sub.inputs = [swap.get(int(i), int(i)) for i in sub.inputs]
    sub.outputs = [swap.get(int(i), int(i)) for i in sub.outputs]
    used = {int(i) for op in sub.operators
            for i in [*_ints(op.inputs), *_ints(op.outputs), *_ints(op.intermediates)]}
    used |= {int(i) for i in sub.inputs} | {int(i) for i in sub.outputs}
    used.discard(-1)
    keep = sorted(used)
    renum = {old: new for new, old in enumerate(keep)}

    def remap(values: object) -> list[int]:
        return [renum[int(i)] if int(i) >= 0 else -1 for i in _ints(values)]

    sub.tensors = [sub.tensors[i] for i in keep]
    for op in sub.operators:
        op.inputs, op.outputs = remap(op.inputs), remap(op.outputs)
        if op.intermediates is not None:
            op.intermediates = remap(op.intermediates)
    sub.inputs, sub.outputs = remap(sub.inputs), remap(sub.outputs)
    for sig in m.signatureDefs or []:
        for entry in [*(sig.inputs or []), *(sig.outputs or [])]:
            idx = swap.get(int(entry.tensorIndex), int(entry.tensorIndex))
            entry.tensorIndex = renum.get(idx, idx)
    builder = flatbuffers.Builder(len(facts.data) + 4096)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    path = facts.path
    if not path.startswith("<"):
        p = Path(path)
        path = str(p.with_name(p.stem + "_int8io.tflite"))
    stripped = ModelFacts.from_bytes(bytes(builder.Output()), path)
    stripped.stripped_io = [b.text() for b in bounds]
    return stripped


def _ints(values: object) -> list[int]:
    return [] if values is None else [int(v) for v in values]  # type: ignore[attr-defined]


def boundary_ops(facts: ModelFacts) -> set[int]:
    """Operator indices of the float boundary ops."""
    return {b.op for b in float_boundaries(facts)}


def float_tensors(facts: ModelFacts) -> set[int]:
    """Tensor indices of the float32 boundary tensors (not activations of the core)."""
    return {b.outer.index for b in float_boundaries(facts)}



def _interface_parts(facts: ModelFacts) -> tuple[list[str], list[str], list[str]]:
    """(lead lines, one line per boundary op, tail lines) of the interface text."""
    if facts.stripped_io:
        return (["--io int8: the model's float interface was stripped; these ops are gone:"],
                list(facts.stripped_io),
                ["Their scale S and zero point Z are the I/O tensors' here. As TFLM computes",
                 "them: q = clamp(round(x / S) + Z) (float32 division, round half away from",
                 "zero; td_run_float does this), x = (q - Z) * S (r.outputs)."])
    bounds = float_boundaries(facts)
    if not bounds:
        return [], [], []
    return (["Float interface: the model's own QUANTIZE/DEQUANTIZE run on the device, so",
             "the firmware takes and returns float32 (td_run_float copies the floats):"],
            [b.text() for b in bounds],
            ["`tinydeploy generate --io int8` strips these ops for int8 I/O."])


def interface_lines(facts: ModelFacts) -> list[str]:
    """What the generated headers say about the model's interface (short plain-ASCII
    lines for C comments; [] for a model with quantized I/O of its own)."""
    lead, ops, tail = _interface_parts(facts)
    return [*lead, *ops, *tail]


def interface_markdown(facts: ModelFacts) -> str:
    """The same for a README: a sentence, the boundary ops as a list, a sentence."""
    lead, ops, tail = _interface_parts(facts)
    if not ops:
        return ""
    return "\n".join([" ".join(lead), "", *(f"* `{line}`" for line in ops), "",
                      " ".join(tail)])
