"""Boards as data: one table of targets with their numbers and capability flags.

Every stage asks the table, never a list of names: the renderer reads the PlatformIO
triple, the TFLM library and the memory budget; ``flash`` finds a port by USB VID/PID;
``validate`` starts a pseudo-board when ``simulated``, ``native`` or ``emulated`` (firmware
run by QEMU machine ``qemu_machine``) is set; the firmware reads the cycle counter kind
(``dwt`` = Cortex-M DWT->CYCCNT, ``ccount`` = Xtensa CCOUNT through
``ESP.getCycleCount()``, ``systick`` = SysTick under QEMU's instruction counting, ``none``).

Memory numbers: ``flash_bytes`` is what the firmware image may use (the application
partition / maximum sketch size, not the raw chip size), ``ram_bytes`` is the RAM that
holds static data (the tensor arena is a static array). ``framework_flash`` and
``framework_ram`` estimate what the Arduino core itself takes in an empty sketch; the
renderer adds them to its TFLM estimates for the budget check (see ``render.budget``).

TFLM libraries: every MCU board names one library id of :mod:`tinydeploy.tflm_libraries`
(Arduino Library Manager name, pinned PlatformIO ``lib_deps``, main header, TFLM date,
kernel flavour, constructor, ``architectures=``, resolver methods -- facts extracted from
the real library trees). All five boards use ``Chirale_TensorFLowLite`` 2.0.0 (TFLM of
January 2023, CMSIS-NN kernels): its library.properties lists ``mbed_nano`` and ``esp32``
(the Arduino Nano ESP32 is an ESP32-S3), so the Arduino IDE warns "incompatible
architecture" on the rp2040/stm32/teensy cores but builds it (portable C++), and
PlatformIO's default ``lib_compat_mode = soft`` accepts it. ``TensorFlowLite_ESP32`` 1.0.0
(TFLM of May 2022) is not usable: its ``MicroInterpreter`` needs an ``ErrorReporter*``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .errors import TinyDeployError
from .tflm_libraries import TflmLibrary, get_library

KIB = 1024
MIB = 1024 * 1024

CHIRALE = "chirale-2.0.0"  # library ids of tinydeploy.tflm_libraries

CYCLE_COUNTERS = ("dwt", "ccount", "systick", "none")


@dataclass(frozen=True)
class Board:
    """One target. MCU boards carry a PlatformIO triple; pseudo-boards carry flags."""

    id: str
    name: str
    mcu: str
    core: str
    clock_hz: int
    ram_bytes: int  # RAM for static data (the arena is a static array)
    flash_bytes: int  # program flash the firmware image may use
    # PlatformIO project settings (None for pseudo-boards)
    pio_platform: str | None = None
    pio_board: str | None = None
    pio_framework: str | None = None
    arduino_fqbn: str | None = None  # arduino-cli --fqbn
    # TFLite Micro library for this platform: an id of tinydeploy.tflm_libraries
    tflm_library: str | None = None
    # port detection: (VID, PID) pairs of the board's USB serial interface
    usb_ids: tuple[tuple[int, int], ...] = ()
    # preprocessor symbols the board's Arduino core defines (board detection in a sketch)
    arduino_macros: tuple[str, ...] = ()
    monitor_speed: int = 115200
    # capability flags
    cycle_counter: str = "none"  # dwt | ccount | none
    runtimes: tuple[str, ...] = ("tflm", "c")  # firmware runtimes it can run
    uploadable: bool = True  # flashed with PlatformIO over USB
    simulated: bool = False  # the Python simulated board over a pty (no firmware)
    native: bool = False  # generated C runtime built with the host gcc, served on a pty
    emulated: bool = False  # bare-metal firmware run by QEMU, its UART on a pty
    qemu_machine: str | None = None  # qemu-system-arm -M MACHINE (emulated boards)
    pty: bool = False  # talks over a pseudo-terminal instead of a USB serial port
    code_in_ram: bool = False  # the core copies code into the same RAM as static data
    # estimates of the Arduino core's own footprint in an empty sketch (budget check)
    framework_flash: int = 0
    framework_ram: int = 0
    notes: str = ""
    # the slowest expected speed in Cortex-M instructions per second (reply timeouts,
    # tinydeploy.device.timing); 0: half the clock
    min_ips: int = 0

    @property
    def slowest_ips(self) -> int:
        """Instructions per second a slow run still reaches (``min_ips`` or clock / 2)."""
        return self.min_ips or max(self.clock_hz // 2, 1_000_000)

    @property
    def has_dwt(self) -> bool:
        """Cortex-M DWT cycle counter (DWT->CYCCNT) present and used by the firmware."""
        return self.cycle_counter == "dwt"

    @property
    def is_mcu(self) -> bool:
        return not (self.simulated or self.native or self.emulated)

    @property
    def define(self) -> str:
        """The ``TD_BOARD_<ID>`` macro the PlatformIO env passes (board selection)."""
        return "TD_BOARD_" + "".join(c if c.isalnum() else "_" for c in self.id).upper()

    def supports(self, runtime: str) -> bool:
        return runtime in self.runtimes

    @property
    def clock_text(self) -> str:
        """The one statement of the board's clock every output uses (boards table, report):
        ``64 MHz``; for QEMU no clock (it counts instructions); host CPU for pty boards."""
        if self.emulated:
            return "none: emulated, latency in instructions (QEMU -icount)"
        if self.simulated or self.native:
            return "host CPU: latency in µs of wall-clock time"
        return f"{self.clock_hz // 1_000_000} MHz" if self.clock_hz else "unknown"

    @property
    def tflm_lib(self) -> TflmLibrary | None:
        """The board's TFLM library (table entry), None for pseudo-boards."""
        return get_library(self.tflm_library) if self.tflm_library else None

    @property
    def tflm_arduino_lib(self) -> str | None:
        """Arduino Library Manager name of the TFLM library (exact spelling)."""
        return self.tflm_lib.name if self.tflm_lib else None

    @property
    def tflm_lib_deps(self) -> str | None:
        """PlatformIO ``lib_deps`` entry, pinned: ``owner/name@X.Y.Z``."""
        return self.tflm_lib.lib_deps if self.tflm_lib else None

    @property
    def tflm_header(self) -> str | None:
        """The TFLM library's main header."""
        return self.tflm_lib.header if self.tflm_lib else None

    @property
    def arduino_arch(self) -> str | None:
        """The Arduino core's architecture (the middle part of the FQBN), e.g. ``mbed_nano``."""
        parts = (self.arduino_fqbn or "").split(":")
        return parts[1] if len(parts) >= 3 else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(tflm_arduino_lib=self.tflm_arduino_lib, tflm_lib_deps=self.tflm_lib_deps,
                 tflm_header=self.tflm_header)
        d["usb_ids"] = [f"{v:04x}:{p:04x}" for v, p in self.usb_ids]
        d["has_dwt"] = self.has_dwt
        d["clock"] = self.clock_text
        return d


