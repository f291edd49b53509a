"""Differential fuzzer of the C runtime (issue 16): random int8 and 16x8 models written as
flatbuffers (:mod:`.models`), run on the host reference and on the C runtime, native and
qemu-cm4 (:mod:`.run`, :mod:`.targets`), with kernel-path coverage (:mod:`.paths`) and
shrinking of mismatches (:mod:`.shrink`). ``benchmarks/fuzz_cruntime.py`` runs it at scale.
"""
