"""One example per command, shown at the end of ``tinydeploy COMMAND --help``."""

from __future__ import annotations

EXAMPLES: dict[str, str] = {
    "train": "tinydeploy train sine --out runs/sine",
    "quantize": "tinydeploy quantize runs/sine/model.keras --data runs/sine/data.npz "
                "--out runs/sine",
    "check": "tinydeploy check runs/sine/model_int8.tflite",
    "inspect": "tinydeploy inspect runs/sine/model_int8.tflite --json",
    "carray": "tinydeploy carray runs/sine/model_int8.tflite --out fw/model_data.h",
    "arena": "tinydeploy arena runs/sine/model_int8.tflite --board nano33ble",
    "boards": "tinydeploy boards",
    "generate": "tinydeploy generate runs/sine/model_int8.tflite --board nano33ble --out fw",
    "build": "tinydeploy build fw --board nano33ble",
    "flash": "tinydeploy flash fw --board nano33ble --port /dev/ttyACM0",
    "validate": "tinydeploy validate runs/sine/model_int8.tflite --data runs/sine/data.npz "
                "--board native --out runs/sine/validate",
    "deploy": "tinydeploy deploy sine --board native --out runs/sine",
}


def epilog(command: str) -> str | None:
    """The ``--help`` epilog of ``command``: its example (None: none)."""
    example = EXAMPLES.get(command)
    return f"Example: {example}" if example else None
