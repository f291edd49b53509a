"""Protocol codec: COBS, CRC, frames, payloads, resync, wire efficiency (pure Python)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from tinydeploy.device.protocol import (
    CRC_BYTES,
    DATA_HEADER,
    HEADER_BYTES,
    INFER_HEADER,
    INFER_RESET,
    INFO_FLAG_BOOT,
    MAX_PAYLOAD,
    PROTOCOL_VERSION,
    RESULT_HEADER,
    DeviceInfo,
    ErrorCode,
    Frame,
    FrameDecoder,
    FrameError,
    Op,
    ResultHead,
    TensorInfo,
    cobs_decode,
    cobs_encode,
    crc32,
    encode_frame,
    frame_bytes,
    hexdump,
    info_version,
    pack_chunk,
    pack_error,
    pack_infer,
    pack_info,
    pack_result,
    pack_span,
    parse_frame,
    unpack_chunk,
    unpack_error,
    unpack_infer,
    unpack_info,
    unpack_result,
    unpack_span,
    wire_ratio,
)

HEADER = Path(__file__).resolve().parents[1] / "firmware" / "td_protocol.h"

# (decoded, encoded) pairs from the COBS paper / Wikipedia examples
SEQ_254 = bytes(range(1, 255))
COBS_VECTORS = [
    (b"", b"\x01"),
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    (SEQ_254, b"\xff" + SEQ_254),
    (b"\x00" + SEQ_254, b"\x01\xff" + SEQ_254),
    (bytes(range(1, 256)), b"\xff" + SEQ_254 + b"\x02\xff"),
    (bytes(range(2, 256)) + b"\x00", b"\xff" + bytes(range(2, 256)) + b"\x01\x01"),
    (bytes(range(3, 256)) + b"\x00\x01", b"\xfe" + bytes(range(3, 256)) + b"\x02\x01"),
]


@pytest.mark.parametrize(("raw", "encoded"), COBS_VECTORS)
def test_cobs_known_vectors(raw: bytes, encoded: bytes) -> None:
    assert cobs_encode(raw) == encoded
    assert cobs_decode(encoded) == raw


@pytest.mark.parametrize("n", [0, 1, 253, 254, 255, 256, 507, 508, 509, 1024, 4105])
@pytest.mark.parametrize("fill", ["zeros", "ones", "mixed"])
def test_cobs_round_trip_boundaries(n: int, fill: str) -> None:
    rng = random.Random(n)
    data = {"zeros": bytes(n), "ones": b"\x01" * n,
            "mixed": bytes(rng.choice((0, rng.randrange(1, 256))) for _ in range(n))}[fill]
    enc = cobs_encode(data)
    assert 0 not in enc
    assert len(enc) <= n + n // 254 + 1
    assert cobs_decode(enc) == data


def test_cobs_decode_accepts_trailing_empty_block() -> None:
    # some encoders close a 254-byte run with an extra 0x01 block; both decode the same
    assert cobs_decode(b"\xff" + SEQ_254 + b"\x01") == SEQ_254


@pytest.mark.parametrize("bad", [b"\x05\x11\x22", b"\x03\x11\x00", b"\x00"])
def test_cobs_decode_rejects_broken_stuffing(bad: bytes) -> None:
    with pytest.raises(FrameError) as exc:
        cobs_decode(bad)
    assert exc.value.code == ErrorCode.BAD_FRAME


def test_crc32_known_vectors() -> None:
    assert crc32(b"123456789") == 0xCBF43926
    assert crc32(b"") == 0
    assert crc32(b"\x00") == 0xD202EF8D
    assert crc32(b"The quick brown fox jumps over the lazy dog") == 0x414FA339


def test_frame_round_trip_and_layout() -> None:
    payload = bytes(range(256)) * 3
    raw = frame_bytes(Op.INFER, 0x1234, payload)
    assert raw[:HEADER_BYTES] == bytes([Op.INFER, 0x34, 0x12, 0x00, 0x03])
    assert int.from_bytes(raw[-CRC_BYTES:], "little") == crc32(raw[:-CRC_BYTES])
    wire = encode_frame(Op.INFER, 0x1234, payload, lead=True)
    assert wire[0] == 0 and wire[-1] == 0 and 0 not in wire[1:-1]
    frames = FrameDecoder().feed(wire)
    assert frames == [Frame(Op.INFER, 0x1234, payload)]


def test_parse_frame_errors() -> None:
    raw = bytearray(frame_bytes(Op.HELLO, 7, b"\x01"))
    with pytest.raises(FrameError) as exc:
        parse_frame(bytes(raw[:6]))
    assert exc.value.code == ErrorCode.BAD_FRAME
    raw[5] ^= 0xFF
    with pytest.raises(FrameError) as exc:
        parse_frame(bytes(raw))
    assert exc.value.code == ErrorCode.BAD_CRC and exc.value.seq == 7
    # a length field that disagrees with the frame, with a valid CRC
    body = bytes([Op.HELLO, 7, 0, 5, 0, 1])
    bad_len = body + crc32(body).to_bytes(4, "little")
    with pytest.raises(FrameError) as exc:
        parse_frame(bad_len)
    assert exc.value.code == ErrorCode.BAD_LENGTH


def test_decoder_resyncs_after_garbage_and_splits() -> None:
    rng = random.Random(5)
    good = [Frame(Op.RESULT, i + 1, bytes(rng.randrange(256) for _ in range(rng.randrange(40))))
            for i in range(50)]
    stream = bytearray()
    for f in good:
        stream += bytes(rng.randrange(1, 256) for _ in range(rng.randrange(30)))  # line noise
        stream += encode_frame(f.op, f.seq, f.payload, lead=True)
    dec = FrameDecoder()
    items: list[Frame | FrameError] = []
    i = 0
    while i < len(stream):  # arbitrary split points
        n = rng.randrange(1, 17)
        items += dec.feed(bytes(stream[i:i + n]))
        i += n
    frames = [x for x in items if isinstance(x, Frame)]
    assert frames == good
    assert any(isinstance(x, FrameError) for x in items)


def test_decoder_bounds_frame_size() -> None:
    dec = FrameDecoder(max_payload=64)
    out = dec.feed(encode_frame(Op.INFER, 3, bytes(range(1, 200))))
    assert len(out) == 1 and isinstance(out[0], FrameError)
    assert out[0].code == ErrorCode.TOO_LARGE
    assert len(dec.buf) == 0
    # the endless stream without a delimiter never grows the buffer past the bound
    dec.feed(b"\x55" * 100_000)
    assert len(dec.buf) <= dec.max_encoded
    assert dec.feed(b"\x00" + encode_frame(Op.HELLO, 4))[-1] == Frame(Op.HELLO, 4, b"")


def _info() -> DeviceInfo:
    return DeviceInfo(
        protocol_version=PROTOCOL_VERSION, firmware_version="tinydeploy 0.1.0",
        board_id="nano33ble", runtime="tflm", model_sha256=bytes(range(32)).hex(),
        inputs=(TensorInfo("INT8", (1, 49, 10, 1), 0.5, -3),
                TensorInfo("INT16", (1, 7), 0.25, 0), TensorInfo("INT32", (1, 3), 0.0, 0)),
        outputs=(TensorInfo("INT8", (1, 12), 0.00390625, -128),
                 TensorInfo("INT16", (1, 2), 0.125, 0)),
        arena_size=40_000, arena_used=31_234, cpu_hz=64_000_000, max_payload=4096)


def test_info_round_trip() -> None:
    info = _info()
    got, flags = unpack_info(pack_info(info, INFO_FLAG_BOOT))
    assert got == info and flags == INFO_FLAG_BOOT
    assert got.input.nbytes == 490 and got.input_bytes == 490 + 14 + 12
    assert got.output_bytes == 12 + 4 and len(got.outputs) == 2
    assert info_version(pack_info(info)) == PROTOCOL_VERSION
    with pytest.raises(FrameError):
        unpack_info(pack_info(info)[:60])


def test_result_chunk_and_error_round_trip() -> None:
    head = ResultHead(1234, 98765, 5000, 0xDEADBEEF, bytes(range(10)))
    assert unpack_result(pack_result(head)) == head
    assert unpack_infer(pack_infer(INFER_RESET, 9000, 0x12345678, b"ab")) == \
        (INFER_RESET, 9000, 0x12345678, b"ab")
    assert unpack_chunk(pack_chunk(70_000, b"xyz")) == (70_000, b"xyz")
    assert unpack_span(pack_span(1, 2)) == (1, 2)
    assert unpack_error(pack_error(ErrorCode.TOO_LARGE, Op.INFER, 4096)) == (3, 2, 4096)
    for bad in (lambda: unpack_infer(b"\x01" * 11), lambda: unpack_chunk(b"\x00" * 3),
                lambda: unpack_result(bytes(15)), lambda: unpack_span(bytes(7))):
        with pytest.raises(FrameError):
            bad()


def test_wire_efficiency_both_directions() -> None:
    """payload / bytes on the wire >= 0.95 for 1 KB tensors (a default-size chunk, headers
    included), worst-case data."""
    assert wire_ratio(1024, Op.INFER) >= 0.95
    for data in (bytes(1012), bytes(range(256)) * 4, b"\xff" * 1012):
        data = data[:MAX_PAYLOAD - INFER_HEADER]
        up = encode_frame(Op.INFER, 9, pack_infer(INFER_RESET, 0, 0, data), lead=True)
        down = encode_frame(Op.RESULT, 9, pack_result(ResultHead(1, 2, 1, 0, data)))
        chunk = encode_frame(Op.DATA, 9, pack_chunk(0, data), lead=True)
        for wire in (up, down, chunk):
            assert len(data) / len(wire) >= 0.95, len(wire)


def test_c_header_matches_python_constants() -> None:
    text = HEADER.read_text()
    defines = {m[0]: int(m[1], 0) for m in re.findall(r"#define (TD_\w+) (0x[0-9A-Fa-f]+|\d+)",
                                                       text)}
    assert defines["TD_PROTOCOL_VERSION"] == PROTOCOL_VERSION
    for op in Op:
        assert defines[f"TD_OP_{op.name}"] == op.value, op
    for code in ErrorCode:
        assert defines[f"TD_ERR_{code.name}"] == code.value, code
    assert defines["TD_INFO_FLAG_BOOT"] == INFO_FLAG_BOOT
    assert defines["TD_INFER_RESET"] == INFER_RESET
    assert defines["TD_INFER_HEADER"] == INFER_HEADER
    assert defines["TD_RESULT_HEADER"] == RESULT_HEADER
    assert defines["TD_DATA_HEADER"] == DATA_HEADER
    assert defines["TD_MAX_PAYLOAD"] == MAX_PAYLOAD
    assert defines["TD_ERR_LAST"] == max(ErrorCode)


def test_hexdump_format() -> None:
    dump = hexdump(b"AB\x00" * 7)
    lines = dump.splitlines()
    assert len(lines) == 2
    assert lines[0].strip().startswith("0000  41 42 00")
    assert "AB.AB" in lines[0]


def test_damaged_frames_keep_their_header_when_readable() -> None:
    wire = bytearray(encode_frame(Op.RESULT, 0x0302, bytes(range(1, 120))))
    wire[60] ^= 0x20  # CRC error: the stuffing is intact
    wire2 = bytearray(encode_frame(Op.INFO, 0, bytes(200)))  # many zeros: many code bytes
    wire2[20] = 0xFE  # a code byte pointing past the end: broken stuffing
    items = FrameDecoder().feed(bytes(wire) + bytes(wire2))
    assert all(isinstance(x, FrameError) for x in items) and len(items) == 2
    assert (items[0].code, items[0].op, items[0].seq) == (ErrorCode.BAD_CRC, Op.RESULT, 0x0302)
    assert (items[1].code, items[1].op, items[1].seq) == (ErrorCode.BAD_FRAME, Op.INFO, 0)
    assert items[0].data == bytes(wire[:-1])  # as received, for --trace
    # too short to carry a seq: none is made up
    short = FrameDecoder().feed(b"\x02\xee\x00")
    assert isinstance(short[0], FrameError) and (short[0].op, short[0].seq) == (0xEE, None)


def test_too_large_error_keeps_the_seq() -> None:
    """The device answers TOO_LARGE with the request's seq, so the host sees it as the
    reply (not a timeout)."""
    out = FrameDecoder(max_payload=64).feed(encode_frame(Op.INFER, 0x4142, bytes(300)))
    assert len(out) == 1 and isinstance(out[0], FrameError)
    assert (out[0].code, out[0].op, out[0].seq) == (ErrorCode.TOO_LARGE, Op.INFER, 0x4142)
