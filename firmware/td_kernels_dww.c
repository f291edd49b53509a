/* tinydeploy kernels: DEPTHWISE_CONV_2D, any depth multiplier, on pre-widened weights
 * (td_depthwise_conv2d_fastw / _fastwg; layout and requantization forms: td_kernels.h).
 * A group of four output channels reads one input channel (multiplier 1: four; a multiple
 * of 4: one; else one or two, packed into the lanes each output needs).
 *
 * The generator stores the filter as int16 pairs ("dw16", p->filter_w): per group of four
 * channels g, per tap t (row-major over f_h x f_w), two words {w[t][4g] | w[t][4g+2] << 16,
 * w[t][4g+1] | w[t][4g+3] << 16}, channels past out_c zero. One tap of four channels is then
 * one input word (the input offset added while sign-extending, SXTAB16), one doubleword of
 * weights and four 16x16 multiply-accumulates; no weight unpacking at run time. Interior
 * pixels of a 3x3 window take a fully unrolled loop over a run of pixels; border pixels
 * (taps clipped to the input) and other window sizes a loop over the valid taps. The same
 * integer sums as TFLM's reference kernel, so bit-identical. The plain C build (TD_PORTABLE
 * or no DSP extension) reads the same words lane by lane.
 */
#include "td_kernels.h"
#include "td_simd.h"

/* the int16 weight of lane j (channel 4g + j) in a group's two words */
TD_ALWAYS_INLINE int32_t td_dw16_lane(const int32_t *wt, int32_t j) {
  const uint32_t v = (uint32_t)wt[j & 1];
  return (int32_t)(int16_t)(uint16_t)((j & 2) ? v >> 16 : v & 0xffffu);
}

/* td_out8q on a {mult, code, lo, hi} quad (rq4, td_kernels.h): the rounding constant
 * precomputed by the generator */
TD_ALWAYS_INLINE int8_t td_out8q4(int32_t acc, const int32_t *q, int32_t out_offset,
                                  const int32_t gen) {
  int32_t v;
  if (gen && q[1] < 0) {
    v = td_requant_lsh(acc, q[0], -q[1] - 1);
  } else {
#if defined(__thumb2__) && !defined(TD_PORTABLE)
    uint32_t lo = (uint32_t)q[2];
    int32_t hi = q[3];
    __asm__("smlal %0, %1, %2, %3" : "+r"(lo), "+r"(hi) : "r"(acc), "r"(q[0]));
    __asm__("smlal %0, %1, %2, %3" : "+r"(lo), "+r"(hi) : "r"((uint32_t)acc >> 31), "r"(INT32_MIN));
    v = hi >> q[1];
#else
    v = td_requant_rq(acc, q[0], q[1]);
#endif
  }
  return (int8_t)td_sat8(v + out_offset);
}

/* requantize four accumulators (channels ch..ch+3, q their first quad) and store them */
TD_ALWAYS_INLINE void td_dww_out4(int32_t a0, int32_t a1, int32_t a2, int32_t a3,
                                  const int32_t *q, int32_t out_offset, int8_t *o,
                                  const int32_t gen) {
  o[0] = td_out8q4(a0, q, out_offset, gen);
  o[1] = td_out8q4(a1, q + 4, out_offset, gen);
  o[2] = td_out8q4(a2, q + 8, out_offset, gen);
  o[3] = td_out8q4(a3, q + 12, out_offset, gen);
}

#if TD_DSP
/* one tap of four channels: the input word at xp + xo (xo: an addressing-mode suffix),
 * the weight doubleword at wp + wo bytes; one asm block, so the eight instructions stay
 * together and the compiler keeps every operand in a register */
