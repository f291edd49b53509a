/* Test helpers for the protocol core: an independent host-side encoder/decoder (bitwise
 * CRC-32, plain COBS) used by the random-frame driver and the libFuzzer target. */
#ifndef TD_TEST_UTIL_H
#define TD_TEST_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "td_protocol.h"

static uint32_t tu_crc32(const uint8_t *p, size_t n) {
  static uint32_t table[256];
  static int ready = 0;
  uint32_t c = 0xFFFFFFFFu;
  size_t i;
  if (!ready) { /* byte table built bitwise: independent of the core's nibble table */
    uint32_t b;
    int k;
    for (b = 0; b < 256; b++) {
      uint32_t v = b;
      for (k = 0; k < 8; k++) v = (v >> 1) ^ (0xEDB88320u & (0u - (v & 1u)));
      table[b] = v;
    }
    ready = 1;
  }
  for (i = 0; i < n; i++) c = (c >> 8) ^ table[(c ^ p[i]) & 0xFFu];
  return ~c;
}

/* COBS-encode n bytes into out (room for n + n/254 + 2); returns the encoded length. */
static size_t tu_cobs_encode(const uint8_t *in, size_t n, uint8_t *out) {
  size_t o = 1, code_at = 0;
  uint8_t code = 1;
  size_t i;
  for (i = 0; i < n; i++) {
    if (in[i] == 0) {
      out[code_at] = code;
      code_at = o++;
      code = 1;
    } else {
      out[o++] = in[i];
      if (++code == 0xFF) {
        out[code_at] = code;
        code_at = o++;
        code = 1;
      }
    }
  }
  out[code_at] = code;
  return o;
}

/* Decode one COBS frame (no delimiter); returns -1 if malformed. */
static long tu_cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap) {
  size_t i = 0, o = 0;
  while (i < n) {
    uint8_t code = in[i++];
    uint8_t k;
    if (code == 0 || i + code - 1 > n) return -1;
    for (k = 1; k < code; k++) {
      if (o >= cap) return -1;
      out[o++] = in[i++];
    }
    if (code != 0xFF && i < n) {
      if (o >= cap) return -1;
      out[o++] = 0;
    }
  }
  return (long)o;
}

/* Build a wire frame (COBS + delimiter) with a given op/seq/payload; returns its length. */
static size_t tu_frame(uint8_t op, uint16_t seq, const uint8_t *payload, size_t len,
                       uint8_t *wire) {
  static uint8_t raw[70000];
  uint32_t crc;
  size_t n;
  raw[0] = op;
  raw[1] = (uint8_t)(seq & 0xFF);
  raw[2] = (uint8_t)(seq >> 8);
  raw[3] = (uint8_t)(len & 0xFF);
  raw[4] = (uint8_t)((len >> 8) & 0xFF);
  if (len) memcpy(raw + 5, payload, len);
  crc = tu_crc32(raw, len + 5);
  raw[len + 5] = (uint8_t)crc;
  raw[len + 6] = (uint8_t)(crc >> 8);
  raw[len + 7] = (uint8_t)(crc >> 16);
  raw[len + 8] = (uint8_t)(crc >> 24);
  n = tu_cobs_encode(raw, len + 9, wire);
  wire[n++] = 0;
  return n;
}

typedef struct {
  uint8_t op;
  uint16_t seq;
  uint16_t len;
  uint8_t payload[TD_MAX_PAYLOAD + 600]; /* INFO may exceed TD_MAX_PAYLOAD */
} tu_reply;

#define TU_MAX_REPLIES 64

/* Split captured device output into replies; every one must be a well-formed frame.
 * Returns the number of replies, or -1 (with a message) for a malformed one. */
static int tu_parse_output(const uint8_t *out, size_t n, tu_reply *replies, int max) {
  static uint8_t raw[TD_MAX_PAYLOAD + 640];
  size_t start = 0, i;
  int count = 0;
  for (i = 0; i < n; i++) {
    long m;
    uint32_t crc;
    if (out[i] != 0) continue;
    if (i == start) { /* an empty segment: a lead delimiter (boot announcement) */
      start = i + 1;
      continue;
    }
    m = tu_cobs_decode(out + start, i - start, raw, sizeof raw);
    if (m < 9) {
      fprintf(stderr, "device sent a malformed frame (%ld bytes)\n", m);
      return -1;
    }
    crc = (uint32_t)raw[m - 4] | ((uint32_t)raw[m - 3] << 8) | ((uint32_t)raw[m - 2] << 16) |
          ((uint32_t)raw[m - 1] << 24);
    if (crc != tu_crc32(raw, (size_t)m - 4)) {
      fprintf(stderr, "device sent a frame with a bad CRC\n");
      return -1;
    }
    if ((long)(raw[3] | (raw[4] << 8)) != m - 9) {
      fprintf(stderr, "device sent a frame with a wrong length field\n");
      return -1;
    }
    if (raw[0] != TD_OP_INFO && raw[0] != TD_OP_RESULT && raw[0] != TD_OP_ERROR &&
        raw[0] != TD_OP_ACK && raw[0] != TD_OP_OUTPUT) {
      fprintf(stderr, "device sent unknown op 0x%02X\n", raw[0]);
      return -1;
    }
    if (raw[0] == TD_OP_ERROR && (m - 9 != 8 || raw[5] < 1 || raw[5] > TD_ERR_LAST)) {
      fprintf(stderr, "device sent a malformed ERROR\n");
      return -1;
    }
    if (count < max) {
      replies[count].op = raw[0];
      replies[count].seq = (uint16_t)(raw[1] | (raw[2] << 8));
      replies[count].len = (uint16_t)(m - 9);
      memcpy(replies[count].payload, raw + 5, (size_t)m - 9);
    }
    count++;
    start = i + 1;
  }
  if (start != n) {
    fprintf(stderr, "device output does not end with a delimiter\n");
    return -1;
  }
  return count;
}


static void tu_put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

static uint32_t tu_get_u32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

#endif /* TD_TEST_UTIL_H */
