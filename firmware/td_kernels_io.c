/* tinydeploy kernels at float model boundaries (the only float code of the C runtime):
 * QUANTIZE float32 -> int8/int16 of a graph input, DEQUANTIZE int8/int16 -> float32 of an
 * output.
 * Tensors are raw bytes (float32 in host byte order), copied with memcpy for alignment.
 */
#include <string.h>

#include "td_kernels.h"

/* round half away from zero, saturated to int32 (std::round of a float) */
static int32_t td_round_f32(float x) {
  int32_t t;
  float frac;
  if (x != x) return 0;
  if (x >= 2147483520.0f) return 0x7fffffff;
  if (x <= -2147483648.0f) return (int32_t)(-0x7fffffff - 1);
  t = (int32_t)x; /* truncation; x - t is exact */
  frac = x - (float)t;
  if (frac >= 0.5f) return t + 1;
  if (frac <= -0.5f) return t - 1;
  return t;
}

/* TFLM's AffineQuantize of one float32: round(v / scale) + zero_point, clamped */
static int32_t td_quantize_one(const uint8_t *in, float scale, int32_t zero_point,
                               int32_t lo, int32_t hi) {
  float v;
  int64_t q;
  memcpy(&v, in, sizeof v);
  q = (int64_t)td_round_f32(v / scale) + zero_point;
  if (q < lo) q = lo;
  if (q > hi) q = hi;
  return (int32_t)q;
}

void td_quantize_f32(int32_t size, float scale, int32_t zero_point, const uint8_t *in,
                     int8_t *out) {
  int32_t i;
  for (i = 0; i < size; ++i) out[i] = (int8_t)td_quantize_one(in + 4 * i, scale, zero_point,
                                                              -128, 127);
}

/* The same AffineQuantize to int8 by thresholds: round(v / scale) + zero_point is monotonic
 * in v, so thr[k] holds the smallest float (as an ordered key, td_f32_key) whose result
 * is >= k - 127; the result is -128 plus the number of thresholds <= the key, found in 8
 * branch-free steps instead of a (soft-float) division. NaN keeps td_quantize_one. */
static int32_t td_f32_key(uint32_t bits) {
  const int32_t s = (int32_t)bits;
  return s ^ (int32_t)((uint32_t)(s >> 31) & 0x7fffffffu);
}

void td_quantize_f32_thr(int32_t size, const int32_t *thr, float scale, int32_t zero_point,
                         const uint8_t *in, int8_t *out) {
  int32_t i;
  for (i = 0; i < size; ++i) {
    uint32_t bits;
    int32_t key, pos = 0;
    memcpy(&bits, in + 4 * i, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) {
      out[i] = (int8_t)td_quantize_one(in + 4 * i, scale, zero_point, -128, 127);
      continue;
    }
    key = td_f32_key(bits);
    if (thr[pos + 127] <= key) pos += 128;
    if (thr[pos + 63] <= key) pos += 64;
    if (thr[pos + 31] <= key) pos += 32;
    if (thr[pos + 15] <= key) pos += 16;
    if (thr[pos + 7] <= key) pos += 8;
    if (thr[pos + 3] <= key) pos += 4;
    if (thr[pos + 1] <= key) pos += 2;
    if (thr[pos] <= key) pos += 1;
    out[i] = (int8_t)(pos - 128);
  }
}

void td_quantize_f32_16(int32_t size, float scale, int32_t zero_point, const uint8_t *in,
                        int16_t *out) {
  int32_t i;
  for (i = 0; i < size; ++i) out[i] = (int16_t)td_quantize_one(in + 4 * i, scale, zero_point,
                                                               -32768, 32767);
}

/* TFLM computes float(double(scale) * (q - zero_point)); q - zero_point has at most 17
 * significant bits, so the double product is exact and the one float32 multiplication
 * below rounds it the same way (hard or soft float, no double arithmetic needed). */
void td_dequantize_16(int32_t size, float scale, int32_t zero_point, const int16_t *in,
                      uint8_t *out) {
  int32_t i;
  for (i = 0; i < size; ++i) {
    const float v = (float)((int32_t)in[i] - zero_point) * scale;
    memcpy(out + 4 * i, &v, sizeof v);
  }
}

void td_dequantize_lut(int32_t size, const uint32_t *lut, const int8_t *in, uint8_t *out) {
  int32_t i;
  for (i = 0; i < size; ++i) {
    const uint32_t bits = lut[(int32_t)in[i] + 128];
    memcpy(out + 4 * i, &bits, sizeof bits);
  }
}
