#!/usr/bin/env python3
"""Extract the API facts of a TFLite Micro Arduino library tree into a small JSON fixture.

Reads a library folder that is already on disk (an Arduino library: ``library.properties``
and ``src/``); never downloads or builds anything. The facts are what tinydeploy's generated
firmware depends on, and what ``tests/tflm_standins.py`` turns back into stand-in headers:

* ``library.properties``: Library Manager name (exact spelling), version, ``architectures=``,
  main header (``includes=``), ``precompiled=``;
* ``MicroInterpreter``: its constructors (parameter types, names, defaults) and the public
  methods the firmware may call, and ``TFLITE_SCHEMA_VERSION`` if a header defines it;
* ``MicroMutableOpResolver<N>``: the ``Add*`` methods callable without arguments;
* library defects tinydeploy replaces a kernel for (``tinydeploy.tflm_overrides.tree_facts``):
  ``fc_per_channel`` -- FULLY_CONNECTED honours per-channel weight scales (its OpData
  declares ``is_per_channel``, no Prepare refuses them, the optimized kernel reads it);
* kernel flavour: ``cmsis-nn`` / ``esp-nn`` kernel sources in ``micro/kernels/``, a
  precompiled archive's ``esp_nn`` symbols, else ``reference`` (``--kernels`` when the
  kernels are only in an archive the tree lacks);
* the bundled TFLM date: with ``--tflm-repo`` (a git directory of tensorflow/tflite-micro),
  every ``tensorflow/lite/micro`` file of the library whose exact content (git blob id)
  appears in that repository's history gives the dates it was current; the window is where
  most files agree, and ``tflm_date`` the newest month in it (``--tflm-date YYYY-MM`` gives
  the date instead).

Usage::

    python scripts/extract_tflm_facts.py LIBDIR --id chirale-2.0.0 \
        [--tflm-repo /path/tflite-micro.git] [--kernels esp-nn] [--source TEXT] \
        [--out tests/fixtures/tflm/chirale-2.0.0.json]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tinydeploy from this checkout
from tinydeploy.tflm_overrides import tree_facts  # noqa: E402

FIRMWARE_HEADERS = (
    "tensorflow/lite/micro/micro_interpreter.h",
    "tensorflow/lite/micro/micro_mutable_op_resolver.h",
    "tensorflow/lite/schema/schema_generated.h",
    "tensorflow/lite/c/common.h",
)
# MicroInterpreter methods a firmware may call (kept if the library declares them publicly)
INTERPRETER_METHODS = ("AllocateTensors", "Invoke", "input", "output", "inputs_size",
                       "outputs_size", "input_tensor", "output_tensor", "arena_used_bytes",
                       "Reset", "initialization_status", "SetMicroExternalContext")
KERNEL_DIRS = {"cmsis_nn": "cmsis-nn", "esp_nn": "esp-nn"}


# --- small C++ text helpers ------------------------------------------------------------------
def strip_comments(text: str) -> str:
    """``text`` without // and /* */ comments (string literals are left alone)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
            out.append(" ")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching(text: str, start: int, open_: str = "(", close: str = ")") -> int:
    """Index of the bracket closing the one at ``start``."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == open_:
            depth += 1
        elif text[i] == close:
            depth -= 1
            if depth == 0:
                return i
    raise ValueError(f"unbalanced {open_}{close} at {start}")


def class_body(text: str, name: str) -> str:
    """The ``{...}`` body of ``class NAME`` (its definition, not a forward declaration)."""
    for m in re.finditer(rf"\bclass\s+{name}\b[^;{{]*\{{", text):
        brace = m.end() - 1
        return text[brace + 1:matching(text, brace, "{", "}")]
    raise ValueError(f"class {name} not found")


def public_parts(body: str, default: str = "private") -> str:
    """The text of ``body`` under ``public:`` labels, at the class's own brace depth."""
    out, access, depth, i = [], default, 0, 0
    label = re.compile(r"\b(public|private|protected)\s*:(?!:)")
    while i < len(body):
        c = body[i]
        if depth == 0:
            m = label.match(body, i)
            if m:
                access = m.group(1)
                i = m.end()
                continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        if access == "public":
            out.append(c)
        i += 1
    return "".join(out)


