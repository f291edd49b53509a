/* tinydeploy kernels at float model boundaries (the only float code of the C runtime):
 * QUANTIZE float32 -> int8 of the graph input, DEQUANTIZE int8 -> float32 of the output.
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

void td_quantize_f32(int32_t size, float scale, int32_t zero_point, const uint8_t *in,
                     int8_t *out) {
  int32_t i;
  for (i = 0; i < size; ++i) {
    float v;
    int64_t q;
    memcpy(&v, in + 4 * i, sizeof v);
    q = (int64_t)td_round_f32(v / scale) + zero_point;
    if (q < -128) q = -128;
    if (q > 127) q = 127;
    out[i] = (int8_t)q;
  }
}

void td_dequantize_lut(int32_t size, const uint32_t *lut, const int8_t *in, uint8_t *out) {
  int32_t i;
  for (i = 0; i < size; ++i) {
    const uint32_t bits = lut[(int32_t)in[i] + 128];
    memcpy(out + 4 * i, &bits, sizeof bits);
  }
}
