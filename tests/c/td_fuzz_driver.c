/* Deterministic random-frame test of the protocol core (built with ASan/UBSan in
 * tests/test_firmware_fuzz.py):  td_fuzz_driver FRAMES SEED
 * (FRAMES rounds; a round is one request, a whole chunked transfer, or damaged bytes plus a
 * resynchronising transfer; `sent=` counts the frames fed.)
 * Valid requests (HELLO, single-frame and chunked DATA/INFER/READ transfers, retries) must
 * get their exact replies, bad ones an ERROR (or nothing), and after any garbage a
 * delimiter plus a valid frame must resynchronise. The fake model has two inputs (int8,
 * int16) and two outputs (int8, int16), each tensor in its own buffer, so chunks cross
 * tensor boundaries. Exit 0 on success. */
#include "td_test_util.h"

#define IN0 60 /* int8 elements */
#define IN1 10 /* int16 elements */
#define OUT0 40
#define OUT1 20
#define IN_BYTES (IN0 + 2 * IN1)
#define OUT_BYTES (OUT0 + 2 * OUT1)
#define CHUNK (TD_MAX_PAYLOAD - TD_INFER_HEADER)

static uint8_t out_buf[1 << 17];
static size_t out_len;
static unsigned long infer_calls;
static uint64_t rng_state;
/* the model's tensors, each in its own buffer (as in a TFLM arena) */
static uint8_t in0[IN0], in1[2 * IN1], out0[OUT0], out1[2 * OUT1];
static uint32_t last_flags;

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

/* reference model on the concatenated input -> concatenated output */
static void model(const uint8_t *in, uint8_t *out) {
  int i;
  for (i = 0; i < OUT_BYTES; i++) out[i] = (uint8_t)(i * 7);
  for (i = 0; i < IN_BYTES; i++) out[i % OUT_BYTES] = (uint8_t)(out[i % OUT_BYTES] + in[i] * (i + 1));
}

static int fake_infer(void *ctx, uint32_t flags, td_timing *t) {
  static uint8_t in[IN_BYTES], out[OUT_BYTES];
  (void)ctx;
  infer_calls++;
  last_flags = flags;
  memcpy(in, in0, IN0);
  memcpy(in + IN0, in1, sizeof in1);
  if (in[0] == 0x42) return 99; /* a model error */
  model(in, out);
  memcpy(out0, out, OUT0);
  memcpy(out1, out + OUT0, sizeof out1);
  t->time_us = 1234;
  t->cycles = 5678;
  return 0;
}

static td_device *dev;
static tu_reply replies[TU_MAX_REPLIES];
static unsigned long frame_no;
static unsigned long sent_frames; /* every frame fed to the device, valid or damaged */

static int feed_and_parse(const uint8_t *wire, size_t n) {
  int r;
  out_len = 0;
  td_feed_buf(dev, wire, n);
  r = tu_parse_output(out_buf, out_len, replies, TU_MAX_REPLIES);
  if (r < 0) exit(1);
  return r;
}

#define FAIL(...) do { fprintf(stderr, "frame %lu: ", frame_no); fprintf(stderr, __VA_ARGS__); \
                       fprintf(stderr, "\n"); exit(1); } while (0)

static uint8_t wire[3 * TD_MAX_PAYLOAD + 64], payload[2 * TD_MAX_PAYLOAD];

/* One request frame -> exactly one reply with its seq; returns it. */
static tu_reply *request(uint8_t op, uint16_t seq, const uint8_t *p, size_t len) {
  size_t n = 0;
  int r;
  if (rnd() % 2) wire[n++] = 0; /* host-style leading delimiter */
  n += tu_frame(op, seq, p, len, wire + n);
  sent_frames++;
  r = feed_and_parse(wire, n);
  if (r != 1) FAIL("request op 0x%02X got %d replies", op, r);
  if (replies[0].seq != seq) FAIL("reply seq %u != %u", replies[0].seq, seq);
  return &replies[0];
}

