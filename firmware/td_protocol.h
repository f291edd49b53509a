/* tinydeploy serial protocol, device side (see docs/protocol.md).
 *
 * Portable C99: no Arduino or OS headers. Bytes come in through td_feed(), frames go out
 * through the write callback given to td_init(). The model runs in the infer callback, so
 * the same core serves TFLM firmware, the interpreter-free C runtime and the host build.
 *
 * Frame on the wire: COBS(op u8 | seq u16 LE | len u16 LE | payload[len] | crc32 LE) 0x00
 * CRC-32 is the IEEE/zlib one over op..payload. Op codes and error codes below are the
 * single C definition; tinydeploy/device/protocol.py holds the Python one (keep them in
 * step). Inputs and outputs of any size travel in frames of at most TD_MAX_PAYLOAD bytes:
 * DATA/INFER chunks are written straight into the model's input tensors (td_tensor_info
 * .data), RESULT/READ read from its output tensors; the core keeps no copy of either.
 */
#ifndef TD_PROTOCOL_H
#define TD_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TD_PROTOCOL_VERSION 2

#ifndef TD_MAX_PAYLOAD
#define TD_MAX_PAYLOAD 1024 /* largest frame payload either way, bytes (inputs/outputs are chunked) */
#endif
#if TD_MAX_PAYLOAD > 65535
#error "TD_MAX_PAYLOAD must fit the 16-bit length field"
#endif
#if TD_MAX_PAYLOAD < 64
#error "TD_MAX_PAYLOAD must be at least 64 bytes"
#endif

#define TD_MAX_DIMS 6

/* frame layout */
#define TD_HEADER_BYTES 5 /* op, seq (2), len (2) */
#define TD_CRC_BYTES 4
#define TD_MAX_FRAME (TD_HEADER_BYTES + TD_MAX_PAYLOAD + TD_CRC_BYTES) /* before COBS */

/* op codes: host -> device */
#define TD_OP_HELLO 0x01 /* payload: optional host protocol version (u8) -> INFO */
#define TD_OP_INFER 0x02 /* flags u8, 0 u8, 0 u16, offset u32, input crc32 u32, bytes -> RESULT */
#define TD_OP_DATA 0x03  /* offset u32, input bytes -> ACK */
#define TD_OP_READ 0x04  /* offset u32, length u32 -> OUTPUT */
/* op codes: device -> host */
#define TD_OP_INFO 0x81   /* reply to HELLO; unsolicited with seq 0 + boot flag at reset */
#define TD_OP_RESULT 0x82 /* time_us u32, cycles u32, output bytes u32, output crc32 u32, bytes */
#define TD_OP_ACK 0x83    /* offset u32, length u32 (the DATA bytes now written) */
#define TD_OP_OUTPUT 0x84 /* offset u32, output bytes */
#define TD_OP_ERROR 0xEE  /* code u8, op u8, reserved u16, detail u32 */

/* payload headers */
#define TD_INFER_HEADER 12  /* flags, reserved (3), offset, input crc32 */
#define TD_DATA_HEADER 4    /* offset */
#define TD_RESULT_HEADER 16 /* time_us, cycles, output bytes, output crc32 */

/* INFER flags */
#define TD_INFER_RESET 0x01 /* reset the model's state (LSTM/GRU variables) before running */

/* INFO flags */
#define TD_INFO_FLAG_BOOT 0x01 /* unsolicited announce (the device just (re)started) */

/* error codes (ERROR payload byte 0) */
#define TD_ERR_BAD_CRC 1     /* frame CRC mismatch: the host resends */
#define TD_ERR_BAD_LENGTH 2  /* len field != payload bytes, or a payload shorter than its header */
#define TD_ERR_TOO_LARGE 3   /* frame longer than TD_MAX_FRAME */
#define TD_ERR_BAD_COMMAND 4 /* unknown or device-only op code */
#define TD_ERR_BUSY 5        /* td_feed re-entered from a callback */
#define TD_ERR_MODEL 6       /* the model cannot run (detail: the app's status / callback rc) */
#define TD_ERR_BAD_FRAME 7   /* COBS framing broken or frame shorter than header+CRC */
#define TD_ERR_BAD_OFFSET 8  /* DATA/INFER/READ outside the tensors (detail: total bytes) */
#define TD_ERR_INPUT_CRC 9   /* assembled input's CRC differs (a chunk is missing): resend all */
#define TD_ERR_NO_RESULT 10  /* READ with no result held (reset, or input written since) */
#define TD_ERR_LAST 10

/* dtype codes (same numbering as the TFLite schema's TensorType) */
#define TD_DTYPE_FLOAT32 0
#define TD_DTYPE_INT32 2
#define TD_DTYPE_UINT8 3
#define TD_DTYPE_INT16 7
#define TD_DTYPE_INT8 9