def _mcu(id: str, name: str, mcu: str, core: str, mhz: int, ram: int, flash: int,
         pio: tuple[str, str], fqbn: str, lib: str,
         usb: tuple[tuple[int, int], ...], macros: tuple[str, ...], cycles: str,
         fw_flash: int, fw_ram: int, notes: str, **kw: Any) -> Board:
    return Board(
        id=id, name=name, mcu=mcu, core=core, clock_hz=mhz * 1_000_000, ram_bytes=ram,
        flash_bytes=flash, pio_platform=pio[0], pio_board=pio[1], pio_framework="arduino",
        arduino_fqbn=fqbn, tflm_library=lib, usb_ids=usb, arduino_macros=macros,
        cycle_counter=cycles,
        framework_flash=fw_flash, framework_ram=fw_ram, notes=notes, **kw)


_BOARDS: tuple[Board, ...] = (
    _mcu("nano33ble", "Arduino Nano 33 BLE (Sense)", "nRF52840", "Cortex-M4F", 64,
         256 * KIB, 1 * MIB - 64 * KIB, ("nordicnrf52", "nano33ble"),
         "arduino:mbed_nano:nano33ble", CHIRALE,
         ((0x2341, 0x805A), (0x2341, 0x005A), (0x2341, 0x035A)),
         ("ARDUINO_ARDUINO_NANO33BLE",), "dwt", 96 * KIB, 48 * KIB,
         "mbed OS core; the first 64 KiB of flash hold the bootloader"),
    _mcu("esp32-s3", "Espressif ESP32-S3-DevKitC-1 (N8)", "ESP32-S3", "Xtensa LX7 (dual)", 240,
         320 * KIB, 3 * MIB, ("espressif32", "esp32-s3-devkitc-1"), "esp32:esp32:esp32s3",
         CHIRALE,
         ((0x303A, 0x1001), (0x10C4, 0xEA60), (0x1A86, 0x55D3), (0x1A86, 0x7523)),
         ("ARDUINO_ESP32S3_DEV", "CONFIG_IDF_TARGET_ESP32S3"), "ccount", 280 * KIB, 40 * KIB,
         "3 MiB application partition of the default 8 MB layout; 320 KiB data RAM"),
    _mcu("rpipico", "Raspberry Pi Pico", "RP2040", "Cortex-M0+ (dual)", 133,
         256 * KIB, 2 * MIB, ("raspberrypi", "pico"), "arduino:mbed_rp2040:pico", CHIRALE,
         ((0x2E8A, 0x00C0), (0x2E8A, 0x000A), (0x2E8A, 0x000F)),
         ("ARDUINO_RASPBERRY_PI_PICO",), "none", 80 * KIB, 40 * KIB,
         "Cortex-M0+ has no DWT cycle counter: cycles are reported as 0"),
    _mcu("nucleo_f446re", "ST Nucleo-64 F446RE", "STM32F446RE", "Cortex-M4F", 180,
         128 * KIB, 512 * KIB, ("ststm32", "nucleo_f446re"),
         "STMicroelectronics:stm32:Nucleo_64:pnum=NUCLEO_F446RE", CHIRALE,
         ((0x0483, 0x374B), (0x0483, 0x374E), (0x0483, 0x3752)),
         ("ARDUINO_NUCLEO_F446RE",), "dwt", 24 * KIB, 4 * KIB,
         "STM32duino core; USB serial through the on-board ST-LINK"),
    _mcu("teensy41", "PJRC Teensy 4.1", "i.MX RT1062", "Cortex-M7", 600,
         512 * KIB, 7936 * KIB, ("teensy", "teensy41"), "teensy:avr:teensy41", CHIRALE,
         ((0x16C0, 0x0483), (0x16C0, 0x0489), (0x16C0, 0x04D5)),
         ("ARDUINO_TEENSY41",), "dwt", 48 * KIB, 24 * KIB,
         "RAM1 (512 KiB ITCM/DTCM) holds static data and, by default, the code too",
         code_in_ram=True),
    Board(id="sim", name="Simulated board (Python, pseudo-terminal)", mcu="host",
          core="host CPU", clock_hz=0, ram_bytes=0, flash_bytes=0, runtimes=(),
          uploadable=False, simulated=True, pty=True, min_ips=50_000_000,
          notes="the host TFLM runtime behind the device protocol; no firmware is built"),
    Board(id="native", name="Native build (host gcc, pseudo-terminal)", mcu="host",
          core="host CPU", clock_hz=0, ram_bytes=0, flash_bytes=0, runtimes=("c", "tflm"),
          uploadable=False, native=True, pty=True, min_ips=100_000_000,
          notes="the generated interpreter-free C runtime compiled for this machine "
                "(--runtime tflm: the generated TFLM firmware, needs --tflm-src)"),
    Board(id="qemu-cm4", name="Emulated Cortex-M4 (QEMU mps2-an386, pseudo-terminal)",
          mcu="Arm MPS2 AN386 (QEMU)", core="Cortex-M4", clock_hz=25_000_000,
          ram_bytes=4 * MIB, flash_bytes=4 * MIB, cycle_counter="systick", runtimes=("c", "tflm"),
          uploadable=False, emulated=True, qemu_machine="mps2-an386", pty=True,
          min_ips=20_000_000,  # QEMU -icount shift=0: 178-525 M/s measured on 2 busy cores
          notes="C runtime as bare-metal firmware (arm-none-eabi-gcc, soft-float) in "
                "qemu-system-arm; code in SSRAM1, data in SSRAM2/3; cycles are emulated "
                "instruction counts (-icount shift=0), not real timing; --runtime tflm: the "
                "generated TFLM firmware, needs --tflm-src"),
)

