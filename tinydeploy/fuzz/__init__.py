"""Differential fuzzer of the C runtime (issue 16).

Random int8 and 16x8 models written directly as flatbuffers (:mod:`.spec`, :mod:`.net`,
:mod:`.models`, :mod:`.layers`, :mod:`.weighted`), run on the host reference in a worker
process (:mod:`.host`) and on the C runtime -- portable build natively, DSP build on
qemu-cm4, many models per program or image (:mod:`.targets`) -- compared byte for byte
(:mod:`.case`, :mod:`.run`), with each layer's kernel path and quantization regime
(:mod:`.paths`, :mod:`.report`), known open differences as data (:mod:`.known`),
shrinking of mismatches (:mod:`.shrink`) and, with ``$TINYDEPLOY_TFLM_SRC``, the generated
TFLM firmware as a third runtime (:mod:`.tflm`). ``benchmarks/fuzz_cruntime.py`` runs it at
scale, ``tests/test_fuzz_slice.py`` is its CI slice; see ``docs/fuzzing.md``.
"""