#define TD_DWW_TAP_AT(xp, xo, xt, wp, wo)                                    \
  do {                                                                       \
    uint32_t xv_, xa_, wa_, wb_;                                             \
    __asm__("ldr %[xv], [%[x]" xo "]\n\t"                                   \
            "sxtab16 %[xa], %[off], %[xv]\n\t"                              \
            "sxtab16 %[xv], %[off], %[xv], ror #8\n\t"                      \
            "ldrd %[wa], %[wb], [%[w], %[k]]\n\t"                            \
            "smlabb %[a0], %[xa], %[wa], %[a0]\n\t"                         \
            "smlatt %[a2], %[xa], %[wa], %[a2]\n\t"                         \
            "smlabb %[a1], %[xv], %[wb], %[a1]\n\t"                         \
            "smlatt %[a3], %[xv], %[wb], %[a3]"                              \
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),    \
              [xv] "=&r"(xv_), [xa] "=&r"(xa_), [wa] "=&r"(wa_), [wb] "=&r"(wb_) \
            : [x] "r"(xp), [t] "r"(xt), [w] "r"(wp), [k] "n"(wo),            \
              [off] "r"(off2)                                                \
            : "memory");                                                     \
  } while (0)
#define TD_DWW_TAP(xp, wp) TD_DWW_TAP_AT(xp, "", x_tap, wp, 0)
#else
#define TD_DWW_TAP(xp, wp)                                                   \
  do {                                                                       \
    const int8_t *xq_ = (xp);                                                \
    a0 += ((int32_t)xq_[0] + off) * td_dw16_lane((wp), 0);                   \
    a1 += ((int32_t)xq_[1] + off) * td_dw16_lane((wp), 1);                   \
    a2 += ((int32_t)xq_[2] + off) * td_dw16_lane((wp), 2);                   \
    a3 += ((int32_t)xq_[3] + off) * td_dw16_lane((wp), 3);                   \
  } while (0)
#endif

/* The c % 4 last channels of one pixel (scalar): x/wt at the first valid tap of channel
 * group g = c / 4, ny x nx taps, w_row the group's word step per filter row; output
 * channel ch reads input channel ch / mult. */
TD_ALWAYS_INLINE void td_dww_tail(const int8_t *x, const int32_t *wt, int32_t c, int32_t mult,
                                  int32_t ny, int32_t nx, int32_t x_row, int32_t x_tap,
                                  int32_t w_row, const int32_t *bias, const int32_t *rq,
                                  int32_t off, int32_t out_offset, int8_t *o,
                                  const int32_t gen) {
  int32_t ch, fy, fx;
  for (ch = c & ~3; ch < c; ++ch) {
    int32_t acc = bias ? bias[ch] : 0;
    const int32_t j = ch & 3;
    const int8_t *xr = x + ch / mult;
    const int32_t *wr = wt;
    for (fy = 0; fy < ny; ++fy) {
      for (fx = 0; fx < nx; ++fx) {
        acc += ((int32_t)xr[fx * x_tap] + off) * td_dw16_lane(wr + 2 * fx, j);
      }
      xr += x_row;
      wr += w_row;
    }
    o[ch] = td_out8q4(acc, rq + 4 * ch, out_offset, gen);
  }
}

#if TD_DSP
/* depth multiplier M > 1, a group of four output channels over two input channels: the
 * first k outputs (k = 1..3) read input channel i, the others i + 1. One halfword holds
 * both inputs (offset added, packed as {x_i, x_i+1}); each accumulator's multiply takes
 * the half it needs (I1..I3: the SMLAxy of outputs 1, 2, 3). Multiplier 2 is k = 2. */
#define TD_DWW_TAPK_AT(xp, xo, xt, wp, wo, I1, I2, I3)                       \
  do {                                                                       \
    uint32_t xv_, xa_, wa_, wb_;                                             \
    __asm__("ldrh %[xv], [%[x]" xo "]\n\t"                                  \
            "sxtab16 %[xa], %[off], %[xv]\n\t"                              \
            "sxtab16 %[xv], %[off], %[xv], ror #8\n\t"                      \
            "pkhbt %[xa], %[xa], %[xv], lsl #16\n\t"                        \
            "ldrd %[wa], %[wb], [%[w], %[k]]\n\t"                           \
            "smlabb %[a0], %[xa], %[wa], %[a0]\n\t"                         \
            I2 " %[a2], %[xa], %[wa], %[a2]\n\t"                            \
            I1 " %[a1], %[xa], %[wb], %[a1]\n\t"                            \
            I3 " %[a3], %[xa], %[wb], %[a3]"                                 \
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),    \
              [xv] "=&r"(xv_), [xa] "=&r"(xa_), [wa] "=&r"(wa_), [wb] "=&r"(wb_) \
            : [x] "r"(xp), [t] "r"(xt), [w] "r"(wp), [k] "n"(wo), [off] "r"(off2) \
            : "memory");                                                     \
  } while (0)
