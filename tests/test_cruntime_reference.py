"""The interpreter-free C runtime on the 9 reference models: byte-for-byte equal to the TFLM
Python runtime (stored and random inputs) and to the stored Cortex-M4 outputs; strict C99
compile; memory plan sane; unsupported models refused before anything is written.
"""

from __future__ import annotations

import json
from pathlib import Path

import needs_tflm
import numpy as np
import pytest
from models import GENERATED

from tinydeploy.cruntime import generate_c
from tinydeploy.cruntime.harness import STRICT_FLAGS, build_harness, compile_c, run_harness
from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import load
from tinydeploy.hostref import HostModel

DATA = Path(__file__).parent / "data"
MODELS = GENERATED  # the zoo: tests/test_zoo*.py
GT = json.loads((DATA / "ground_truth.json").read_text())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    root = tmp_path_factory.mktemp("cref")
    out = {}
    for name in MODELS:
        facts = load(DATA / f"{name}.tflite")
        res = generate_c(facts, root / name, tflm_arena=False)
        out[name] = (facts, res, build_harness(res.out_dir))
    return out


def test_reference_models_present() -> None:
    assert len(MODELS) == 9


@pytest.mark.parametrize("name", MODELS)
@needs_tflm.mark
def test_equals_cm4_and_tflm(built: dict, name: str) -> None:
    facts, res, binary = built[name]
    x = np.load(DATA / f"{name}.inputs.npy")
    out_shape = facts.outputs[0].shape[1:]
    y = run_harness(binary, x, out_shape)
    cm4 = np.load(DATA / f"{name}.outputs_cm4.npy").reshape(y.shape)
    np.testing.assert_array_equal(y, cm4)
    host = HostModel(facts)
    np.testing.assert_array_equal(y, host.predict(x).reshape(y.shape))
    xr = np.random.default_rng(1).integers(-128, 128, size=(64, *x.shape[1:]), dtype=np.int8)
    yr = run_harness(binary, xr, out_shape)
    np.testing.assert_array_equal(yr, host.predict(xr).reshape(yr.shape))


def test_all_reference_ops_covered(built: dict) -> None:
    ops = {op for name in MODELS for op in built[name][0].op_names}
    assert {"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D",
            "AVERAGE_POOL_2D", "RESHAPE", "SOFTMAX", "ADD", "LOGISTIC", "TANH",
            "CONCATENATION", "PAD", "MEAN", "RELU"} <= ops


@pytest.mark.parametrize("name", ["ds_cnn_kws", "concat_branches", "pad_gap_cnn"])
def test_strict_compile(built: dict, name: str, tmp_path: Path) -> None:
    res = built[name][1]
    flags = (*STRICT_FLAGS, "-Wconversion", "-Wshadow", "-c")
    for src in res.sources:
        compile_c([src], tmp_path / (src.stem + ".o"), [res.out_dir], flags=flags)


def test_no_float_in_invoke(built: dict) -> None:
    for name in MODELS:
        res = built[name][1]
        text = (res.out_dir / "td_model.c").read_text()
        invoke = text[text.index("int td_invoke("):]
        assert "float" not in invoke and "double" not in invoke
        for k in ("td_kernels.c", "td_kernels_conv.c", "td_kernels_conv_ref.c",
                  "td_kernels_elem.c"):
            src = (res.out_dir / k).read_text()
            assert "float" not in src and "double" not in src and "malloc" not in src


def test_memory_plan_and_report(built: dict) -> None:
    for name in MODELS:
        res = built[name][1]
        mem = json.loads((res.out_dir / "memory.json").read_text())
        assert mem["arena_bytes"] == res.plan.size
        assert mem["weight_bytes"] > 0
        bufs = res.plan.buffers
        for i, a in enumerate(bufs):  # no two live buffers share bytes (unless pinned)
            assert a.offset >= 0 and a.offset + a.size <= res.plan.size
            for b in bufs[i + 1:]:
                pinned = (a.pin and a.pin[0] == b.tensor) or (b.pin and b.pin[0] == a.tensor)
                if a.overlaps(b) and not pinned:
                    assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset
        assert res.plan.size < GT[name]["min_arena_cm4"]
        assert "static arena" in res.summary()
    total = sum(built[n][1].plan.size for n in MODELS)
    assert total / sum(GT[n]["min_arena_cm4"] for n in MODELS) <= 0.5


