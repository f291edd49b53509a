"""Kernel overrides: tinydeploy's own TFLM kernel where a board's TFLM library has a defect.

A *defect* is a library fact (``tflm_libraries.json``, extracted from the real trees by
``scripts/extract_tflm_facts.py`` with :func:`tree_facts`) whose value ``False`` means the
library computes some operator wrong. ``OVERRIDES`` maps each defect to the kernel the
generated firmware registers in its place, through the resolver's registration argument
(``resolver.AddFullyConnected(td_fc_registration())``), and says which models it matters for.

One row today: ``fc_per_channel`` -- TFLM before September 2024 (Chirale_TensorFLowLite
2.0.0: TFLM of January 2023, and every library in the table) reads one weight scale for
FULLY_CONNECTED, while today's TFLiteConverter quantizes Dense layers per channel; the
outputs then differ from the host (digits: 230 of 360 samples, up to 107 LSB). The
override is ``firmware/td_tflm_fc.cpp``, bit-exact with current TFLM's reference kernel.

It is registered only for a model with an affected layer (a per-channel FULLY_CONNECTED):
every other model keeps the library's own kernels -- the firmware, its code size and its
arena are exactly what they were. A board whose library has the defect while tinydeploy's
kernel cannot take the model (a 16x8 per-channel FULLY_CONNECTED) keeps the warning, as
does every affected board with ``TINYDEPLOY_NO_OVERRIDES=1`` (the library's own kernels,
e.g. to see its defect on native / qemu-cm4).

:func:`explain_mismatch` is for the validation report: it reruns the host reference with a
defect reproduced and names the defect when that reproduces the device's outputs exactly.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .facts import ModelFacts, load, op_name
from .log import log

if TYPE_CHECKING:
    from .boards import Board
    from .tflm_libraries import TflmLibrary

INT8 = 9  # schema TensorType
ENV_OFF = "TINYDEPLOY_NO_OVERRIDES"  # 1: the library's own kernels (to measure its defects)


# --- the model side ------------------------------------------------------------------------
@dataclass(frozen=True)
class FcLayer:
    """One FULLY_CONNECTED operator: its place, weight rows and quantization."""

    subgraph: int
    index: int
    rows: int  # output channels (weight rows)
    per_channel: bool  # more than one weight scale
    int8: bool  # int8 input (the domain of tinydeploy's kernel)


def fc_layers(facts: ModelFacts) -> list[FcLayer]:
    """Every FULLY_CONNECTED operator of the model."""
    model = facts.model
    codes = model.operatorCodes or []
    out = []
    for s, sg in enumerate(model.subgraphs or []):
        for k, op in enumerate(sg.operators or []):
            if op_name(codes[op.opcodeIndex]) != "FULLY_CONNECTED" or op.inputs is None \
                    or len(op.inputs) < 2 or min(op.inputs[:2]) < 0:
                continue
            w = sg.tensors[op.inputs[1]]
            scale = getattr(w.quantization, "scale", None) if w.quantization is not None else None
            shape = [int(d) for d in (w.shape if w.shape is not None else [])]
            out.append(FcLayer(s, k, shape[0] if shape else 0,
                               scale is not None and len(scale) > 1,
                               int(sg.tensors[op.inputs[0]].type) == INT8))
    return out


def per_channel_fc_layers(facts: ModelFacts) -> int:
    """How many FULLY_CONNECTED operators have weights with more than one scale."""
    return sum(1 for layer in fc_layers(facts) if layer.per_channel)


def _fc_unsupported(facts: ModelFacts) -> str:
    n = sum(1 for layer in fc_layers(facts) if not layer.int8)
    return f"{n} FULLY_CONNECTED layer(s) with int16 input (tinydeploy's kernel is int8)" \
        if n else ""


def _fc_pool_words(facts: ModelFacts) -> int:
    """Upper bound of td_tflm_fc.cpp's table words: folded bias per output channel, plus a
    multiplier and a shift per channel of per-channel layers."""
    return sum(layer.rows * (3 if layer.per_channel else 1) for layer in fc_layers(facts))


def pack(model: Any) -> bytes:
    """A schema ``ModelT`` serialized as a .tflite flatbuffer."""
    import flatbuffers

    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _fc_simulate(facts: ModelFacts) -> bytes:
    """The model as a library with the defect computes it: each per-channel FULLY_CONNECTED
    with its first channel's weight scale for every output (TFLM's per-tensor path)."""
    model = copy.deepcopy(facts.model)
    for layer in fc_layers(facts):
        if layer.per_channel:
            sg = model.subgraphs[layer.subgraph]
            q = sg.tensors[sg.operators[layer.index].inputs[1]].quantization
            q.scale = [q.scale[0]]
            q.zeroPoint = [q.zeroPoint[0] if q.zeroPoint is not None and len(q.zeroPoint) else 0]
            q.quantizedDimension = 0
    return pack(model)


# --- the table -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Override:
    """One library defect and the kernel that replaces the library's own."""

    defect: str  # library fact; False = the library has the defect
    op: str
    resolver: str  # MicroMutableOpResolver method taking the registration
    macro: str  # TD_OVERRIDE_<OP>: 1 in the firmware of a board whose library has the defect
    registration: str  # C++ expression passed to the resolver method
    header: str  # declares the registration (firmware/)
    files: tuple[str, ...]  # firmware/ files the generated library gets
    setup: tuple[str, ...]  # C++ statements run before the registration
    pool_macro: str  # static table words the kernel needs (td_tflm_overrides.h)
    problem: str  # what the library does wrong
    kernel: str  # tinydeploy's kernel, in a few words
    remedy: str  # what tinydeploy's kernel does
    affected: Callable[[ModelFacts], int] = field(repr=False)  # layers the defect changes
    unsupported: Callable[[ModelFacts], str] = field(repr=False)  # "" or why not usable
    pool_words: Callable[[ModelFacts], int] = field(repr=False)
    simulate: Callable[[ModelFacts], bytes] = field(repr=False)  # the model as computed


