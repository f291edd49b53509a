"""How to install a missing tool, on Debian/Ubuntu (apt) and macOS (Homebrew): the ``fix``
of every ``tool_missing`` error (scripts/setup installs the same packages)."""

from __future__ import annotations


def hint(apt: str, brew: str) -> str:
    """One fix text naming both package managers."""
    return f"apt-get install {apt} (Debian/Ubuntu) or {brew} (macOS), or run scripts/setup"


C_COMPILER = hint("gcc g++", "xcode-select --install")
ARM_QEMU = hint("gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm",
                "brew install --cask gcc-arm-embedded && brew install qemu")
ARM_CXX = hint("gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib",
               "brew install --cask gcc-arm-embedded")
PLATFORMIO = "pip install platformio (or pip install 'tinydeploy[boards]')"

__all__ = ["ARM_CXX", "ARM_QEMU", "C_COMPILER", "PLATFORMIO", "hint"]
