/* tinydeploy kernels: the fast variants of DEPTHWISE_CONV_2D with a depth multiplier M > 1
 * (td_depthwise_conv2d_fastm / _fastmg; the layout and requantization forms: td_kernels.h).
 *
 * Output channel oc = ic * M + m reads input channel ic, so the M outputs of one input
 * channel share every tap: per output pixel, per input channel, the tap value (with the
 * input offset added) is loaded once and multiplied into four output channels at a time
 * (one word of four filter bytes, SXTB16 + SMLABB/SMLATB with the DSP extension). Taps are
 * clipped to the input once per pixel, as in td_depthwise_conv2d_fast. The same integer sums
 * as the reference loop, so bit-identical.
 */
#include "td_kernels.h"
#include "td_simd.h"

/* The M outputs of input channel ic at one pixel: x points at the first valid tap's input
 * channel ic, w at its filter entry for output channel ic * M; ny x nx taps, x_row/x_tap
 * input steps, w_row/w_tap filter steps (w_tap: the output channel count). */
TD_ALWAYS_INLINE void td_dwm_channel(const int8_t *x, const int8_t *w, int32_t mult,
                                     int32_t ny, int32_t nx, int32_t x_row, int32_t x_tap,
                                     int32_t w_row, int32_t w_tap, const int32_t *bias,
                                     const int32_t *rq, int32_t off, int32_t out_offset,
                                     int8_t *o, const int32_t gen) {
  int32_t m = 0, fy, fx;
  for (; m + 4 <= mult; m += 4) {
    int32_t a0 = bias ? bias[m] : 0, a1 = bias ? bias[m + 1] : 0;
    int32_t a2 = bias ? bias[m + 2] : 0, a3 = bias ? bias[m + 3] : 0;
    const int8_t *xr = x, *wr = w + m;
    for (fy = 0; fy < ny; ++fy) {
      const int8_t *xp = xr, *wp = wr;
      for (fx = 0; fx < nx; ++fx) {
        const int32_t xv = (int32_t)*xp + off;
#if TD_DSP
        const uint32_t wv = td_read32(wp);
        const int16x2_t wa = td_sx02(wv), wb = td_sx13(wv), xx = (int16x2_t)xv;
        a0 = __smlabb(wa, xx, a0);
        a2 = __smlatb(wa, xx, a2);
        a1 = __smlabb(wb, xx, a1);
        a3 = __smlatb(wb, xx, a3);
#else
        a0 += wp[0] * xv;
        a1 += wp[1] * xv;
        a2 += wp[2] * xv;
        a3 += wp[3] * xv;
#endif
        xp += x_tap;
        wp += w_tap;
      }
      xr += x_row;
      wr += w_row;
    }
    o[m] = td_out8q(a0, rq + 2 * m, out_offset, gen);
    o[m + 1] = td_out8q(a1, rq + 2 * m + 2, out_offset, gen);
    o[m + 2] = td_out8q(a2, rq + 2 * m + 4, out_offset, gen);
    o[m + 3] = td_out8q(a3, rq + 2 * m + 6, out_offset, gen);
  }
  for (; m < mult; ++m) {
    int32_t acc = bias ? bias[m] : 0;
    const int8_t *xr = x, *wr = w + m;
    for (fy = 0; fy < ny; ++fy) {
      const int8_t *xp = xr, *wp = wr;
      for (fx = 0; fx < nx; ++fx) {
        acc += (int32_t)*wp * ((int32_t)*xp + off);
        xp += x_tap;
        wp += w_tap;
      }
      xr += x_row;
      wr += w_row;
    }
    o[m] = td_out8q(acc, rq + 2 * m, out_offset, gen);
  }
}