OVERRIDES: tuple[Override, ...] = (
    Override(
        defect="fc_per_channel", op="FULLY_CONNECTED", resolver="AddFullyConnected",
        macro="TD_OVERRIDE_FULLY_CONNECTED", registration="td_fc_registration()",
        header="td_tflm_fc.h",
        files=("td_tflm_fc.h", "td_tflm_fc.cpp", "td_kernels.h", "td_simd.h",
               "td_kernels_fc_plain.c", "td_kernels_conv_ref.c"),
        setup=("static int32_t fc_pool[TD_FC_POOL_WORDS];",
               "td_fc_set_pool(fc_pool, TD_FC_POOL_WORDS);"),
        pool_macro="TD_FC_POOL_WORDS",
        problem="applies one weight scale (the first channel's) to every output of a "
                "FULLY_CONNECTED layer whose weights are quantized per channel (TFLM before "
                "September 2024; today's TFLiteConverter quantizes Dense layers that way)",
        kernel="tinydeploy's int8 FULLY_CONNECTED kernel (td_tflm_fc.cpp)",
        remedy="tinydeploy's int8 FULLY_CONNECTED kernel (src/td_tflm_fc.cpp) is registered "
               "instead: per-channel multipliers computed in Prepare as current TFLM does, "
               "bit-exact with its reference kernel, weights read in place with the Arm DSP "
               "instructions where the core has them",
        affected=per_channel_fc_layers, unsupported=_fc_unsupported, pool_words=_fc_pool_words,
        simulate=_fc_simulate),
)
DEFECTS = tuple(o.defect for o in OVERRIDES)


# --- which libraries and trees have a defect -----------------------------------------------
def library_defects(lib: TflmLibrary | None) -> frozenset[str]:
    """The defects of a library of the table (its fact is ``False``)."""
    if lib is None:
        return frozenset()
    return frozenset(d for d in DEFECTS if getattr(lib, d, True) is False)