def test_describe_info(built: dict, tmp_path: Path) -> None:
    facts, res, _ = built["digits_cnn"]
    main = tmp_path / "describe.c"
    main.write_text(
        '#include <stdio.h>\n#include "td_model.h"\n'
        "int main(void) { td_info i; int k; td_model_describe(&i);\n"
        ' printf("%s %u %u %d %d %d %d %.9g %d %d\\n", i.runtime, (unsigned)i.arena_size,'
        " (unsigned)i.arena_used, (int)i.inputs[0].ndims, (int)i.inputs[0].dims[1],"
        " (int)i.inputs[0].zero_point, (int)i.outputs[0].dims[1],"
        " (double)i.outputs[0].scale, (int)i.num_inputs, (int)i.num_outputs);\n"
        ' for (k = 0; k < 32; ++k) printf("%02x", i.model_sha256[k]);\n'
        ' printf("\\n"); return 0; }\n')
    exe = compile_c([main, *res.sources], tmp_path / "describe", [res.out_dir])
    import subprocess

    lines = subprocess.run([str(exe)], capture_output=True, text=True).stdout.split("\n")
    parts = lines[0].split()
    t_in, t_out = facts.inputs[0], facts.outputs[0]
    assert parts[:7] == ["c", str(res.plan.size), str(res.plan.size), str(len(t_in.shape)),
                         str(t_in.shape[1]), str(t_in.zero_point), str(t_out.shape[1])]
    assert float(parts[7]) == pytest.approx(t_out.scale, rel=1e-7)
    assert parts[8:] == ["1", "1"]  # every tensor, as arrays (td_info.inputs/outputs)
    assert lines[1] == facts.sha256


def test_unsupported_op_refused_before_writing(tmp_path: Path) -> None:
    from tinydeploy.cruntime.graph import read_graph

    facts = load(DATA / "sine_mlp.tflite")
    model = facts.model
    from tinydeploy.tflm_py import schema

    model.operatorCodes[0].builtinCode = schema.BuiltinOperator.SQUARED_DIFFERENCE
    model.operatorCodes[0].deprecatedBuiltinCode = schema.BuiltinOperator.SQUARED_DIFFERENCE
    out = tmp_path / "out"
    with pytest.raises(TinyDeployError) as err:
        generate_c(facts, out)
    assert err.value.code == "unsupported_op"
    assert "SQUARED_DIFFERENCE" in str(err.value) and "TFLM runtime" in str(err.value)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(TinyDeployError):
        read_graph(facts)


def test_name_is_sanitized(tmp_path: Path) -> None:
    facts = load(DATA / "sine_mlp.tflite")
    for t in facts.model.subgraphs[0].tensors:
        t.name = b"evil */ int x = \"\n"
    res = generate_c(facts, tmp_path / "o", name="9 bad-name*/x", tflm_arena=False)
    text = (res.out_dir / "td_model.c").read_text()
    assert 'td_model_name[] = "_9_bad_name__x"' in text
    build_harness(res.out_dir)



def test_tensor_names_with_slash_star_compile_strictly(tmp_path: Path) -> None:
    # Keras allows "*" in a layer name; the converter joins scopes with "/" -> "/*" in a
    # memory-plan comment is -Wcomment, an error with -Werror
    facts = load(DATA / "sine_mlp.tflite")
    for t in facts.model.subgraphs[0].tensors:
        t.name = b"model/*dense/MatMul"
    res = generate_c(facts, tmp_path / "o", tflm_arena=False)
    assert "/*dense" not in (res.out_dir / "td_model.c").read_text()
    build_harness(res.out_dir)

def test_cli_generate_runtime_c(tmp_path: Path) -> None:
    from tinydeploy.cli import main

    out = tmp_path / "gen"
    assert main(["generate", str(DATA / "tanh_mlp.tflite"), "--runtime", "c",
                 "--board", "native", "--out", str(out)]) == 0  # bare C sources
    assert (out / "td_model.c").is_file() and (out / "memory.json").is_file()
    mem = json.loads((out / "memory.json").read_text())
    assert mem["arena_bytes"] > 0 and mem["weight_bytes"] > 0
    build_harness(out)
