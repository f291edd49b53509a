"""Arduino cores of the board table: the ``arduino-cli`` core id and, for cores outside
Arduino's default index, the Boards Manager URL to add (from each vendor's install guide).
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
