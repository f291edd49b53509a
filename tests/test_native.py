"""Board ``native``: the generated C runtime behind the device protocol on a pty."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tinydeploy.device.native import build_native, start_native
from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import load

DATA = Path(__file__).parent / "data"


def test_native_serves_bit_exact_outputs(tmp_path: Path) -> None:
    from tinydeploy.device.link import Link

    facts = load(DATA / "digits_cnn.tflite")
    x = np.load(DATA / "digits_cnn.inputs.npy")
    cm4 = np.load(DATA / "digits_cnn.outputs_cm4.npy")
    with start_native(facts, tmp_path / "dev") as proc:
        assert proc.running and proc.port.startswith("/dev/")
        link = Link(proc.port)
        try:
            info = link.hello()
            assert info.runtime == "c" and info.board_id == "native"
            assert info.model_sha256 == facts.sha256
            assert info.input.shape == facts.inputs[0].shape
            assert info.output.zero_point == facts.outputs[0].zero_point
            assert info.arena_size == info.arena_used > 0
            for k in range(4):
                out = link.infer(x[k].tobytes()).output
                assert np.frombuffer(out, np.int8).tolist() == cm4[k].reshape(-1).tolist()
        finally:
            link.close()
    assert not proc.running


def test_native_build_is_cached(tmp_path: Path) -> None:
    facts = load(DATA / "sine_mlp.tflite")
    first = build_native(facts, tmp_path)
    stamp = first.stat().st_mtime_ns
    assert build_native(facts, tmp_path) == first and first.stat().st_mtime_ns == stamp
    assert (tmp_path / "model" / "td_model.c").is_file()



def test_native_rebuilds_when_the_c_generator_changes(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # deploy keeps OUT/device between runs: a newer tinydeploy must not reuse an old build
    import shutil

    from tinydeploy.cruntime import codegen
    from tinydeploy.resources import templates_dir

    tpl = tmp_path / "templates"
    shutil.copytree(templates_dir() / "c", tpl / "c")
    monkeypatch.setattr(codegen, "templates_dir", lambda: tpl)
    facts = load(DATA / "sine_mlp.tflite")
    build_native(facts, tmp_path / "w")
    with (tpl / "c" / "td_model.c.jinja").open("a") as f:
        f.write("/* generator changed */\n")
    build_native(facts, tmp_path / "w")
    assert "/* generator changed */" in (tmp_path / "w" / "model" / "td_model.c").read_text()

def test_native_refuses_unsupported_model(tmp_path: Path) -> None:
    from tinydeploy.tflm_py import schema

    facts = load(DATA / "sine_mlp.tflite")
    facts.model.operatorCodes[0].builtinCode = schema.BuiltinOperator.SVDF
    facts.model.operatorCodes[0].deprecatedBuiltinCode = schema.BuiltinOperator.SVDF
    with pytest.raises(TinyDeployError) as err:
        start_native(facts, tmp_path / "dev")
    assert err.value.code == "unsupported_op"
    assert not (tmp_path / "dev" / "td_native").exists()
