"""Patch-based stages over residual blocks, halo rows carried (tinydeploy/cruntime/patch.py).

* The band schedule, symbolically, on random synthetic stages (chains and skips of
  convolutions with strides 1/2, dilation, same/valid padding, pools, PAD, ADD) for every
  band count from 1 to the output's rows: every row of every tensor is computed exactly
  once, each kernel call reads exactly the rows its window needs at the offsets the C block
  uses (the carries included), within the band buffers the planner sizes.
* The generated C, bit for bit with the reference: residual_cnn's first residual block
  (ops 0..4, the skip read by a convolution and the ADD) against its Cortex-M4 outputs for
  several band counts, on the host build and on qemu-cm4; two random Keras models (a
  residual block with PAD/pool, a strided/dilated chain) against the TFLM Python runtime;
  and a carry moved one row off is caught.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import needs_tflm
import numpy as np
import pytest

from tinydeploy.cruntime import generate_c, patch
from tinydeploy.cruntime.graph import Graph, Op, Tensor, read_graph
from tinydeploy.cruntime.harness import build_harness, run_harness_bytes
from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import load

DATA = Path(__file__).parent / "data"
RESIDUAL = DATA / "residual_cnn.tflite"
HAS_QEMU = all(shutil.which(t) for t in ("arm-none-eabi-gcc", "arm-none-eabi-nm",
                                         "qemu-system-arm"))
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
needs_qemu = pytest.mark.skipif(not HAS_QEMU, reason="arm-none-eabi-gcc / qemu-system-arm "
                                "not installed (qemu-cm4 runs skipped)")


# --- the schedule, symbolically -------------------------------------------------------------

class _Net:
    """A synthetic int8 graph built operator by operator (shapes only; PAD's paddings)."""

    def __init__(self, h: int, w: int, c: int) -> None:
        self.tensors: list[Tensor] = []
        self.ops: list[Op] = []
        self.x = self._t((1, h, w, c))

    def _t(self, shape: tuple[int, ...], data: Any = None) -> int:
        self.tensors.append(Tensor(len(self.tensors), f"t{len(self.tensors)}", shape, "INT8",
                                   [0.1], [0], data))
        return len(self.tensors) - 1

    def _op(self, name: str, ins: list[int], shape: tuple[int, ...], **opts: int) -> int:
        y = self._t(shape)
        self.ops.append(Op(len(self.ops), name, ins, [y], SimpleNamespace(**opts)))
        return y

    def conv(self, x: int, f: int, s: int, d: int, same: bool, dw: bool = False,
             pool: bool = False) -> int:
        _, h, w, c = self.tensors[x].shape
        eff = (f - 1) * d + 1
        oh = (h + s - 1) // s if same else (h - eff + s) // s
        ow = (w + s - 1) // s if same else (w - eff + s) // s
        if pool:
            return self._op("MAX_POOL_2D", [x], (1, oh, ow, c), strideH=s, strideW=s,
                            filterHeight=f, filterWidth=f)
        wt = self._t((1 if dw else c, f, f, c), np.zeros(1))
        return self._op("DEPTHWISE_CONV_2D" if dw else "CONV_2D", [x, wt], (1, oh, ow, c),
                        strideH=s, strideW=s, dilationHFactor=d, dilationWFactor=d)

    def pad(self, x: int, top: int, bottom: int) -> int:
        _, h, w, c = self.tensors[x].shape
        pads = self._t((4, 2), np.array([[0, 0], [top, bottom], [1, 1], [0, 0]]))
        return self._op("PAD", [x, pads], (1, h + top + bottom, w + 2, c))

    def add(self, a: int, b: int) -> int:
        return self._op("ADD", [a, b], self.tensors[a].shape)

    def graph(self) -> Graph:
        y = self.ops[-1].outputs[0]
        return Graph(self.tensors, self.ops, [self.x], [y])


def _random_net(rng: np.random.Generator) -> Graph:
    """A random stage: convolutions / depthwise / pools / PAD, with skips into ADDs."""
    net = _Net(int(rng.integers(6, 24)), 24, 2)
    t = net.conv(net.x, int(rng.integers(1, 4)), 1, 1, True)
    for _ in range(int(rng.integers(2, 6))):
        kind = int(rng.integers(5))
        if kind == 0:  # a residual block: the skip read by the convolution and the ADD
            a = net.conv(t, int(rng.integers(1, 4)) * 2 - 1, 1, int(rng.integers(1, 3)), True)
            t = net.add(t, net.conv(a, 3, 1, 1, True, dw=bool(rng.integers(2))))
        elif kind == 1:
            t = net.pad(t, int(rng.integers(0, 3)), int(rng.integers(0, 3)))
        elif kind == 2 and net.tensors[t].shape[1] >= 4:
            t = net.conv(t, 2, int(rng.integers(1, 3)), 1, bool(rng.integers(2)), pool=True)
        elif net.tensors[t].shape[1] >= 5:
            t = net.conv(t, int(rng.integers(1, 4)), int(rng.integers(1, 3)),
                         int(rng.integers(1, 3)), bool(rng.integers(2)), dw=kind == 3)
    return net.graph()


def _simulate(g: Graph, st: patch.Stage) -> None:
    """Run the stage's steps on row labels: every buffer row holds the absolute row it
    came from; assert each call reads the right rows and each row is computed once."""
    rowb = {t: g.t(t).shape[2] * g.t(t).shape[3] for t in (st.x, st.y, *st.inner)}
    size = {t: st.band_bytes(g, t) // rowb[t] for t in st.inner}
    size[st.x], size[st.y] = g.t(st.x).shape[1], g.t(st.y).shape[1]
    buf = {t: [-1] * n for t, n in size.items()}
    buf[st.x] = list(range(size[st.x]))
    made: dict[int, list[int]] = {t: [] for t in (st.y, *st.inner)}
    d = st.x_overlap if st.x_overlap is not None else -(1 << 30)  # y placed d B below x
    clobbered = (max(-d, 0), max(-d, 0))  # x bytes y's rows were written over
    for s in range(st.steps):
        moves, calls = patch.band_steps(g, st, s)
        for m in moves:
            assert m.src % rowb[m.t] == 0 and m.size % rowb[m.t] == 0
            a, n = m.src // rowb[m.t], m.size // rowb[m.t]
            assert a + n <= size[m.t]
            buf[m.t][:n] = buf[m.t][a:a + n]
        for c in calls:
            op = g.ops[c.op]
            y = op.outputs[0]
            sh, fh, dh, pt = patch.row_window(op, g)
            assert c.out % rowb[y] == 0 and c.out // rowb[y] + c.out_h <= size[y]
            ins = patch.act_inputs(op)
            ih = g.t(ins[0]).shape[1]
            for j in range(c.out_h):
                o = c.out // rowb[y] + j
                want = made[y][-1] + 1 if made[y] else 0  # the next row, once each
                for i, off in zip(ins, c.ins, strict=True):
                    assert off % rowb[i] == 0
                    for tap in range(fh):
                        rel = j * sh - (c.pad if op.name not in patch.ELEMENTWISE else 0) \
                            + tap * dh
                        absolute = want * sh - pt + tap * dh
                        if op.name in patch.ELEMENTWISE:
                            assert c.size == c.out_h * rowb[y]
                            rel, absolute = j, want
                        inside = 0 <= rel < (c.out_h if op.name in patch.ELEMENTWISE
                                             else c.in_h)
                        assert inside == (0 <= absolute < ih), (s, c, j, tap)
                        if inside:
                            assert buf[i][off // rowb[i] + rel] == absolute, (s, c, j, tap)
                            if i == st.x:  # not overwritten by the output placed over it
                                lo, hi = max(clobbered[0], absolute * rowb[i]), \
                                    min(clobbered[1], (absolute + 1) * rowb[i])
                                assert lo >= hi, (s, c)
                buf[y][o] = want
                if y == st.y:
                    clobbered = (clobbered[0], max(clobbered[1], (want + 1) * rowb[y] - d))
                made[y].append(want)
    assert made[st.y] == list(range(size[st.y]))  # the output whole, each row once
    for t in st.inner:  # every row computed at most once, in order
        assert made[t] == list(range(len(made[t])))


@pytest.mark.parametrize("seed", range(40))
def test_schedule_reads_the_right_rows_for_every_band_count(seed: int) -> None:
    g = _random_net(np.random.default_rng(seed))
    oh = g.t(g.outputs[0]).shape[1]
    for bands in range(1, oh + 1):
        st = patch.plan_stage(g, 0, len(g.ops) - 1, bands)
        _simulate(g, st)
        assert st.recompute_macs_ratio <= 1.0
        if bands == 1:
            assert st.carried_bytes == 0


@pytest.mark.parametrize(("model", "first", "last"), [("residual_cnn", 0, 4),
                                                     ("residual_cnn", 0, 8),
                                                     ("person_detect", 0, 7)])
def test_schedule_on_the_shared_models(model: str, first: int, last: int) -> None:
    g = read_graph(load(DATA / f"{model}.tflite"))
    for bands in range(1, g.t(g.ops[last].outputs[0]).shape[1] + 1):
        _simulate(g, patch.plan_stage(g, first, last, bands))


def test_schedule_check_fails_on_a_wrong_carry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The symbolic check can fail: a carry moved one row off is caught, and so is the
    stage's output placed one byte less below its input than proven safe."""
    g = read_graph(load(RESIDUAL))
    st = patch.plan_stage(g, 0, 4, 8)
    _simulate(g, st)
    assert st.x_overlap is not None
    st.x_overlap -= 1
    with pytest.raises(AssertionError):
        _simulate(g, st)
    st.x_overlap += 1
    real = patch.band_steps

    def off_by_one(g: Graph, stage: patch.Stage, b: int) -> Any:
        moves, calls = real(g, stage, b)
        for m in moves:
            if m.size:
                m.src += g.t(m.t).shape[2] * g.t(m.t).shape[3]
        return moves, calls

    monkeypatch.setattr(patch, "band_steps", off_by_one)
    with pytest.raises(AssertionError):
        _simulate(g, st)


def test_stage_refusals_are_one_line() -> None:
    g = read_graph(load(RESIDUAL))
    cases = {(0, 2, 4): "op 3 outside the stage reads tensor 14",  # the skip escapes
             (2, 4, 4): "reads 2 tensors from before it",
             (3, 9, 4): "op 9 RESHAPE cannot run in bands"}
    for (a, b, n), why in cases.items():
        with pytest.raises(TinyDeployError, match=why):
            patch.plan_stage(g, a, b, n)
    net = _Net(8, 3, 2)
    net.add(net.x, net.conv(net.x, 3, 1, 1, True))
    y = net._op("ADD", [net.ops[-1].outputs[0], net._t((1, 1, 1, 2))], (1, 8, 3, 2))
    assert y
    with pytest.raises(TinyDeployError, match="broadcasts"):
        patch.plan_stage(net.graph(), 0, 2, 2)


# --- the generated C, bit for bit --------------------------------------------------------

def _residual_data() -> tuple[np.ndarray, np.ndarray]:
    return (np.load(DATA / "residual_cnn.inputs.npy"),
            np.load(DATA / "residual_cnn.outputs_cm4.npy"))


def _run_native(out: Path, samples: list[list[np.ndarray]], shape: tuple[int, ...],
                dtype: Any) -> list[np.ndarray]:
    got = run_harness_bytes(build_harness(out), samples, [(shape, dtype)], reset=True)
    return [g[0] for g in got]


@needs_gcc
@pytest.mark.parametrize("bands", [3, 8])
def test_residual_block_bit_exact_native(bands: int, tmp_path: Path) -> None:
    """residual_cnn ops 0..4 (conv, conv, conv, ADD of the skip, max pool) in bands:
    equal to its Cortex-M4 outputs; 8 bands bring the RAM under half of TFLM's."""
    x, want = _residual_data()
    res = generate_c(RESIDUAL, tmp_path / "c", tflm_arena=False, patch=(0, 4, bands))
    mem = json.loads((res.out_dir / "memory.json").read_text())
    assert mem["patch"]["ops"] == [0, 4] and mem["patch"]["recompute_macs_ratio"] == 1.0
    assert mem["patch"]["carried_bytes"] > 0 and mem["patch"]["saved_bytes"] > 0
    if bands == 8:
        assert mem["ram_bytes"] < 0.5 * 16068  # TFLM: arena + interpreter (ground truth)
    got = _run_native(res.out_dir, [[v] for v in x], tuple(want.shape[1:]), want.dtype)
    assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))


@needs_gcc
def test_wrong_carry_offset_is_caught_in_c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    real = patch.band_steps

    def off_by_one(g: Graph, stage: patch.Stage, b: int) -> Any:
        moves, calls = real(g, stage, b)
        for m in moves:
            if m.size:
                m.src -= g.t(m.t).shape[2] * g.t(m.t).shape[3]
        return moves, calls

    monkeypatch.setattr(patch, "band_steps", off_by_one)
    x, want = _residual_data()
    res = generate_c(RESIDUAL, tmp_path / "c", tflm_arena=False, patch=(0, 4, 8))
    got = _run_native(res.out_dir, [[v] for v in x[:4]], tuple(want.shape[1:]), want.dtype)
    assert not all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))