#define TD_DWW_TAPK1_AT(xp, xo, xt, wp, wo) \
  TD_DWW_TAPK_AT(xp, xo, xt, wp, wo, "smlatb", "smlatt", "smlatt")
#define TD_DWW_TAPK2_AT(xp, xo, xt, wp, wo) \
  TD_DWW_TAPK_AT(xp, xo, xt, wp, wo, "smlabb", "smlatt", "smlatt")
#define TD_DWW_TAPK3_AT(xp, xo, xt, wp, wo) \
  TD_DWW_TAPK_AT(xp, xo, xt, wp, wo, "smlabb", "smlabt", "smlatt")
/* a multiple of 4: all four outputs read one input channel (its bottom lane, SMLAxB) */
#define TD_DWW_TAP4_AT(xp, xo, xt, wp, wo)                                   \
  do {                                                                       \
    uint32_t xv_, wa_, wb_;                                                  \
    __asm__("ldrsb %[xv], [%[x]" xo "]\n\t"                                 \
            "add %[xv], %[xv], %[off]\n\t"                                  \
            "ldrd %[wa], %[wb], [%[w], %[k]]\n\t"                           \
            "smlabb %[a0], %[wa], %[xv], %[a0]\n\t"                         \
            "smlatb %[a2], %[wa], %[xv], %[a2]\n\t"                         \
            "smlabb %[a1], %[wb], %[xv], %[a1]\n\t"                         \
            "smlatb %[a3], %[wb], %[xv], %[a3]"                              \
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),    \
              [xv] "=&r"(xv_), [wa] "=&r"(wa_), [wb] "=&r"(wb_)              \
            : [x] "r"(xp), [t] "r"(xt), [w] "r"(wp), [k] "n"(wo), [off] "r"(off2) \
            : "memory");                                                     \
  } while (0)
/* the nine taps of a 3x3 window at xp (xp advanced by two rows), weights at wg */
#define TD_DWW_NINE(TAPAT)                                                   \
  do {                                                                       \
    TAPAT(xp, "", x_tap, wg, 0);                                             \
    TAPAT(xp, ", %[t]", x_tap, wg, 8);                                       \
    TAPAT(xp, ", %[t], lsl #1", x_tap, wg, 16);                              \
    xp += x_row;                                                             \
    TAPAT(xp, "", x_tap, wg, 24);                                            \
    TAPAT(xp, ", %[t]", x_tap, wg, 32);                                      \
    TAPAT(xp, ", %[t], lsl #1", x_tap, wg, 40);                              \
    xp += x_row;                                                             \
    TAPAT(xp, "", x_tap, wg, 48);                                            \
    TAPAT(xp, ", %[t]", x_tap, wg, 56);                                      \
    TAPAT(xp, ", %[t], lsl #1", x_tap, wg, 64);                              \
  } while (0)
#else
#define TD_DWW_TAPM(xp, wp)                                                  \
  do {                                                                       \
    const int8_t *xq_ = (xp);                                                \
    a0 += ((int32_t)xq_[0] + off) * td_dw16_lane((wp), 0);                   \
    a1 += ((int32_t)xq_[d1] + off) * td_dw16_lane((wp), 1);                  \
    a2 += ((int32_t)xq_[d2] + off) * td_dw16_lane((wp), 2);                  \
    a3 += ((int32_t)xq_[d3] + off) * td_dw16_lane((wp), 3);                  \
  } while (0)
#endif

#if TD_DSP
/* the taps of one group of four output channels, two per step (TAPAT: the multiplier's
 * tap with an addressing suffix); TD_DWW_TAPS3: three per step (the 4k multipliers' long
 * windows) */
