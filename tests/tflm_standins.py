"""Stand-in TFLM headers written from the extracted library facts (tests/fixtures/tflm/).

The generated firmware is syntax-checked (``g++ -fsyntax-only -Wall -Wextra -Werror``)
against headers that declare exactly what one library version declares: its main header,
its ``MicroInterpreter`` constructors and public methods, its ``TFLITE_SCHEMA_VERSION`` and
its ``MicroMutableOpResolver<N>::Add*`` methods. Everything here is written from the JSON
facts; ``tests/stubs/`` keeps only hand-written declarations no library differs in
(``Arduino.h``, ``TfLiteTensor``, ``tflite::Model``, the resolver base class).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tinydeploy.tflm_overrides import OVERRIDES

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures" / "tflm"
STUBS = HERE / "stubs"
CXX = ["g++", "-fsyntax-only", "-std=c++17", "-Wall", "-Wextra", "-Werror"]
CC = ["gcc", "-fsyntax-only", "-std=c99", "-Wall", "-Wextra", "-Werror"]
OVERRIDE_METHODS = frozenset(o.resolver for o in OVERRIDES)
_KNOWN_TYPES = {"const", "uint8_t", "size_t", "bool", "int", "void", "unsigned", "char",
                "Model", "MicroOpResolver", "TfLiteTensor", "TfLiteStatus"}


def fixtures() -> dict[str, dict[str, Any]]:
    """Every fixture by library id."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(FIXTURES.glob("*.json"))}


def _guard(rel: str, lib: str) -> str:
    return "TD_STANDIN_" + re.sub(r"\W", "_", f"{lib}_{rel}").upper()


def _header(rel: str, lib: str, body: str) -> str:
    g = _guard(rel, lib)
    return (f"/* Stand-in for {rel} of {lib}, written from its extracted facts. */\n"
            f"#ifndef {g}\n#define {g}\n{body}\n#endif\n")


def _interpreter(facts: dict[str, Any]) -> str:
    itp = facts["interpreter"]
    used = {w for c in itp["ctors"] for p in c for w in re.findall(r"[A-Za-z_]\w*", p["type"])}
    forward = sorted(used - _KNOWN_TYPES)
    lines = ["#include <stddef.h>", "#include <stdint.h>", "",
             '#include "tensorflow/lite/c/common.h"',
             '#include "tensorflow/lite/micro/micro_op_resolver.h"',
             '#include "tensorflow/lite/schema/schema_generated.h"', ""]
    macro = facts.get("schema_version_macro")
    if macro and macro["header"] == "tensorflow/lite/micro/micro_interpreter.h":
        lines += [f"#define TFLITE_SCHEMA_VERSION ({macro['value']})", ""]
    lines += ["namespace tflite {", ""]
    lines += [f"class {name};" for name in forward]
    lines += ["", "class MicroInterpreter {", " public:"]
    for ctor in itp["ctors"]:
        params = ", ".join(p["type"] + (f" {p['name']}" if p["name"] else "")
                           + (f" = {p['default']}" if p["default"] else "") for p in ctor)
        lines.append(f"  MicroInterpreter({params});")
    lines += ["  MicroInterpreter(const MicroInterpreter &) = delete;",
              "  MicroInterpreter &operator=(const MicroInterpreter &) = delete;"]
    lines += [f"  {decl};" for decl in itp["methods"]]
    lines += ["};", "", "}  // namespace tflite"]
    return "\n".join(lines)


def _resolver(facts: dict[str, Any]) -> str:
    res = facts["resolver"]
    lines = ['#include "tensorflow/lite/c/common.h"',
             '#include "tensorflow/lite/micro/micro_op_resolver.h"', "",
             "namespace tflite {", "", f"template <{res['template']}>",
             "class MicroMutableOpResolver : public MicroOpResolver {", " public:",
             "  MicroMutableOpResolver() {}"]
    lines += [f"  TfLiteStatus {m}();" for m in res["methods"]]
    # the registration argument tinydeploy's kernel overrides pass (every TFLM library since
    # 2021 declares AddFullyConnected(const TfLiteRegistration& = Register_FULLY_CONNECTED()))
    lines += [f"  TfLiteStatus {m}(const TfLiteRegistration &registration);"
              for m in res["methods"] if m in OVERRIDE_METHODS]
    lines += ["};", "", "}  // namespace tflite"]
    return "\n".join(lines)


def write_standins(facts: dict[str, Any], dest: Path) -> Path:
    """Write the stand-in headers of one library into ``dest``; returns ``dest``.

    A header the library lacks becomes one that stops the compile with ``#error``, so it
    cannot fall through to the generic stubs.
    """
    lib = f"{facts['name']} {facts['version']}"
    dest.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    if facts["main_header"] and facts["main_header_present"]:
        files[facts["main_header"]] = _header(facts["main_header"], lib, "")
    writers = {"tensorflow/lite/micro/micro_interpreter.h": _interpreter,
               "tensorflow/lite/micro/micro_mutable_op_resolver.h": _resolver}
    for rel, present in facts["headers"].items():
        if not present:
            files[rel] = f'#error "{rel} is not part of {lib}"\n'
        elif rel in writers:
            files[rel] = _header(rel, lib, writers[rel](facts))
    for rel, text in files.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return dest


def board_standins() -> Path:
    """Stand-ins of the library every MCU board of the table uses (one shared folder in the
    temp dir, keyed by the facts' hash), for tests that compile one project for all boards."""
    from tinydeploy.boards import BOARDS

    ids = sorted({b.tflm_library for b in BOARDS.values() if b.tflm_library})
    assert len(ids) == 1, f"boards use several TFLM libraries {ids}: compile per library"
    facts = fixtures()[ids[0]]
    key = hashlib.sha256((json.dumps(facts, sort_keys=True) + Path(__file__).read_text())
                         .encode()).hexdigest()[:16]
    dest = Path(tempfile.gettempdir()) / f"tinydeploy-standins-{key}"
    if not dest.is_dir():
        tmp = Path(tempfile.mkdtemp(prefix="tinydeploy-standins-"))
        write_standins(facts, tmp)
        try:
            os.replace(tmp, dest)
        except OSError:  # another process made it first
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def syntax_check(files: list[Path], cwd: Path, includes: list[Path], defines: list[str] = (),
                 cxx: list[str] = CXX) -> subprocess.CompletedProcess[str]:
    """``g++ -fsyntax-only`` of the C++ files (``.cpp``, ``.ino``) with these include dirs
    (first wins); ``tests/stubs`` comes last. Returns the finished process."""
    cpp = [str(f) for f in files if f.suffix in (".cpp", ".ino")]
    inc = [f"-I{cwd}", *[f"-I{p}" for p in includes], f"-I{STUBS}"]
    args = [*cxx, *inc, *[f"-D{d}" for d in defines], "-x", "c++", *cpp]
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