typedef struct {
  uint8_t dtype;
  uint8_t ndims;
  int32_t dims[TD_MAX_DIMS];
  float scale;
  int32_t zero_point;
  /* Where this tensor's bytes live on the device (the model's own input/output buffer):
   * DATA/INFER chunks are written straight into the inputs', RESULT/OUTPUT read from the
   * outputs'. NULL = not bound (the model is not ready): INFER answers ERROR MODEL. */
  uint8_t *data;
} td_tensor_info;

typedef struct {
  const char *firmware_version; /* e.g. "tinydeploy 0.1.0" */
  const char *board_id;         /* board table id, e.g. "nano33ble" */
  const char *runtime;          /* "tflm" or "c" */
  uint8_t model_sha256[32];
  /* The tensors, in model order. A model with one input and one output may fill `input`
   * and `output` and leave num_inputs/num_outputs 0; otherwise point `inputs`/`outputs`
   * at arrays of num_inputs/num_outputs tensors (then `input`/`output` are unused). */
  td_tensor_info input;
  td_tensor_info output;
  uint8_t num_inputs;
  uint8_t num_outputs;
  td_tensor_info *inputs;
  td_tensor_info *outputs;
  int32_t model_status;      /* 0 = ready; else the app's error code (ERROR MODEL detail,
                                INFO bytes 2-3: the host reports why the model did not start) */
  uint32_t arena_size;       /* bytes reserved for the tensor arena */
  uint32_t arena_used;       /* bytes actually used (TFLM arena_used_bytes()) */
  uint32_t cpu_hz;           /* 0 if unknown */
} td_info;

typedef struct {
  uint32_t time_us; /* inference wall time, microseconds */
  uint32_t cycles;  /* CPU cycles, 0 where the MCU has no counter */
} td_timing;

/* Run the model once: the input tensors' `data` hold the whole input, the outputs' `data`
 * receive the output. `flags` has TD_INFER_RESET when the host asks for a state reset
 * first. Fill *timing and return 0 on success (else the code goes to ERROR MODEL). */
typedef int (*td_infer_fn)(void *ctx, uint32_t flags, td_timing *timing);
/* Send bytes to the host. */
typedef void (*td_write_fn)(void *ctx, const uint8_t *data, size_t len);

/* Protocol state; treat as opaque. Sized for TD_MAX_PAYLOAD. */
typedef struct td_device td_device;

/* Upper bound of td_device_size(), usable for static storage:
 *   static TD_DEVICE_STORAGE(my_storage);  ...  td_init(my_storage, ...)          */
#define TD_DEVICE_STORAGE_BYTES (TD_MAX_PAYLOAD + 384)
#define TD_DEVICE_STORAGE(name) uint64_t name[(TD_DEVICE_STORAGE_BYTES + 7) / 8]

/* Number of bytes a td_device needs (so callers can reserve static storage). */
size_t td_device_size(void);
/* Initialise in caller-provided storage of td_device_size() bytes (8-byte aligned);
 * returns the device. `info` (and its tensor arrays) must stay valid while the device is
 * used; the tensors' `data` may be bound later (before the first INFER). */
td_device *td_init(void *storage, const td_info *info, td_infer_fn infer, void *infer_ctx,
                   td_write_fn write, void *write_ctx);
/* Feed one received byte; may call infer and write. Never overflows on any input. */
void td_feed(td_device *dev, uint8_t byte);
/* Feed a buffer (td_feed for each byte). */
void td_feed_buf(td_device *dev, const uint8_t *data, size_t len);
/* Send an unsolicited HELLO (INFO with the boot flag, seq 0), e.g. at boot, so the host
 * sees resets. */
void td_announce(td_device *dev);

/* The input (output = 0) or output (output = 1) tensors of `info` and their count (the
 * arrays, or the single `input`/`output` field when the count is 0). */
td_tensor_info *td_tensors(td_info *info, int output, uint32_t *count);
/* Total bytes of the input (output = 0) or output (output = 1) tensors. */
uint32_t td_tensors_bytes(const td_info *info, int output);
/* Bind the input or output tensors' `data` to consecutive parts of `buf` (the
 * concatenated layout, for a runtime that takes one buffer). Returns 0, or -1 when `cap`
 * is smaller than the tensors' total (nothing bound then). */
int td_bind_buffer(td_info *info, int output, uint8_t *buf, uint32_t cap);

/* Bytes of one tensor (product of dims times the dtype size; 0 if invalid). */
uint32_t td_tensor_bytes(const td_tensor_info *t);
/* CRC-32 (IEEE 802.3, as zlib.crc32): pass crc = 0 to start, the result to continue. */
uint32_t td_crc32(uint32_t crc, const uint8_t *data, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* TD_PROTOCOL_H */