#define TD_DWW_TAPS2(TAPAT)                                                  \
  for (fy = 0; fy < ny; ++fy) {                                              \
    const int8_t *xp = xr;                                                   \
    const int32_t *wp = wr;                                                  \
    for (fx = nx; fx >= 2; fx -= 2) {                                        \
      TAPAT(xp, "", x_tap, wp, 0);                                           \
      TAPAT(xp, ", %[t]", x_tap, wp, 8);                                     \
      xp += 2 * x_tap;                                                       \
      wp += 4;                                                               \
    }                                                                        \
    if (fx) TAPAT(xp, "", x_tap, wp, 0);                                     \
    xr += x_row;                                                             \
    wr += 2 * f_w;                                                           \
  }
#define TD_DWW_TAPS3(TAPAT)                                                  \
  for (fy = 0; fy < ny; ++fy) {                                              \
    const int8_t *xp = xr;                                                   \
    const int32_t *wp = wr;                                                  \
    for (fx = nx; fx >= 3; fx -= 3) {                                        \
      TAPAT(xp, "", x_tap, wp, 0);                                           \
      TAPAT(xp, ", %[t]", x_tap, wp, 8);                                     \
      TAPAT(xp, ", %[t], lsl #1", x_tap, wp, 16);                            \
      xp += 3 * x_tap;                                                       \
      wp += 6;                                                               \
    }                                                                        \
    if (fx) TAPAT(xp, "", x_tap, wp, 0);                                     \
    if (fx == 2) TAPAT(xp, ", %[t]", x_tap, wp, 8);                          \
    xr += x_row;                                                             \
    wr += 2 * f_w;                                                           \
  }
#endif
/* the taps of one group of four output channels (TAP: the multiplier's tap) */
#define TD_DWW_TAPS(TAP)                                                     \
  for (fy = 0; fy < ny; ++fy) {                                              \
    const int8_t *xp = xr;                                                   \
    const int32_t *wp = wr;                                                  \
    for (fx = 0; fx < nx; ++fx) {                                            \
      TAP(xp, wp);                                                           \
      xp += x_tap;                                                           \
      wp += 2;                                                               \
    }                                                                        \
    xr += x_row;                                                             \
    wr += 2 * f_w;                                                           \
  }

/* One output pixel over ny x nx valid taps (any window), any depth multiplier: x
 * points at the first valid tap (input channel 0), fw at that tap's words of group 0; taps
 * per group (group word step / 2) gt, filter row step in taps f_w. */
