/* tinydeploy 16x8 fast paths: CONV_2D, DEPTHWISE_CONV_2D (depth multiplier 1, plain C) and
 * FULLY_CONNECTED with int16 activations (zero point 0) and int8 weights, bit-identical to
 * the reference loops of td_kernels_int16.c.
 *
 * The products int8 x int16 are summed in int32, which is exact when no partial sum can
 * leave int32. The generator (tinydeploy.cruntime.emit_int16) knows the weights and
 * chooses per layer: `wide` 0 when 32768 * sum|w| of every output channel fits in int32
 * (one int32 sum per output), 1 when that holds for every filter row (f_w * in_c taps) of
 * every channel (an int32 sum per row, added up in int64; FULLY_CONNECTED: per segment
 * of `seg` weights); otherwise it keeps the int64 reference kernel. Then the int64 (or
 * int32) bias and TFLM's 64-bit requantization (folded into one multiply-add where the
 * generator proved that exact).
 *
 * Filter layout (generated): output channels in pairs (a, b) (an odd last channel paired
 * with zeros); per pair, per filter row of n = f_w * in_c (FC: per segment of seg) weights:
 * for each 4 k, a's bytes [k0, k2, k1, k3] then b's (SXTB16 and SXTB16 ror 8 give the
 * int16 pairs (k0, k1) and (k2, k3) matching input words); if n & 2: [a_k, b_k, a_k+1,
 * b_k+1]; if n & 1: [a_k, b_k]. 2 output pixels x 2 channels per inner loop (SMLAD with
 * the DSP extension, plain C elsewhere: the same integer sums).
 *
 * Pixels whose window lies inside the input (and dil_w 1) are read in place, one input row
 * segment per filter row; the others are gathered (im2col, zero padding) into the scratch.
 */
#include <string.h>

#include "td_kernels_ext.h"
#include "td_simd.h"

#if defined(__GNUC__) && !defined(__clang__)
#define TD16_HOT static __attribute__((noinline, optimize("O2")))
#elif defined(__GNUC__)
#define TD16_HOT static __attribute__((noinline))
#else
#define TD16_HOT static
#endif

typedef struct {
  const int8_t *filter; /* fast layout */
  const void *bias;     /* int64 (bias64) or int32, may be 0 */
  const int32_t *mult, *shift;
  int32_t out_c, rows, seg, row_step; /* rows segments of seg int16, row_step apart */
  int32_t bias64, wide, per_channel, out_offset, lo, hi;
  const int64_t *fold_bias; /* 0: bias added, td_mbqm64 */
  const int32_t *fold_mult, *fold_shift;
} td16_job;

#if TD_DSP
TD_INLINE uint32_t td16_word(const int16_t *x) { return td_read32((const int8_t *)x); }
#endif

/* acc (column 0 ch a, column 1 ch a, column 0 ch b, column 1 ch b) += one segment of n
 * int16 per column against channel pair (a, b); returns the weights after the segment. */
