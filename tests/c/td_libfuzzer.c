/* libFuzzer target for the protocol core:  clang -fsanitize=fuzzer,address,undefined
 * Feeds arbitrary bytes, then a delimiter and a valid HELLO; every output must be a
 * well-formed frame and the HELLO must be answered (resynchronisation). */
#include "td_test_util.h"

static uint8_t out_buf[1 << 20];
static size_t out_len;

static void capture(void *ctx, const uint8_t *data, size_t len) {
  (void)ctx;
  if (out_len + len > sizeof out_buf) abort();
  memcpy(out_buf + out_len, data, len);
  out_len += len;
}

static uint8_t in_buf[300], out_buf2[300];

static int fake_infer(void *ctx, uint32_t flags, td_timing *t) {
  uint32_t i;
  (void)ctx;
  for (i = 0; i < sizeof out_buf2; i++) out_buf2[i] = (uint8_t)(in_buf[i] + flags);
  t->time_us = 1;
  t->cycles = 2;
  return in_buf[0] == 0x42 ? 7 : 0; /* sometimes a model error */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static TD_DEVICE_STORAGE(storage);
  static td_info info;
  static tu_reply replies[TU_MAX_REPLIES];
  static uint8_t hello[64];
  td_device *dev;
  size_t n;
  int r;
  info.input.dtype = TD_DTYPE_INT8; /* 300 bytes: chunked at TD_MAX_PAYLOAD 256 */
  info.input.ndims = 1;
  info.input.dims[0] = 300;
  info.input.data = in_buf;
  info.output = info.input;
  info.output.data = out_buf2;
  info.firmware_version = "fuzz";
  dev = td_init(storage, &info, fake_infer, NULL, capture, NULL);
  out_len = 0;
  td_feed_buf(dev, data, size);
  td_feed(dev, 0);
  n = tu_frame(TD_OP_HELLO, 0xBEEF, NULL, 0, hello);
  td_feed_buf(dev, hello, n);
  r = tu_parse_output(out_buf, out_len, replies, TU_MAX_REPLIES);
  if (r < 1) abort();
  if (r <= TU_MAX_REPLIES &&
      (replies[r - 1].op != TD_OP_INFO || replies[r - 1].seq != 0xBEEF)) abort();
  return 0;
}
