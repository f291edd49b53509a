/* tinydeploy serial protocol, device side: COBS framing, CRC-32, HELLO/INFER/ERROR.
 * Portable C99, no allocation, no OS or Arduino headers. See docs/protocol.md.
 */
#include "td_protocol.h"

#include <string.h>

#define TD_TX_CHUNK 64
#define TD_INFO_MAX 256
#define TD_RESULT_HEADER 8 /* time_us, cycles */
#define TD_STR_FW_MAX 48
#define TD_STR_BOARD_MAX 32
#define TD_STR_RUNTIME_MAX 16

struct td_device {
  const td_info *info;
  td_infer_fn infer;
  void *infer_ctx;
  td_write_fn write;
  void *write_ctx;
  uint32_t rx_len;     /* decoded bytes of the current frame (stored while <= TD_MAX_FRAME) */
  uint32_t cache_crc;  /* frame CRC of the INFER whose RESULT is cached */
  uint32_t cache_len;  /* RESULT payload bytes cached */
  uint16_t cache_seq;
  uint8_t cobs_code;   /* code byte of the current COBS block, 0 before the first */
  uint8_t cobs_left;   /* data bytes still expected in the current block */
  uint8_t overflow;    /* frame longer than TD_MAX_FRAME: wait for the delimiter */
  uint8_t have_cache;
  uint8_t busy;
  uint8_t reentered;
  uint8_t tx_len;
  uint8_t tx[TD_TX_CHUNK];
  /* rx.b + 3 is the frame start, so the payload (frame offset 5) is 8-byte aligned */
  union {
    uint64_t align;
    uint8_t b[3 + TD_MAX_FRAME];
  } rx;
  union {
    uint64_t align;
    uint8_t b[TD_RESULT_HEADER + TD_MAX_PAYLOAD];
  } cache;
};

/* compile-time check: the static storage macro is large enough */
typedef char td_storage_is_large_enough[(sizeof(struct td_device) <= TD_DEVICE_STORAGE_BYTES)
                                            ? 1 : -1];

#define RX(dev) ((dev)->rx.b + 3)

/* ---- CRC-32 (reflected, polynomial 0xEDB88320), nibble table: 64 bytes of flash ---- */
static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
    0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu};

uint32_t td_crc32(uint32_t crc, const uint8_t *data, size_t len) {
  size_t i;
  crc = ~crc;
  for (i = 0; i < len; i++) {
    crc ^= data[i];
    crc = (crc >> 4) ^ crc_nibble[crc & 0x0Fu];
    crc = (crc >> 4) ^ crc_nibble[crc & 0x0Fu];
  }
  return ~crc;
}

static void put_u16(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v & 0xFFu);
  p[1] = (uint8_t)((v >> 8) & 0xFFu);
}

static void put_u32(uint8_t *p, uint32_t v) {
  put_u16(p, v & 0xFFFFu);
  put_u16(p + 2, (v >> 16) & 0xFFFFu);
}

static uint32_t get_u32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
         ((uint32_t)p[3] << 24);
}

uint32_t td_tensor_bytes(const td_tensor_info *t) {
  uint32_t n = 1, size, i;
  switch (t->dtype) {
    case TD_DTYPE_INT8:
    case TD_DTYPE_UINT8: size = 1; break;
    case TD_DTYPE_INT16: size = 2; break;
    case TD_DTYPE_FLOAT32:
    case TD_DTYPE_INT32: size = 4; break;
    default: return 0;
  }
  if (t->ndims > TD_MAX_DIMS) return 0;
  for (i = 0; i < t->ndims; i++) {
    if (t->dims[i] <= 0 || (uint32_t)t->dims[i] > 0xFFFFFFu / n) return 0;
    n *= (uint32_t)t->dims[i];
  }
  if (n > 0xFFFFFFu / size) return 0;
  return n * size;
}

/* ---- output: COBS-encode header | payload | crc in chunks, then the 0x00 delimiter ---- */
typedef struct {
  uint8_t hdr[TD_HEADER_BYTES];
  const uint8_t *payload;
  size_t len;
  uint8_t crc[TD_CRC_BYTES];
} td_seg;

static uint8_t seg_at(const td_seg *s, size_t i) {
  if (i < TD_HEADER_BYTES) return s->hdr[i];
  i -= TD_HEADER_BYTES;
  if (i < s->len) return s->payload[i];
  return s->crc[i - s->len];
}

static void tx_flush(td_device *dev) {
  if (dev->tx_len) dev->write(dev->write_ctx, dev->tx, dev->tx_len);
  dev->tx_len = 0;
}

static void tx_put(td_device *dev, uint8_t b) {
  dev->tx[dev->tx_len++] = b;
  if (dev->tx_len == TD_TX_CHUNK) tx_flush(dev);
}

