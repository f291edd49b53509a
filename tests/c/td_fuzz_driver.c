/* Deterministic random-frame test of the protocol core (built with ASan/UBSan in
 * tests/test_firmware_fuzz.py):  td_fuzz_driver FRAMES SEED
 * Valid frames must get their exact reply, bad ones an ERROR (or nothing), and after any
 * garbage a delimiter plus a valid frame must resynchronise. Exit 0 on success. */
#include "td_test_util.h"

#define IN_BYTES 32
#define OUT_BYTES 8

static uint8_t out_buf[1 << 16];
static size_t out_len;
static unsigned long infer_calls;
static uint64_t rng_state;

static uint32_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 16);
}

static void capture(void *ctx, const uint8_t *data, size_t len) {
  (void)ctx;
  if (out_len + len > sizeof out_buf) {
    fprintf(stderr, "device wrote too much\n");
    exit(1);
  }
  memcpy(out_buf + out_len, data, len);
  out_len += len;
}

static void model(const uint8_t *in, uint8_t *out) {
  int i;
  for (i = 0; i < OUT_BYTES; i++) out[i] = 0;
  for (i = 0; i < IN_BYTES; i++) out[i % OUT_BYTES] = (uint8_t)(out[i % OUT_BYTES] + in[i] * (i + 1));
}

static int fake_infer(void *ctx, const uint8_t *in, uint32_t in_len, uint8_t *out,
                      uint32_t out_len_, td_timing *t) {
  (void)ctx;
  if (in_len != IN_BYTES || out_len_ != OUT_BYTES) return 99;
  infer_calls++;
  model(in, out);
  t->time_us = 1234;
  t->cycles = 5678;
  return 0;
}

static td_device *dev;
static tu_reply replies[TU_MAX_REPLIES];

static int feed_and_parse(const uint8_t *wire, size_t n) {
  int r;
  out_len = 0;
  td_feed_buf(dev, wire, n);
  r = tu_parse_output(out_buf, out_len, replies, TU_MAX_REPLIES);
  if (r < 0) exit(1);
  return r;
}

#define FAIL(...) do { fprintf(stderr, "frame %lu: ", frame_no); fprintf(stderr, __VA_ARGS__); \
                       fprintf(stderr, "\n"); return 1; } while (0)

