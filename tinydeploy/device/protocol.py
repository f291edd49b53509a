"""The tinydeploy serial protocol, both directions, in Python (see docs/protocol.md).

A frame is ``COBS(op u8 | seq u16 | len u16 | payload | crc32) 0x00`` with little-endian
integers and the zlib CRC-32 over op..payload. ``firmware/td_protocol.h`` is the C twin of
the constants here; keep the two in step. Inputs/outputs larger than one frame travel in
chunks (DATA + INFER, RESULT + READ); the payload is every tensor's raw bytes concatenated
in model order.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

PROTOCOL_VERSION = 2
MAX_PAYLOAD = 1024  # default device limit (TD_MAX_PAYLOAD); INFO reports the real one
HEADER_BYTES = 5
CRC_BYTES = 4
INFER_HEADER = 12  # flags u8, reserved u8 + u16, offset u32, input crc32 u32
DATA_HEADER = 4  # offset u32 (DATA and OUTPUT)
READ_BYTES = 8  # offset u32, length u32
RESULT_HEADER = 16  # time_us u32, cycles u32, output bytes u32, output crc32 u32
INFER_RESET = 0x01  # INFER flag: reset the model's state before running
MIN_PAYLOAD = 64  # smallest TD_MAX_PAYLOAD a device may have
INFO_FLAG_BOOT = 0x01
MAX_DIMS = 6
DELIMITER = b"\x00"


class Op(IntEnum):
    """Op codes (C: ``TD_OP_*``)."""

    HELLO = 0x01  # host -> device: optional protocol version byte
    INFER = 0x02  # host -> device: flags, offset, input crc32, last input bytes -> RESULT
    DATA = 0x03  # host -> device: offset u32, input bytes -> ACK
    READ = 0x04  # host -> device: offset u32, length u32 -> OUTPUT
    INFO = 0x81  # device -> host: reply to HELLO, or unsolicited at boot (seq 0, flag)
    RESULT = 0x82  # device -> host: timing, output size + crc32, first output bytes
    ACK = 0x83  # device -> host: offset u32, length u32 of the DATA written
    OUTPUT = 0x84  # device -> host: offset u32, output bytes
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
    BAD_OFFSET = 8
    INPUT_CRC = 9
    NO_RESULT = 10


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
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    arena_size: int
    arena_used: int
    cpu_hz: int
    max_payload: int = MAX_PAYLOAD
    model_status: int = 0  # 0 ready; else why the model did not start (MODEL_STATUS)

    @property
    def input(self) -> TensorInfo:
        """The first input tensor."""
        return self.inputs[0]

    @property
    def output(self) -> TensorInfo:
        """The first output tensor."""
        return self.outputs[0]

    @property
    def input_bytes(self) -> int:
        """Bytes of all inputs concatenated (an INFER's whole input)."""
        return sum(t.nbytes for t in self.inputs)

    @property
    def output_bytes(self) -> int:
        """Bytes of all outputs concatenated (a RESULT's whole output)."""
        return sum(t.nbytes for t in self.outputs)


@dataclass(frozen=True)
class InferReply:
    output: bytes
    time_us: int
    cycles: int


@dataclass(frozen=True)
class ResultHead:
    """A RESULT payload: timing, the whole output's size and CRC, its first bytes."""

    time_us: int
    cycles: int
    total: int
    crc: int
    data: bytes


# INFO model status (bytes 2-3): why the firmware's model did not start (0: it did)
MODEL_STATUS = {1: "the model's schema version differs from the library's",
                2: "registering an operator failed (resolver too small)",
                3: "AllocateTensors() failed", 4: "the model's tensors differ from the "
                "generated settings", -1: "the tensor sizes differ from the generated model"}
STATUS_ALLOCATE_FAILED = 3

_TENSOR = struct.Struct("<BB6ifi")
_INFO_HEAD = struct.Struct("<BBHIIII32sBB")
_INFER_HEAD = struct.Struct("<BBHII")
_RESULT_HEAD = struct.Struct("<IIII")


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
    head = _INFO_HEAD.pack(info.protocol_version, flags, info.model_status & 0xFFFF,
                           info.max_payload, info.cpu_hz,
                           info.arena_size, info.arena_used, bytes.fromhex(info.model_sha256),
                           len(info.inputs), len(info.outputs))
    return (head + b"".join(_pack_tensor(t) for t in (*info.inputs, *info.outputs))
            + _pack_str(info.firmware_version, 48) + _pack_str(info.board_id, 32)
            + _pack_str(info.runtime, 16))


def info_version(payload: bytes) -> int | None:
    """The protocol version an INFO payload announces (its first byte; every version keeps
    it there), None if empty."""
    return payload[0] if payload else None


def unpack_info(payload: bytes) -> tuple[DeviceInfo, int]:
    """INFO payload -> (DeviceInfo, flags); raises FrameError(BAD_LENGTH) when short.
    Check ``info_version`` first: other versions have another layout."""
    try:
        ver, flags, status, max_payload, cpu_hz, arena, used, sha, n_in, n_out = \
            _INFO_HEAD.unpack_from(payload)
        off = _INFO_HEAD.size
        tensors = [_unpack_tensor(payload, off + k * _TENSOR.size) for k in range(n_in + n_out)]
        off += (n_in + n_out) * _TENSOR.size
        strings = []
        for _ in range(3):
            n = payload[off]
            if off + 1 + n > len(payload):
                raise IndexError
            strings.append(payload[off + 1:off + 1 + n].decode(errors="replace"))
            off += 1 + n
    except (struct.error, IndexError) as exc:
        raise FrameError(ErrorCode.BAD_LENGTH, f"INFO payload of {len(payload)} bytes") from exc
    if n_in < 1 or n_out < 1:
        raise FrameError(ErrorCode.BAD_LENGTH, f"INFO with {n_in} inputs, {n_out} outputs")
    info = DeviceInfo(ver, strings[0], strings[1], strings[2], sha.hex(), tuple(tensors[:n_in]),
                      tuple(tensors[n_in:]), arena, used, cpu_hz, max_payload,
                      -1 if status == 0xFFFF else status)
    return info, flags


def pack_infer(flags: int, offset: int, input_crc: int, data: bytes = b"") -> bytes:
    """INFER: write ``data`` at ``offset`` of the input, check the whole input's CRC, run."""
    return _INFER_HEAD.pack(flags, 0, 0, offset, input_crc & 0xFFFFFFFF) + bytes(data)


def unpack_infer(payload: bytes) -> tuple[int, int, int, bytes]:
    """INFER payload -> (flags, offset, input crc, data)."""
    if len(payload) < INFER_HEADER:
        raise FrameError(ErrorCode.BAD_LENGTH, f"INFER payload of {len(payload)} bytes")
    flags, _, _, offset, crc = _INFER_HEAD.unpack_from(payload)
    return flags, offset, crc, bytes(payload[INFER_HEADER:])


def pack_chunk(offset: int, data: bytes) -> bytes:
    """DATA (host -> device) or OUTPUT (device -> host): offset u32, bytes."""
    return struct.pack("<I", offset) + bytes(data)


def unpack_chunk(payload: bytes) -> tuple[int, bytes]:
    """DATA/OUTPUT payload -> (offset, bytes)."""
    if len(payload) < DATA_HEADER:
        raise FrameError(ErrorCode.BAD_LENGTH, f"chunk payload of {len(payload)} bytes")
    return struct.unpack_from("<I", payload)[0], bytes(payload[DATA_HEADER:])


def pack_span(offset: int, length: int) -> bytes:
    """READ (host -> device) or ACK (device -> host): offset u32, length u32."""
    return struct.pack("<II", offset, length)


def unpack_span(payload: bytes) -> tuple[int, int]:
    """READ/ACK payload -> (offset, length)."""
    if len(payload) < READ_BYTES:
        raise FrameError(ErrorCode.BAD_LENGTH, f"payload of {len(payload)} bytes")
    return struct.unpack_from("<II", payload)  # type: ignore[return-value]


def pack_result(head: ResultHead) -> bytes:
    return _RESULT_HEAD.pack(head.time_us & 0xFFFFFFFF, head.cycles & 0xFFFFFFFF, head.total,
                             head.crc & 0xFFFFFFFF) + head.data


def unpack_result(payload: bytes) -> ResultHead:
    if len(payload) < RESULT_HEADER:
        raise FrameError(ErrorCode.BAD_LENGTH, f"RESULT payload of {len(payload)} bytes")
    time_us, cycles, total, crc = _RESULT_HEAD.unpack_from(payload)
    return ResultHead(time_us, cycles, total, crc, bytes(payload[RESULT_HEADER:]))


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