TD_ALWAYS_INLINE void td_dww_pixel_b(const int8_t *x, const int32_t *fw, int32_t c,
                                     int32_t mult, int32_t ny, int32_t nx, int32_t x_row,
                                     int32_t x_tap, int32_t gt, int32_t f_w,
                                     const int32_t *bias, const int32_t *rq, int32_t off,
                                     int32_t out_offset, int8_t *o, const int32_t gen,
                                     const int32_t m1) {
  int32_t ch, fy, fx;
#if TD_DSP
  const int16x2_t off2 = td_pack_offset(off);
#endif
  const int32_t *wg = fw;
  for (ch = 0; ch + 4 <= c; ch += 4, wg += 2 * gt) {
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    const int8_t *xr = x + ch / mult;
    const int32_t *wr = wg;
#if !TD_DSP
    const int32_t d1 = (ch + 1) / mult - ch / mult, d2 = (ch + 2) / mult - ch / mult;
    const int32_t d3 = (ch + 3) / mult - ch / mult;
#endif
    if (bias) {
      a0 = bias[ch];
      a1 = bias[ch + 1];
      a2 = bias[ch + 2];
      a3 = bias[ch + 3];
    }
    if (m1) { /* multiplier 1 (instance td_dww_pixel1; the other instance has none) */
#if TD_DSP
      if (nx == 3 || nx == 2) { /* a clipped 3x3 window: each row unrolled */
        for (fy = 0; fy < ny; ++fy) {
          const int8_t *xp = xr;
          TD_DWW_TAP_AT(xp, "", x_tap, wr, 0);
          TD_DWW_TAP_AT(xp, ", %[t]", x_tap, wr, 8);
          if (nx == 3) TD_DWW_TAP_AT(xp, ", %[t], lsl #1", x_tap, wr, 16);
          xr += x_row;
          wr += 2 * f_w;
        }
      } else {
        TD_DWW_TAPS2(TD_DWW_TAP_AT)
      }
#else
      TD_DWW_TAPS(TD_DWW_TAPM)
#endif
    } else {
#if TD_DSP
      const int32_t k = mult - ch % mult; /* outputs of the group on its first input */
      if (k >= 4) {
        TD_DWW_TAPS3(TD_DWW_TAP4_AT)
      } else if (k == 3) {
        TD_DWW_TAPS2(TD_DWW_TAPK3_AT)
      } else if (k == 2) {
        TD_DWW_TAPS2(TD_DWW_TAPK2_AT)
      } else {
        TD_DWW_TAPS2(TD_DWW_TAPK1_AT)
      }
#else
      TD_DWW_TAPS(TD_DWW_TAPM)
#endif
    }
    td_dww_out4(a0, a1, a2, a3, rq + 4 * ch, out_offset, o + ch, gen);
  }
  if (c & 3) {
    td_dww_tail(x, wg, c, mult, ny, nx, x_row, x_tap, 2 * f_w, bias, rq, off, out_offset, o,
                gen);
  }
}
#undef TD_DWW_TAPS
#undef TD_DWW_TAPS2
#undef TD_DWW_TAPS3

TD_HOT void td_dww_pixel(const int8_t *x, const int32_t *fw, int32_t c, int32_t mult,
                         int32_t ny, int32_t nx, int32_t x_row, int32_t x_tap, int32_t gt,
                         int32_t f_w, const int32_t *bias, const int32_t *rq, int32_t off,
                         int32_t out_offset, int8_t *o) {
  td_dww_pixel_b(x, fw, c, mult, ny, nx, x_row, x_tap, gt, f_w, bias, rq, off, out_offset, o,
                 0, 0);
}
TD_HOT void td_dww_pixel_g(const int8_t *x, const int32_t *fw, int32_t c, int32_t mult,
                           int32_t ny, int32_t nx, int32_t x_row, int32_t x_tap, int32_t gt,
                           int32_t f_w, const int32_t *bias, const int32_t *rq, int32_t off,
                           int32_t out_offset, int8_t *o) {
  td_dww_pixel_b(x, fw, c, mult, ny, nx, x_row, x_tap, gt, f_w, bias, rq, off, out_offset, o,
                 1, 0);
}
/* multiplier 1 instances (the constant drops the other forms' code and registers) */
TD_HOT void td_dww_pixel1(const int8_t *x, const int32_t *fw, int32_t c, int32_t mult,
                          int32_t ny, int32_t nx, int32_t x_row, int32_t x_tap, int32_t gt,
                          int32_t f_w, const int32_t *bias, const int32_t *rq, int32_t off,
                          int32_t out_offset, int8_t *o) {
  (void)mult;
  td_dww_pixel_b(x, fw, c, 1, ny, nx, x_row, x_tap, gt, f_w, bias, rq, off, out_offset, o, 0,
                 1);
}
TD_HOT void td_dww_pixel1_g(const int8_t *x, const int32_t *fw, int32_t c, int32_t mult,
                            int32_t ny, int32_t nx, int32_t x_row, int32_t x_tap, int32_t gt,
                            int32_t f_w, const int32_t *bias, const int32_t *rq, int32_t off,
                            int32_t out_offset, int8_t *o) {
  (void)mult;
  td_dww_pixel_b(x, fw, c, 1, ny, nx, x_row, x_tap, gt, f_w, bias, rq, off, out_offset, o, 1,
                 1);
}

/* n interior pixels of a 3x3 window, x_pix apart (stride x input channels): all nine taps
 * inside, fully unrolled; each group's 18 weight words are read at constant offsets. */
