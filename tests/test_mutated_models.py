"""Inconsistent models get one clear error from the C generator, never a traceback or C
that reads out of bounds (``tinydeploy/cruntime/consistency.py``).

1,000 byte-mutated copies of the small models in tests/data go through ``check`` and
``generate --runtime c``; every distinct C source the generator accepts is compiled with
ASan/UBSan (kernel library built once) and run on extreme and random inputs. Named cases
below edit one fact of a real model each and expect the matching error.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_bad_names import _edited

from tinydeploy.cli import main
from tinydeploy.cruntime import generate_c
from tinydeploy.cruntime.mutation import SanitizedBuild, run_campaign, seed_models
from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import load

DATA = Path(__file__).parent / "data"
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")


@pytest.fixture(scope="session")
def sanitized_build(tmp_path_factory: pytest.TempPathFactory) -> SanitizedBuild:
    """The kernel library compiled once with ASan/UBSan (shared by every test)."""
    build = SanitizedBuild(tmp_path_factory.mktemp("td_kernels_san"))
    build.library()
    return build


@needs_gcc
def test_thousand_mutants_refused_or_run_clean(sanitized_build: SanitizedBuild,
                                              tmp_path: Path) -> None:
    models = seed_models([DATA])
    assert len(models) >= 30  # int8 and 16x8 models, the extension operators included
    camp = run_campaign(models, 1000, seed=16, work=tmp_path / "work", build=sanitized_build)
    saved = [str(b.save(tmp_path / "bugs")) for b in camp.bugs]
    assert not camp.bugs, "\n".join(f"{b.stage}: {b.detail} ({path})"
                                    for b, path in zip(camp.bugs, saved, strict=True))
    # every outcome occurred: the campaign proves something
    assert camp.mutants == 1000
    assert camp.load_refused > 100 and sum(camp.refused.values()) > 50
    assert camp.generated > 100 and camp.compiled > 50 and camp.runs >= 3 * camp.compiled


@needs_gcc
def test_harness_reports_an_out_of_bounds_write(sanitized_build: SanitizedBuild,
                                                 tmp_path: Path) -> None:
    """The sanitizer build catches what the consistency checks exist to prevent: a kernel
    told the wrong size (here SOFTMAX writing two rows into a one-row output)."""
    out = tmp_path / "c"
    facts = load(DATA / "digits_cnn.tflite")
    generate_c(facts, out, tflm_arena=False)
    blob = bytes(64)  # one 8x8 int8 input; the output is 10 bytes
    exe, err = sanitized_build.build(out)
    assert exe is not None, err
    assert sanitized_build.run(exe, blob, (64, 10)) == ""
    src = out / "td_model.c"
    assert src.read_text().count(".rows = 1,") == 1
    src.write_text(src.read_text().replace(".rows = 1,", ".rows = 2,"))
    exe, err = sanitized_build.build(out)
    assert exe is not None, err
    problem = sanitized_build.run(exe, blob, (64, 10))
    assert "heap-buffer-overflow" in problem and "td_softmax" in problem, problem


# --- one inconsistency each ---------------------------------------------------------------
def _tensor(model: Any, index: int) -> Any:
    return model.subgraphs[0].tensors[index]


def _set(index: int, **fields: Any) -> Callable[[Any], None]:
    def edit(model: Any) -> None:
        for key, value in fields.items():
            setattr(_tensor(model, index), key, value)
    return edit


def _quant(index: int, **fields: Any) -> Callable[[Any], None]:
    def edit(model: Any) -> None:
        for key, value in fields.items():
            setattr(_tensor(model, index).quantization, key, value)
    return edit


def _buffer(index: int, size: int) -> Callable[[Any], None]:
    def edit(model: Any) -> None:
        buf = model.buffers[_tensor(model, index).buffer]
        buf.data = buf.data[:size]
    return edit


def _op(k: int, **fields: Any) -> Callable[[Any], None]:
    def edit(model: Any) -> None:
        op = model.subgraphs[0].operators[k]
        for key, value in fields.items():
            if key.startswith("opt_"):
                setattr(op.builtinOptions, key[4:], value)
            else:
                setattr(op, key, value)
    return edit


def _swap_ops(model: Any) -> None:
    ops = model.subgraphs[0].operators
    ops[0], ops[1] = ops[1], ops[0]


def _both(*edits: Callable[[Any], None]) -> Callable[[Any], None]:
    def edit(model: Any) -> None:
        for e in edits:
            e(model)
    return edit


# (model, edit, words the one error line must hold); tensor/op numbers: see tests/data
CASES = {
    # sine_mlp: FC 0 [0, w6, b5] -> 7, FC 1 [7, w4, b3] -> 8, FC 2 [8, w2, b1] -> 9
    "buffer_size": ("sine_mlp", _buffer(4, 200), ["tensor 4", "buffer holds 200 bytes",
                                                  "needs 256"]),
    "fc_accum": ("hello_world_int8", _both(_set(4, shape=[8, 32]), _op(1, inputs=[7, 4, -1])),
                 ["operator 1 FULLY_CONNECTED", "16 values", "rows of 32"]),
    "fc_output": ("sine_mlp", _set(7, shape=[1, 15]), ["operator 0 FULLY_CONNECTED",
                                                       "output [1, 15]"]),
    "bias_length": ("sine_mlp", _both(_set(5, shape=[15]), _buffer(5, 60)),
                    ["bias tensor 5", "15 values for 16 output channels"]),
    "per_channel_scales": ("sine_mlp", _quant(4, scale=[0.01, 0.02, 0.03],
                                              zeroPoint=[0, 0, 0]),
                           ["filter tensor 4", "3 scales", "16 output channels"]),
    "scale_zero": ("sine_mlp", _quant(7, scale=[0.0]), ["tensor 7", "scale 0"]),
    "scale_nan": ("sine_mlp", _quant(8, scale=[math.nan]), ["tensor 8", "scale nan"]),
    "zero_point_range": ("sine_mlp", _quant(7, zeroPoint=[300]), ["tensor 7",
                                                                  "zero point 300"]),
    "multiplier_range": ("sine_mlp", _quant(8, scale=[1e-30]),
                         ["operator 1 FULLY_CONNECTED", "requantization multiplier"]),
    "read_before_write": ("sine_mlp", _swap_ops, ["operator 0 FULLY_CONNECTED",
                                                  "before any operator writes it"]),
    "written_twice": ("sine_mlp", _op(2, outputs=[7]), ["operator 2",
                                                        "written by another operator"]),
    "missing_input": ("sine_mlp", _op(1, inputs=[-1, 4, 3]), ["operator 1",
                                                               "required input 0"]),
    # digits_cnn: CONV 0 [0, w7, b6] -> 8 (1x8x8x1 -> 1x8x8x8), DEPTHWISE 1 -> 9,
    # MAX_POOL 2 -> 10, RESHAPE 3 [10, 1] -> 11, FC 4 -> 12, SOFTMAX 5 -> 13
    "conv_channels": ("digits_cnn", _set(7, shape=[8, 3, 1, 3]),
                      ["operator 0 CONV_2D", "input has 1 channels but the filter 3"]),
    "conv_stride": ("digits_cnn", _op(0, opt_strideH=2), ["CONV_2D", "output 8x8",
                                                          "stride 2x1"]),
    "conv_padding_code": ("digits_cnn", _op(0, opt_padding=7), ["padding code 7"]),
    "conv_options_missing": ("digits_cnn", _op(0, builtinOptions=None, builtinOptionsType=0),
                             ["operator 0 CONV_2D", "options of type none"]),
    "depthwise_channels": ("digits_cnn", _set(9, shape=[1, 8, 8, 4]),
                           ["DEPTHWISE_CONV_2D", "output 4 channels"]),
    "pool_output": ("digits_cnn", _op(2, opt_filterWidth=3), ["MAX_POOL_2D", "filter 2x3"]),
    "reshape_size": ("digits_cnn", _set(11, shape=[1, 64]), ["operator 3 RESHAPE",
                                                             "differ"]),
    "softmax_beta": ("digits_cnn", _op(5, opt_beta=math.inf), ["SOFTMAX", "beta inf"]),
    "negative_dim": ("digits_cnn", _set(12, shape=[1, -10]), ["tensor 12",
                                                              "dimensions must be >= 1"]),
    "huge_tensor": ("digits_cnn", _set(0, shape=[1, 65536, 65536, 1]),
                    ["tensor 0", "more than 2 GiB"]),
    # concat_branches: CONCATENATION 3 [14, 15] -> 16 (8 + 4 -> 12 channels)
    "concat_axis": ("concat_branches", _op(3, opt_axis=4), ["CONCATENATION", "axis 4"]),
    "concat_sum": ("concat_branches", _set(16, shape=[1, 8, 8, 13]),
                   ["operator 3 CONCATENATION", "add up to 12"]),
    # pad_gap_cnn: PAD 2 [10, paddings 1] -> 11, MEAN 4 [12, axes 2] -> 13
    "pad_output": ("pad_gap_cnn", _set(11, shape=[1, 10, 11, 16]), ["operator 2 PAD",
                                                                    "padded by"]),
    "mean_axes": ("pad_gap_cnn", _both(_buffer(2, 8), lambda m: m.buffers[
        _tensor(m, 2).buffer].data.__setitem__(0, 9)), ["operator 4 MEAN", "axes [9"]),
    # trained_lstm_int8: LSTM 0, input-to-input weights tensor 15 [20, 28]
    "lstm_weights": ("trained_lstm_int8", _set(15, shape=[28, 20]),
                     ["UNIDIRECTIONAL_SEQUENCE_LSTM", "expected [20, 28]"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_inconsistent_model_is_one_clear_error(case: str, tmp_path: Path) -> None:
    name, edit, words = CASES[case]
    data = _edited(name, edit)
    out = tmp_path / "c"
    with pytest.raises(TinyDeployError) as info:
        generate_c(load(data), out, tflm_arena=False)
    err = info.value
    text = str(err)
    assert err.code == "model_rejected" and err.exit_code == 3, text
    assert "\n" not in text and "inconsistent model" in text and "re-export" in text, text
    for word in words:
        assert word in text, text
    assert not out.exists()  # nothing written


def test_unedited_models_generate(tmp_path: Path) -> None:
    """The models the cases above edit pass as they are (the errors come from the edits)."""
    for name in sorted({m for m, _, _ in CASES.values()}):
        generate_c(load(DATA / f"{name}.tflite"), tmp_path / name, tflm_arena=False)


def test_cli_generate_refuses_with_exit_3(tmp_path: Path, capfd) -> None:
    model = tmp_path / "corrupt.tflite"
    model.write_bytes(_edited("digits_cnn", _set(7, shape=[8, 3, 1, 3])))
    out = tmp_path / "fw"
    rc = main(["generate", str(model), "--runtime", "c", "--board", "native", "--out",
               str(out)])
    _, err = capfd.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 3 and len(lines) == 1 and "Traceback" not in err, err
    assert "inconsistent model" in lines[0] and "CONV_2D" in lines[0], lines[0]
    assert not out.exists()
