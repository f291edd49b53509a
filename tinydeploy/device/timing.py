"""How long one inference may take: predicted instructions / the board's slowest speed.

``predicted_instructions(facts, runtime)`` is an upper estimate of the Cortex-M
instructions one inference executes, from the per-layer analysis
(:func:`tinydeploy.layers.analyze`): per multiply-accumulate of the weight layers
(convolutions, fully connected, LSTM), per output value of every other computing layer
(element-wise ops, pooling, softmax: ``macs`` there counts outputs, or outputs x window),
per activation byte written (copies, padding), plus a fixed start-up cost. The factors
bound what was measured on the emulated Cortex-M4 over the 18 reference models
(tests/data/ground_truth.json, benchmarks/results/; tests/test_verdict_limits.py checks
it): TFLM's reference kernels run at most ~108 instructions per MAC or element-wise output,
the C runtime's convolutions 1.7-5.4 per MAC (a 1.28 G-instruction ResNet: 1.7), its
element-wise ops ~70 per output; its reference fallback loops are ~3x slower than its
fast paths, and the factors leave that margin.

``infer_seconds(facts, board, runtime)`` divides by the board's ``slowest_ips``
(:mod:`tinydeploy.boards`): half the clock on silicon, a measured floor for ``qemu-cm4``
(QEMU with ``-icount shift=0`` ran 178-525 M instructions/s on a loaded 2-core host; the
floor is 20 M/s) and the host boards. The device link adds it to the wait for every
INFER reply; ``--timeout S`` replaces it.
"""

from __future__ import annotations

from typing import Any

from ..boards import get_board
from ..errors import TinyDeployError
from ..facts import ModelFacts

WEIGHT_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV",
                        "BATCH_MATMUL", "UNIDIRECTIONAL_SEQUENCE_LSTM", "SVDF",
                        "UNIDIRECTIONAL_SEQUENCE_RNN"})
# instructions per MAC of a weight layer, per runtime (upper estimates, see above)
PER_MAC = {"c": 20, "tflm": 120}
PER_OUTPUT = 120  # per output value (x window) of the other computing layers
PER_BYTE = 20  # per activation byte any layer writes
FIXED = 1_000_000  # interpreter set-up, I/O quantization, the protocol


def predicted_instructions(facts: ModelFacts, runtime: str = "tflm") -> int:
    """Upper estimate of the instructions of one inference with ``runtime`` (``c``: the
    C runtime; anything else: TFLM reference kernels, the slowest TFLM build)."""
    from ..layers import analyze

    per_mac = PER_MAC.get(runtime, PER_MAC["tflm"])
    total = FIXED
    for layer in analyze(facts)["layers"]:
        per = per_mac if layer["op"] in WEIGHT_OPS else PER_OUTPUT
        total += per * int(layer["macs"]) + PER_BYTE * int(layer["activation_bytes"])
    return total


UNKNOWN_IPS = 20_000_000  # a board not in the table: as slow as the slowest we know


def infer_seconds(facts: ModelFacts, board: Any, runtime: str = "tflm") -> float:
    """Seconds one inference may take on ``board`` (a board id or ``Board``; unknown or
    None: ``UNKNOWN_IPS``) with ``runtime``."""
    try:
        ips = get_board(board).slowest_ips if board else UNKNOWN_IPS
    except TinyDeployError:  # an id the table does not know (a board's own HELLO)
        ips = UNKNOWN_IPS
    return predicted_instructions(facts, runtime) / ips
