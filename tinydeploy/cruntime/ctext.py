"""C text helpers shared by the emitters (``emit`` for int8 kernels, ``emit_ext`` for the
extension kernels)."""

from __future__ import annotations


def c_struct(ctype: str, name: str, fields: dict[str, object]) -> str:
    """A ``static const`` struct initializer with designated fields (lists become arrays).

    Args:
        ctype: the C struct type; name: the variable; fields: field -> value.

    Returns:
        The C definition as text.
    """
    def fmt(v: object) -> str:
        if isinstance(v, list | tuple):
            return "{" + ", ".join(str(int(x)) for x in v) + "}"
        return str(v)

    body = ",\n  ".join(f".{k} = {fmt(v)}" for k, v in fields.items())
    return f"static const {ctype} {name} = {{\n  {body}\n}};"
