"""C array stage: turn any file (usually a ``.tflite`` model) into C/C++ source.

Two formats:

* **default** -- ``model_data.h`` + ``model_data.cc`` with::

      alignas(16) const unsigned char g_model[] = {...};   // const: stays in flash
      const unsigned int g_model_len = N;

  The header declares both ``extern`` behind an include guard. The default array name is
  ``g_model`` (the TensorFlow Lite Micro examples' convention, so the generated firmware
  never depends on the model's file name); ``--name`` overrides it and is passed through
  :func:`c_identifier`. ``OUT`` is a folder (created if missing); if it ends in
  ``.h``/``.cc``/``.c``/``.cpp``/``.hpp`` its stem names the two files instead, in its
  parent folder (``out/net.h`` -> ``out/net.h`` + ``out/net.cc``).

* **--xxd** -- byte-identical to Debian's ``xxd -i FILE``: the variable name is derived
  from the path *exactly as given* (every byte of the path that is not an ASCII letter or
  digit becomes ``_``, and ``__`` is prepended when the path starts with a digit; a
  non-ASCII character therefore becomes one ``_`` per UTF-8 byte), 12 bytes per line,
  ``unsigned int NAME_len``. An empty file gives ``unsigned char x[] = {\\n};``.
  ``--name`` replaces the derived name (like newer xxd's ``-n``), sanitized by
  :func:`c_identifier`. If ``OUT`` is an existing folder, or has no suffix at all, the
  text goes to ``OUT/<variable name>.h``; otherwise ``OUT`` itself is the output file,
  whatever its suffix (``model.txt``, ``model.inc`` ...).

``--out -`` (CLI; :func:`carray_text` in Python) prints the source to stdout instead.

Output is written to a temporary file next to the target and renamed into place, so an
error never leaves a half-written file. The hex text is built with ``bytes.translate`` and
strided slice assignment (all loops in C), which is several times faster than ``xxd -i``.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from .c_names import reserved_safe
from .errors import TinyDeployError
from .output import write_atomic, write_files

DEFAULT_NAME = "g_model"
BYTES_PER_LINE = 12
SOURCE_SUFFIXES = frozenset({".h", ".hh", ".hpp", ".c", ".cc", ".cpp", ".cxx", ".inc"})

_HEX = b"0123456789abcdef"
_HI = bytes(_HEX[b >> 4] for b in range(256))
_LO = bytes(_HEX[b & 15] for b in range(256))
# xxd -i: isalnum() in the C locale keeps the byte, anything else becomes '_'.
_XXD_NAME = bytes(
    b if (48 <= b <= 57 or 65 <= b <= 90 or 97 <= b <= 122) else 95 for b in range(256)
)

_KEYWORDS_TEXT = """
alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t
char32_t class compl concept const consteval constexpr constinit const_cast continue
co_await co_return co_yield decltype default delete do double dynamic_cast else enum
explicit export extern false float for friend goto if inline int long mutable namespace new
noexcept not not_eq nullptr operator or or_eq private protected public register
reinterpret_cast requires restrict return short signed sizeof static static_assert
static_cast struct switch template this thread_local throw true try typedef typeid typename
union unsigned using virtual void volatile wchar_t while xor xor_eq main
"""
C_KEYWORDS = frozenset(_KEYWORDS_TEXT.split())


# --- helpers the firmware renderer imports ----------------------------------------------
def c_identifier(name: str) -> str:
    """Sanitize any user string into a valid, non-reserved C/C++ identifier.

    Accents are folded to ASCII (``héllo`` -> ``hello``), every other character outside
    ``[A-Za-z0-9_]`` becomes ``_``; an empty result becomes ``unnamed``; a leading digit or
    a reserved ``__x``/``_X`` start gets a ``v`` prefix; C/C++ keywords, standard-library
    names (``NULL``, ``EOF``, ``errno``, ``size_t``, ``INT8_MAX``... see
    :mod:`tinydeploy.c_names`) and ``*_t`` names get a trailing ``_``.
    Idempotent: ``c_identifier(c_identifier(s)) == c_identifier(s)``.
    """
    folded = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode()
    ident = "".join(c if (c.isascii() and (c.isalnum() or c == "_")) else "_" for c in folded)
    if not ident.strip("_"):
        ident = "unnamed" if not ident else "v" + ident
    if ident[0].isdigit() or (ident[0] == "_" and len(ident) > 1
                              and (ident[1] == "_" or ident[1].isupper())):
        ident = "v" + ident
    if ident in C_KEYWORDS:
        ident += "_"
    return reserved_safe(ident)  # NULL, EOF, errno, size_t, INT8_MAX, x_t, ... (c_names.py)


def hex_lines(data: bytes, per_line: int = BYTES_PER_LINE, indent: str = "  ",
              trailing_comma: bool = False) -> bytes:
    """``0x..`` literals, ``per_line`` to a line, lines joined by ``,\\n``, final ``\\n``.

    With ``trailing_comma`` the last literal is followed by a comma too. Empty data gives
    ``b""``. Works on the whole buffer with C-level operations (no per-byte Python loop).
    """
    n = len(data)
    if n == 0:
        return b""
    ind = indent.encode()
    full, rest = divmod(n, per_line)
    line = ind + b"0x00, " * (per_line - 1) + b"0x00,\n"
    stride = len(line)
    buf = bytearray(line * full)
    if full:
        head = data[: full * per_line]
        hi, lo = head.translate(_HI), head.translate(_LO)
        base = len(ind) + 2
        for j in range(per_line):
            buf[base + 6 * j :: stride] = hi[j::per_line]
            buf[base + 6 * j + 1 :: stride] = lo[j::per_line]
    if rest:
        tail = data[full * per_line :]
        buf += ind + b", ".join(b"0x" + bytes((_HI[b], _LO[b])) for b in tail)
        buf += b",\n" if trailing_comma else b"\n"
    elif not trailing_comma:
        del buf[-2]  # the very last literal takes no comma
    return bytes(buf)


def xxd_name(path: str | os.PathLike[str]) -> str:
    """The variable name ``xxd -i PATH`` derives from ``PATH`` as typed."""
    raw = os.fsencode(path)
    prefix = b"__" if raw[:1].isdigit() else b""
    return (prefix + raw.translate(_XXD_NAME)).decode("ascii")


def xxd_source(data: bytes, name: str) -> bytes:
    """The exact bytes ``xxd -i`` prints for a file whose derived variable is ``name``."""
    var = name.encode()
    return b"".join((b"unsigned char ", var, b"[] = {\n", hex_lines(data), b"};\n",
                     b"unsigned int ", var, b"_len = ", str(len(data)).encode(), b";\n"))


def model_source(data: bytes, name: str = DEFAULT_NAME,
                 header_name: str = "model_data.h") -> tuple[str, str]:
    """(header text, source text) of the default format for ``data`` as array ``name``.

    The array is ``alignas(16) const`` (TFLM reads the flatbuffer in place, from flash);
    ``name`` is sanitized with :func:`c_identifier`; the source ``#include``s
    ``header_name``. Empty data still compiles (one padding byte, ``NAME_len`` = 0).
    """
    ident = c_identifier(name)
    guard = f"TINYDEPLOY_{ident.upper()}_H_"
    header = (
        f"// Generated by tinydeploy carray: {len(data)} bytes as a C array. Do not edit.\n"
        f"#ifndef {guard}\n"
        f"#define {guard}\n"
        "\n"
        f"// 16-byte aligned and const: the model is read in place from flash.\n"
        f"extern const unsigned char {ident}[];\n"
        f"extern const unsigned int {ident}_len;\n"
        "\n"
        f"#endif  // {guard}\n"
    )
    body = hex_lines(data, trailing_comma=True).decode("ascii") if data else "  0x00,\n"
    source = (
        f"// Generated by tinydeploy carray: {len(data)} bytes as a C array. Do not edit.\n"
        f'#include "{header_name}"\n'
        "\n"
        f"alignas(16) const unsigned char {ident}[] = {{\n"
        f"{body}"
        "};\n"
        f"const unsigned int {ident}_len = {len(data)};\n"
    )
    return header, source


# --- the stage ------------------------------------------------------------------------
def carray(model: str | Path, out: str | Path, name: str | None = None,
           xxd: bool = False) -> list[Path]:
    """Write ``model`` as C source under ``out``; return the written paths.

    See the module docstring for both formats and how ``out`` is interpreted.

    Args:
        model: any file (usually a ``.tflite``).
        out: a folder, or a file path (``.h``/``.cc``... stem for the default format; any
            suffix with ``xxd``).
        name: C array name (sanitized); default ``g_model`` (``xxd``: from the path).
        xxd: byte-identical to ``xxd -i FILE``.

    Returns:
        The written files.

    Raises:
        TinyDeployError: a missing/unreadable input (``file_not_found``, ``io_error``) or
            an unwritable output (``io_error``, ``output_exists``).
    """
    data = _read_input(model)
    out_path = Path(out)
    as_file = not out_path.is_dir() and out_path.suffix.lower() in SOURCE_SUFFIXES
    if xxd:
        var = c_identifier(name) if name else xxd_name(model)
        as_file = not out_path.is_dir() and out_path.suffix != ""
        target = out_path if as_file else out_path / f"{var}.h"
        write_atomic(target, xxd_source(data, var))
        return [target]
    folder, stem = (out_path.parent, out_path.stem) if as_file else (out_path, "model_data")
    header, source = model_source(data, name or DEFAULT_NAME, header_name=f"{stem}.h")
    return write_files({folder / f"{stem}.h": header, folder / f"{stem}.cc": source})


def _read_input(model: str | Path) -> bytes:
    """The input file's bytes; ``file_not_found`` / ``io_error`` when it cannot be read."""
    src = Path(model)
    if not src.is_file():
        raise TinyDeployError("file_not_found", what="input file", path=src)
    try:
        return src.read_bytes()
    except OSError as exc:
        raise TinyDeployError("io_error", path=src, problem=f"cannot read ({exc.strerror})",
                              fix="check the file permissions") from exc


def carray_text(model: str | Path, name: str | None = None, xxd: bool = False) -> str:
    """The C source ``carray`` would write, as text (``--out -``).

    Args:
        model: input file.
        name: array name (default ``g_model``; with ``xxd`` derived from the path).
        xxd: ``xxd -i`` format (else the header followed by the source).

    Returns:
        The source text.

    Raises:
        TinyDeployError: the input file is missing or unreadable (``file_not_found``,
            ``io_error``).
    """
    data = _read_input(model)
    if xxd:
        return xxd_source(data, c_identifier(name) if name else xxd_name(model)).decode("ascii")
    header, source = model_source(data, name or DEFAULT_NAME)
    return header + "\n" + source
