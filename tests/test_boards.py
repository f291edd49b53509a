"""The board table: data, lookups, flags, and the `tinydeploy boards` command."""

from __future__ import annotations

import json

import pytest

from tinydeploy.boards import BOARDS, CYCLE_COUNTERS, Board, find_by_usb, get_board, table
from tinydeploy.cli import main
from tinydeploy.errors import TinyDeployError

MCU_BOARDS = ["nano33ble", "esp32-s3", "rpipico", "nucleo_f446re", "teensy41"]


def test_required_boards_present() -> None:
    for name in [*MCU_BOARDS, "sim", "native"]:
        assert name in BOARDS
        assert BOARDS[name].id == name


@pytest.mark.parametrize("name", MCU_BOARDS)
def test_mcu_board_entries_complete(name: str) -> None:
    b = BOARDS[name]
    assert b.is_mcu and b.uploadable and not b.pty
    assert b.clock_hz >= 48_000_000
    assert 64 * 1024 <= b.ram_bytes <= b.flash_bytes
    assert b.pio_platform and b.pio_board and b.pio_framework == "arduino"
    assert b.arduino_fqbn and b.arduino_fqbn.count(":") >= 2
    owner, _, rest = (b.tflm_lib_deps or "").partition("/")
    assert owner and "TensorF" in rest and "@" in rest
    assert b.tflm_arduino_lib and b.tflm_header and b.tflm_header.endswith(".h")
    assert b.usb_ids and all(0 < v <= 0xFFFF and 0 <= p <= 0xFFFF for v, p in b.usb_ids)
    assert b.arduino_macros
    assert b.cycle_counter in CYCLE_COUNTERS
    assert b.supports("tflm") and b.supports("c")
    assert b.framework_flash > 0 and b.framework_ram > 0


def test_cycle_counter_flags_follow_the_core() -> None:
    for b in BOARDS.values():
        if not b.is_mcu:
            continue
        if "Cortex-M0" in b.core:
            assert not b.has_dwt and b.cycle_counter == "none"
        elif "Cortex-M4" in b.core or "Cortex-M7" in b.core:
            assert b.has_dwt
        else:
            assert not b.has_dwt
    assert BOARDS["esp32-s3"].cycle_counter == "ccount"


def test_pseudo_boards_are_flags_not_names() -> None:
    sim, native = BOARDS["sim"], BOARDS["native"]
    assert sim.simulated and sim.pty and not sim.native and not sim.uploadable
    assert native.native and native.pty and not native.simulated and not native.uploadable
    assert native.supports("c") and native.supports("tflm")  # tflm: needs --tflm-src
    assert not sim.runtimes
    assert sim.pio_platform is None and native.usb_ids == ()
    assert [b.id for b in BOARDS.values() if b.pty] == ["sim", "native", "qemu-cm4"]


def test_get_board_lookup_and_unknown() -> None:
    assert get_board("NANO33BLE") is BOARDS["nano33ble"]
    assert get_board("nucleo-f446re") is BOARDS["nucleo_f446re"]
    assert get_board("esp32_s3") is BOARDS["esp32-s3"]
    assert get_board(BOARDS["sim"]) is BOARDS["sim"]
    with pytest.raises(TinyDeployError) as exc:
        get_board("uno")
    assert exc.value.code == "unknown_board" and exc.value.exit_code == 2
    assert "nano33ble" in str(exc.value)


def test_defines_unique_and_usb_lookup() -> None:
    defines = [b.define for b in BOARDS.values()]
    assert len(set(defines)) == len(defines)
    assert BOARDS["esp32-s3"].define == "TD_BOARD_ESP32_S3"
    assert find_by_usb(0x2341, 0x805A) == [BOARDS["nano33ble"]]
    assert find_by_usb(0x16C0, 0x0483) == [BOARDS["teensy41"]]
    assert find_by_usb(0x1234, 0x5678) == []


def test_to_dict_is_json() -> None:
    for b in BOARDS.values():
        d = json.loads(json.dumps(b.to_dict()))
        assert d["id"] == b.id and d["has_dwt"] == b.has_dwt
        assert all(len(u) == 9 and u[4] == ":" for u in d["usb_ids"])
    assert "2341:805a" in BOARDS["nano33ble"].to_dict()["usb_ids"]


def test_table_lists_every_board() -> None:
    text = table()
    lines = text.splitlines()
    assert len(lines) == len(BOARDS) + 2
    for b in BOARDS.values():
        assert any(line.startswith(b.id + " ") for line in lines)
    assert "Chirale_TensorFLowLite" in text and "TensorFlowLite_ESP32" in text


def test_cli_boards(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["boards"]) == 0
    assert "teensy41" in capsys.readouterr().out
    assert main(["boards", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["id"] for d in data] == list(BOARDS)


def test_board_is_frozen() -> None:
    with pytest.raises(AttributeError):
        BOARDS["rpipico"].ram_bytes = 1  # type: ignore[misc]
    assert isinstance(BOARDS["rpipico"], Board)
