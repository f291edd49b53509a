"""The tinydeploy serial protocol, both directions, in Python (see docs/protocol.md).

A frame is ``COBS(op u8 | seq u16 | len u16 | payload | crc32) 0x00`` with little-endian
integers and the zlib CRC-32 over op..payload. ``firmware/td_protocol.h`` is the C twin of
the constants here; keep the two in step.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

PROTOCOL_VERSION = 1
MAX_PAYLOAD = 4096  # default device limit (TD_MAX_PAYLOAD); INFO reports the real one
HEADER_BYTES = 5
CRC_BYTES = 4
RESULT_HEADER = 8  # time_us u32, cycles u32
INFO_FLAG_BOOT = 0x01
MAX_DIMS = 6
DELIMITER = b"\x00"


class Op(IntEnum):
    """Op codes (C: ``TD_OP_*``)."""

    HELLO = 0x01  # host -> device: optional protocol version byte
    INFER = 0x02  # host -> device: input tensor bytes
    INFO = 0x81  # device -> host: reply to HELLO, or unsolicited at boot (seq 0, flag)
    RESULT = 0x82  # device -> host: time_us u32, cycles u32, output tensor bytes
    ERROR = 0xEE  # device -> host: code u8, op u8, reserved u16, detail u32


class ErrorCode(IntEnum):
    """ERROR codes (C: ``TD_ERR_*``)."""

    BAD_CRC = 1
    BAD_LENGTH = 2
    TOO_LARGE = 3
    BAD_COMMAND = 4
    BUSY = 5
    MODEL = 6
    BAD_FRAME = 7


# TFLite schema TensorType numbering (C: TD_DTYPE_*)
DTYPE_CODES = {"FLOAT32": 0, "INT32": 2, "UINT8": 3, "INT16": 7, "INT8": 9}
DTYPE_NAMES = {v: k for k, v in DTYPE_CODES.items()}
DTYPE_SIZES = {"FLOAT32": 4, "INT32": 4, "UINT8": 1, "INT16": 2, "INT8": 1}


class FrameError(ValueError):
    """A received frame that cannot be used; ``code`` says why (an ``ErrorCode``).

    ``op`` and ``seq`` are the header fields as far as they could be read (None if not;
    they may themselves be damaged), ``data`` the bytes received for the frame (for traces).
    """

    def __init__(self, code: ErrorCode, detail: str = "", seq: int | None = None,
                 op: int | None = None, data: bytes = b"") -> None:
        super().__init__(f"{code.name}: {detail}" if detail else code.name)
        self.code = code
        self.seq = seq
        self.op = op
        self.data = data


# --- CRC and COBS -------------------------------------------------------------------------
def crc32(data: bytes) -> int:
    """CRC-32/ISO-HDLC (zlib): crc32(b"123456789") == 0xCBF43926."""
    return zlib.crc32(data) & 0xFFFFFFFF


def cobs_encode(data: bytes) -> bytes:
    """Consistent overhead byte stuffing: the result contains no 0x00 (delimiter not added)."""
    out = bytearray()
    i, total = 0, len(data)
    while True:
        zero = data.find(0, i, min(i + 254, total))
        n = (zero - i) if zero >= 0 else min(254, total - i)
        out.append(n + 1)
        out += data[i:i + n]
        i += n
        if i == total:
            break
        if n < 254:  # the block stopped at a zero byte, which the code implies
            i += 1
            if i == total:
                out.append(1)
                break
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of ``cobs_encode``; raises ``FrameError(BAD_FRAME)`` on broken stuffing."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise FrameError(ErrorCode.BAD_FRAME, "0x00 inside a COBS frame")
        end = i + code
        if end > n:
            raise FrameError(ErrorCode.BAD_FRAME, "truncated COBS block")
        block = data[i + 1:end]
        if 0 in block:
            raise FrameError(ErrorCode.BAD_FRAME, "0x00 inside a COBS frame")
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


# --- frames -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Frame:
    op: int
    seq: int
    payload: bytes

    @property
    def op_name(self) -> str:
        try:
            return Op(self.op).name
        except ValueError:
            return f"0x{self.op:02X}"


def frame_bytes(op: int, seq: int, payload: bytes) -> bytes:
    """The raw (unstuffed) frame: header, payload, CRC."""
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} bytes does not fit the u16 length field")
    raw = struct.pack("<BHH", op, seq & 0xFFFF, len(payload)) + bytes(payload)
    return raw + struct.pack("<I", crc32(raw))


def encode_frame(op: int, seq: int, payload: bytes = b"", lead: bool = False) -> bytes:
    """Bytes on the wire for one frame; ``lead`` prefixes a delimiter (host side resync)."""
    body = cobs_encode(frame_bytes(op, seq, payload)) + DELIMITER
    return DELIMITER + body if lead else body


def parse_frame(raw: bytes) -> Frame:
    """Check a COBS-decoded frame (CRC, length field) and split it."""
    seq = int.from_bytes(raw[1:3], "little") if len(raw) >= 3 else None
    first = raw[0] if raw else None
    if len(raw) < HEADER_BYTES + CRC_BYTES:
        raise FrameError(ErrorCode.BAD_FRAME, f"{len(raw)} bytes is shorter than a frame", seq,
                         first)
    (crc,) = struct.unpack_from("<I", raw, len(raw) - CRC_BYTES)
    if crc32(raw[:-CRC_BYTES]) != crc:
        raise FrameError(ErrorCode.BAD_CRC, "", seq, first)
    op, seq, length = struct.unpack_from("<BHH", raw)
    if length != len(raw) - HEADER_BYTES - CRC_BYTES:
        raise FrameError(ErrorCode.BAD_LENGTH, f"length field {length}", seq, op)
    return Frame(op, seq, bytes(raw[HEADER_BYTES:-CRC_BYTES]))


class FrameDecoder:
    """Split a byte stream at 0x00 delimiters into frames; resynchronises after garbage.

    ``feed`` returns a list of ``Frame`` objects and ``FrameError`` instances (bad frames).
    Frames longer than ``max_payload`` are dropped up to the next delimiter (TOO_LARGE).
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self.max_encoded = cobs_max_len(HEADER_BYTES + max_payload + CRC_BYTES)
        self.buf = bytearray()
        self.overflow = False
        self.head: tuple[int | None, int | None] = (None, None)  # of an oversized frame

    def reset(self) -> None:
        self.buf.clear()
        self.overflow = False
        self.head = (None, None)

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        out: list[Frame | FrameError] = []
        start = 0
        while True:
            end = data.find(0, start)
            chunk = data[start:] if end < 0 else data[start:end]
            if not self.overflow:
                self.buf += chunk
                if len(self.buf) > self.max_encoded:
                    self.overflow = True
                    self.head = peek_header(bytes(self.buf[:8]))
                    self.buf.clear()
            if end < 0:
                return out
            if self.overflow:
                op, seq = self.head
                out.append(FrameError(ErrorCode.TOO_LARGE, "frame over the size limit", seq, op))
            elif self.buf:
                encoded = bytes(self.buf)
                try:
                    out.append(parse_frame(cobs_decode(encoded)))
                except FrameError as exc:
                    if exc.seq is None or exc.op is None:  # broken stuffing: read what we can
                        exc.op, exc.seq = peek_header(encoded)
                    exc.data = encoded
                    out.append(exc)
            self.reset()
            start = end + 1