OPTIMIZED_KERNEL_DIRS = ("cmsis_nn", "esp_nn")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def fc_per_channel(src: Path, optimized: bool = True) -> bool:
    """Whether the FULLY_CONNECTED of the TFLM sources under ``src`` (the folder holding
    ``tensorflow/``) honours per-channel weight scales: its OpData declares
    ``is_per_channel``, its common Prepare does not refuse them (TFLM of May - September
    2024 fails AllocateTensors instead) and, with ``optimized`` (an Arduino library, which
    compiles its optimized kernels), the optimized FULLY_CONNECTED reads it too."""
    kernels = Path(src) / "tensorflow/lite/micro/kernels"
    if "is_per_channel" not in _read(kernels / "fully_connected.h"):
        return False
    common = "".join(_read(p) for p in kernels.glob("fully_connected_common.c*"))
    # current TFLM refuses only under #ifdef HEXAGON ("... not yet supported on Hexagon.")
    if re.search(r"per-channel quantization not yet supported(?! on Hexagon)", common):
        return False
    for sub in OPTIMIZED_KERNEL_DIRS if optimized else ():
        files = sorted((kernels / sub).glob("fully_connected.c*"))
        if files and not any("is_per_channel" in _read(p) for p in files):
            return False
    return True


def tree_facts(src: Path, optimized: bool = True) -> dict[str, bool]:
    """The defect facts of a TFLM source tree (``src`` holds ``tensorflow/``)."""
    return {"fc_per_channel": fc_per_channel(src, optimized)}


def tree_defects(path: str | Path) -> frozenset[str]:
    """The defects of the TFLM tree tinydeploy builds from ``path`` (``--tflm-src``: an
    Arduino library, compiled with its optimized kernels, or a tflite-micro checkout,
    compiled with the kernels of its flavour)."""
    from .device.tflm_tree import ARDUINO, CMSIS_NN, find_tflm_tree

    tree = find_tflm_tree(path)
    arduino = tree.kind == ARDUINO
    facts = tree_facts(tree.root / "src" if arduino else tree.root,
                       optimized=arduino or tree.flavour == CMSIS_NN)
    return frozenset(d for d in DEFECTS if facts.get(d, True) is False)


# --- what the generator renders ---------------------------------------------------------------
@dataclass
class OverridePlan:
    """The overrides of one generated firmware: per override the boards whose library gets
    it; ``warnings`` for defects that hit the model but no override can take."""

    active: list[tuple[Override, list[Board]]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    affected: dict[str, int] = field(default_factory=dict)  # defect -> layers
    tree: str | Path | None = None  # the TFLM tree of native / qemu-cm4 boards

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f for o, _ in self.active for f in o.files))

    def for_op(self, op: str) -> Override | None:
        return next((o for o, _ in self.active if o.op == op), None)

    def ram_bytes(self, facts: ModelFacts, board: Board) -> int:
        """Static RAM the overrides take on ``board`` (their table pools)."""
        return sum(4 * o.pool_words(facts) for o, bs in self.active if board in bs)


def plan(facts: ModelFacts, boards: Sequence[Board],
         tree: str | Path | None = None) -> OverridePlan:
    """Which overrides the firmware for ``boards`` registers: MCU boards by their library's
    facts, native / qemu-cm4 by those of the TFLM ``tree`` they are built against."""
    out = OverridePlan(tree=tree)
    tree_def: frozenset[str] | None = None
    for board in boards:
        if board.tflm_lib is not None:
            defects, label = library_defects(board.tflm_lib), board.tflm_lib.label
        elif tree is not None:
            if tree_def is None:
                tree_def = tree_defects(tree)
            defects, label = tree_def, f"the TFLM tree {tree}"
        else:
            continue
        for o in OVERRIDES:
            hits = o.affected(facts) if o.defect in defects else 0
            if not hits:
                continue
            out.affected[o.defect] = hits
            why = o.unsupported(facts) or (
                f"kernel overrides are off (${ENV_OFF})" if os.environ.get(ENV_OFF, "0") != "0"
                else "")
            if why:
                out.warnings.append(
                    f"{board.id}: {label} {o.problem}; this model has {hits} such "
                    f"{o.op} layer(s) and {why}, so its outputs will differ from the host; "
                    "use --runtime c for this board")
                continue
            entry = next((e for e in out.active if e[0] is o), None)
            if entry is None:
                out.active.append((o, [board]))
            else:
                entry[1].append(board)
    for line in out.warnings:  # generated anyway: the README repeats it
        log.warning("%s", line)
    for o, users in out.active:
        log.info("%s: tinydeploy's kernel replaces the library's for %s (%s defect)", o.op,
                 ", ".join(b.id for b in users), o.defect)
    return out