TD_ALWAYS_INLINE void td_dww_run3_b(const int8_t *x, const int32_t *fw, int32_t c,
                                    int32_t mult, int32_t n, int32_t x_pix, int32_t x_row,
                                    int32_t x_tap, const int32_t *bias, const int32_t *rq,
                                    int32_t off, int32_t out_offset, int8_t *o,
                                    const int32_t gen) {
  int32_t i, ch;
#if TD_DSP
  const int16x2_t off2 = td_pack_offset(off);
#endif
#if TD_DSP
  /* one loop per multiplier form, so the group's input channel is a shift or a constant */
#define TD_DWW_RUN3(TAPAT, DIV)                                              \
  for (i = 0; i < n; ++i, x += x_pix, o += c) {                              \
    const int32_t *wg = fw;                                                  \
    for (ch = 0; ch + 4 <= c; ch += 4, wg += 18) {                           \
      int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;                                \
      const int8_t *xp = x + ch / (DIV);                                     \
      if (bias) {                                                            \
        a0 = bias[ch];                                                       \
        a1 = bias[ch + 1];                                                   \
        a2 = bias[ch + 2];                                                   \
        a3 = bias[ch + 3];                                                   \
      }                                                                      \
      TD_DWW_NINE(TAPAT);                                                    \
      td_dww_out4(a0, a1, a2, a3, rq + 4 * ch, out_offset, o + ch, gen);     \
    }                                                                        \
    if (c & 3) {                                                             \
      td_dww_tail(x, wg, c, mult, 3, 3, x_row, x_tap, 6, bias, rq, off, out_offset, o, \
                  gen);                                                      \
    }                                                                        \
  }
  if (mult == 1) {
    TD_DWW_RUN3(TD_DWW_TAP_AT, 1)
  } else { /* 4k (the other multipliers take the pixel loop: td_dww_b) */
    TD_DWW_RUN3(TD_DWW_TAP4_AT, mult)
  }
#undef TD_DWW_RUN3
#else
  for (i = 0; i < n; ++i, x += x_pix, o += c) {
    const int32_t *wg = fw;
    for (ch = 0; ch + 4 <= c; ch += 4, wg += 18) {
      int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      const int8_t *xp = x + ch / mult;
      const int32_t d1 = (ch + 1) / mult - ch / mult, d2 = (ch + 2) / mult - ch / mult;
      const int32_t d3 = (ch + 3) / mult - ch / mult;
      if (bias) {
        a0 = bias[ch];
        a1 = bias[ch + 1];
        a2 = bias[ch + 2];
        a3 = bias[ch + 3];
      }
      TD_DWW_TAPM(xp, wg);
      TD_DWW_TAPM(xp + x_tap, wg + 2);
      TD_DWW_TAPM(xp + 2 * x_tap, wg + 4);
      xp += x_row;
      TD_DWW_TAPM(xp, wg + 6);
      TD_DWW_TAPM(xp + x_tap, wg + 8);
      TD_DWW_TAPM(xp + 2 * x_tap, wg + 10);
      xp += x_row;
      TD_DWW_TAPM(xp, wg + 12);
      TD_DWW_TAPM(xp + x_tap, wg + 14);
      TD_DWW_TAPM(xp + 2 * x_tap, wg + 16);
      td_dww_out4(a0, a1, a2, a3, rq + 4 * ch, out_offset, o + ch, gen);
    }
    if (c & 3) {
      td_dww_tail(x, wg, c, mult, 3, 3, x_row, x_tap, 6, bias, rq, off, out_offset, o, gen);
    }
  }
#endif
}

TD_HOT void td_dww_run3(const int8_t *x, const int32_t *fw, int32_t c, int32_t mult,
                        int32_t n, int32_t x_pix, int32_t x_row, int32_t x_tap,
                        const int32_t *bias, const int32_t *rq, int32_t off,
                        int32_t out_offset, int8_t *o) {
  td_dww_run3_b(x, fw, c, mult, n, x_pix, x_row, x_tap, bias, rq, off, out_offset, o, 0);
}
TD_HOT void td_dww_run3_g(const int8_t *x, const int32_t *fw, int32_t c, int32_t mult,
                          int32_t n, int32_t x_pix, int32_t x_row, int32_t x_tap,
                          const int32_t *bias, const int32_t *rq, int32_t off,
                          int32_t out_offset, int8_t *o) {
  td_dww_run3_b(x, fw, c, mult, n, x_pix, x_row, x_tap, bias, rq, off, out_offset, o, 1);
}
#undef TD_DWW_TAP

