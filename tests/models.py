"""The reference models in tests/data: which are generated here and which are public (the zoo).

``GROUND_TRUTH`` is tests/data/ground_truth.json (Cortex-M4 measurements with TFLM);
``GENERATED`` are the nine small Keras models, ``ZOO`` the public models (entries with a
``source`` field: TFLM examples, MLPerf Tiny) - see tests/data/README.md.
"""

from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).parent / "data"
GROUND_TRUTH: dict[str, dict] = json.loads((DATA / "ground_truth.json").read_text())
ZOO = sorted(n for n, g in GROUND_TRUTH.items() if "source" in g)
GENERATED = sorted(n for n in GROUND_TRUTH if n not in ZOO)