def context(p: OverridePlan, facts: ModelFacts,
            lib_macro: Callable[[Board], str]) -> list[dict[str, Any]]:
    """Template context of the active overrides (td_tflm_overrides.h, td_tflm_app.cpp,
    README); ``lib_macro``: the macro that selects a board's library in the firmware."""
    out = []
    for o, boards in p.active:
        macros = list(dict.fromkeys(lib_macro(b) for b in boards))
        libs = [b.tflm_lib.label if b.tflm_lib else f"the TFLM tree {p.tree}" for b in boards]
        out.append({"op": o.op, "resolver": o.resolver, "macro": o.macro,
                    "registration": o.registration, "header": o.header, "setup": o.setup,
                    "pool_macro": o.pool_macro, "pool_words": o.pool_words(facts),
                    "condition": " || ".join(f"defined({m})" for m in macros),
                    "defect": o.defect, "problem": o.problem, "remedy": o.remedy,
                    "layers": p.affected[o.defect], "boards": [b.id for b in boards],
                    "libraries": list(dict.fromkeys(libs))})
    return out


def add_to_context(ctx: dict[str, Any], p: OverridePlan, facts: ModelFacts,
                   firmware: tuple[str, ...], lib_macro: Callable[[Board], str],
                   ) -> tuple[str, ...]:
    """Put the overrides into the generator's template context (``overrides``,
    ``override_files``, each op's ``override``, ``device_warnings``); returns the firmware/
    files the generated library gets (``firmware`` plus the overrides' own)."""
    ctx["device_warnings"] = p.warnings
    ctx["overrides"] = context(p, facts, lib_macro)
    ctx["override_files"] = [f for f in p.files if f not in firmware]
    for op in ctx["ops"]:
        op["override"] = next((o for o in ctx["overrides"] if o["op"] == op["name"]), None)
    return tuple(dict.fromkeys((*firmware, *p.files)))


# --- the validation report --------------------------------------------------------------------
@dataclass(frozen=True)
class DefectMatch:
    """A known library defect that reproduces the device's outputs."""

    defect: str
    op: str
    layers: int
    samples: int
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"defect": self.defect, "op": self.op, "layers": self.layers,
                "samples": self.samples, "text": self.text}


def explain_mismatch(facts: ModelFacts | str | Path | bytes, q_in: Sequence[np.ndarray],
                     device: Sequence[np.ndarray], stateful: bool = False,
                     defects: Sequence[str] | None = None) -> list[DefectMatch]:
    """The known defects whose host reproduction equals the device's outputs on every sample.

    Args:
        facts: the validated model.
        q_in: the quantized inputs sent (one array per model input, samples first).
        device: the device's outputs (one array per model output, samples first).
        stateful: the samples were one sequence (as in ``validate --stateful``).
        defects: only these defects (default: every defect of the table).

    Returns:
        One :class:`DefectMatch` per defect that affects this model and reproduces all the
        device's outputs exactly; empty when none does (then nothing is claimed).
    """
    from . import tflm_py
    from .hostref import HostModel

    if not tflm_py.available():  # the defects are simulated in the TFLM Python runtime
        log.info("known TFLM defects: not checked (tflite-micro is not installed)")
        return []
    facts = load(facts)
    found = []
    for o in OVERRIDES:
        if defects is not None and o.defect not in defects:
            continue
        layers = o.affected(facts)
        if not layers:
            continue
        sim = HostModel(load(o.simulate(facts))).predict_all(q_in, stateful=stateful)
        n = len(device[0])
        same = all(np.array_equal(np.asarray(s).reshape(n, -1), np.asarray(d).reshape(n, -1))
                   for s, d in zip(sim, device, strict=True))
        if same:
            found.append(DefectMatch(
                o.defect, o.op, layers, n,
                f"the device's outputs equal the host's with a known TFLM library defect "
                f"reproduced on all {n} samples: the library {o.problem} ({layers} such layer(s) "
                f"in this model). tinydeploy registers {o.kernel} for such libraries: "
                f"regenerate the firmware with this version (without ${ENV_OFF})"))
    return found
