"""Corrupt strings never end in a traceback, and names that become C identifiers never
collide with C/C++ keywords or standard-library names."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tinydeploy.c_array import c_identifier
from tinydeploy.c_names import is_reserved, reserved_safe
from tinydeploy.cli import main
from tinydeploy.errors import TinyDeployError
from tinydeploy.guard import check

DATA = Path(__file__).parent / "data"
BAD = b"\xff\xfe*/ /* \xc3"  # invalid UTF-8, plus comment delimiters


@pytest.fixture(autouse=True)
def _log_handler_per_test():
    """main() binds its log handler to the stderr of the moment (here a capture that ends
    with the test): give every test its own."""
    from tinydeploy.log import log

    saved = log.handlers[:]
    log.handlers.clear()
    yield
    log.handlers[:] = saved


def _edited(name: str, edit) -> bytes:
    import flatbuffers

    from tinydeploy.tflm_py import schema

    data = (DATA / f"{name}.tflite").read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytearray(data), 0))
    edit(model)
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _bad_names(model) -> None:
    for t in model.subgraphs[0].tensors:
        t.name = BAD + (t.name or b"")
    model.description = BAD


@pytest.fixture(scope="module")
def corrupt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bad") / "bad \u00e9 name.tflite"
    path.write_bytes(_edited("sine_mlp", _bad_names))
    return path


def _one_error_line(capfd) -> str:
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    return err


def test_corrupt_names_pass_check_inspect_and_generate(corrupt: Path, tmp_path: Path,
                                                       capfd) -> None:
    facts = check(corrupt)
    assert facts.inputs[0].name.startswith("\ufffd")  # replaced, not raised
    assert main(["inspect", str(corrupt)]) == 0
    assert main(["inspect", "--json", str(corrupt)]) == 0
    assert main(["generate", str(corrupt), "--out", str(tmp_path / "c"), "--runtime", "c",
                 "--board", "native"]) == 0
    assert main(["generate", str(corrupt), "--out", str(tmp_path / "tflm")]) == 0
    _one_error_line(capfd)
    text = (tmp_path / "c" / "td_model.c").read_text(encoding="ascii")  # no raw bytes in C
    assert "*/ /*" not in text
    from tinydeploy.cruntime.harness import build_harness, run_harness

    binary = build_harness(tmp_path / "c")  # strict C99, -Werror
    x = np.load(DATA / "sine_mlp.inputs.npy")
    y = run_harness(binary, x, (1,))
    np.testing.assert_array_equal(y, np.load(DATA / "sine_mlp.outputs_cm4.npy"))


def test_corrupt_names_validate_on_native(corrupt: Path, tmp_path: Path, capfd) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    x = np.linspace(0, 6, 8, dtype=np.float32).reshape(8, 1)
    y = np.sin(x)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_val=x, y_val=y, x_test=x, y_test=y)
    rc = main(["validate", str(corrupt), "--data", str(tmp_path / "d.npz"), "--out",
               str(tmp_path / "val"), "--board", "native"])
    _one_error_line(capfd)
    assert rc == 0


def test_corrupt_custom_op_name_is_one_error(capfd, tmp_path: Path) -> None:
    from tinydeploy.tflm_py import schema

    def custom(model) -> None:
        for code in model.operatorCodes:
            if code.builtinCode == schema.BuiltinOperator.FULLY_CONNECTED:
                code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
                code.customCode = b"My\xffOp"

    data = _edited("sine_mlp", custom)
    with pytest.raises(TinyDeployError) as err:
        check(data)
    assert err.value.code == "unsupported_op" and "custom operator 'My\ufffdOp'" in str(err.value)
    path = tmp_path / "custom.tflite"
    path.write_bytes(data)
    assert main(["check", str(path)]) == 3
    assert main(["generate", str(path), "--out", str(tmp_path / "c"), "--runtime", "c",
                 "--board", "native"]) == 3
    err_text = _one_error_line(capfd)
    assert "custom operator" in err_text and not (tmp_path / "c").exists()


# --- reserved C names --------------------------------------------------------------------
RESERVED = ["NULL", "EOF", "errno", "size_t", "INT8_MAX", "UINT32_C", "int", "class", "main",
            "printf", "memcpy", "uint8_t", "my_type_t", "__x", "_Foo", "stdin", "bool"]


@pytest.mark.parametrize("raw", RESERVED)
def test_reserved_names_are_renamed(raw: str) -> None:
    assert is_reserved(raw)
    ident = c_identifier(raw)
    assert ident != raw and not is_reserved(ident) and c_identifier(ident) == ident
    assert not is_reserved(reserved_safe(raw))


@pytest.mark.parametrize("raw", ["g_model", "model_data", "sine_mlp", "person_detect", "x"])
def test_ordinary_names_stay(raw: str) -> None:
    assert not is_reserved(raw) and c_identifier(raw) == raw


def test_carray_reserved_names_compile(tmp_path: Path, capfd) -> None:
    cc = shutil.which("gcc")
    if cc is None:
        pytest.skip("gcc not installed")
    model = DATA / "sine_mlp.tflite"
    includes = "#include <stddef.h>\n#include <stdio.h>\n#include <errno.h>\n" \
               "#include <stdint.h>\n"
    for name in ("NULL", "EOF", "errno", "size_t", "INT8_MAX"):
        out = tmp_path / name
        assert main(["carray", str(model), "--out", str(out), "--name", name]) == 0
        header = next(out.glob("*.h"))
        source = next(out.glob("*.c*"))
        ident = c_identifier(name)
        assert f"{ident}[]" in header.read_text()
        main_c = out / "use.c"
        main_c.write_text(f'{includes}#include "{header.name}"\n'
                          f"int main(void) {{ return (int)({ident}_len == 0u); }}\n")
        lang = ["-x", "c++"] if source.suffix == ".cc" else []
        proc = subprocess.run([cc, "-Wall", "-Wextra", "-Werror", "-c", *lang, str(source),
                               "-o", str(out / "a.o")], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        proc = subprocess.run([cc, "-Wall", "-Wextra", "-Werror", "-c", str(main_c),
                               "-I", str(out), "-o", str(out / "b.o")],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    _one_error_line(capfd)
