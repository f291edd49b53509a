"""TFLM's tensor-arena allocator, replayed in Python for any pointer size.

Layer 4 of :mod:`tinydeploy.arena` (library facts -> kernel sizes -> allocator replay ->
prediction/measurement -> choice): used by :mod:`.predict` to predict the arena a 32-bit
Cortex-M needs, for a kernel flavour (``Graph.flavour``: ``reference`` = TFLM 90b983c2,
``cmsis-nn`` = Chirale_TensorFlowLite 2.0.0, whose allocator differences -- no
TF_LITE_STATIC_MEMORY, variables before planning -- are the ``CORTEX_M_CHIRALE`` ABI).
Per-kernel facts live in :mod:`.library`, :mod:`.kernels` and :mod:`.cmsis_nn`.

The allocator model (``MicroAllocator`` on one ``SingleArenaBufferAllocator``):

* The arena is one buffer. *Persistent* allocations grow down from the end (the *tail*;
  each is placed at ``align_down(tail - size, alignment)``, so the arena end address
  matters); the *head* grows up from the 16-byte aligned start; *temp* allocations are
  stacked above the head and released together.
* Tail, in order: the allocator, the greedy planner and ``MicroAllocator`` objects, the
  builtin-data allocator, ``SubgraphAllocations``, one ``TfLiteEvalTensor`` per tensor
  (pointer, pointer, enum: 12 B on 32-bit, 24 B on 64-bit), one ``NodeAndRegistration``
  per operator (TfLiteNode of 6 pointers + int, plus a registration pointer: 32/64 B), the
  parsed builtin options of each operator, each kernel's ``OpData`` from ``Init`` (16-byte
  aligned; e.g. ``OpDataConv`` holds two pointers), per-channel multiplier/shift arrays
  from ``Prepare`` (4 B per output channel each), scratch-buffer handles, and -- after
  planning -- variable tensors (LSTM state), the input/output ``TfLiteTensor`` pointer
  arrays, persistent ``TfLiteTensor`` structs (32 B on arm-none-eabi with its short enums,
  64 B on x86-64) and their quantization (``TfLiteAffineQuantization``
  12/24 B + zero-point array).
* Head during ``Prepare``: room for ``ScratchBufferRequest`` structs (12/16 B each,
  ``count + 12``), and above it the temp ``TfLiteTensor`` copies (+ quantization, whose
  zero-point arrays are per channel) that a kernel's ``Prepare`` creates.
* Planning (``CommitStaticMemoryPlan``): temp ``AllocationInfo`` per tensor and scratch
  buffer (24/32 B), then *all* remaining memory goes to the greedy planner, which needs
  40 B per planned buffer. This transient need is why the minimum arena can exceed
  ``arena_used_bytes()`` by hundreds of bytes for small models.
* Final head: the greedy plan's high-water mark over the non-constant tensors (sizes
  aligned to 16, lifetimes from first producer to last consumer; graph inputs exist
  from the start, graph outputs until the end) and the kernels' scratch buffers --
  identical on 32- and 64-bit.

The minimum is the smallest arena for which every step of that sequence fits; the
prediction is the smallest size from which on 64 consecutive sizes all fit (robust
against the alignment effects). Struct sizes come from TFLM's public headers (pointer
size 4 vs 8, ``size_t`` likewise); kernel ``OpData`` layouts cover the built-in
operators in ``library.KNOWN_OPS``; others get a conservative estimate and are flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

from .graph import Graph, Tensor
from .kernels import kernel_persistent, scratch_requests, temp_tensors
from .library import (
    CHIRALE_NODE_AND_REGISTRATION,
    CHIRALE_TFLITE_TENSOR,
    CMSIS_NN,
    builtin_data,
    opdata_bytes,
)

__all__ = ["Abi", "Graph", "predict", "simulate", "greedy_plan"]

ALIGN = 16  # MicroArenaBufferAlignment()
MAX_SCRATCH_PER_OP = 12  # kMaxScratchBuffersPerOp
PLANNER_BYTES_PER_BUFFER = 40  # GreedyMemoryPlanner::per_buffer_size()
ROBUST_WINDOW = 64


# --- ABI: struct sizes ----------------------------------------------------------------
@dataclass(frozen=True)
class Abi:
    name: str
    ptr: int  # sizeof(void*) == sizeof(size_t)
    enum: int = 4  # sizeof a small enum: 1 with AAPCS short enums (arm-none-eabi)
    tensor_size: int = 0  # sizeof(TfLiteTensor) if not the TF_LITE_STATIC_MEMORY layout
    node_size: int = 0  # sizeof(NodeAndRegistration) likewise
    late_variables: bool = True  # variables allocated while planning (TFLM >= mid 2023)

    @property
    def index(self) -> int:
        """Column in the per-kernel tables of :mod:`.library`."""
        return 0 if self.ptr == 4 else 1

    def struct(self, *fields: str) -> int:
        """sizeof a C struct of fields: i (int32/float), e (small enum), p (pointer/size_t),
        d (double), b (bool/int8), h (int16); natural alignment, padded to the largest."""
        sizes = {"i": 4, "p": self.ptr, "d": 8, "b": 1, "h": 2, "e": self.enum}
        off, big = 0, 1
        for f in fields:
            n = sizes[f]
            off = -(-off // n) * n + n
            big = max(big, n)
        return -(-off // big) * big

    @property
    def eval_tensor(self) -> int:
        return self.struct("p", "p", "e")

    @property
    def node_and_registration(self) -> int:
        return self.node_size or self.struct(*"pppppp", "i", "p")

    @property
    def tflite_tensor(self) -> int:  # TF_LITE_STATIC_MEMORY layout
        # quantization {type, params}, params {scale, zero_point}, data, dims, bytes,
        # type, allocation_type, is_variable
        return self.tensor_size or self.struct("e", "p", "i", "i", "p", "p", "p", "e", "e", "b")

    @property
    def affine_quant(self) -> int:
        return self.struct("p", "p", "i")

    @property
    def scratch_request(self) -> int:
        return self.struct("p", "i", "i")

    @property
    def allocation_info(self) -> int:
        return self.struct("p", "p", "i", "i", "i", "b")

    @property
    def fixed_objects(self) -> list[tuple[str, int]]:
        """Objects TFLM places at the arena end before anything model-specific."""
        return [
            # two interface vtables, head/tail/temp + buffer bounds, temp bookkeeping
            ("SingleArenaBufferAllocator", self.struct(*"ppppppppp")),
            # vtable, counts, 5 working-array pointers, indices, flag
            ("GreedyMemoryPlanner", self.struct("p", "i", "i", "p", "p", "p", "p", "i",
                                                "i", "p", "b")),
            # vtable, 4 allocator/planner pointers, flag, request count, head ptr, max head
            ("MicroAllocator", self.struct("p", "p", "p", "p", "p", "b", "p", "p", "p")),
        ]


CORTEX_M = Abi("cortex-m", 4, enum=1)
# Chirale_TensorFlowLite 2.0.0 as the Arduino IDE builds it: no TF_LITE_STATIC_MEMORY (full
# TfLiteTensor/TfLiteNode), variables allocated before planning (TFLM of January 2023)
CORTEX_M_CHIRALE = Abi("cortex-m (Chirale_TensorFlowLite 2.0.0)", 4, enum=1,
                       tensor_size=CHIRALE_TFLITE_TENSOR,
                       node_size=CHIRALE_NODE_AND_REGISTRATION,
                       late_variables=False)
HOST64_NATIVE = Abi("host64-native", 8)


# --- greedy memory planner (the algorithm TFLM documents in greedy_memory_planner.h) -----
def greedy_plan(buffers: list[tuple[int, int, int]]) -> int:
    """Largest end offset of a greedy first-fit placement of (size, first, last) buffers,
    taken in descending size, each at the lowest gap among simultaneously live, already
    placed buffers. Like TFLM, equal sizes are taken in reverse order of addition (the
    working array is filled from its end, then bubble-sorted, which is stable)."""
    order = sorted(reversed(range(len(buffers))), key=lambda i: -buffers[i][0])
    placed: list[tuple[int, int]] = []  # (offset, index) sorted by offset
    high = 0
    for n, i in enumerate(order):
        size, first, last = buffers[i]
        offset = 0
        if n:
            for off, j in placed:
                _, f2, l2 = buffers[j]
                if f2 > last or first > l2:
                    continue
                if off - offset >= size:
                    break
                offset = max(offset, off + buffers[j][0])
        placed.append((offset, i))
        placed.sort(key=lambda e: e[0])
        high = max(high, offset + size)
    return high


def planned_buffers(g: Graph) -> list[tuple[int, int, int]]:
    """(aligned size, first, last) per planned tensor and scratch buffer, in TFLM order."""
    first = [-1] * len(g.tensors)
    last = [-1] * len(g.tensors)

    def create(t: int, s: int) -> None:
        first[t] = s
        last[t] = s

    for t in g.inputs + g.outputs:
        create(t, 0)
    scratch = scratch_requests(g)
    scratch_life: list[tuple[int, int, int]] = []
    for k, op in enumerate(g.ops):
        s = k + 1
        for t in op.outputs:
            create(t, s)
        for t in op.inputs:
            if t >= 0:
                last[t] = s
        for t in op.outputs:
            last[t] = s
        scratch_life += [(align_up(b, ALIGN), s, s) for node, b in scratch if node == k]
    for t in g.outputs:
        last[t] = len(g.ops)
    bufs = [(align_up(t.nbytes, ALIGN), first[i], last[i]) for i, t in enumerate(g.tensors)
            if not t.const and not t.variable and t.nbytes > 0]
    return bufs + scratch_life


# --- arena replay ---------------------------------------------------------------------
def align_up(n: int, a: int) -> int:
    return -(-n // a) * a


class OutOfArena(Exception):
    pass


class _Arena:
    def __init__(self, size: int) -> None:
        self.size = size
        self.head = self.temp = 0
        self.tail = size
        self.log: dict[str, int] = {}

    def persistent(self, what: str, size: int, align: int) -> None:
        new = (self.tail - size) // align * align
        if new < self.head:
            raise OutOfArena(what)
        self.log[what] = self.log.get(what, 0) + self.tail - new
        self.tail = new

    def temp_alloc(self, what: str, size: int, align: int) -> None:
        start = align_up(self.temp, align)
        if self.tail - start < size:
            raise OutOfArena(what)
        self.temp = start + size

    def resize_head(self, what: str, size: int) -> None:
        if self.tail < size:
            raise OutOfArena(what)
        self.head = self.temp = size

    def available(self) -> int:
        return self.tail // ALIGN * ALIGN - align_up(self.temp, ALIGN)


def _temp_tensor(a: _Arena, t: Tensor, abi: Abi) -> None:
    a.temp_alloc("temp TfLiteTensor", abi.tflite_tensor, abi.ptr)
    if t.channels:
        a.temp_alloc("temp quantization", abi.affine_quant, abi.ptr)
        a.temp_alloc("temp zero points", 4 + 4 * t.channels, 4)


def _variables(a: _Arena, g: Graph) -> None:
    """AllocateVariables: variable tensors (e.g. LSTM state) live in the tail."""
    for t in g.tensors:
        if t.variable:
            a.persistent("variable tensors", t.nbytes, ALIGN)


def simulate(g: Graph, size: int, abi: Abi, head_plan: int | None = None,
             extra_scratch: int = 0) -> dict[str, int]:
    """Replay TFLM's allocation sequence in an arena of ``size`` bytes (start 16-byte
    aligned). Returns per-category tail bytes plus ``head``; raises OutOfArena.
    ``head_plan`` overrides the planned head (e.g. measured); ``extra_scratch`` adds that
    many scratch-buffer requests the kernel table does not know about (one per node)."""
    plan = greedy_plan(planned_buffers(g)) if head_plan is None else head_plan
    if g.flavour == CMSIS_NN:
        if abi.ptr != 4:
            raise ValueError("the cmsis-nn flavour exists for 32-bit Cortex-M only")
        abi = CORTEX_M_CHIRALE
    a = _Arena(size)
    p = abi.ptr
    for _what, n in abi.fixed_objects:
        a.persistent("allocator objects", n, p)
    a.persistent("allocator objects", abi.struct("p", "p"), p)  # MicroBuiltinDataAllocator
    req = abi.scratch_request
    a.resize_head("scratch requests", req * MAX_SCRATCH_PER_OP)
    a.persistent("allocator objects", abi.struct("p", "p"), p)  # SubgraphAllocations
    a.persistent("TfLiteEvalTensor", abi.eval_tensor * len(g.tensors), p)
    a.persistent("NodeAndRegistration", abi.node_and_registration * len(g.ops), p)
    for op in g.ops:
        bd = builtin_data(op.name, abi.index, g.flavour)
        if bd is not None:
            a.persistent("builtin options", bd[0], bd[1])
    for op in g.ops:
        n = opdata_bytes(op.name, abi.index, g.flavour)
        if n:
            a.persistent("kernel OpData", n, ALIGN)
    scratch = scratch_requests(g)
    count = 0
    for k, op in enumerate(g.ops):
        for n in kernel_persistent(g, k):
            a.persistent("per-channel arrays", n, ALIGN)
        for t in temp_tensors(g, op):
            _temp_tensor(a, g.tensors[t], abi)
        count += sum(1 for node, _ in scratch if node == k) + (1 if extra_scratch > k else 0)
        a.temp = a.head
        a.resize_head("scratch requests", req * (count + MAX_SCRATCH_PER_OP))
    if count:
        a.persistent("scratch handles", p * count, p)
    if not abi.late_variables:
        _variables(a, g)
    n_planned = len(planned_buffers(g)) + min(extra_scratch, len(g.ops))
    a.temp_alloc("planning", p, p)  # subgraph offsets
    a.temp_alloc("planning", abi.allocation_info * (len(g.tensors) + count), p)
    if abi.late_variables:
        _variables(a, g)
    avail = a.available()
    if avail < 0 or avail // PLANNER_BYTES_PER_BUFFER < n_planned:
        raise OutOfArena("planner scratch")
    a.temp_alloc("planning", avail, ALIGN)
    a.head = a.temp = 0
    a.resize_head("planned tensors", plan)
    for group in (g.inputs, g.outputs):
        a.persistent("I/O TfLiteTensor", p * len(group), ALIGN)
        for t in group:
            a.persistent("I/O TfLiteTensor", abi.tflite_tensor, p)
            if g.tensors[t].channels:
                a.persistent("I/O quantization", abi.affine_quant, p)
                a.persistent("I/O quantization", 4 + 4 * g.tensors[t].channels, 4)
    out = dict(a.log)
    out["head (planned tensors)"] = plan
    out["used"] = plan + size - a.tail
    return out


def predict(g: Graph, abi: Abi = CORTEX_M) -> tuple[int, dict[str, int]]:
    """Smallest size S such that S .. S+63 all fit; with the breakdown at S."""
    plan = greedy_plan(planned_buffers(g))

    def fits(n: int) -> bool:
        try:
            simulate(g, n, abi, plan)
            return True
        except OutOfArena:
            return False

    hi = max(256, plan)
    while not fits(hi):
        hi *= 2
    lo = 0
    while hi - lo > 1:  # roughly monotone: coarse bisection, then exact robust scan
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    start = max(0, hi - 4 * ROBUST_WINDOW)
    run, best = 0, None
    for n in range(start, hi + 2 * ROBUST_WINDOW):
        run = run + 1 if fits(n) else 0
        if run == ROBUST_WINDOW:
            best = n - ROBUST_WINDOW + 1
            break
    assert best is not None
    return best, simulate(g, best, abi, plan)