/* One output pixel, all in_c * M channels (arguments as td_dwm_channel, for channel 0). */
TD_ALWAYS_INLINE void td_dwm_pixel_b(const int8_t *x, const int8_t *w, int32_t in_c,
                                     int32_t mult, int32_t ny, int32_t nx, int32_t x_row,
                                     int32_t x_tap, int32_t w_row, const int32_t *bias,
                                     const int32_t *rq, int32_t off, int32_t out_offset,
                                     int8_t *o, const int32_t gen) {
  const int32_t c = in_c * mult;
  int32_t ic;
  for (ic = 0; ic < in_c; ++ic) {
    const int32_t oc = ic * mult;
    td_dwm_channel(x + ic, w + oc, mult, ny, nx, x_row, x_tap, w_row, c,
                   bias ? bias + oc : 0, rq + 2 * oc, off, out_offset, o + oc, gen);
  }
}

TD_HOT void td_dwm_pixel(const int8_t *x, const int8_t *w, int32_t in_c, int32_t mult,
                         int32_t ny, int32_t nx, int32_t x_row, int32_t x_tap, int32_t w_row,
                         const int32_t *bias, const int32_t *rq, int32_t off,
                         int32_t out_offset, int8_t *o) {
  td_dwm_pixel_b(x, w, in_c, mult, ny, nx, x_row, x_tap, w_row, bias, rq, off, out_offset, o,
                 0);
}
TD_HOT void td_dwm_pixel_g(const int8_t *x, const int8_t *w, int32_t in_c, int32_t mult,
                           int32_t ny, int32_t nx, int32_t x_row, int32_t x_tap,
                           int32_t w_row, const int32_t *bias, const int32_t *rq, int32_t off,
                           int32_t out_offset, int8_t *o) {
  td_dwm_pixel_b(x, w, in_c, mult, ny, nx, x_row, x_tap, w_row, bias, rq, off, out_offset, o,
                 1);
}

TD_ALWAYS_INLINE void td_dwm_b(const td_conv_params *p, const int8_t *in, int8_t *out,
                               const int32_t gen) {
  const int32_t in_c = p->in_c, c = p->out_c, in_w = p->in_w, in_h = p->in_h;
  const int32_t f_h = p->f_h, f_w = p->f_w, dil_h = p->dil_h, dil_w = p->dil_w;
  const int32_t row_step = dil_h * in_w * in_c, tap_step = dil_w * in_c;
  int8_t *const out0 = out;
  int32_t b, oy, ox;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *inb = in + b * in_h * in_w * in_c;
    for (oy = 0; oy < p->out_h; ++oy) {
      const int32_t y0 = oy * p->stride_h - p->pad_h;
      int32_t fy0 = 0, fy1 = f_h;
      while (fy0 < fy1 && y0 + dil_h * fy0 < 0) ++fy0;
      while (fy1 > fy0 && y0 + dil_h * (fy1 - 1) >= in_h) --fy1;
      for (ox = 0; ox < p->out_w; ++ox) {
        const int32_t x0 = ox * p->stride_w - p->pad_w;
        int32_t fx0 = 0, fx1 = f_w;
        while (fx0 < fx1 && x0 + dil_w * fx0 < 0) ++fx0;
        while (fx1 > fx0 && x0 + dil_w * (fx1 - 1) >= in_w) --fx1;
        (gen ? td_dwm_pixel_g : td_dwm_pixel)(
            inb + ((y0 + dil_h * fy0) * in_w + x0 + dil_w * fx0) * in_c,
            p->filter + (fy0 * f_w + fx0) * c, in_c, p->depth_mult, fy1 - fy0, fx1 - fx0,
            row_step, tap_step, f_w * c, p->bias, p->rq, p->in_offset, p->out_offset, out);
        out += c;
      }
    }
  }
  td_act_clamp(out0, p->batches * p->out_h * p->out_w * c, p->act_min, p->act_max);
}

void td_depthwise_conv2d_fastm(const td_conv_params *p, const int8_t *in, int8_t *out) {
  td_dwm_b(p, in, out, 0);
}
void td_depthwise_conv2d_fastmg(const td_conv_params *p, const int8_t *in, int8_t *out) {
  td_dwm_b(p, in, out, 1);
}