static void expect_error(tu_reply *rep, uint8_t code) {
  if (rep->op != TD_OP_ERROR || rep->payload[0] != code)
    FAIL("expected ERROR %u, got op 0x%02X code %u", code, rep->op, rep->payload[0]);
}

static void send_data(uint16_t *seq, const uint8_t *in, uint32_t off, uint32_t len) {
  tu_reply *rep;
  tu_put_u32(payload, off);
  memcpy(payload + 4, in + off, len);
  rep = request(TD_OP_DATA, ++*seq, payload, 4 + len);
  if (rep->op != TD_OP_ACK || tu_get_u32(rep->payload) != off ||
      tu_get_u32(rep->payload + 4) != len)
    FAIL("DATA not acknowledged (op 0x%02X code %u)", rep->op, rep->payload[0]);
}

/* A whole inference as the host does it: DATA chunks (random sizes), INFER with the tail
 * (sent `times` times with the same seq), READs for the rest; checks the output. */
static void transfer(uint16_t *seq, int times) {
  static uint8_t in[IN_BYTES], expect[OUT_BYTES], got[OUT_BYTES];
  uint32_t crc, off = 0, tail, n, total = 0, have = 0;
  unsigned long before = infer_calls;
  uint8_t flags = (uint8_t)(rnd() % 2);
  tu_reply *rep;
  int k;
  size_t i;
  for (i = 0; i < IN_BYTES; i++) in[i] = (uint8_t)(rnd() % 4 == 0 ? 0 : rnd());
  if (in[0] == 0x42) in[0] = 0x43;
  model(in, expect);
  crc = tu_crc32(in, IN_BYTES);
  /* the tail rides on the INFER: at most CHUNK bytes, sometimes none */
  tail = rnd() % 4 == 0 ? 0 : 1 + rnd() % (IN_BYTES < CHUNK ? IN_BYTES : CHUNK);
  while (off < IN_BYTES - tail) {
    n = 1 + rnd() % (TD_MAX_PAYLOAD - TD_DATA_HEADER);
    if (n > IN_BYTES - tail - off) n = IN_BYTES - tail - off;
    send_data(seq, in, off, n);
    off += n;
  }
  payload[0] = flags;
  payload[1] = payload[2] = payload[3] = 0;
  tu_put_u32(payload + 4, off);
  tu_put_u32(payload + 8, crc);
  memcpy(payload + 12, in + off, tail);
  ++*seq;
  for (k = 0; k < times; k++) {
    rep = request(TD_OP_INFER, *seq, payload, 12 + tail);
    if (rep->op != TD_OP_RESULT || rep->len < TD_RESULT_HEADER)
      FAIL("INFER not answered by RESULT (op 0x%02X code %u)", rep->op, rep->payload[0]);
    total = tu_get_u32(rep->payload + 8);
    if (total != OUT_BYTES || tu_get_u32(rep->payload) != 1234 ||
        tu_get_u32(rep->payload + 4) != 5678)
      FAIL("wrong RESULT header");
    have = rep->len - TD_RESULT_HEADER;
    if (have > total || have == 0) FAIL("RESULT carries %u bytes", have);
    memcpy(got, rep->payload + TD_RESULT_HEADER, have);
    if (tu_get_u32(rep->payload + 12) != tu_crc32(expect, OUT_BYTES)) FAIL("output crc");
  }
  if (infer_calls - before != 1) FAIL("model ran %lu times", infer_calls - before);
  if (last_flags != flags) FAIL("flags %u reached the model as %u", flags, last_flags);
  while (have < total) {
    uint32_t want = 1 + rnd() % (2 * TD_MAX_PAYLOAD);
    tu_put_u32(payload, have);
    tu_put_u32(payload + 4, want);
    ++*seq;
    for (k = 0; k < 1 + (int)(rnd() % 2); k++) { /* a READ retry is harmless */
      rep = request(TD_OP_READ, *seq, payload, 8);
      if (rep->op != TD_OP_OUTPUT || tu_get_u32(rep->payload) != have || rep->len <= 4 ||
          rep->len - 4u > want)
        FAIL("READ not answered by OUTPUT (op 0x%02X code %u)", rep->op, rep->payload[0]);
    }
    memcpy(got + have, rep->payload + 4, rep->len - 4u);
    have += rep->len - 4u;
  }
  if (memcmp(got, expect, OUT_BYTES) != 0) FAIL("wrong output");
}