int main(int argc, char **argv) {
  static TD_DEVICE_STORAGE(storage);
  static uint8_t wire[3 * TD_MAX_PAYLOAD + 64], payload[2 * TD_MAX_PAYLOAD];
  static td_info info;
  unsigned long frames = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000ul;
  unsigned long frame_no, counts[10] = {0}, errors = 0, ignored = 0;
  uint16_t seq = 1;
  rng_state = 0x9E3779B97F4A7C15ull ^ (argc > 2 ? strtoull(argv[2], NULL, 10) : 1ull);

  info.firmware_version = "fuzz 1";
  info.board_id = "fuzz";
  info.runtime = "c";
  info.input.dtype = TD_DTYPE_INT8;
  info.input.ndims = 2;
  info.input.dims[0] = 1;
  info.input.dims[1] = IN_BYTES;
  info.output.dtype = TD_DTYPE_INT8;
  info.output.ndims = 2;
  info.output.dims[0] = 1;
  info.output.dims[1] = OUT_BYTES;
  if (td_device_size() > sizeof storage) {
    fprintf(stderr, "storage too small\n");
    return 1;
  }
  dev = td_init(storage, &info, fake_infer, NULL, capture, NULL);
  out_len = 0;
  td_announce(dev);
  if (tu_parse_output(out_buf, out_len, replies, 1) != 1 || replies[0].op != TD_OP_INFO ||
      replies[0].seq != 0 || !(replies[0].payload[1] & TD_INFO_FLAG_BOOT)) {
    fprintf(stderr, "bad announce\n");
    return 1;
  }

  for (frame_no = 0; frame_no < frames; frame_no++) {
    unsigned kind = rnd() % 10;
    size_t n, len, i;
    int r;
    seq = (uint16_t)(seq + 1 + rnd() % 3);
    counts[kind]++;
    if (kind <= 3) { /* valid HELLO or INFER, sometimes repeated (a retry) */
      int is_infer = kind != 0;
      unsigned long before = infer_calls;
      uint8_t expect[OUT_BYTES];
      size_t off = 0;
      if (rnd() % 2) wire[off++] = 0; /* host-style leading delimiter */
      for (i = 0; i < IN_BYTES; i++) payload[i] = (uint8_t)(rnd() % 4 == 0 ? 0 : rnd());
      n = off + tu_frame(is_infer ? TD_OP_INFER : TD_OP_HELLO, seq, payload,
                         is_infer ? IN_BYTES : (size_t)(rnd() % 2), wire + off);
      model(payload, expect);
      for (int rep = 0; rep < (kind == 3 ? 2 : 1); rep++) {
        r = feed_and_parse(wire, n);
        if (r != 1) FAIL("valid frame got %d replies", r);
        if (replies[0].seq != seq) FAIL("reply seq %u != %u", replies[0].seq, seq);
        if (!is_infer) {
          if (replies[0].op != TD_OP_INFO || replies[0].payload[0] != TD_PROTOCOL_VERSION ||
              replies[0].payload[1] != 0)
            FAIL("HELLO not answered by INFO");
        } else {
          if (replies[0].op != TD_OP_RESULT || replies[0].len != 8 + OUT_BYTES)
            FAIL("INFER not answered by RESULT (op 0x%02X code %u)", replies[0].op,
                 replies[0].payload[0]);
          if (memcmp(replies[0].payload + 8, expect, OUT_BYTES) != 0) FAIL("wrong output");
          if (replies[0].payload[0] != (1234 & 0xFF) || replies[0].payload[4] != (5678 & 0xFF))
            FAIL("wrong timing");
        }
      }
      if (infer_calls - before != (unsigned long)is_infer) FAIL("model ran %lu times",
                                                                infer_calls - before);
      continue;
    }
    if (kind == 4 || kind == 5 || kind == 6) { /* well-formed frames the device must refuse */
      uint8_t op = TD_OP_INFER, want = TD_ERR_BAD_LENGTH;
      len = rnd() % (IN_BYTES * 2);
      if (len == IN_BYTES) len++;
      if (kind == 5) {
        do op = (uint8_t)rnd(); while (op == TD_OP_HELLO || op == TD_OP_INFER);
        want = TD_ERR_BAD_COMMAND;
      } else if (kind == 6) {
        len = TD_MAX_PAYLOAD + 1 + rnd() % TD_MAX_PAYLOAD;
        want = TD_ERR_TOO_LARGE;
      }
      for (i = 0; i < len; i++) payload[i] = (uint8_t)rnd();
      n = tu_frame(op, seq, payload, len, wire);
      r = feed_and_parse(wire, n);
      if (r != 1 || replies[0].op != TD_OP_ERROR || replies[0].payload[0] != want ||
          replies[0].seq != seq)
        FAIL("kind %u: expected one ERROR %u, got %d replies (op 0x%02X code %u)", kind, want,
             r, r ? replies[0].op : 0, r ? replies[0].payload[0] : 0);
      errors++;
      continue;
    }
    /* damaged input: mutated, truncated or random bytes, then a delimiter */
    if (kind == 9) {
      n = rnd() % 200;
      for (i = 0; i < n; i++) wire[i] = (uint8_t)(rnd() % 8 == 0 ? 0 : rnd());
    } else {
      len = kind == 8 ? IN_BYTES : rnd() % 8;
      for (i = 0; i < len; i++) payload[i] = (uint8_t)rnd();
      n = tu_frame(kind == 8 ? TD_OP_INFER : TD_OP_HELLO, seq, payload, len, wire) - 1;
      if (kind == 7 || n < 3) { /* flip 1..4 bytes */
        unsigned flips = 1 + rnd() % 4;
        while (flips--) wire[rnd() % n] ^= (uint8_t)(1 + rnd() % 255);
      } else {
        n = 1 + rnd() % (n - 1); /* truncated */
      }
    }
    wire[n++] = 0;
    {
      size_t zeros = 0;
      unsigned long before = infer_calls;
      for (i = 0; i < n; i++) zeros += wire[i] == 0;
      r = feed_and_parse(wire, n);
      if ((size_t)r > zeros) FAIL("%d replies to %zu delimited pieces", r, zeros);
      for (i = 0; i < (size_t)r; i++) {
        if (replies[i].op == TD_OP_ERROR) errors++;
        else if (replies[i].op == TD_OP_RESULT && infer_calls == before)
          FAIL("RESULT without running the model");
      }
      if (r == 0) ignored++;
    }
    /* resynchronisation: the next valid frame is answered */
    seq++;
    for (i = 0; i < IN_BYTES; i++) payload[i] = (uint8_t)rnd();
    n = tu_frame(TD_OP_INFER, seq, payload, IN_BYTES, wire);
    r = feed_and_parse(wire, n);
    if (r != 1 || replies[0].op != TD_OP_RESULT || replies[0].seq != seq)
      FAIL("no resync after damaged input (%d replies)", r);
  }
  printf("frames=%lu infer_calls=%lu errors=%lu ignored=%lu kinds=", frames, infer_calls,
         errors, ignored);
  for (int k = 0; k < 10; k++) printf("%lu%s", counts[k], k < 9 ? "," : "\n");
  return 0;
}
