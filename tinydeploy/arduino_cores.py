"""Arduino cores of the board table: the ``arduino-cli`` core id and, for cores outside
Arduino's default index, the Boards Manager URL to add (from each vendor's install guide),
and the enum size their compile flags give (the TFLM arena margin depends on it).
"""

from __future__ import annotations

# core id (first two parts of the FQBN) -> additional Boards Manager URL ("" = default index)
CORE_URLS: dict[str, str] = {
    "arduino:mbed_nano": "",
    "arduino:mbed_rp2040": "",
    "esp32:esp32": "https://espressif.github.io/arduino-esp32/package_esp32_index.json",
    "STMicroelectronics:stm32": "https://github.com/stm32duino/BoardManagerFiles/raw/main/"
                                "package_stmicroelectronics_index.json",
    "teensy:avr": "https://www.pjrc.com/teensy/package_teensy_index.json",
}


def core_of(fqbn: str | None) -> tuple[str, str]:
    """(core id, additional Boards Manager URL or "") of an FQBN.

    Args:
        fqbn: ``vendor:arch:board[:options]`` or None.

    Returns:
        ``("", "")`` without an FQBN; the URL is "" for cores in Arduino's default index.
    """
    if not fqbn:
        return "", ""
    core = ":".join(fqbn.split(":")[:2])
    return core, CORE_URLS.get(core, "")


# Enum size of each core's C/C++ compile flags: True = short enums (arm-none-eabi's AAPCS
# default; no -fno-short-enums among the flags), False = int-sized (-fno-short-enums, or a
# target whose default is int: Xtensa). Read from the cores' own files:
# ArduinoCore-mbed variants/<BOARD>/cflags.txt + cxxflags.txt (nano33ble, pico);
# Arduino_Core_STM32 platform.txt compiler.c.flags / compiler.cpp.flags / extra_flags.
# A core not listed is unknown: the arena margin then covers both enum sizes.
CORE_SHORT_ENUMS: dict[str, bool] = {
    "arduino:mbed_nano": True,
    "arduino:mbed_rp2040": True,
    "STMicroelectronics:stm32": True,
    "esp32:esp32": False,
}


def short_enums(fqbn: str | None) -> bool | None:
    """Whether the core of ``fqbn`` compiles with short enums (None: unknown)."""
    return CORE_SHORT_ENUMS.get(core_of(fqbn)[0])