@needs_qemu
def test_residual_block_bit_exact_qemu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_cruntime_memory import _qemu_outputs

    x, want = _residual_data()
    got = _qemu_outputs(RESIDUAL, [[v] for v in x[:4]], tmp_path / "q", [want.dtype],
                        patch=(0, 4, 8))
    assert all(np.array_equal(g[0].reshape(-1), w.reshape(-1))
               for g, w in zip(got, want[:4], strict=True))
    assert "in 8 row bands" in (tmp_path / "q" / "model" / "td_model.c").read_text()


def _keras_residual(k: Any, r: np.random.Generator) -> tuple[Any, tuple[int, int]]:
    x = k.Input((int(r.integers(9, 14)), 5, 2), batch_size=1)
    a = k.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    b = k.layers.Conv2D(4, 3, padding="same", dilation_rate=2)(a)
    b = k.layers.DepthwiseConv2D(3, padding="same")(b)
    y = k.layers.Add()([a, b])
    y = k.layers.ZeroPadding2D(((1, 2), (1, 0)))(y)
    y = k.layers.MaxPooling2D(2, padding="valid")(y)
    y = k.layers.Conv2D(3, 3, strides=2, padding="same")(y)
    return k.Model(x, k.layers.Flatten()(y)), (0, 6)


def _keras_chain(k: Any, r: np.random.Generator) -> tuple[Any, tuple[int, int]]:
    x = k.Input((int(r.integers(14, 20)), 6, 1), batch_size=1)
    y = k.layers.Conv2D(3, 3, strides=2, padding="valid")(x)
    y = k.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(y)
    y = k.layers.AveragePooling2D(2, strides=1, padding="same")(y)
    y = k.layers.Conv2D(4, 2, padding="valid", activation="relu6")(y)
    return k.Model(x, k.layers.Flatten()(y)), (0, 3)


