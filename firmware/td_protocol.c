/* tinydeploy serial protocol, device side: COBS framing, CRC-32, HELLO/DATA/INFER/READ/ERROR.
 * Portable C99, no allocation, no OS or Arduino headers. See docs/protocol.md.
 *
 * Inputs and outputs larger than one frame travel in chunks: DATA frames write parts of the
 * concatenated input straight into the model's input tensors (no second copy), INFER
 * writes the last part, checks the CRC of the whole input and runs the model; RESULT
 * carries the first output bytes and READ fetches the rest from the output tensors.
 */
#include "td_protocol.h"

#include <string.h>

#define TD_TX_BUF 256 /* COBS output staging: one whole block (code + 254) always fits */
#define TD_STR_FW_MAX 48
#define TD_STR_BOARD_MAX 32
#define TD_STR_RUNTIME_MAX 16
#define TD_TENSOR_WIRE 34
#define TD_INFO_HEAD 54 /* fixed INFO fields up to and including the tensor counts */

struct td_device {
  const td_info *info;
  td_infer_fn infer;
  void *infer_ctx;
  td_write_fn write;
  void *write_ctx;
  uint32_t rx_len;     /* decoded bytes of the current frame (stored while <= TD_MAX_FRAME) */
  uint32_t cache_crc;  /* frame CRC of the INFER whose result the output tensors hold */
  uint32_t out_crc;    /* CRC-32 of that output */
  td_timing timing;    /* and its timing */
  uint32_t tx_crc;     /* CRC of the frame being sent */
  uint16_t cache_seq;
  uint16_t tx_len;     /* bytes staged in tx */
  uint16_t tx_code_at; /* index of the current block's code byte in tx */
  uint8_t tx_code;     /* 1 + data bytes in the current block */
  uint8_t tx_full;     /* the current block has 254 bytes: the next byte opens a new one */
  uint8_t cobs_code;   /* code byte of the current COBS block, 0 before the first */
  uint8_t cobs_left;   /* data bytes still expected in the current block */
  uint8_t overflow;    /* frame longer than TD_MAX_FRAME: wait for the delimiter */
  uint8_t have_result; /* the output tensors hold the result of INFER cache_seq/cache_crc */
  uint8_t busy;
  uint8_t reentered;
  uint8_t tx[TD_TX_BUF];
  /* rx.b + 3 is the frame start, so the payload (frame offset 5) is 8-byte aligned */
  union {
    uint64_t align;
    uint8_t b[3 + TD_MAX_FRAME];
  } rx;
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

td_tensor_info *td_tensors(td_info *info, int output, uint32_t *count) {
  if (output) {
    *count = info->num_outputs ? info->num_outputs : 1u;
    return info->num_outputs ? info->outputs : &info->output;
  }
  *count = info->num_inputs ? info->num_inputs : 1u;
  return info->num_inputs ? info->inputs : &info->input;
}

/* const view of td_tensors (the core never changes the tensors it is given) */
static const td_tensor_info *tensors(const td_info *info, int output, uint32_t *count) {
  return td_tensors((td_info *)(uintptr_t)info, output, count);
}

uint32_t td_tensors_bytes(const td_info *info, int output) {
  uint32_t n, i, total = 0, b;
  const td_tensor_info *t = tensors(info, output, &n);
  if (t == 0) return 0;
  for (i = 0; i < n; i++) {
    b = td_tensor_bytes(&t[i]);
    if (b == 0 || b > 0xFFFFFFu - total) return 0;
    total += b;
  }
  return total;
}

int td_bind_buffer(td_info *info, int output, uint8_t *buf, uint32_t cap) {
  uint32_t n, i, off = 0;
  td_tensor_info *t = td_tensors(info, output, &n);
  uint32_t total = td_tensors_bytes(info, output);
  if (t == 0 || total == 0 || total > cap || buf == 0) return -1;
  for (i = 0; i < n; i++) {
    t[i].data = buf + off;
    off += td_tensor_bytes(&t[i]);
  }
  return 0;
}

/* Are all tensors of one side bound (non-NULL data, valid sizes)? */
static int tensors_ready(const td_info *info, int output) {
  uint32_t n, i;
  const td_tensor_info *t = tensors(info, output, &n);
  if (t == 0 || td_tensors_bytes(info, output) == 0) return 0;
  for (i = 0; i < n; i++)
    if (t[i].data == 0) return 0;
  return 1;
}

/* Copy `len` bytes at offset `off` of the concatenated tensors to (to_tensors) or from
 * `buf`. The caller has checked off + len <= total and that the tensors are bound. */
static void scatter(const td_info *info, int output, uint32_t off, uint8_t *buf, uint32_t len,
                    int to_tensors) {
  uint32_t n, i, b, k;
  const td_tensor_info *t = tensors(info, output, &n);
  for (i = 0; i < n && len > 0; i++) {
    b = td_tensor_bytes(&t[i]);
    if (off >= b) {
      off -= b;
      continue;
    }
    k = b - off < len ? b - off : len;
    if (to_tensors) memcpy(t[i].data + off, buf, k);
    else memcpy(buf, t[i].data + off, k);
    buf += k;
    len -= k;
    off = 0;
  }
}

static uint32_t tensors_crc(const td_info *info, int output) {
  uint32_t n, i, crc = 0;
  const td_tensor_info *t = tensors(info, output, &n);
  for (i = 0; i < n; i++) crc = td_crc32(crc, t[i].data, td_tensor_bytes(&t[i]));
  return crc;
}

/* ---- output: frames are COBS-encoded on the fly into a small staging buffer ---- */
static void tx_flush(td_device *dev, uint16_t upto) {
  if (upto == 0) return;
  dev->write(dev->write_ctx, dev->tx, upto);
  memmove(dev->tx, dev->tx + upto, (size_t)(dev->tx_len - upto));
  dev->tx_len = (uint16_t)(dev->tx_len - upto);
  dev->tx_code_at = (uint16_t)(dev->tx_code_at - upto);
}

/* Room for one more byte: send the finished blocks ahead of the current one. */
static void tx_room(td_device *dev) {
  if (dev->tx_len == TD_TX_BUF) tx_flush(dev, dev->tx_code_at);
}

static void tx_open_block(td_device *dev) {
  tx_room(dev);
  dev->tx_code_at = dev->tx_len++;
  dev->tx_code = 1;
  dev->tx_full = 0;
}

static void cobs_put(td_device *dev, uint8_t b) {
  if (dev->tx_full) { /* a full block ends without an implied zero */
    dev->tx[dev->tx_code_at] = 0xFF;
    tx_open_block(dev);
  }
  if (b == 0) {
    dev->tx[dev->tx_code_at] = dev->tx_code;
    tx_open_block(dev);
    return;
  }
  tx_room(dev);
  dev->tx[dev->tx_len++] = b;
  if (++dev->tx_code == 0xFF) dev->tx_full = 1;
}

static void frame_put(td_device *dev, const uint8_t *p, size_t n) {
  size_t i;
  dev->tx_crc = td_crc32(dev->tx_crc, p, n);
  for (i = 0; i < n; i++) cobs_put(dev, p[i]);
}

static void frame_begin(td_device *dev, uint8_t op, uint16_t seq, uint32_t len) {
  uint8_t h[TD_HEADER_BYTES];
  h[0] = op;
  put_u16(h + 1, seq);
  put_u16(h + 3, len);
  dev->tx_crc = 0;
  tx_open_block(dev);
  frame_put(dev, h, sizeof h);
}

static void frame_end(td_device *dev) {
  uint8_t c[TD_CRC_BYTES];
  size_t i;
  put_u32(c, dev->tx_crc);
  for (i = 0; i < sizeof c; i++) cobs_put(dev, c[i]);
  dev->tx[dev->tx_code_at] = dev->tx_full ? 0xFF : dev->tx_code;
  tx_room(dev);
  dev->tx[dev->tx_len++] = 0; /* delimiter */
  dev->tx_code_at = dev->tx_len;
  tx_flush(dev, dev->tx_len);
}

static void send_frame(td_device *dev, uint8_t op, uint16_t seq, const uint8_t *payload,
                       size_t len) {
  frame_begin(dev, op, seq, (uint32_t)len);
  frame_put(dev, payload, len);
  frame_end(dev);
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

static void put_tensor(uint8_t *p, const td_tensor_info *t) {
  uint32_t bits;
  int i;
  p[0] = t->dtype;
  p[1] = t->ndims > TD_MAX_DIMS ? TD_MAX_DIMS : t->ndims;
  for (i = 0; i < TD_MAX_DIMS; i++) put_u32(p + 2 + 4 * i, i < p[1] ? (uint32_t)t->dims[i] : 0u);
  memcpy(&bits, &t->scale, sizeof bits);
  put_u32(p + 2 + 4 * TD_MAX_DIMS, bits);
  put_u32(p + 6 + 4 * TD_MAX_DIMS, (uint32_t)t->zero_point);
}

static size_t str_len(const char *s, size_t max) {
  size_t n = 0;
  if (s)
    while (n < max && s[n]) n++;
  return n;
}

static void put_str(td_device *dev, const char *s, size_t max) {
  uint8_t n = (uint8_t)str_len(s, max);
  frame_put(dev, &n, 1);
  frame_put(dev, (const uint8_t *)s, n);
}

static void send_info(td_device *dev, uint16_t seq, uint8_t flags) {
  uint8_t p[TD_INFO_HEAD];
  uint8_t t[TD_TENSOR_WIRE];
  const td_info *info = dev->info;
  const td_tensor_info *ins, *outs;
  uint32_t n_in, n_out, i, len;
  ins = tensors(info, 0, &n_in);
  outs = tensors(info, 1, &n_out);
  if (n_in > 255) n_in = 255;
  if (n_out > 255) n_out = 255;
  p[0] = TD_PROTOCOL_VERSION;
  p[1] = flags;
  put_u16(p + 2, (uint32_t)info->model_status); /* 0 = ready; e.g. AllocateTensors failed */
  put_u32(p + 4, TD_MAX_PAYLOAD);
  put_u32(p + 8, info->cpu_hz);
  put_u32(p + 12, info->arena_size);
  put_u32(p + 16, info->arena_used);
  memcpy(p + 20, info->model_sha256, 32);
  p[52] = (uint8_t)n_in;
  p[53] = (uint8_t)n_out;
  len = TD_INFO_HEAD + TD_TENSOR_WIRE * (n_in + n_out) + 3 +
        (uint32_t)str_len(info->firmware_version, TD_STR_FW_MAX) +
        (uint32_t)str_len(info->board_id, TD_STR_BOARD_MAX) +
        (uint32_t)str_len(info->runtime, TD_STR_RUNTIME_MAX);
  frame_begin(dev, TD_OP_INFO, seq, len);
  frame_put(dev, p, sizeof p);
  for (i = 0; i < n_in + n_out; i++) {
    put_tensor(t, i < n_in ? &ins[i] : &outs[i - n_in]);
    frame_put(dev, t, sizeof t);
  }
  put_str(dev, info->firmware_version, TD_STR_FW_MAX);
  put_str(dev, info->board_id, TD_STR_BOARD_MAX);
  put_str(dev, info->runtime, TD_STR_RUNTIME_MAX);
  frame_end(dev);
}

/* RESULT from the output tensors: timing, output size and CRC, then the first bytes. */
static void send_result(td_device *dev, uint16_t seq) {
  uint8_t h[TD_RESULT_HEADER];
  uint8_t buf[32];
  uint32_t total = td_tensors_bytes(dev->info, 1), first, off, k;
  first = total < TD_MAX_PAYLOAD - TD_RESULT_HEADER ? total : TD_MAX_PAYLOAD - TD_RESULT_HEADER;
  put_u32(h, dev->timing.time_us);
  put_u32(h + 4, dev->timing.cycles);
  put_u32(h + 8, total);
  put_u32(h + 12, dev->out_crc);
  frame_begin(dev, TD_OP_RESULT, seq, TD_RESULT_HEADER + first);
  frame_put(dev, h, sizeof h);
  for (off = 0; off < first; off += k) {
    k = first - off < sizeof buf ? first - off : (uint32_t)sizeof buf;
    scatter(dev->info, 1, off, buf, k, 0);
    frame_put(dev, buf, k);
  }
  frame_end(dev);
}

/* ---- requests: one complete, CRC-checked frame ---- */

/* The model cannot take data: ERROR MODEL with the app's status (or 0xFFFFFFFF for
 * unbound tensors). Returns 1 if an error was sent. */
static int refuse_model(td_device *dev, uint16_t seq, uint8_t op, int output) {
  if (dev->info->model_status != 0) {
    send_error(dev, seq, TD_ERR_MODEL, op, (uint32_t)dev->info->model_status);
    return 1;
  }
  if (!tensors_ready(dev->info, 0) || (output && !tensors_ready(dev->info, 1))) {
    send_error(dev, seq, TD_ERR_MODEL, op, 0xFFFFFFFFu);
    return 1;
  }
  return 0;
}

/* Write `len` input bytes at `off`; returns 0, or 1 after sending an error. */
static int write_input(td_device *dev, uint16_t seq, uint8_t op, uint32_t off,
                       const uint8_t *data, uint32_t len) {
  uint32_t total = td_tensors_bytes(dev->info, 0);
  if (off > total || len > total - off) {
    send_error(dev, seq, TD_ERR_BAD_OFFSET, op, total);
    return 1;
  }
  if (len == 0) return 0;
  dev->have_result = 0; /* the input may share memory with the output (TFLM arena) */
  scatter(dev->info, 0, off, (uint8_t *)(uintptr_t)data, len, 1);
  return 0;
}

static void handle_data(td_device *dev, uint16_t seq, const uint8_t *p, uint32_t len) {
  uint8_t ack[8];
  uint32_t off;
  if (len < TD_DATA_HEADER) {
    send_error(dev, seq, TD_ERR_BAD_LENGTH, TD_OP_DATA, TD_DATA_HEADER);
    return;
  }
  if (refuse_model(dev, seq, TD_OP_DATA, 0)) return;
  off = get_u32(p);
  if (write_input(dev, seq, TD_OP_DATA, off, p + TD_DATA_HEADER, len - TD_DATA_HEADER)) return;
  put_u32(ack, off);
  put_u32(ack + 4, len - TD_DATA_HEADER);
  send_frame(dev, TD_OP_ACK, seq, ack, sizeof ack);
}

static void handle_infer(td_device *dev, uint16_t seq, const uint8_t *p, uint32_t len,
                         uint32_t frame_crc) {
  uint32_t crc;
  int rc;
  if (len < TD_INFER_HEADER) {
    send_error(dev, seq, TD_ERR_BAD_LENGTH, TD_OP_INFER, TD_INFER_HEADER);
    return;
  }
  if (dev->have_result && dev->cache_seq == seq && dev->cache_crc == frame_crc) {
    /* a retry of the last request: answer again without running the model twice (and
     * without writing its bytes again: they may overwrite the output) */
    send_result(dev, seq);
    return;
  }
  if (refuse_model(dev, seq, TD_OP_INFER, 1)) return;
  if (write_input(dev, seq, TD_OP_INFER, get_u32(p + 4), p + TD_INFER_HEADER,
                  len - TD_INFER_HEADER))
    return;
  dev->have_result = 0;
  crc = tensors_crc(dev->info, 0);
  if (crc != get_u32(p + 8)) {
    send_error(dev, seq, TD_ERR_INPUT_CRC, TD_OP_INFER, crc);
    return;
  }
  dev->timing.time_us = 0;
  dev->timing.cycles = 0;
  rc = dev->infer == 0 ? -1 : dev->infer(dev->infer_ctx, p[0], &dev->timing);
  if (rc != 0) {
    send_error(dev, seq, TD_ERR_MODEL, TD_OP_INFER, (uint32_t)rc);
    return;
  }
  dev->out_crc = tensors_crc(dev->info, 1);
  dev->cache_seq = seq;
  dev->cache_crc = frame_crc;
  dev->have_result = 1;
  send_result(dev, seq);
}

static void handle_read(td_device *dev, uint16_t seq, const uint8_t *p, uint32_t len) {
  uint8_t h[TD_DATA_HEADER], buf[32];
  uint32_t total, off, want, pos, k;
  if (len < 8) {
    send_error(dev, seq, TD_ERR_BAD_LENGTH, TD_OP_READ, 8);
    return;
  }
  if (!dev->have_result) {
    send_error(dev, seq, TD_ERR_NO_RESULT, TD_OP_READ, 0);
    return;
  }
  total = td_tensors_bytes(dev->info, 1);
  off = get_u32(p);
  want = get_u32(p + 4);
  if (off > total) {
    send_error(dev, seq, TD_ERR_BAD_OFFSET, TD_OP_READ, total);
    return;
  }
  if (want > total - off) want = total - off;
  if (want > TD_MAX_PAYLOAD - TD_DATA_HEADER) want = TD_MAX_PAYLOAD - TD_DATA_HEADER;
  put_u32(h, off);
  frame_begin(dev, TD_OP_OUTPUT, seq, TD_DATA_HEADER + want);
  frame_put(dev, h, sizeof h);
  for (pos = 0; pos < want; pos += k) {
    k = want - pos < sizeof buf ? want - pos : (uint32_t)sizeof buf;
    scatter(dev->info, 1, off + pos, buf, k, 0);
    frame_put(dev, buf, k);
  }
  frame_end(dev);
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
    case TD_OP_DATA: handle_data(dev, seq, f + TD_HEADER_BYTES, len); break;
    case TD_OP_READ: handle_read(dev, seq, f + TD_HEADER_BYTES, len); break;
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
  dev->tx[0] = 0x00; /* a lead delimiter ends any boot banner bytes before the frame */
  dev->tx_len = 1;
  dev->tx_code_at = 1;
  tx_flush(dev, 1);
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
