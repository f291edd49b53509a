/* tinydeploy kernels: MAX_POOL_2D and AVERAGE_POOL_2D (int8, NHWC).
 *
 * Windows are clipped to the input (TFLM's reference pooling ignores padding taps). With
 * the DSP extension four channels at a time: byte-wise maximum through SSUB8 + SEL, sums
 * in 16-bit lanes through SXTAB16; the same numbers as the plain loop.
 */
#include "td_kernels.h"
#include "td_simd.h"

/* ---- pooling ------------------------------------------------------------------------ */

/* One output pixel of c channels over ny x nx taps starting at x (row step x_row). */
TD_HOT void td_pool_pixel(const int8_t *x, int32_t c, int32_t ny, int32_t nx, int32_t x_row,
                          int32_t avg, int32_t lo, int32_t hi, int8_t *o) {
  const int32_t count = ny * nx;
  int32_t ch = 0, fy, fx;
#if TD_DSP
  if (!avg) {
    for (; ch + 4 <= c; ch += 4) {
      uint32_t m = 0x80808080u;
      const int8_t *xr = x + ch;
      for (fy = 0; fy < ny; ++fy) {
        const int8_t *xp = xr;
        for (fx = 0; fx < nx; ++fx) {
          const uint32_t v = td_read32(xp);
          (void)__ssub8((int8x4_t)v, (int8x4_t)m); /* GE per byte: v >= m */
          m = (uint32_t)__sel((uint8x4_t)v, (uint8x4_t)m);
          xp += c;
        }
        xr += x_row;
      }
      o[ch] = (int8_t)td_clamp_i32((int8_t)m, lo, hi);
      o[ch + 1] = (int8_t)td_clamp_i32((int8_t)(m >> 8), lo, hi);
      o[ch + 2] = (int8_t)td_clamp_i32((int8_t)(m >> 16), lo, hi);
      o[ch + 3] = (int8_t)td_clamp_i32((int8_t)(m >> 24), lo, hi);
    }
  } else if (count > 0 && count <= 256) { /* |sum| <= 256 * 128: int16 lanes */
    for (; ch + 4 <= c; ch += 4) {
      int16x2_t s02 = 0, s13 = 0;
      int32_t sums[4], j;
      const int8_t *xr = x + ch;
      for (fy = 0; fy < ny; ++fy) {
        const int8_t *xp = xr;
        for (fx = 0; fx < nx; ++fx) {
          const uint32_t v = td_read32(xp);
          s02 = __sxtab16(s02, v);
          s13 = td_sxa13(s13, v);
          xp += c;
        }
        xr += x_row;
      }
      sums[0] = (int16_t)(uint16_t)(uint32_t)s02;
      sums[2] = (int16_t)(uint16_t)((uint32_t)s02 >> 16);
      sums[1] = (int16_t)(uint16_t)(uint32_t)s13;
      sums[3] = (int16_t)(uint16_t)((uint32_t)s13 >> 16);
      for (j = 0; j < 4; ++j) {
        const int32_t a = sums[j];
        const int32_t q = a > 0 ? (a + count / 2) / count : (a - count / 2) / count;
        o[ch + j] = (int8_t)td_clamp_i32(q, lo, hi);
      }
    }
  }
#endif
  for (; ch < c; ++ch) {
    int32_t acc = avg ? 0 : -128;
    const int8_t *xr = x + ch;
    for (fy = 0; fy < ny; ++fy) {
      const int8_t *xp = xr;
      for (fx = 0; fx < nx; ++fx) {
        const int32_t v = *xp;
        if (avg) {
          acc += v;
        } else if (v > acc) {
          acc = v;
        }
        xp += c;
      }
      xr += x_row;
    }
    if (avg && count > 0) {
      acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
    }
    o[ch] = (int8_t)td_clamp_i32(acc, lo, hi);
  }
}

static void td_pool(const td_pool_params *p, const int8_t *in, int8_t *out, int32_t avg) {
  const int32_t c = p->c, in_w = p->in_w, in_h = p->in_h, f_h = p->f_h, f_w = p->f_w;
  const int32_t out_h = p->out_h, out_w = p->out_w, batches = p->batches;
  const int32_t stride_h = p->stride_h, stride_w = p->stride_w;
  const int32_t pad_h = p->pad_h, pad_w = p->pad_w, lo = p->act_min, hi = p->act_max;
  int32_t b, oy, ox;
  for (b = 0; b < batches; ++b) {
    const int8_t *inb = in + b * in_h * in_w * c;
    for (oy = 0; oy < out_h; ++oy) {
      const int32_t y0 = oy * stride_h - pad_h;
      const int32_t fy0 = y0 < 0 ? -y0 : 0;
      const int32_t fy1 = f_h < in_h - y0 ? f_h : in_h - y0;
      for (ox = 0; ox < out_w; ++ox) {
        const int32_t x0 = ox * stride_w - pad_w;
        const int32_t fx0 = x0 < 0 ? -x0 : 0;
        const int32_t fx1 = f_w < in_w - x0 ? f_w : in_w - x0;
        const int32_t ny = fy1 > fy0 ? fy1 - fy0 : 0, nx = fx1 > fx0 ? fx1 - fx0 : 0;
        td_pool_pixel(inb + ((y0 + fy0) * in_w + x0 + fx0) * c, c, ny, nx, in_w * c, avg, lo,
                      hi, out);
        out += c;
      }
    }
  }
}

void td_max_pool(const td_pool_params *p, const int8_t *in, int8_t *out) {
  td_pool(p, in, out, 0);
}

void td_avg_pool(const td_pool_params *p, const int8_t *in, int8_t *out) {
  td_pool(p, in, out, 1);
}
