"""``--runtime tflm`` on the boards without hardware: TFLM tree detection, the cache key and
the missing-tree error run everywhere (tiny fake trees in tmp_path); building and validating
the generated TFLM firmware needs a real tree in ``$TINYDEPLOY_TFLM_SRC`` (an Arduino TFLM
library such as Chirale_TensorFLowLite, or a tflite-micro checkout with its downloads)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tinydeploy.cli import main
from tinydeploy.data import Dataset
from tinydeploy.device import tflm_build as tb
from tinydeploy.device.tflm_tree import ENV_FLAVOUR
from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import load
from tinydeploy.hostref import dequantize

DATA = Path(__file__).parent / "data"


def _touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _arduino_lib(root: Path) -> Path:
    _touch(root / "library.properties", "name=Fake_TFLM\nversion=1.2.3\n")
    src = root / "src"
    _touch(src / "Fake_TFLM.h")
    _touch(src / "tensorflow/lite/micro/micro_interpreter.h")
    _touch(src / "tensorflow/lite/micro/micro_interpreter.cpp")
    _touch(src / "tensorflow/lite/micro/test_helpers.cpp")
    _touch(src / "tensorflow/lite/micro/kernels/softmax_common.cpp")
    _touch(src / "tensorflow/lite/micro/kernels/conv_test.cpp")
    _touch(src / "tensorflow/lite/micro/kernels/cmsis_nn/conv.cpp")
    _touch(src / "third_party/cmsis_nn/Source/arm_convolve_s8.c")
    _touch(root / "examples/hello_world/hello_world.ino")
    _touch(src / "examples/x/main.cpp")
    return root


def _upstream(root: Path, downloads: bool = True) -> Path:
    micro = root / "tensorflow/lite/micro"
    _touch(micro / "micro_interpreter.h")
    _touch(micro / "micro_interpreter.cc")
    _touch(micro / "micro_interpreter_test.cc")
    _touch(micro / "debug_log.cc")
    _touch(micro / "cortex_m_generic/debug_log.cc")
    _touch(micro / "kernels/conv.cc")
    _touch(micro / "kernels/conv_test.cc")
    _touch(micro / "examples/hello_world/main.cc")
    _touch(micro / "benchmarks/person_detection_benchmark.cc")
    _touch(root / "tensorflow/lite/core/c/common.cc")
    _touch(root / "tensorflow/lite/array.cc")
    _touch(root / "tensorflow/lite/experimental/microfrontend/lib/fft.cc")
    if downloads:
        for probe in tb._UPSTREAM_NEEDS.values():
            _touch(root / tb._DOWNLOADS / probe)
    return root


def _rel(tree: tb.TflmTree, paths: list[Path]) -> set[str]:
    return {p.relative_to(tree.root).as_posix() for p in paths}


def test_arduino_library_layout(tmp_path: Path) -> None:
    tree = tb.find_tflm_tree(_arduino_lib(tmp_path / "Fake_TFLM"))
    assert tree.kind == "arduino-library" and tree.flavour == "cmsis-nn"
    assert tree.name == "Fake_TFLM 1.2.3" and tree.include_dirs == (tree.root / "src",)
    assert _rel(tree, list(tree.sources)) == {
        "src/tensorflow/lite/micro/micro_interpreter.cpp",
        "src/tensorflow/lite/micro/kernels/softmax_common.cpp",
        "src/tensorflow/lite/micro/kernels/cmsis_nn/conv.cpp",
        "src/third_party/cmsis_nn/Source/arm_convolve_s8.c"}
    assert any(d.startswith("-DARDUINO") for d in tree.defines)
    assert tree.is_kernel(tree.root / "src/tensorflow/lite/micro/kernels/cmsis_nn/conv.cpp")
    assert not tree.is_kernel(tree.root / "src/tensorflow/lite/micro/micro_interpreter.cpp")
    # its src/ folder, and PlatformIO's libdeps folder holding it, find the same library
    assert tb.find_tflm_tree(tree.root / "src").root == tree.root
    assert tb.find_tflm_tree(tmp_path).root == tree.root
    # no cmsis_nn kernels: reference flavour
    shutil.rmtree(tree.root / "src/tensorflow/lite/micro/kernels/cmsis_nn")
    (tree.root / "library.properties").write_text("name=Fake_TFLM\nversion=1.2.4\n")
    assert tb.find_tflm_tree(tree.root / "src").flavour == "reference"


def test_upstream_checkout_layout(tmp_path: Path) -> None:
    tree = tb.find_tflm_tree(_upstream(tmp_path / "tflite-micro"))
    assert tree.kind == "tflite-micro" and tree.flavour == "reference"
    assert _rel(tree, list(tree.sources)) == {
        "tensorflow/lite/micro/micro_interpreter.cc", "tensorflow/lite/micro/debug_log.cc",
        "tensorflow/lite/micro/kernels/conv.cc", "tensorflow/lite/core/c/common.cc"}
    assert "-DTF_LITE_STATIC_MEMORY" in tree.defines
    downloads = tree.root / tb._DOWNLOADS
    assert {downloads / "flatbuffers/include", downloads / "gemmlowp"} <= set(tree.include_dirs)
    # Cortex-M gets the cortex_m_generic DebugLog (no stdio), the host the default one
    assert "tensorflow/lite/micro/cortex_m_generic/debug_log.cc" in _rel(
        tree, tree.sources_for("qemu-cm4"))
    assert "tensorflow/lite/micro/debug_log.cc" in _rel(tree, tree.sources_for("native"))
    # a model first gets the core plus its operators' kernels only
    _touch(tree.root / "tensorflow/lite/micro/kernels/conv_common.cc")
    _touch(tree.root / "tensorflow/lite/micro/kernels/softmax.cc")
    tree = tb.find_tflm_tree(tree.root)
    picked = _rel(tree, tb.model_sources(tree, "native", ["CONV_2D"]))
    assert {"tensorflow/lite/micro/kernels/conv.cc", "tensorflow/lite/micro/kernels/conv_common.cc",
            "tensorflow/lite/micro/micro_interpreter.cc"} <= picked
    assert "tensorflow/lite/micro/kernels/softmax.cc" not in picked
    assert "tensorflow/lite/micro/kernels/softmax.cc" in _rel(
        tree, tb.model_sources(tree, "native", ["SOFTMAX"]))


def test_upstream_cmsis_nn_flavour(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With downloads/cmsis_nn, flavour auto gives a Cortex-M build TFLM's cmsis_nn kernels
    in place of their reference namesakes, CMSIS-NN's int sources and the Makefile's
    defines, and native the reference ones; the default and the env choose reference; the
    name and hash say which."""
    monkeypatch.setenv(ENV_FLAVOUR, "auto")
    root = _upstream(tmp_path / "tflite-micro")
    ref = tb.find_tflm_tree(root)  # no CMSIS-NN downloaded: reference whatever the choice
    assert ref.flavour == "reference"
    cmsis = root / tb._DOWNLOADS / "cmsis_nn"
    _touch(cmsis / "Include/arm_nnfunctions.h")
    for name in ("ConvolutionFunctions/arm_convolve_s8.c", "ConvolutionFunctions/arm_conv_f32.c",
                 "NNSupportFunctions/arm_nntables_flt.c", "SoftmaxFunctions/arm_softmax_f16.c"):
        _touch(cmsis / "Source" / name)
    _touch(root / "tensorflow/lite/micro/kernels/cmsis_nn/conv.cc")
    tree = tb.find_tflm_tree(root, board="qemu-cm4")
    assert (tree.flavour, tree.name) == ("cmsis-nn", "tflite-micro cmsis-nn")
    rel = _rel(tree, list(tree.sources))
    assert {"tensorflow/lite/micro/kernels/cmsis_nn/conv.cc",
            f"{tb._DOWNLOADS}/cmsis_nn/Source/ConvolutionFunctions/arm_convolve_s8.c"} <= rel
    assert "tensorflow/lite/micro/kernels/conv.cc" not in rel
    assert not any(p.endswith(("_f32.c", "_f16.c", "_flt.c")) for p in rel)
    assert {"-DCMSIS_NN", "-DARM_NN_ENABLE_F32=0"} <= set(tree.defines)
    assert {cmsis, cmsis / "Include"} <= set(tree.include_dirs)
    assert tree.is_kernel(cmsis / "Source/ConvolutionFunctions/arm_convolve_s8.c")
    assert tb.find_tflm_tree(root).flavour == "cmsis-nn"  # no board: a Cortex-M target
    native = tb.find_tflm_tree(root, board="native")
    assert native.flavour == "reference" and native.content_hash == ref.content_hash
    assert tree.content_hash != ref.content_hash
    assert tb.library_key(tree, "native") != tb.library_key(native, "native")
    assert tb.find_tflm_tree(root, board="native", flavour="cmsis-nn").flavour == "cmsis-nn"
    monkeypatch.setenv(ENV_FLAVOUR, "reference")
    assert tb.find_tflm_tree(root, board="qemu-cm4").content_hash == ref.content_hash
    monkeypatch.delenv(ENV_FLAVOUR)  # the default: the ground truth's reference kernels
    assert tb.find_tflm_tree(root, board="qemu-cm4").flavour == "reference"
    assert tb.find_tflm_tree(root, flavour="auto").flavour == "cmsis-nn"
    monkeypatch.setenv(ENV_FLAVOUR, "fast")
    with pytest.raises(TinyDeployError) as err:
        tb.find_tflm_tree(root)
    assert err.value.code == "bad_argument" and ENV_FLAVOUR in str(err.value)
    monkeypatch.setenv(ENV_FLAVOUR, "cmsis-nn")
    shutil.rmtree(cmsis)
    with pytest.raises(TinyDeployError) as err:
        tb.find_tflm_tree(root)
    assert "OPTIMIZED_KERNEL_DIR=cmsis_nn" in str(err.value)


