"""The Python API mirrors the CLI: one function per command, importable without TF."""

from __future__ import annotations

import subprocess
import sys

import tinydeploy
from tinydeploy import cli


def test_every_cli_command_has_an_api_function() -> None:
    commands = {c.name or c.callback.__name__ for c in cli.app.registered_commands}
    assert commands == {"train", "quantize", "check", "inspect", "carray", "arena", "boards",
                        "generate", "build", "flash", "validate", "deploy"}
    for name in commands - {"boards"}:
        assert callable(getattr(tinydeploy, name)), name
    assert "nano33ble" in tinydeploy.BOARDS


def test_import_and_quick_commands_do_not_load_tensorflow() -> None:
    code = ("import sys, tinydeploy; from tinydeploy import cli; "
            "rc = cli.main(['boards']); "
            "assert rc == 0 and 'tensorflow' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)


def test_api_names_stay_functions_after_stage_modules_load() -> None:
    import importlib

    for module in ("training", "quantization", "c_array", "arena.search", "device.flashing",
                   "validation", "pipeline"):
        importlib.import_module(f"tinydeploy.{module}")
    assert tinydeploy.train.__module__ == "tinydeploy.training"
    assert tinydeploy.flash.__module__ == "tinydeploy.device.flashing"
    assert tinydeploy.deploy.__module__ == "tinydeploy.pipeline"