int main(int argc, char **argv) {
  static TD_DEVICE_STORAGE(storage);
  static td_info info;
  static td_tensor_info ins[2], outs[2];
  unsigned long frames = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000ul;
  unsigned long counts[10] = {0}, errors = 0, ignored = 0;
  uint16_t seq = 1;
  rng_state = 0x9E3779B97F4A7C15ull ^ (argc > 2 ? strtoull(argv[2], NULL, 10) : 1ull);

  info.firmware_version = "fuzz 1";
  info.board_id = "fuzz";
  info.runtime = "c";
  ins[0].dtype = TD_DTYPE_INT8;
  ins[0].ndims = 2;
  ins[0].dims[0] = 1;
  ins[0].dims[1] = IN0;
  ins[0].data = in0;
  ins[1] = ins[0];
  ins[1].dtype = TD_DTYPE_INT16;
  ins[1].dims[1] = IN1;
  ins[1].data = in1;
  outs[0] = ins[0];
  outs[0].dims[1] = OUT0;
  outs[0].data = out0;
  outs[1] = ins[1];
  outs[1].dims[1] = OUT1;
  outs[1].data = out1;
  info.num_inputs = 2;
  info.num_outputs = 2;
  info.inputs = ins;
  info.outputs = outs;
  if (td_device_size() > sizeof storage) {
    fprintf(stderr, "storage too small\n");
    return 1;
  }
  dev = td_init(storage, &info, fake_infer, NULL, capture, NULL);
  out_len = 0;
  td_announce(dev);
  if (tu_parse_output(out_buf, out_len, replies, 1) != 1 || replies[0].op != TD_OP_INFO ||
      replies[0].seq != 0 || !(replies[0].payload[1] & TD_INFO_FLAG_BOOT) ||
      replies[0].payload[52] != 2 || replies[0].payload[53] != 2 ||
      replies[0].payload[54] != TD_DTYPE_INT8 || replies[0].payload[54 + 34] != TD_DTYPE_INT16) {
    fprintf(stderr, "bad announce\n");
    return 1;
  }

  for (frame_no = 0; frame_no < frames; frame_no++) {
    unsigned kind = rnd() % 10;
    size_t n, len, i;
    int r;
    tu_reply *rep;
    seq = (uint16_t)(seq + 1 + rnd() % 3);
    counts[kind]++;
    if (kind == 0) { /* HELLO */
      rep = request(TD_OP_HELLO, seq, payload, (size_t)(rnd() % 2));
      if (rep->op != TD_OP_INFO || rep->payload[0] != TD_PROTOCOL_VERSION || rep->payload[1] != 0)
        FAIL("HELLO not answered by INFO");
      continue;
    }
    if (kind == 1 || kind == 2) { /* a whole transfer; kind 2 retries the INFER */
      transfer(&seq, kind == 2 ? 2 : 1);
      continue;
    }
    if (kind == 3) { /* well-formed requests the device must refuse */
      unsigned which = rnd() % 5;
      if (which == 0) { /* INFER shorter than its header */
        expect_error(request(TD_OP_INFER, seq, payload, rnd() % TD_INFER_HEADER),
                     TD_ERR_BAD_LENGTH);
      } else if (which == 1) { /* DATA outside the input */
        tu_put_u32(payload, IN_BYTES - rnd() % 4);
        expect_error(request(TD_OP_DATA, seq, payload, 4 + 5), TD_ERR_BAD_OFFSET);
      } else if (which == 2) { /* INFER whose CRC does not match the assembled input */
        memset(payload, 0, 12);
        tu_put_u32(payload + 8, tu_crc32(in0, 4) ^ 1u);
        expect_error(request(TD_OP_INFER, seq, payload, 12), TD_ERR_INPUT_CRC);
      } else if (which == 3) { /* READ after the input changed: no result */
        send_data(&seq, payload, 0, 1);
        tu_put_u32(payload, 0);
        tu_put_u32(payload + 4, 8);
        expect_error(request(TD_OP_READ, ++seq, payload, 8), TD_ERR_NO_RESULT);
      } else { /* DATA shorter than its header */
        expect_error(request(TD_OP_DATA, seq, payload, rnd() % 4), TD_ERR_BAD_LENGTH);
      }
      errors++;
      continue;
    }
    if (kind == 4 || kind == 5) { /* unknown op; frame over the size limit */
      uint8_t op = TD_OP_INFER, want = TD_ERR_TOO_LARGE;
      len = TD_MAX_PAYLOAD + 1 + rnd() % TD_MAX_PAYLOAD;
      if (kind == 4) {
        do op = (uint8_t)rnd();
        while (op == TD_OP_HELLO || op == TD_OP_INFER || op == TD_OP_DATA || op == TD_OP_READ);
        want = TD_ERR_BAD_COMMAND;
        len = rnd() % 64;
      }
      for (i = 0; i < len; i++) payload[i] = (uint8_t)rnd();
      expect_error(request(op, seq, payload, len), want);
      errors++;
      continue;
    }
    if (kind == 6) { /* a model error: the whole input in one INFER, first byte 0x42 */
      static uint8_t in[IN_BYTES];
      unsigned long before = infer_calls;
      uint32_t detail;
      for (i = 0; i < IN_BYTES; i++) in[i] = (uint8_t)rnd();
      in[0] = 0x42;
      for (i = 0; i + CHUNK < IN_BYTES; i += CHUNK) send_data(&seq, in, (uint32_t)i, CHUNK);
      memset(payload, 0, 12);
      tu_put_u32(payload + 4, (uint32_t)i);
      tu_put_u32(payload + 8, tu_crc32(in, IN_BYTES));
      memcpy(payload + 12, in + i, IN_BYTES - i);
      rep = request(TD_OP_INFER, ++seq, payload, 12 + IN_BYTES - i);
      expect_error(rep, TD_ERR_MODEL);
      detail = tu_get_u32(rep->payload + 4);
      if (detail != 99 || infer_calls - before != 1) FAIL("model error detail %u", detail);
      errors++;
      continue;
    }
    /* damaged input: mutated, truncated or random bytes, then a delimiter */
    if (kind == 9) {
      n = rnd() % 200;
      for (i = 0; i < n; i++) wire[i] = (uint8_t)(rnd() % 8 == 0 ? 0 : rnd());
    } else {
      len = kind == 8 ? 12 + rnd() % 40 : rnd() % 8;
      for (i = 0; i < len; i++) payload[i] = (uint8_t)rnd();
      n = tu_frame(kind == 8 ? (rnd() % 2 ? TD_OP_INFER : TD_OP_DATA) : TD_OP_HELLO, seq,
                   payload, len, wire) - 1;
      if (kind == 7 || n < 3) { /* flip 1..4 bytes */
        unsigned flips = 1 + rnd() % 4;
        while (flips--) wire[rnd() % n] ^= (uint8_t)(1 + rnd() % 255);
      } else {
        n = 1 + rnd() % (n - 1); /* truncated */
      }
    }
    wire[n++] = 0;
    sent_frames++;
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
    /* resynchronisation: the next valid request is answered */
    transfer(&seq, 1);
  }
  printf("frames=%lu sent=%lu infer_calls=%lu errors=%lu ignored=%lu kinds=", frames,
         sent_frames, infer_calls, errors, ignored);
  for (int k = 0; k < 10; k++) printf("%lu%s", counts[k], k < 9 ? "," : "\n");
  return 0;
}