TD_ALWAYS_INLINE void td_dww_b(const td_conv_params *p, const int8_t *in, int8_t *out,
                               const int32_t gen) {
  const int32_t in_c = p->in_c, c = p->out_c, mult = p->depth_mult, in_w = p->in_w;
  const int32_t in_h = p->in_h, f_h = p->f_h, f_w = p->f_w;
  const int32_t out_h = p->out_h, out_w = p->out_w, dil_h = p->dil_h, dil_w = p->dil_w;
  const int32_t stride_h = p->stride_h, stride_w = p->stride_w;
  const int32_t pad_h = p->pad_h, pad_w = p->pad_w, gt = f_h * f_w;
  const int32_t row_step = dil_h * in_w * in_c, tap_step = dil_w * in_c;
  const int32_t *fw = p->filter_w, *bias = p->bias, *rq = p->rq;
  const int32_t off = p->in_offset, out_offset = p->out_offset;
  int8_t *const out0 = out;
  int32_t b, oy, ox, lo = 0, hi = out_w;
  /* the interior columns [lo, hi): every tap of the row inside the input */
  while (lo < out_w && lo * stride_w - pad_w < 0) ++lo;
  while (hi > lo && (hi - 1) * stride_w - pad_w + dil_w * (f_w - 1) >= in_w) --hi;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *inb = in + b * in_h * in_w * in_c;
    for (oy = 0; oy < out_h; ++oy) {
      const int32_t y0 = oy * stride_h - pad_h;
      int32_t fy0 = 0, fy1 = f_h;
      while (fy0 < fy1 && y0 + dil_h * fy0 < 0) ++fy0;
      while (fy1 > fy0 && y0 + dil_h * (fy1 - 1) >= in_h) --fy1;
      for (ox = 0; ox < out_w; ++ox) {
        const int32_t x0 = ox * stride_w - pad_w;
        int32_t fx0 = 0, fx1 = f_w;
        if (ox == lo && hi > lo && f_h == 3 && f_w == 3 && fy1 - fy0 == 3 &&
            (mult == 1 || mult % 4 == 0)) {
          (gen ? td_dww_run3_g : td_dww_run3)(inb + (y0 * in_w + x0) * in_c, fw, c, mult,
                                              hi - lo, stride_w * in_c, row_step, tap_step,
                                              bias, rq,
                                              off, out_offset, out);
          out += (hi - lo) * c;
          ox = hi - 1;
          continue;
        }
        while (fx0 < fx1 && x0 + dil_w * fx0 < 0) ++fx0;
        while (fx1 > fx0 && x0 + dil_w * (fx1 - 1) >= in_w) --fx1;
        (mult == 1 ? (gen ? td_dww_pixel1_g : td_dww_pixel1)
                   : (gen ? td_dww_pixel_g : td_dww_pixel))(
            inb + ((y0 + dil_h * fy0) * in_w + x0 + dil_w * fx0) * in_c,
            fw + 2 * (fy0 * f_w + fx0), c, mult, fy1 - fy0, fx1 - fx0, row_step, tap_step, gt,
            f_w, bias, rq, off, out_offset, out);
        out += c;
      }
    }
  }
  td_act_clamp(out0, p->batches * out_h * out_w * c, p->act_min, p->act_max);
}

void td_depthwise_conv2d_fastw(const td_conv_params *p, const int8_t *in, int8_t *out) {
  td_dww_b(p, in, out, 0);
}
void td_depthwise_conv2d_fastwg(const td_conv_params *p, const int8_t *in, int8_t *out) {
  td_dww_b(p, in, out, 1);
}