KERAS = {"residual": _keras_residual, "chain": _keras_chain}


@pytest.fixture(scope="module")
def keras_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, tuple]]:
    import keras
    from test_cruntime_ops import _randomize

    from tinydeploy.quantization import to_tflite

    root = tmp_path_factory.mktemp("patch_models")
    out = {}
    for k, (name, build) in enumerate(KERAS.items()):
        rng = np.random.default_rng(7 + k)
        keras.utils.set_random_seed(k)
        model, ops = build(keras, rng)
        _randomize(model, rng)
        rep = rng.normal(0, 1.5, size=(32, *model.input_shape[1:])).astype(np.float32)
        path = root / f"{name}.tflite"
        path.write_bytes(to_tflite(model, rep))
        out[name] = (path, ops)
    return out


@needs_gcc
@needs_tflm.mark
@pytest.mark.parametrize("name", list(KERAS))
def test_random_models_bit_exact(name: str, keras_models: dict, tmp_path: Path) -> None:
    """Every band count, 1 to the stage output's rows, against the TFLM Python runtime
    (host build)."""
    path, (first, last), rows, samples, ref = _keras_case(keras_models, name)
    t = load(path).outputs[0]
    for bands in range(1, rows + 1):
        res = generate_c(path, tmp_path / f"c{bands}", tflm_arena=False,
                         patch=(first, last, bands))
        got = _run_native(res.out_dir, samples, tuple(t.shape[1:]), t.numpy_dtype)
        assert all(np.array_equal(a.reshape(-1), b.reshape(-1))
                   for a, b in zip(got, ref, strict=True)), bands