def test_upstream_without_downloads_names_the_make_target(tmp_path: Path) -> None:
    with pytest.raises(TinyDeployError) as err:
        tb.find_tflm_tree(_upstream(tmp_path / "tfm", downloads=False))
    assert err.value.code == "bad_argument" and "third_party_downloads" in str(err.value)
    with pytest.raises(TinyDeployError) as err:
        tb.find_tflm_tree(_touch(tmp_path / "other" / "README").parent)
    assert err.value.code == "bad_argument" and "neither" in str(err.value)
    with pytest.raises(TinyDeployError) as err:
        tb.find_tflm_tree(tmp_path / "nowhere")
    assert err.value.code == "file_not_found"


def test_missing_tree_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(tb.ENV_SRC, raising=False)
    with pytest.raises(TinyDeployError) as err:
        tb.find_tflm_tree(None)
    assert err.value.code == "tool_missing" and err.value.exit_code == 7
    for word in ("--tflm-src", "Chirale_TensorFLowLite", "third_party_downloads", tb.ENV_SRC):
        assert word in str(err.value)
    # the CLI refuses before it loads data or builds anything, and writes nothing
    out = tmp_path / "val"
    rc = main(["validate", str(DATA / "sine_mlp.tflite"), "--data", str(tmp_path / "no.npz"),
               "--out", str(out), "--board", "qemu-cm4", "--runtime", "tflm"])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 7 and len(lines) == 1 and "Chirale_TensorFLowLite" in lines[0]
    assert not out.exists()
    rc = main(["deploy", str(DATA / "sine_mlp.tflite"), "--data", str(tmp_path / "no.npz"),
               "--out", str(out), "--board", "native", "--runtime", "tflm"])
    assert rc == 7 and not out.exists()
    rc = main(["validate", str(DATA / "sine_mlp.tflite"), "--data", str(tmp_path / "no.npz"),
               "--out", str(out), "--board", "native", "--runtime", "cmsis"])
    assert rc == 2 and "--runtime" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("g++") is None or shutil.which("ar") is None,
                    reason="the native toolchain (g++, ar) is not installed")