static void send_frame(td_device *dev, uint8_t op, uint16_t seq, const uint8_t *payload,
                       size_t len) {
  td_seg s;
  size_t total, i = 0, n, k;
  uint32_t crc;
  s.hdr[0] = op;
  put_u16(s.hdr + 1, seq);
  put_u16(s.hdr + 3, (uint32_t)len);
  s.payload = payload;
  s.len = len;
  crc = td_crc32(0, s.hdr, TD_HEADER_BYTES);
  crc = td_crc32(crc, payload, len);
  put_u32(s.crc, crc);
  total = TD_HEADER_BYTES + len + TD_CRC_BYTES;
  for (;;) {
    n = 0;
    while (i + n < total && n < 254 && seg_at(&s, i + n) != 0) n++;
    tx_put(dev, (uint8_t)(n + 1));
    for (k = 0; k < n; k++) tx_put(dev, seg_at(&s, i + k));
    i += n;
    if (i == total) break;
    if (n < 254) { /* stopped at a zero byte: it is implied by the block */
      i++;
      if (i == total) {
        tx_put(dev, 1);
        break;
      }
    }
  }
  tx_put(dev, 0);
  tx_flush(dev);
}

static void send_error(td_device *dev, uint16_t seq, uint8_t code, uint8_t op, uint32_t detail) {
  uint8_t p[8];
  p[0] = code;
  p[1] = op;
  p[2] = 0;
  p[3] = 0;
  put_u32(p + 4, detail);
  send_frame(dev, TD_OP_ERROR, seq, p, sizeof p);
}

static size_t put_tensor(uint8_t *p, const td_tensor_info *t) {
  uint32_t bits;
  int i;
  p[0] = t->dtype;
  p[1] = t->ndims > TD_MAX_DIMS ? TD_MAX_DIMS : t->ndims;
  for (i = 0; i < TD_MAX_DIMS; i++) put_u32(p + 2 + 4 * i, i < p[1] ? (uint32_t)t->dims[i] : 0u);
  memcpy(&bits, &t->scale, sizeof bits);
  put_u32(p + 2 + 4 * TD_MAX_DIMS, bits);
  put_u32(p + 6 + 4 * TD_MAX_DIMS, (uint32_t)t->zero_point);
  return 10 + 4 * TD_MAX_DIMS;
}

static size_t put_str(uint8_t *p, const char *s, size_t max) {
  size_t n = 0;
  if (s) {
    while (n < max && s[n]) n++;
    memcpy(p + 1, s, n);
  }
  p[0] = (uint8_t)n;
  return n + 1;
}

static void send_info(td_device *dev, uint16_t seq, uint8_t flags) {
  uint8_t p[TD_INFO_MAX];
  const td_info *info = dev->info;
  size_t n = 20;
  p[0] = TD_PROTOCOL_VERSION;
  p[1] = flags;
  p[2] = 0;
  p[3] = 0;
  put_u32(p + 4, TD_MAX_PAYLOAD);
  put_u32(p + 8, info->cpu_hz);
  put_u32(p + 12, info->arena_size);
  put_u32(p + 16, info->arena_used);
  memcpy(p + n, info->model_sha256, 32);
  n += 32;
  n += put_tensor(p + n, &info->input);
  n += put_tensor(p + n, &info->output);
  n += put_str(p + n, info->firmware_version, TD_STR_FW_MAX);
  n += put_str(p + n, info->board_id, TD_STR_BOARD_MAX);
  n += put_str(p + n, info->runtime, TD_STR_RUNTIME_MAX);
  send_frame(dev, TD_OP_INFO, seq, p, n);
}

/* ---- input: one complete, COBS-decoded frame ---- */
static void handle_infer(td_device *dev, uint16_t seq, const uint8_t *payload, uint32_t len,
                         uint32_t frame_crc) {
  uint32_t in_len = td_tensor_bytes(&dev->info->input);
  uint32_t out_len = td_tensor_bytes(&dev->info->output);
  td_timing timing;
  int rc;
  if (len != in_len) {
    send_error(dev, seq, TD_ERR_BAD_LENGTH, TD_OP_INFER, in_len);
    return;
  }
  if (dev->have_cache && dev->cache_seq == seq && dev->cache_crc == frame_crc) {
    /* a retry of the last request: answer again without running the model twice */
    send_frame(dev, TD_OP_RESULT, seq, dev->cache.b, dev->cache_len);
    return;
  }
  dev->have_cache = 0;
  if (out_len == 0 || out_len > TD_MAX_PAYLOAD - TD_RESULT_HEADER || dev->infer == 0) {
    send_error(dev, seq, TD_ERR_MODEL, TD_OP_INFER, out_len);
    return;
  }
  timing.time_us = 0;
  timing.cycles = 0;
  rc = dev->infer(dev->infer_ctx, payload, len, dev->cache.b + TD_RESULT_HEADER, out_len,
                  &timing);
  if (rc != 0) {
    send_error(dev, seq, TD_ERR_MODEL, TD_OP_INFER, (uint32_t)rc);
    return;
  }
  put_u32(dev->cache.b, timing.time_us);
  put_u32(dev->cache.b + 4, timing.cycles);
  dev->cache_len = TD_RESULT_HEADER + out_len;
  dev->cache_seq = seq;
  dev->cache_crc = frame_crc;
  dev->have_cache = 1;
  send_frame(dev, TD_OP_RESULT, seq, dev->cache.b, dev->cache_len);
}