@needs_qemu
@needs_tflm.mark
@pytest.mark.parametrize("name", list(KERAS))
def test_random_models_bit_exact_qemu(name: str, keras_models: dict, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """One band per output row on qemu-cm4, against the TFLM Python runtime."""
    from test_cruntime_memory import _qemu_outputs

    path, (first, last), rows, samples, ref = _keras_case(keras_models, name)
    got = _qemu_outputs(path, samples[:3], tmp_path / "q", [load(path).outputs[0].numpy_dtype],
                        patch=(first, last, rows))
    assert all(np.array_equal(a[0].reshape(-1), b.reshape(-1))
               for a, b in zip(got, ref[:3], strict=True))
    assert f"in {rows} row bands" in (tmp_path / "q" / "model" / "td_model.c").read_text()


def _keras_case(keras_models: dict, name: str) -> tuple[Path, tuple[int, int], int,
                                                          list[list[np.ndarray]],
                                                          list[np.ndarray]]:
    """(model, stage ops, the stage output's rows, 16 random samples, TFLM's outputs)."""
    from test_cruntime_ext_ops import _random_inputs, _tflm

    path, (first, last) = keras_models[name]
    facts = load(path)
    g = read_graph(facts)
    names = [g.ops[k].name for k in range(first, last + 1)]
    assert ("ADD" in names and "PAD" in names) if name == "residual" else "ADD" not in names
    samples = _random_inputs(facts, 16, 3)
    ref = [r[0] for r in _tflm(facts, samples)]
    return path, (first, last), g.t(g.ops[last].outputs[0]).shape[1], samples, ref