def test_cache_key_follows_content_compiler_and_board(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    root = _arduino_lib(tmp_path / "lib")
    first = tb.find_tflm_tree(root)
    key = tb.library_key(first, "native")
    assert key == tb.library_key(tb.find_tflm_tree(root), "native")  # stable
    assert key.startswith("native-cmsis-nn-")
    src = root / "src/tensorflow/lite/micro/micro_interpreter.cpp"
    src.write_text("// changed\n")
    changed = tb.find_tflm_tree(root)
    assert changed.content_hash != first.content_hash
    assert tb.library_key(changed, "native") != key
    # a header counts too (the sources include it)
    hdr = root / "src/tensorflow/lite/micro/micro_interpreter.h"
    hdr.write_text("#define X 1\n")
    assert tb.find_tflm_tree(root / "src").content_hash != changed.content_hash
    # another compiler is another library
    now = tb.library_key(changed, "native")
    monkeypatch.setattr(tb.Toolchain, "version", lambda self: "g++ (other) 99.1")
    assert tb.library_key(changed, "native") != now
    monkeypatch.setenv(tb.ENV_CACHE, str(tmp_path / "c"))
    assert tb.cache_root() == tmp_path / "c"
    monkeypatch.delenv(tb.ENV_CACHE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tb.cache_root() == tmp_path / "xdg" / "tinydeploy" / "tflm"


@pytest.mark.skipif(shutil.which("g++") is None or shutil.which("ar") is None,
                    reason="the native toolchain (g++, ar) is not installed")
def test_compile_error_is_build_failed_with_the_log(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    root = _arduino_lib(tmp_path / "lib")
    (root / "src/tensorflow/lite/micro/micro_interpreter.cpp").write_text("int broken(\n")
    monkeypatch.setenv(tb.ENV_CACHE, str(tmp_path / "cache"))
    with pytest.raises(TinyDeployError) as err:
        tb.build_tflm_library(tb.find_tflm_tree(root), "native")
    assert err.value.code == "build_failed" and err.value.exit_code == 8
    assert "micro_interpreter.cpp" in str(err.value) and "build.log" in str(err.value)
    # no library and no object of the broken file in the cache; the log names the error
    (folder,) = (tmp_path / "cache").iterdir()
    assert not (folder / "libtflm.a").exists()
    assert not any("micro_interpreter" in p.name for p in (folder / "obj").iterdir())
    assert "micro_interpreter.cpp" in (folder / "build.log").read_text()


# --- with a real tree --------------------------------------------------------------------
TREE = os.environ.get(tb.ENV_SRC)
needs_tree = pytest.mark.skipif(
    not TREE, reason=f"no TFLM tree: set {tb.ENV_SRC} to an Arduino TFLM library "
                     "(Chirale_TensorFLowLite) or a tflite-micro checkout with its downloads")


def _reference_npz(name: str, path: Path) -> Path:
    facts = load(DATA / f"{name}.tflite")
    x = dequantize(np.load(DATA / f"{name}.inputs.npy"), facts.inputs[0])
    y = np.zeros(len(x), np.float32)
    return Dataset(x_train=x, y_train=y, x_val=x, y_val=y, x_test=x, y_test=y).save(path)


@needs_tree
@pytest.mark.parametrize("board", ["native", "qemu-cm4"])
def test_generated_tflm_firmware_is_bit_exact(board: str, tmp_path: Path) -> None:
    if board == "qemu-cm4" and not all(shutil.which(t) for t in (
            "arm-none-eabi-g++", "qemu-system-arm")):
        pytest.skip("arm-none-eabi-g++ / qemu-system-arm not installed")
    from tinydeploy.validation import validate

    # digits_cnn has per-channel FULLY_CONNECTED weights, which Arduino libraries built from
    # older TFLM (Chirale_TensorFLowLite 2.0.0) compute with one scale: the firmware then
    # registers tinydeploy's kernel (tflm_overrides) and matches the ground truth all the same
    tree = tb.find_tflm_tree(TREE, board=board)  # the flavour as the CLI picks it
    name = "digits_cnn"
    cm4 = np.load(DATA / f"{name}.outputs_cm4.npy")
    r = validate(DATA / f"{name}.tflite", _reference_npz(name, tmp_path / "d.npz"),
                 tmp_path / "val", board=board, runtime="tflm", tflm_src=tree)
    assert r.passed and r.differing == 0 and r.samples == len(cm4)
    assert r.device["runtime"] == "tflm" and r.device["board_id"] == board
    assert r.device["arena_used"] > 0
    assert r.device_out.tobytes() == cm4.tobytes()
    if board == "qemu-cm4":
        assert r.metrics.get("cycles_mean", 1) > 0