def split_params(params: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for c in params:
        if c in "(<[{":
            depth += 1
        elif c in ")>]}":
            depth -= 1
        if c == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    if "".join(cur).strip():
        parts.append("".join(cur))
    return [" ".join(p.split()) for p in parts]


def parse_param(text: str) -> dict[str, Any]:
    decl, _, default = text.partition("=")
    decl = decl.strip()
    m = re.match(r"(.*?)(\w+)$", decl)
    if m is None or not m.group(1).strip():  # unnamed parameter
        typ, name = decl, ""
    else:
        typ, name = m.group(1), m.group(2)
    typ = re.sub(r"\s*([*&])\s*", r"\1 ", typ).strip()
    typ = re.sub(r"\s+", " ", typ)
    return {"type": typ, "name": name, "default": default.strip() or None}


def calls(body: str, name_re: str) -> list[tuple[str, str, str, str]]:
    """(name, parameter text, qualifiers after ``)``, declaration text before the name)."""
    out = []
    for m in re.finditer(rf"(?<![\w~.>:])({name_re})\s*\(", body):
        close = matching(body, m.end() - 1)
        tail = re.match(r"[^;{]*", body[close + 1:])
        cut = max(body.rfind(c, 0, m.start()) for c in ";{}")
        head = re.sub(r"^.*\b(public|private|protected)\s*:(?!:)", "", body[cut + 1:m.start()],
                      flags=re.S)
        out.append((m.group(1), body[m.end():close], tail.group(0) if tail else "", head))
    return out


# --- facts ------------------------------------------------------------------------------------
def read_properties(root: Path) -> dict[str, str]:
    props: dict[str, str] = {}
    path = root / "library.properties"
    if not path.is_file():
        raise SystemExit(f"{root}: no library.properties (not an Arduino library folder)")
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            props[key.strip()] = value.strip()
    return props


def source_root(root: Path) -> Path:
    return root / "src" if (root / "src").is_dir() else root


def interpreter_facts(src: Path) -> dict[str, Any]:
    text = strip_comments((src / FIRMWARE_HEADERS[0]).read_text(errors="replace"))
    body = class_body(text, "MicroInterpreter")
    pub = public_parts(body)
    ctors = []
    for _name, params, _tail, _head in calls(pub, "MicroInterpreter"):
        plist = [parse_param(p) for p in split_params(params)]
        if len(plist) == 1 and "MicroInterpreter" in plist[0]["type"]:
            continue  # copy/move constructor
        ctors.append(plist)
    methods = []
    for name, params, tail, head in calls(pub, "|".join(INTERPRETER_METHODS)):
        ret = re.sub(r"\b(virtual|inline|static)\b", "", head)
        ret = re.sub(r"\s*([*&])", r"\1", " ".join(ret.split()))
        if not ret or "return" in ret or "=" in ret:
            continue  # a call inside an inline body, not a declaration
        qual = " ".join(tail.split())
        plist = ", ".join(split_params(params))
        methods.append(f"{ret} {name}({plist}){(' ' + qual) if qual else ''}")
    return {"ctors": ctors, "methods": sorted(set(methods))}


def schema_macro(src: Path) -> dict[str, Any] | None:
    for rel in (FIRMWARE_HEADERS[0], "tensorflow/lite/version.h",
                "tensorflow/lite/schema/schema_generated.h"):
        path = src / rel
        if path.is_file():
            m = re.search(r"#\s*define\s+TFLITE_SCHEMA_VERSION\s+\(?\s*(\d+)", path.read_text(
                errors="replace"))
            if m:
                return {"header": rel, "value": int(m.group(1))}
    return None


def resolver_facts(src: Path) -> dict[str, Any]:
    text = strip_comments((src / FIRMWARE_HEADERS[1]).read_text(errors="replace"))
    tmpl = re.search(r"template\s*<([^>]*)>\s*class\s+MicroMutableOpResolver\b", text)
    pub = public_parts(class_body(text, "MicroMutableOpResolver"))
    no_args, with_args = set(), set()
    for name, params, _tail, _head in calls(pub, r"Add\w+"):
        plist = [parse_param(p) for p in split_params(params)]
        (no_args if all(p["default"] is not None for p in plist) else with_args).add(name)
    return {"template": " ".join(tmpl.group(1).split()) if tmpl else None,
            "methods": sorted(no_args), "methods_with_arguments": sorted(with_args - no_args)}


def kernel_facts(root: Path, src: Path, props: dict[str, str],
                 given: str | None) -> dict[str, Any]:
    kdir = src / "tensorflow/lite/micro/kernels"
    for sub, flavour in KERNEL_DIRS.items():
        files = sorted(p.stem for p in (kdir / sub).glob("*.c*")) if (kdir / sub).is_dir() else []
        if files:
            return {"kernels": flavour, "optimized_kernels": files, "kernels_source": "sources"}
    archives = sorted(p for p in src.rglob("*.a"))
    for a in archives:
        if a.is_file() and b"esp_nn" in a.read_bytes():
            return {"kernels": "esp-nn", "optimized_kernels": [],
                    "kernels_source": f"symbols of {a.relative_to(root).as_posix()}"}
    if given:
        return {"kernels": given, "optimized_kernels": [],
                "kernels_source": "given (kernels are in a precompiled archive not on disk)"}
    if props.get("precompiled") in ("true", "full"):
        raise SystemExit(f"{root}: precompiled library without its archive on disk: pass "
                         "--kernels reference|cmsis-nn|esp-nn")
    return {"kernels": "reference", "optimized_kernels": [], "kernels_source": "sources"}


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _windows(repo: Path, path: str, blob: str) -> list[tuple[str, str | None]]:
    """[start, end) commit dates during which ``path`` had content ``blob`` in ``repo``."""
    log = subprocess.run(["git", "--git-dir", str(repo), "log", "--format=C %cs", "--raw",
                          "--no-abbrev", "--no-renames", "HEAD", "--", path],
                         capture_output=True, text=True, check=False).stdout
    versions: list[tuple[str, str]] = []  # newest first: (date, blob after that commit)
    date = ""
    for line in log.splitlines():
        if line.startswith("C "):
            date = line[2:]
        elif line.startswith(":"):
            versions.append((date, line.split()[3]))
    out = []
    for i, (day, b) in enumerate(versions):
        if b == blob:
            out.append((day, versions[i - 1][0] if i > 0 else None))
    return out


def tflm_date(src: Path, repo: Path) -> dict[str, Any]:
    micro = src / "tensorflow/lite/micro"
    files = sorted(p for p in micro.rglob("*") if p.suffix in (".h", ".cpp", ".cc", ".c"))
    wins: list[list[tuple[str, str | None]]] = []
    for p in files:
        rel = p.relative_to(src).as_posix()
        blob = git_blob_id(p.read_bytes())
        names = [rel] + ([rel[:-4] + ".cc"] if rel.endswith(".cpp") else [])
        found = [w for name in names for w in _windows(repo, name, blob)]
        if found:
            wins.append(found)
    if not wins:
        raise SystemExit(f"{src}: no file matches {repo}'s history; pass --tflm-date")
    starts = sorted({s for ws in wins for s, _ in ws})

    def inside(day: str, w: tuple[str, str | None]) -> bool:
        return w[0] <= day and (w[1] is None or day < w[1])

    best = max(starts, key=lambda d: (sum(any(inside(d, w) for w in ws) for ws in wins), d))
    agree = [next(w for w in ws if inside(best, w)) for ws in wins
             if any(inside(best, w) for w in ws)]
    lo = max(w[0] for w in agree)
    ends = [w[1] for w in agree if w[1] is not None]
    hi = min(ends) if ends else None
    # the export is newer than ``lo`` and older than ``hi``: name the newest month it can be
    last = (datetime.date.fromisoformat(hi) - datetime.timedelta(days=1)).isoformat() if hi else lo
    return {"tflm_date": last[:7], "tflm_window": [lo, hi],
            "tflm_date_source": f"{len(agree)} of {len(files)} tensorflow/lite/micro files "
                                f"byte-identical to tensorflow/tflite-micro in this window"}


def extract(root: Path, lib_id: str, tflm_repo: Path | None = None, date: str | None = None,
            kernels: str | None = None, source: str | None = None) -> dict[str, Any]:
    """All facts of the library folder ``root`` as one JSON-ready dict."""
    props = read_properties(root)
    src = source_root(root)
    header = (props.get("includes") or "").split(",")[0].strip() or None
    if header is None:  # no includes=: the header named like the library, else the only one
        tops = sorted(p.name for p in src.glob("*.h"))
        header = f"{props['name']}.h" if f"{props['name']}.h" in tops else (
            tops[0] if len(tops) == 1 else None)
    archs = [a.strip() for a in props.get("architectures", "*").split(",") if a.strip()]
    facts: dict[str, Any] = {
        "id": lib_id, "name": props.get("name"), "version": props.get("version"),
        "architectures": archs or ["*"], "main_header": header,
        "main_header_present": bool(header and (src / header).is_file()),
        "precompiled": props.get("precompiled") or None,
        "headers": {h: (src / h).is_file() for h in FIRMWARE_HEADERS},
    }
    if date:
        facts.update({"tflm_date": date, "tflm_window": None, "tflm_date_source": "given"})
    elif tflm_repo:
        facts.update(tflm_date(src, tflm_repo))
    facts.update(kernel_facts(root, src, props, kernels))
    # the defects tinydeploy replaces a kernel for (tinydeploy.tflm_overrides), e.g.
    # fc_per_channel: FULLY_CONNECTED honours per-channel weight scales
    facts.update(tree_facts(src))
    facts["interpreter"] = interpreter_facts(src)
    facts["schema_version_macro"] = schema_macro(src)
    facts["resolver"] = resolver_facts(src)
    if source:
        facts["source"] = source
    return facts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tree", type=Path, help="library folder (has library.properties)")
    ap.add_argument("--id", required=True, help="fixture id, e.g. chirale-2.0.0")
    ap.add_argument("--tflm-repo", type=Path, help="git dir of tensorflow/tflite-micro")
    ap.add_argument("--tflm-date", help="YYYY-MM, instead of --tflm-repo")
    ap.add_argument("--kernels", choices=["reference", "cmsis-nn", "esp-nn"],
                    help="kernel flavour when only a missing precompiled archive has them")
    ap.add_argument("--source", help="provenance note stored in the JSON (repo@tag)")
    ap.add_argument("--out", type=Path, help="write here instead of stdout")
    args = ap.parse_args(argv)
    facts = extract(args.tree, args.id, args.tflm_repo, args.tflm_date, args.kernels,
                    args.source)
    text = json.dumps(facts, indent=1) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