static void handle_frame(td_device *dev) {
  const uint8_t *f = RX(dev);
  uint32_t n = dev->rx_len, len, crc;
  uint16_t seq = n >= 3 ? (uint16_t)(f[1] | (f[2] << 8)) : 0;
  uint8_t op = n >= 1 ? f[0] : 0;
  if (dev->overflow) {
    send_error(dev, seq, TD_ERR_TOO_LARGE, op, TD_MAX_PAYLOAD);
    return;
  }
  if (dev->cobs_left != 0 || n < TD_HEADER_BYTES + TD_CRC_BYTES) {
    send_error(dev, seq, TD_ERR_BAD_FRAME, op, n);
    return;
  }
  crc = td_crc32(0, f, n - TD_CRC_BYTES);
  if (crc != get_u32(f + n - TD_CRC_BYTES)) {
    send_error(dev, seq, TD_ERR_BAD_CRC, op, 0);
    return;
  }
  len = (uint32_t)f[3] | ((uint32_t)f[4] << 8);
  if (len != n - TD_HEADER_BYTES - TD_CRC_BYTES) {
    send_error(dev, seq, TD_ERR_BAD_LENGTH, op, n - TD_HEADER_BYTES - TD_CRC_BYTES);
    return;
  }
  switch (op) {
    case TD_OP_HELLO: send_info(dev, seq, 0); break;
    case TD_OP_INFER: handle_infer(dev, seq, f + TD_HEADER_BYTES, len, crc); break;
    default: send_error(dev, seq, TD_ERR_BAD_COMMAND, op, 0); break;
  }
}

static void rx_reset(td_device *dev) {
  dev->rx_len = 0;
  dev->cobs_code = 0;
  dev->cobs_left = 0;
  dev->overflow = 0;
}

static void rx_push(td_device *dev, uint8_t b) {
  if (dev->overflow) return;
  if (dev->rx_len >= TD_MAX_FRAME) {
    dev->overflow = 1;
    return;
  }
  RX(dev)[dev->rx_len++] = b;
}

void td_feed(td_device *dev, uint8_t byte) {
  if (dev->busy) { /* called from inside a callback: cannot take the byte */
    dev->reentered = 1;
    return;
  }
  dev->busy = 1;
  if (byte == 0) {
    if (dev->rx_len != 0 || dev->cobs_code != 0 || dev->overflow) handle_frame(dev);
    rx_reset(dev); /* an empty frame (0x00 0x00) is only a resync point */
  } else if (dev->cobs_left == 0) { /* a code byte starts a block */
    if (dev->cobs_code != 0 && dev->cobs_code != 0xFF) rx_push(dev, 0);
    dev->cobs_code = byte;
    dev->cobs_left = (uint8_t)(byte - 1);
  } else {
    rx_push(dev, byte);
    dev->cobs_left--;
  }
  if (dev->reentered) {
    dev->reentered = 0;
    send_error(dev, 0, TD_ERR_BUSY, 0, 0);
  }
  dev->busy = 0;
}

void td_feed_buf(td_device *dev, const uint8_t *data, size_t len) {
  size_t i;
  for (i = 0; i < len; i++) td_feed(dev, data[i]);
}

void td_announce(td_device *dev) {
  if (dev->busy) return;
  dev->busy = 1;
  tx_put(dev, 0x00); /* a lead delimiter ends any boot banner bytes before the frame */
  send_info(dev, 0, TD_INFO_FLAG_BOOT);
  dev->busy = 0;
}

size_t td_device_size(void) { return sizeof(struct td_device); }

td_device *td_init(void *storage, const td_info *info, td_infer_fn infer, void *infer_ctx,
                   td_write_fn write, void *write_ctx) {
  td_device *dev = (td_device *)storage;
  memset(dev, 0, sizeof *dev);
  dev->info = info;
  dev->infer = infer;
  dev->infer_ctx = infer_ctx;
  dev->write = write;
  dev->write_ctx = write_ctx;
  rx_reset(dev);
  return dev;
}