TD_INLINE const int8_t *td16_seg(const int8_t *w, const int16_t *x0, const int16_t *x1,
                                 int32_t n, int32_t *acc) {
  int32_t a0 = acc[0], a1 = acc[1], b0 = acc[2], b1 = acc[3];
  int32_t k;
#if TD_DSP
  {
    const int32_t d = (int32_t)(x1 - x0);
    for (k = n >> 2; k > 0; --k) {
      const int16x2_t p0 = (int16x2_t)td16_word(x0), q0 = (int16x2_t)td16_word(x0 + 2);
      const int16x2_t p1 = (int16x2_t)td16_word(x0 + d), q1 = (int16x2_t)td16_word(x0 + d + 2);
      uint32_t wv = td_read32(w);
      int16x2_t lo = td_sx02(wv), hi = td_sx13(wv);
      a0 = __smlad(lo, p0, a0);
      a0 = __smlad(hi, q0, a0);
      a1 = __smlad(lo, p1, a1);
      a1 = __smlad(hi, q1, a1);
      wv = td_read32(w + 4);
      lo = td_sx02(wv);
      hi = td_sx13(wv);
      b0 = __smlad(lo, p0, b0);
      b0 = __smlad(hi, q0, b0);
      b1 = __smlad(lo, p1, b1);
      b1 = __smlad(hi, q1, b1);
      x0 += 4;
      w += 8;
    }
    x1 = x0 + d;
  }
  if (n & 2) {
    const int16x2_t p0 = (int16x2_t)td16_word(x0), p1 = (int16x2_t)td16_word(x1);
    const uint32_t wv = td_read32(w);
    const int16x2_t wa = td_sx02(wv), wb = td_sx13(wv);
    a0 = __smlad(wa, p0, a0);
    a1 = __smlad(wa, p1, a1);
    b0 = __smlad(wb, p0, b0);
    b1 = __smlad(wb, p1, b1);
    x0 += 2;
    x1 += 2;
    w += 4;
  }
#else
  for (k = n >> 2; k > 0; --k) {
    a0 += w[0] * x0[0] + w[2] * x0[1] + w[1] * x0[2] + w[3] * x0[3];
    a1 += w[0] * x1[0] + w[2] * x1[1] + w[1] * x1[2] + w[3] * x1[3];
    b0 += w[4] * x0[0] + w[6] * x0[1] + w[5] * x0[2] + w[7] * x0[3];
    b1 += w[4] * x1[0] + w[6] * x1[1] + w[5] * x1[2] + w[7] * x1[3];
    x0 += 4;
    x1 += 4;
    w += 8;
  }
  if (n & 2) {
    a0 += w[0] * x0[0] + w[2] * x0[1];
    a1 += w[0] * x1[0] + w[2] * x1[1];
    b0 += w[1] * x0[0] + w[3] * x0[1];
    b1 += w[1] * x1[0] + w[3] * x1[1];
    x0 += 2;
    x1 += 2;
    w += 4;
  }
#endif
  if (n & 1) {
    a0 += w[0] * x0[0];
    a1 += w[0] * x1[0];
    b0 += w[1] * x0[0];
    b1 += w[1] * x1[0];
    w += 2;
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = b0;
  acc[3] = b1;
  return w;
}

/* bias, TFLM's 64-bit requantization (an int32 bias wraps like TFLM's int32 sum), output
 * offset, activation clamp */
TD_INLINE int16_t td16_fin(const td16_job *j, int32_t v) {
  return (int16_t)td_clamp_i32(v + j->out_offset, j->lo, j->hi);
}

/* the low 32 bits of t >> sh, 1 <= sh <= 63 */
TD_INLINE int32_t td16_shr(int64_t t, int32_t sh) {
  const int32_t hi = (int32_t)(t >> 32);
  return sh >= 32 ? hi >> (sh - 32)
                  : (int32_t)(((uint32_t)t >> sh) | ((uint32_t)hi << (32 - sh)));
}

/* without the folded form: bias (int64, or int32 wrapping like TFLM's int32 sum), then
 * TFLM's 64-bit requantization (td_mbqm64), or its 32-bit one for an int32 sum (the rare
 * case: out of line) */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static int16_t td16_out_ref(const td16_job *j, int64_t acc, int32_t c) {
  const int32_t k = j->per_channel ? c : 0;
  if (!j->bias64) {
    uint32_t a = (uint32_t)acc;
    if (j->bias) a += (uint32_t)((const int32_t *)j->bias)[c];
    return td16_fin(j, td_mbqm((int32_t)a, j->mult[k], j->shift[k]));
  }
  if (j->bias) acc += ((const int64_t *)j->bias)[c];
  return td16_fin(j, td_mbqm64(acc, j->mult[k], j->shift[k]));
}

/* output channel c of an int64 sum; the folded form is one multiply-add and a shift */
TD_INLINE int16_t td16_out(const td16_job *j, int64_t acc, int32_t c) {
  if (j->fold_bias) {
    return td16_fin(j, td16_shr(acc * j->fold_mult[c] + j->fold_bias[c], j->fold_shift[c]));
  }
  return td16_out_ref(j, acc, c);
}

/* the same for an int32 sum (a 32 x 32 -> 64-bit multiply-accumulate: SMLAL) */
TD_INLINE int16_t td16_out32(const td16_job *j, int32_t acc, int32_t c) {
  if (j->fold_bias) {
    const int32_t sh = j->fold_shift[c];
#if TD_DSP
    const int64_t b = j->fold_bias[c];
    uint32_t lo = (uint32_t)b;
    int32_t hi = (int32_t)(b >> 32);
    __asm__("smlal %0, %1, %2, %3" : "+r"(lo), "+r"(hi) : "r"(acc), "r"(j->fold_mult[c]));
    return td16_fin(j, sh >= 32 ? hi >> (sh - 32)
                                : (int32_t)((lo >> sh) | ((uint32_t)hi << (32 - sh))));
#else
    return td16_fin(j, td16_shr((int64_t)acc * j->fold_mult[c] + j->fold_bias[c], sh));
#endif
  }
  return td16_out_ref(j, acc, c);
}

/* All output channels of two columns (x0, x1: first input segment of each) to y0, y1. */
TD16_HOT void td16_pair(const td16_job *j, const int16_t *x0, const int16_t *x1, int16_t *y0,
                        int16_t *y1) {
  const int8_t *w = j->filter;
  const int32_t rows = j->rows, seg = j->seg, step = j->row_step, out_c = j->out_c;
  int32_t oc, r;
  for (oc = 0; oc < out_c; oc += 2) {
    int32_t acc[4] = {0, 0, 0, 0};
    const int16_t *r0 = x0, *r1 = x1;
    if (j->wide) { /* an int32 sum per filter row, added up in int64 */
      int64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (r = 0; r < rows; ++r) {
        w = td16_seg(w, r0, r1, seg, acc);
        s0 += acc[0];
        s1 += acc[1];
        s2 += acc[2];
        s3 += acc[3];
        acc[0] = acc[1] = acc[2] = acc[3] = 0;
        r0 += step;
        r1 += step;
      }
      y0[oc] = td16_out(j, s0, oc);
      y1[oc] = td16_out(j, s1, oc);
      if (oc + 1 < out_c) {
        y0[oc + 1] = td16_out(j, s2, oc + 1);
        y1[oc + 1] = td16_out(j, s3, oc + 1);
      }
    } else {
      for (r = 0; r < rows; ++r) {
        w = td16_seg(w, r0, r1, seg, acc);
        r0 += step;
        r1 += step;
      }
      y0[oc] = td16_out32(j, acc[0], oc);
      y1[oc] = td16_out32(j, acc[1], oc);
      if (oc + 1 < out_c) {
        y0[oc + 1] = td16_out32(j, acc[2], oc + 1);
        y1[oc + 1] = td16_out32(j, acc[3], oc + 1);
      }
    }
  }
}

/* Gather the window of output pixel (oy, ox) into dst (taps outside the input: 0). */
static void td16_im2col(const td_conv_params *p, const int16_t *in, int32_t oy, int32_t ox,
                        int16_t *dst) {
  const int32_t y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
  const int32_t c = p->in_c, f_w = p->f_w, dil_w = p->dil_w, in_w = p->in_w;
  int32_t fx0 = 0, fx1 = f_w, fy, fx;
  while (fx0 < fx1 && x0 + dil_w * fx0 < 0) ++fx0; /* the taps inside: [fx0, fx1) */
  while (fx1 > fx0 && x0 + dil_w * (fx1 - 1) >= in_w) --fx1;
  for (fy = 0; fy < p->f_h; ++fy) {
    const int32_t iy = y0 + p->dil_h * fy;
    if (iy < 0 || iy >= p->in_h || fx0 == fx1) {
      memset(dst, 0, (size_t)(f_w * c) * sizeof *dst);
    } else {
      const int16_t *src = in + (iy * in_w + x0 + dil_w * fx0) * c;
      memset(dst, 0, (size_t)(fx0 * c) * sizeof *dst);
      if (dil_w == 1) {
        memcpy(dst + fx0 * c, src, (size_t)((fx1 - fx0) * c) * sizeof *dst);
      } else {
        for (fx = fx0; fx < fx1; ++fx, src += dil_w * c) {
          memcpy(dst + fx * c, src, (size_t)c * sizeof *dst);
        }
      }
      memset(dst + fx1 * c, 0, (size_t)((f_w - fx1) * c) * sizeof *dst);
    }
    dst += f_w * c;
  }
}

/* the window of (oy, ox) lies inside the input and its rows are contiguous */
static int32_t td16_inside(const td_conv_params *p, int32_t oy, int32_t ox) {
  const int32_t y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
  return p->dil_w == 1 && y0 >= 0 && y0 + p->dil_h * (p->f_h - 1) < p->in_h && x0 >= 0 &&
         x0 + p->f_w - 1 < p->in_w;
}

/* the first tap of output pixel (oy, ox)'s window (inside the input) */
static const int16_t *td16_at(const td_conv_params *p, const int16_t *in, int32_t oy,
                              int32_t ox) {
  return in + ((oy * p->stride_h - p->pad_h) * p->in_w + ox * p->stride_w - p->pad_w) *
                  p->in_c;
}

/* the job fields a convolution's parameters give (conv and depthwise: per channel) */
static void td16_conv_job(td16_job *j, const td_conv_params *p, int32_t bias64,
                          const int64_t *fold_bias, const int32_t *fold_mult,
                          const int32_t *fold_shift) {
  memset(j, 0, sizeof *j);
  j->bias = p->bias;
  j->mult = p->mult;
  j->shift = p->shift;
  j->out_c = p->out_c;
  j->bias64 = bias64;
  j->per_channel = 1;
  j->fold_bias = fold_bias;
  j->fold_mult = fold_mult;
  j->fold_shift = fold_shift;
  j->out_offset = p->out_offset;
  j->lo = p->act_min;
  j->hi = p->act_max;
}

void td_conv2d_16_fast(const td_conv16_params *q, const int16_t *in, int16_t *out) {
  const td_conv_params *p = q->p;
  const int32_t c = p->in_c, seg = p->f_w * c, kk = p->f_h * seg, out_c = p->out_c;
  const int32_t out_w = p->out_w, npix = p->out_h * out_w;
  td16_job j;
  int32_t b, pix;
  td16_conv_job(&j, p, q->bias64, q->fold_bias, q->fold_mult, q->fold_shift);
  j.filter = q->filter;
  j.rows = p->f_h;
  j.seg = seg;
  j.wide = q->wide;
  for (b = 0; b < p->batches; ++b) {
    const int16_t *inb = in + b * p->in_h * p->in_w * c;
    /* output pixels in pairs, in flat order (a lone last pixel: paired with itself) */
    for (pix = 0; pix < npix; pix += 2) {
      const int32_t more = pix + 1 < npix;
      const int32_t oy = pix / out_w, ox = pix - oy * out_w;
      const int32_t oy1 = !more ? oy : (ox + 1 < out_w ? oy : oy + 1);
      const int32_t ox1 = !more ? ox : (ox + 1 < out_w ? ox + 1 : 0);
      int16_t *y1 = more ? out + out_c : out;
      if (td16_inside(p, oy, ox) && td16_inside(p, oy1, ox1)) {
        j.row_step = p->dil_h * p->in_w * c;
        td16_pair(&j, td16_at(p, inb, oy, ox), td16_at(p, inb, oy1, ox1), out, y1);
      } else {
        td16_im2col(p, inb, oy, ox, q->scratch);
        td16_im2col(p, inb, oy1, ox1, q->scratch + kk);
        j.row_step = seg;
        td16_pair(&j, q->scratch, q->scratch + kk, out, y1);
      }
      out += (more ? 2 : 1) * out_c;
    }
  }
}

void td_fully_connected_16_fast(const td_fc16_params *q, const int16_t *in, int16_t *out) {
  const td_fc_params *p = q->p;
  const int32_t n = p->accum, out_c = p->out_c;
  td16_job j;
  int32_t b;
  j.filter = q->filter;
  j.bias = p->bias;
  j.mult = p->mult;
  j.shift = p->shift;
  j.out_c = out_c;
  j.rows = n / q->seg;
  j.seg = q->seg;
  j.row_step = q->seg;
  j.bias64 = q->bias64;
  j.wide = q->seg != n;
  j.per_channel = p->per_channel;
  j.fold_bias = q->fold_bias;
  j.fold_mult = q->fold_mult;
  j.fold_shift = q->fold_shift;
  j.out_offset = p->out_offset;
  j.lo = p->act_min;
  j.hi = p->act_max;
  for (b = 0; b < p->batches; b += 2) { /* batch rows in pairs (a lone last one: twice) */
    const int32_t more = b + 1 < p->batches;
    td16_pair(&j, in + b * n, in + (more ? b + 1 : b) * n, out + b * out_c,
              out + (more ? b + 1 : b) * out_c);
  }
}

/* One output pixel of a depthwise convolution (depth multiplier 1), all c channels: x/w at
 * the first tap inside the input (channel 0), ny x nx taps, x_row/x_tap input steps, w_row
 * the filter's row step (its tap step is c). int32 sums (the generator proved them exact). */
TD16_HOT void td16_dw_pixel(const td16_job *j, const int16_t *x, const int8_t *w, int32_t c,
                            int32_t ny, int32_t nx, int32_t x_row, int32_t x_tap,
                            int32_t w_row, int16_t *o) {
  int32_t ch = 0, fy, fx;
#if TD_DSP
  /* 4 channels per pass: one weight word, SXTB16 to (c, c+2) and (c+1, c+3) */
  for (; ch + 4 <= c; ch += 4) {
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    const int16_t *xr = x + ch;
    const int8_t *wr = w + ch;
#define TD16_DW_TAP(xp, wp)                                                          \
  do {                                                                               \
    const uint32_t wv = td_read32(wp);                                               \
    const int16x2_t s02 = td_sx02(wv), s13 = td_sx13(wv);                            \
    const int16x2_t x01 = (int16x2_t)td16_word(xp), x23 = (int16x2_t)td16_word((xp) + 2); \
    a0 = __smlabb(x01, s02, a0);                                                     \
    a1 = __smlatb(x01, s13, a1);                                                     \
    a2 = __smlabt(x23, s02, a2);                                                     \
    a3 = __smlatt(x23, s13, a3);                                                     \
  } while (0)
    if (nx == 3) { /* the common 3-wide window, unrolled */
      for (fy = 0; fy < ny; ++fy) {
        TD16_DW_TAP(xr, wr);
        TD16_DW_TAP(xr + x_tap, wr + c);
        TD16_DW_TAP(xr + 2 * x_tap, wr + 2 * c);
        xr += x_row;
        wr += w_row;
      }
    } else {
      for (fy = 0; fy < ny; ++fy) {
        const int16_t *xp = xr;
        const int8_t *wp = wr;
        for (fx = 0; fx < nx; ++fx) {
          TD16_DW_TAP(xp, wp);
          xp += x_tap;
          wp += c;
        }
        xr += x_row;
        wr += w_row;
      }
    }
#undef TD16_DW_TAP
    o[ch] = td16_out32(j, a0, ch);
    o[ch + 1] = td16_out32(j, a1, ch + 1);
    o[ch + 2] = td16_out32(j, a2, ch + 2);
    o[ch + 3] = td16_out32(j, a3, ch + 3);
  }
#endif
  for (; ch + 2 <= c; ch += 2) {
    int32_t a0 = 0, a1 = 0;
    const int16_t *xr = x + ch;
    const int8_t *wr = w + ch;
    for (fy = 0; fy < ny; ++fy) {
      const int16_t *xp = xr;
      const int8_t *wp = wr;
      for (fx = 0; fx < nx; ++fx) {
        a0 += wp[0] * xp[0];
        a1 += wp[1] * xp[1];
        xp += x_tap;
        wp += c;
      }
      xr += x_row;
      wr += w_row;
    }
    o[ch] = td16_out32(j, a0, ch);
    o[ch + 1] = td16_out32(j, a1, ch + 1);
  }
  if (ch < c) {
    int32_t a0 = 0;
    const int16_t *xr = x + ch;
    const int8_t *wr = w + ch;
    for (fy = 0; fy < ny; ++fy) {
      for (fx = 0; fx < nx; ++fx) a0 += wr[fx * c] * xr[fx * x_tap];
      xr += x_row;
      wr += w_row;
    }
    o[ch] = td16_out32(j, a0, ch);
  }
}

void td_depthwise_conv2d_16_fast(const td_dw16_params *q, const int16_t *in, int16_t *out) {
  const td_conv_params *p = q->p;
  const int32_t c = p->in_c, in_w = p->in_w, in_h = p->in_h, f_h = p->f_h, f_w = p->f_w;
  const int32_t dil_h = p->dil_h, dil_w = p->dil_w;
  td16_job j;
  int32_t b, oy, ox;
  td16_conv_job(&j, p, q->bias64, q->fold_bias, q->fold_mult, q->fold_shift);
  for (b = 0; b < p->batches; ++b) {
    const int16_t *inb = in + b * in_h * in_w * c;
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
        td16_dw_pixel(&j, inb + ((y0 + dil_h * fy0) * in_w + x0 + dil_w * fx0) * c,
                      p->filter + (fy0 * f_w + fx0) * c, c, fy1 - fy0, fx1 - fx0,
                      dil_h * in_w * c, dil_w * c, f_w * c, out);
        out += c;
      }
    }
  }
}