def peek_header(encoded: bytes) -> tuple[int | None, int | None]:
    """(op, seq) from the start of a COBS-encoded frame, even when its stuffing is broken
    later on; None for a field the bytes do not reach."""
    head = bytearray()
    i, n = 0, len(encoded)
    while i < n and len(head) < 3:
        code = encoded[i]
        if code == 0:
            break
        head += encoded[i + 1:i + code]
        i += code
        if code != 0xFF and i < n:
            head.append(0)
    op = head[0] if head else None
    seq = int.from_bytes(head[1:3], "little") if len(head) >= 3 else None
    return op, seq


def cobs_max_len(n: int) -> int:
    """Largest COBS encoding of n bytes (without the delimiter)."""
    return n + n // 254 + 1


# --- payloads -----------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorInfo:
    dtype: str  # "INT8", "UINT8", "INT16", "INT32", "FLOAT32"
    shape: tuple[int, ...]
    scale: float
    zero_point: int

    @property
    def nbytes(self) -> int:
        n = DTYPE_SIZES.get(self.dtype, 1)
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class DeviceInfo:
    protocol_version: int
    firmware_version: str
    board_id: str
    runtime: str
    model_sha256: str  # hex
    input: TensorInfo
    output: TensorInfo
    arena_size: int
    arena_used: int
    cpu_hz: int
    max_payload: int = MAX_PAYLOAD


@dataclass(frozen=True)
class InferReply:
    output: bytes
    time_us: int
    cycles: int


_TENSOR = struct.Struct("<BB6ifi")
_INFO_HEAD = struct.Struct("<BBHIIII32s")