BOARDS: dict[str, Board] = {b.id: b for b in _BOARDS}


def get_board(name: str | Board) -> Board:
    """The table entry for ``name`` (case-insensitive; ``-``/``_`` interchangeable)."""
    if isinstance(name, Board):
        return name
    key = str(name).strip()
    if key in BOARDS:
        return BOARDS[key]
    norm = key.lower().replace("_", "-")
    for board in BOARDS.values():
        if board.id.lower().replace("_", "-") == norm:
            return board
    raise TinyDeployError("unknown_board", name=name, choices=", ".join(BOARDS))


def find_by_usb(vid: int, pid: int) -> list[Board]:
    """Boards whose USB serial interface has this VID:PID."""
    return [b for b in BOARDS.values() if (vid, pid) in b.usb_ids]


def _size(n: int) -> str:
    if n == 0:
        return "-"
    if n % MIB == 0:
        return f"{n // MIB} MiB"
    return f"{n // KIB} KiB" if n % KIB == 0 else f"{n} B"


def table() -> str:
    """A plain-text table of every board (what ``tinydeploy boards`` prints)."""
    head = ("id", "MCU", "core", "clock", "RAM", "flash", "PlatformIO", "TFLM library",
            "cycles", "runtimes")
    rows = [head]
    for b in BOARDS.values():
        pio = f"{b.pio_platform}/{b.pio_board}" if b.pio_platform else (
            "pty (simulated)" if b.simulated else
            f"pty (qemu {b.qemu_machine})" if b.emulated else "pty (host gcc)")
        rows.append((
            b.id, b.mcu, b.core, b.clock_text.split(":")[0],
            _size(b.ram_bytes), _size(b.flash_bytes), pio, b.tflm_lib_deps or "-",
            b.cycle_counter if b.is_mcu or b.emulated else "-", ",".join(b.runtimes) or "-",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def kernel_flavour(board: str | Board) -> str:
    """Kernel flavour of the board's TFLM library, for the arena prediction:
    ``cmsis-nn`` (Chirale_TensorFlowLite and other CMSIS-NN builds), ``esp-nn``, or
    ``reference`` (no optimized kernels, and boards without a TFLM library)."""
    b = get_board(board)
    lib = getattr(b, "tflm_lib", None)  # the library table, where present
    kernels = getattr(lib, "kernels", None)
    if isinstance(kernels, str) and kernels:
        return kernels
    name = (b.tflm_arduino_lib or "").lower()
    if name.startswith("chirale"):
        return "cmsis-nn"
    if "esp32" in name:
        return "esp-nn"
    return "reference"
