"""The fuzz corpus through the generated TFLite Micro firmware as well (``native`` board),
when a TFLM tree is given (``$TINYDEPLOY_TFLM_SRC``): both runtimes checked against the
host reference. One firmware per model (the generator's TFLM project, compiled against the
tree's cached library), served over the device protocol like ``tinydeploy validate``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import TinyDeployError
from .case import sample_bytes

if TYPE_CHECKING:
    from ..device.tflm_tree import TflmTree
    from .case import Prepared

__all__ = ["TARGET", "run_tflm", "tflm_tree"]

TARGET = "tflm-native"


def tflm_tree() -> TflmTree | None:
    """The tree of ``$TINYDEPLOY_TFLM_SRC``, or None when it is not set."""
    from ..device.tflm_tree import ENV_SRC, find_tflm_tree

    return find_tflm_tree(board="native") if os.environ.get(ENV_SRC) else None


def run_tflm(p: Prepared, tree: TflmTree, work: Path) -> bytes | str:
    """The model's outputs from its TFLM firmware (per sample: a 0 byte, then the output
    bytes, as :func:`.run.compare` expects), or why it did not run ('tflm-refused: ...'
    when the generator refuses the model, 'tflm-error: ...' for a build or device
    error)."""
    from ..device.link import Link
    from ..device.native import start_native

    try:
        with start_native(p.built.data, Path(work), tflm=tree) as proc, \
                Link(proc.port, timeout=30.0) as link:
            link.hello()
            out = []
            for sample in p.samples:
                reply = link.infer(sample_bytes(sample), reset=True)
                out.append(b"\x00" + bytes(reply.output))
    except TinyDeployError as exc:
        kind = "tflm-refused" if exc.code in ("model_rejected", "unsupported_op",
                                              "does_not_fit") else "tflm-error"
        return f"{kind}: {exc}"
    return b"".join(out)
