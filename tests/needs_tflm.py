"""Tests that compare with the tflite-micro Python runtime itself (the TFLM reference
kernels): skipped, with the reason, where it is missing or hidden
(``$TINYDEPLOY_HIDE_TFLITE_MICRO``, how CI runs the suite a second time). Everything else
runs against the stand-in reference there (tinydeploy.hostref_native)."""

from __future__ import annotations

import pytest

from tinydeploy import tflm_py

REASON = ("needs the tflite-micro Python runtime (TFLM reference kernels): it is not "
          "installed or hidden ($TINYDEPLOY_HIDE_TFLITE_MICRO)")
mark = pytest.mark.needs_tflm  # on a test: skipped there (tests/conftest.py)


def require_tflm() -> None:
    """In a helper: skip the calling test where the runtime is missing."""
    if not tflm_py.available():
        pytest.skip(REASON)
