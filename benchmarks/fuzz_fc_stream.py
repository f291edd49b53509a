"""FULLY_CONNECTED streaming at scale: random producer -> FC models, streaming forced.

Each model is a random int8 CONV_2D / DEPTHWISE_CONV_2D / MAX_POOL_2D / AVERAGE_POOL_2D
(the fuzzer's random geometry, channels, quantization regimes; ``tinydeploy.fuzz``), an
optional RELU6 (fused into it), a FULLY_CONNECTED over the flattened output and an optional
RELU6 after it. Every candidate is streamed (``fc_stream.choose`` bypassed) with a random
band height 1..4 -- the policy would stream only where the arena drops -- and the outputs
are compared byte for byte with TFLM's Python runtime on the portable build (``native``)
and/or the DSP build on qemu-cm4. The general fuzzer (``fuzz_cruntime.py``) rarely draws
a model where streaming pays; this one draws nothing else. Exit status 1 on any mismatch.

    python benchmarks/fuzz_fc_stream.py --models 300 --target both
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from tinydeploy.cruntime import fc_stream
from tinydeploy.fuzz.case import (
    Prepared,
    compare,
    patched_first,
    prepare,
    speed_first,
    transposed_first,
)
from tinydeploy.fuzz.host import HostRef
from tinydeploy.fuzz.models import Invalid, Layer, Recipe, build
from tinydeploy.fuzz.net import act_quant
from tinydeploy.fuzz.spec import GraphSpec
from tinydeploy.fuzz.targets import run_cases
from tinydeploy.fuzz.weighted import rand_channels

PRODUCERS = ("CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D")


def recipe(seed: int) -> tuple[Recipe, int]:
    """A random producer -> FC model and the band height to force."""
    r = np.random.default_rng([seed, 7])
    c = rand_channels(r) if r.random() < 0.5 else int(r.integers(1, 6))
    shape = [1, int(r.integers(2, 16)), int(r.integers(1, 14)), c]

    def lay(kind: str, **p: Any) -> Layer:
        return Layer(kind, int(r.integers(1 << 31)), dict(p))

    layers = [lay(str(r.choice(PRODUCERS)))]
    if r.random() < 0.3:
        layers.append(lay("RELU6"))
    layers.append(lay("FULLY_CONNECTED", flatten=True))
    if r.random() < 0.2:
        layers.append(lay("RELU6"))
    scale, zp = act_quant(r, "INT8")
    return Recipe(seed, shape, "INT8", scale, zp, layers), int(r.integers(1, 5))


def relu6_defined(g: GraphSpec) -> bool:
    """False where a RELU6's 6 / scale leaves int32: TFLM's FloatToQuantizedType then
    casts an out-of-range float (undefined; its upper bound comes out as garbage, e.g. after
    a FULLY_CONNECTED whose dead weights made the output scale 7.5e-10) -- not a model to
    compare on."""
    return all(6.0 / g.t(op.inputs[0]).scale < 2 ** 31 for op in g.ops if op.name == "RELU6")


def prepared(n: int, first: int) -> tuple[list[Prepared], int]:
    """``n`` models (seeds from ``first``, size-first ones only) and how many streamed."""
    height = {"h": 1}
    choose = fc_stream.choose
    fc_stream.choose = lambda g, found, arena: (  # type: ignore[assignment]
        tuple(replace(s, height=height["h"]) for s in found), arena(()))
    out: list[Prepared] = []
    try:
        with HostRef() as host:
            seed = first
            while len(out) < n:
                seed += 1
                # the fuzzer's speed-first, transposed and patched shares stream nothing
                if speed_first(seed) or transposed_first(seed) or patched_first(seed):
                    continue
                rec, height["h"] = recipe(seed)
                try:
                    built = build(rec)
                except Invalid:
                    continue
                if not relu6_defined(built.graph):
                    continue
                p, _, _ = prepare(built, host)
                if p is not None:
                    out.append(p)
    finally:
        fc_stream.choose = choose  # type: ignore[assignment]
    return out, sum("(FC streaming)" in p.case.texts["td_model.c"] for p in out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=300)
    ap.add_argument("--seed", type=int, default=5_000_000, help="seeds from here")
    ap.add_argument("--target", choices=["native", "qemu-cm4", "both"], default="native")
    args = ap.parse_args(argv)
    cases, streamed = prepared(args.models, args.seed)
    print(f"{len(cases)} models, {streamed} streamed (the others keep the FC's usual kernel: "
          "a filter zero point, a bias that does not fold, a producer in a patch stage)")
    ok = True
    targets = ["native", "qemu-cm4"] if args.target == "both" else [args.target]
    with tempfile.TemporaryDirectory() as tmp:
        for target in targets:
            got = run_cases([p.case for p in cases], target, Path(tmp) / target)
            bad = [(p.case.key, why) for p in cases
                   if (why := compare(p, got.get(p.case.key, "not run")))]
            print(f"{target}: {len(cases) - len(bad)}/{len(cases)} bit-exact"
                  + "".join(f"\n  seed {k}: {why}" for k, why in bad[:10]))
            ok &= not bad
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