def _pack_tensor(t: TensorInfo) -> bytes:
    if len(t.shape) > MAX_DIMS:
        raise ValueError(f"tensor rank {len(t.shape)} > {MAX_DIMS}")
    dims = list(t.shape) + [0] * (MAX_DIMS - len(t.shape))
    return _TENSOR.pack(DTYPE_CODES[t.dtype], len(t.shape), *dims, t.scale, t.zero_point)


def _unpack_tensor(b: bytes, off: int) -> TensorInfo:
    dtype, ndims, *rest = _TENSOR.unpack_from(b, off)
    dims, scale, zp = rest[:MAX_DIMS], rest[MAX_DIMS], rest[MAX_DIMS + 1]
    return TensorInfo(DTYPE_NAMES.get(dtype, f"TYPE{dtype}"), tuple(dims[:min(ndims, MAX_DIMS)]),
                      float(scale), int(zp))


def _pack_str(s: str, limit: int) -> bytes:
    b = s.encode()[:limit]
    return bytes([len(b)]) + b


def pack_info(info: DeviceInfo, flags: int = 0) -> bytes:
    head = _INFO_HEAD.pack(info.protocol_version, flags, 0, info.max_payload, info.cpu_hz,
                           info.arena_size, info.arena_used, bytes.fromhex(info.model_sha256))
    return (head + _pack_tensor(info.input) + _pack_tensor(info.output)
            + _pack_str(info.firmware_version, 48) + _pack_str(info.board_id, 32)
            + _pack_str(info.runtime, 16))


def unpack_info(payload: bytes) -> tuple[DeviceInfo, int]:
    """INFO payload -> (DeviceInfo, flags); raises FrameError(BAD_LENGTH) when short."""
    try:
        ver, flags, _, max_payload, cpu_hz, arena, used, sha = _INFO_HEAD.unpack_from(payload)
        off = _INFO_HEAD.size
        t_in = _unpack_tensor(payload, off)
        t_out = _unpack_tensor(payload, off + _TENSOR.size)
        off += 2 * _TENSOR.size
        strings = []
        for _ in range(3):
            n = payload[off]
            if off + 1 + n > len(payload):
                raise IndexError
            strings.append(payload[off + 1:off + 1 + n].decode(errors="replace"))
            off += 1 + n
    except (struct.error, IndexError) as exc:
        raise FrameError(ErrorCode.BAD_LENGTH, f"INFO payload of {len(payload)} bytes") from exc
    info = DeviceInfo(ver, strings[0], strings[1], strings[2], sha.hex(), t_in, t_out, arena,
                      used, cpu_hz, max_payload)
    return info, flags


def pack_result(reply: InferReply) -> bytes:
    return struct.pack("<II", reply.time_us & 0xFFFFFFFF, reply.cycles & 0xFFFFFFFF) + reply.output


def unpack_result(payload: bytes) -> InferReply:
    if len(payload) < RESULT_HEADER:
        raise FrameError(ErrorCode.BAD_LENGTH, f"RESULT payload of {len(payload)} bytes")
    time_us, cycles = struct.unpack_from("<II", payload)
    return InferReply(bytes(payload[RESULT_HEADER:]), time_us, cycles)


def pack_error(code: int, op: int = 0, detail: int = 0) -> bytes:
    return struct.pack("<BBHI", code, op, 0, detail & 0xFFFFFFFF)


def unpack_error(payload: bytes) -> tuple[int, int, int]:
    """ERROR payload -> (code, op, detail)."""
    if len(payload) < 8:
        raise FrameError(ErrorCode.BAD_LENGTH, f"ERROR payload of {len(payload)} bytes")
    code, op, _, detail = struct.unpack_from("<BBHI", payload)
    return code, op, detail


def error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"ERROR_{code}"


def wire_ratio(payload_bytes: int, op: Op = Op.INFER, lead: bool = True) -> float:
    """Payload bytes / bytes on the wire for one frame of worst-case (non-zero) data."""
    payload = bytes((i % 255) + 1 for i in range(payload_bytes))
    return payload_bytes / len(encode_frame(op, 1, payload, lead=lead))


def hexdump(data: bytes, width: int = 16) -> str:
    """esptool-style trace dump: offset, hex bytes, printable ASCII."""
    lines = []
    for off in range(0, len(data), width):
        chunk = data[off:off + width]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"    {off:04x}  {chunk.hex(' '):<{width * 3}} {text}")
    return "\n".join(lines)
