"""One error class for every stage, with a code -> (exit code, message, hint) table.

Stages raise ``TinyDeployError(code, **details)``; the CLI prints ``str(err)`` as one line
and exits with ``err.exit_code``. The message names the problem, the hint names the fix.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# code: (exit code, message template, hint template)
# Exit codes: 2 usage / bad input, 3 model rejected, 4 does not fit, 5 device / link,
# 6 validation failed, 7 missing tool, 8 build.
ERRORS: dict[str, tuple[int, str, str]] = {
    "file_not_found": (2, "{what} not found: {path}", "check the path"),
    "bad_data": (2, "bad data file {path}: {problem}", "{fix}"),
    "bad_model_file": (2, "cannot load Keras model {path}: {problem}",
                       "pass a model saved with model.save('NAME.keras')"),
    "bad_argument": (2, "{problem}", "{fix}"),
    "unknown_example": (2, "unknown example '{name}'", "choose one of: {choices}"),
    "unknown_board": (2, "unknown board '{name}'",
                      "choose one of: {choices} (see `tinydeploy boards`)"),
    "output_exists": (2, "output {path} exists and is not a directory", "choose another --out"),
    "io_error": (2, "{path}: {problem}", "{fix}"),
    "bad_flatbuffer": (3, "{path} is not a readable .tflite flatbuffer ({problem})",
                       "re-export it with `tinydeploy quantize`"),
    "model_rejected": (3, "{path}: {problem}", "{fix}"),
    "unsupported_op": (3, "{path}: operator {op} is not supported by {runtime}",
                       "{fix}"),
    "does_not_fit": (4, "{what} does not fit on {board}: {detail}", "{fix}"),
    "arena_too_small": (4, "arena too small: {size} bytes, needs at least {needed}", "{fix}"),
    "arena_not_found": (4, "no arena size up to {limit} bytes lets {path} allocate and run",
                        "check the model with `tinydeploy check` (the runtime fails it at every "
                        "size: a kernel error, not the arena)"),
    "no_port": (5, "no serial port found for board {board}", "{fix}"),
    "port_error": (5, "cannot open serial port {port}: {problem}",
                   "check the cable and that no serial monitor holds the port"),
    "device_timeout": (5, "no answer from the device on {port} after {attempts} attempts",
                       "reset the board, check --port and the baud rate"),
    "inference_timeout": (5, "no result from the device on {port} after {attempts} attempts "
                             "of {seconds} s each ({allowed} s of them for one inference)",
                          "if one inference takes longer, pass --timeout SECONDS; else reset "
                          "the board and check --port"),
    "link_errors": (5, "the device on {port} answers, but the line damages the frames: "
                       "{detail}",
                    "check the cable, its ground and the baud rate on both ends (electrical "
                    "noise); the link already resent with backoff and smaller chunks"),
    "protocol_error": (5, "device protocol error: {problem}",
                       "reflash the firmware made by this tinydeploy version"),
    "device_reset": (5, "the device on {port} reset during the run (reset {count})",
                     "the sample in flight was not run; call again (validate resumes itself)"),
    "hash_mismatch": (5, "the device runs model {device} but {path} is {host}",
                      "flash the firmware generated from this model, "
                      "or pass the model the device runs"),
    "validation_failed": (6, "validation failed: {detail}", "see {report}"),
    "tool_missing": (7, "{tool} not found", "{fix}"),
    "build_failed": (8, "{what} failed (exit {rc}): {tail}", "{fix}"),
}


class TinyDeployError(Exception):
    """A failure the user can fix. ``code`` keys into ``ERRORS``."""

    def __init__(self, code: str, **details: Any) -> None:
        if code not in ERRORS:
            raise KeyError(f"unknown error code {code!r}")
        self.code = code
        self.details = details
        exit_code, msg, hint = ERRORS[code]
        self.exit_code = exit_code
        self.message = msg.format_map(_Default(details))
        self.hint = hint.format_map(_Default(details))
        super().__init__(f"{self.message} — {self.hint}")


class _Default(dict):
    def __missing__(self, key: str) -> str:
        return "?"


def check_choice(value: object, choices: Iterable[str], what: str) -> None:
    """Refuse a ``value`` that is not one of ``choices``: ``bad_argument``, "unknown WHAT
    'value'", with the choices as the fix."""
    options = list(choices)
    if value not in options:
        raise TinyDeployError("bad_argument", problem=f"unknown {what} {value!r}",
                              fix=f"choose one of: {', '.join(options)}")
