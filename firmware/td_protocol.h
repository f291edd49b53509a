/* tinydeploy serial protocol, device side (see docs/protocol.md).
 *
 * Portable C99: no Arduino or OS headers. Bytes come in through td_feed(), frames go out
 * through the write callback given to td_init(). The model runs in the infer callback, so
 * the same core serves TFLM firmware, the interpreter-free C runtime and the host build.
 */
#ifndef TD_PROTOCOL_H
#define TD_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef TD_MAX_PAYLOAD
#define TD_MAX_PAYLOAD 4096 /* largest INFER payload / reply payload, bytes */
#endif

#define TD_MAX_DIMS 6

/* dtype codes (same numbering as the TFLite schema's TensorType) */
#define TD_DTYPE_FLOAT32 0
#define TD_DTYPE_INT32 2
#define TD_DTYPE_UINT8 3
#define TD_DTYPE_INT8 9

typedef struct {
  uint8_t dtype;
  uint8_t ndims;
  int32_t dims[TD_MAX_DIMS];
  float scale;
  int32_t zero_point;
} td_tensor_info;

typedef struct {
  const char *firmware_version; /* e.g. "tinydeploy 0.1.0" */
  const char *board_id;         /* board table id, e.g. "nano33ble" */
  const char *runtime;          /* "tflm" or "c" */
  uint8_t model_sha256[32];
  td_tensor_info input;
  td_tensor_info output;
  uint32_t arena_size;       /* bytes reserved for the tensor arena */
  uint32_t arena_used;       /* bytes actually used (TFLM arena_used_bytes()) */
  uint32_t cpu_hz;           /* 0 if unknown */
} td_info;

typedef struct {
  uint32_t time_us; /* inference wall time, microseconds */
  uint32_t cycles;  /* CPU cycles, 0 where the MCU has no counter */
} td_timing;

/* Run the model: in_len bytes in, out_len bytes out. Return 0 on success. */
typedef int (*td_infer_fn)(void *ctx, const uint8_t *in, uint32_t in_len, uint8_t *out,
                           uint32_t out_len, td_timing *timing);
/* Send bytes to the host. */
typedef void (*td_write_fn)(void *ctx, const uint8_t *data, size_t len);

/* Protocol state; treat as opaque. Sized for TD_MAX_PAYLOAD. */
typedef struct td_device td_device;

/* Number of bytes a td_device needs (so callers can reserve static storage). */
size_t td_device_size(void);
/* Initialise in caller-provided storage of td_device_size() bytes; returns the device. */
td_device *td_init(void *storage, const td_info *info, td_infer_fn infer, void *infer_ctx,
                   td_write_fn write, void *write_ctx);
/* Feed one received byte; may call infer and write. Never overflows on any input. */
void td_feed(td_device *dev, uint8_t byte);
/* Send an unsolicited HELLO (e.g. at boot, so the host sees resets). */
void td_announce(td_device *dev);

#ifdef __cplusplus
}
#endif

#endif /* TD_PROTOCOL_H */
