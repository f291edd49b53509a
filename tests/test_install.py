"""Installing anywhere: packaging metadata, resources found from a wheel's layout, and
missing-tool hints for apt and Homebrew (the wheel itself is built, installed outside the
checkout and smoke-deployed by .ci/run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinydeploy import resources
from tinydeploy.errors import TinyDeployError

ROOT = Path(__file__).parents[1]


def _project() -> dict:
    import tomllib  # Python 3.11+

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_wheel_carries_every_resource_folder() -> None:
    forced = _project()["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    for name in ("templates", "firmware", "examples"):
        assert forced[name] == f"tinydeploy/_res/{name}"
        assert resources.resource_dir(name).is_dir()


def test_wheel_layout_is_found_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "site" / "tinydeploy"
    (pkg / "_res" / "firmware").mkdir(parents=True)
    monkeypatch.setattr(resources, "_HERE", pkg)
    assert resources.firmware_dir() == pkg / "_res" / "firmware"
    with pytest.raises(FileNotFoundError, match="'templates' is missing"):
        resources.templates_dir()


def test_extras_and_platform_marker() -> None:
    deps = _project()["project"]["dependencies"]
    extras = _project()["project"]["optional-dependencies"]
    tflm = next(d for d in deps if d.startswith("tflite-micro"))
    assert "platform_machine == 'x86_64'" in tflm and "sys_platform == 'linux'" in tflm
    assert any(d.startswith("platformio") for d in extras["boards"])
    assert not any(d.startswith("platformio") for d in deps)
    assert {"pytest", "pytest-xdist", "ruff", "build"} <= {
        d.split(">")[0].split("=")[0] for d in extras["dev"]}


def test_missing_compiler_hint_names_apt_and_brew(monkeypatch: pytest.MonkeyPatch) -> None:
    from tinydeploy.cruntime import harness

    monkeypatch.setattr(harness.shutil, "which", lambda name: None)
    with pytest.raises(TinyDeployError) as err:
        harness.compiler()
    text = str(err.value)
    assert err.value.code == "tool_missing"
    assert "apt-get install gcc" in text and "xcode-select --install" in text


def test_missing_arm_toolchain_hint_names_apt_and_brew(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    from tinydeploy.device import tflm_build

    monkeypatch.setattr(tflm_build.shutil, "which", lambda name: None)
    with pytest.raises(TinyDeployError) as err:
        tflm_build.toolchain("qemu-cm4")
    assert "apt-get install gcc-arm-none-eabi" in str(err.value)
    assert "brew install --cask gcc-arm-embedded" in str(err.value)
