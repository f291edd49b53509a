/* tinydeploy kernels: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, MAX/AVERAGE_POOL_2D.
 *
 * Tensors are NHWC int8. Accumulation is int32 over (input + input_offset) * filter,
 * then bias, per-channel fixed-point requantization, output offset and activation clamp.
 * Taps outside the input (implicit padding) contribute nothing.
 *
 * Fast paths (same integer sums, so bit-identical to the reference loops kept below):
 * - CONV_2D: the generator folds input_offset * sum(weights) into the bias (bias_eff), so
 *   the inner loop is a plain int8 dot product. Two output pixels at a time are gathered
 *   (im2col) into the scratch buffer, padding filled with the input zero point (whose
 *   offset-corrected value is 0); an unpadded 1x1 convolution reads its input directly.
 *   2 pixels x 2 output channels per inner loop (SXTB16 + SMLAD with the DSP extension).
 * - DEPTHWISE_CONV_2D (depth multiplier 1): 4 channels at a time, taps clipped to the
 *   input, offset added while sign-extending (SXTAB16).
 * - FULLY_CONNECTED (filter offset 0): folded bias, 4 output channels per input read.
 */
#include "td_kernels.h"
#include "td_simd.h"

#if defined(__GNUC__)
#define TD_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define TD_ALWAYS_INLINE static inline
#endif

TD_ALWAYS_INLINE int8_t td_out8(int32_t acc, int32_t mult, int32_t shift, int32_t out_offset,
                                int32_t lo, int32_t hi) {
  return (int8_t)td_clamp_i32(td_requant(acc, mult, shift) + out_offset, lo, hi);
}

/* ---- reference loops (dilation-free fast paths fall back here when not applicable) -- */
static void td_conv2d_ref(const td_conv_params *p, const int8_t *in, int8_t *out) {
  int32_t b, oy, ox, oc, fy, fx, ic;
  for (b = 0; b < p->batches; ++b) {
    for (oy = 0; oy < p->out_h; ++oy) {
      const int32_t y0 = oy * p->stride_h - p->pad_h;
      for (ox = 0; ox < p->out_w; ++ox) {
        const int32_t x0 = ox * p->stride_w - p->pad_w;
        for (oc = 0; oc < p->out_c; ++oc) {
          int32_t acc = 0;
          for (fy = 0; fy < p->f_h; ++fy) {
            const int32_t iy = y0 + p->dil_h * fy;
            if (iy < 0 || iy >= p->in_h) continue;
            for (fx = 0; fx < p->f_w; ++fx) {
              const int32_t ix = x0 + p->dil_w * fx;
              const int8_t *xin, *w;
              if (ix < 0 || ix >= p->in_w) continue;
              xin = in + ((b * p->in_h + iy) * p->in_w + ix) * p->in_c;
              w = p->filter + ((oc * p->f_h + fy) * p->f_w + fx) * p->in_c;
              for (ic = 0; ic < p->in_c; ++ic) {
                acc += (int32_t)w[ic] * ((int32_t)xin[ic] + p->in_offset);
              }
            }
          }
          if (p->bias) acc += p->bias[oc];
          out[((b * p->out_h + oy) * p->out_w + ox) * p->out_c + oc] =
              td_out8(acc, p->mult[oc], p->shift[oc], p->out_offset, p->act_min, p->act_max);
        }
      }
    }
  }
}

static void td_depthwise_ref(const td_conv_params *p, const int8_t *in, int8_t *out) {
  int32_t b, oy, ox, ic, m, fy, fx;
  for (b = 0; b < p->batches; ++b) {
    for (oy = 0; oy < p->out_h; ++oy) {
      const int32_t y0 = oy * p->stride_h - p->pad_h;
      for (ox = 0; ox < p->out_w; ++ox) {
        const int32_t x0 = ox * p->stride_w - p->pad_w;
        for (ic = 0; ic < p->in_c; ++ic) {
          for (m = 0; m < p->depth_mult; ++m) {
            const int32_t oc = ic * p->depth_mult + m;
            int32_t acc = 0;
            for (fy = 0; fy < p->f_h; ++fy) {
              const int32_t iy = y0 + p->dil_h * fy;
              if (iy < 0 || iy >= p->in_h) continue;
              for (fx = 0; fx < p->f_w; ++fx) {
                const int32_t ix = x0 + p->dil_w * fx;
                int32_t xv, wv;
                if (ix < 0 || ix >= p->in_w) continue;
                xv = in[((b * p->in_h + iy) * p->in_w + ix) * p->in_c + ic];
                wv = p->filter[(fy * p->f_w + fx) * p->out_c + oc];
                acc += wv * (xv + p->in_offset);
              }
            }
            if (p->bias) acc += p->bias[oc];
            out[((b * p->out_h + oy) * p->out_w + ox) * p->out_c + oc] =
                td_out8(acc, p->mult[oc], p->shift[oc], p->out_offset, p->act_min, p->act_max);
          }
        }
      }
    }
  }
}

/* ---- CONV_2D fast path ------------------------------------------------------------- */

/* acc[r][c] += sum_k w_r[k] * col_c[k] for two filter rows and two columns of n int8. */
TD_ALWAYS_INLINE void td_dot_2x2(const int8_t *w0, const int8_t *w1, const int8_t *c0,
                                 const int8_t *c1, int32_t n, int32_t *a) {
  int32_t a00 = a[0], a01 = a[1], a10 = a[2], a11 = a[3];
  int32_t k = n >> 2;
#if TD_DSP
  while (k--) {
    const uint32_t x0 = td_read32(c0), x1 = td_read32(c1);
    const int16x2_t x0a = td_sx02(x0), x0b = td_sx13(x0);
    const int16x2_t x1a = td_sx02(x1), x1b = td_sx13(x1);
    uint32_t wv = td_read32(w0);
    int16x2_t wa = td_sx02(wv), wb = td_sx13(wv);
    a00 = __smlad(wa, x0a, a00);
    a00 = __smlad(wb, x0b, a00);
    a01 = __smlad(wa, x1a, a01);
    a01 = __smlad(wb, x1b, a01);
    wv = td_read32(w1);
    wa = td_sx02(wv);
    wb = td_sx13(wv);
    a10 = __smlad(wa, x0a, a10);
    a10 = __smlad(wb, x0b, a10);
    a11 = __smlad(wa, x1a, a11);
    a11 = __smlad(wb, x1b, a11);
    c0 += 4;
    c1 += 4;
    w0 += 4;
    w1 += 4;
  }
#else
  while (k--) {
    int32_t j;
    for (j = 0; j < 4; ++j) {
      const int32_t x0 = c0[j], x1 = c1[j], v0 = w0[j], v1 = w1[j];
      a00 += v0 * x0;
      a01 += v0 * x1;
      a10 += v1 * x0;
      a11 += v1 * x1;
    }
    c0 += 4;
    c1 += 4;
    w0 += 4;
    w1 += 4;
  }
#endif
  for (k = n & 3; k > 0; --k) {
    const int32_t x0 = *c0++, x1 = *c1++, v0 = *w0++, v1 = *w1++;
    a00 += v0 * x0;
    a01 += v0 * x1;
    a10 += v1 * x0;
    a11 += v1 * x1;
  }
  a[0] = a00;
  a[1] = a01;
  a[2] = a10;
  a[3] = a11;
}

/* Gather the receptive field of output pixel (oy, ox) into dst (padding: zero point). */
static void td_im2col(const td_conv_params *p, const int8_t *in, int32_t oy, int32_t ox,
                      int8_t *dst) {
  const int32_t y0 = oy * p->stride_h - p->pad_h;
  const int32_t x0 = ox * p->stride_w - p->pad_w;
  const int32_t c = p->in_c;
  const int8_t zp = (int8_t)(-p->in_offset);
  int32_t fy, fx, i;
  for (fy = 0; fy < p->f_h; ++fy) {
    const int32_t iy = y0 + p->dil_h * fy;
    const int32_t row_ok = iy >= 0 && iy < p->in_h;
    for (fx = 0; fx < p->f_w; ++fx) {
      const int32_t ix = x0 + p->dil_w * fx;
      if (row_ok && ix >= 0 && ix < p->in_w) {
        const int8_t *src = in + (iy * p->in_w + ix) * c;
        if (c >= 16) {
          memcpy(dst, src, (size_t)c);
        } else {
          for (i = 0; i < c; ++i) dst[i] = src[i];
        }
      } else {
        for (i = 0; i < c; ++i) dst[i] = zp;
      }
      dst += c;
    }
  }
}

static const int8_t *td_column(const td_conv_params *p, const int8_t *in, int32_t pix,
                               int32_t direct, int8_t *dst) {
  const int32_t oy = pix / p->out_w, ox = pix - oy * p->out_w;
  if (direct) return in + (oy * p->stride_h * p->in_w + ox * p->stride_w) * p->in_c;
  td_im2col(p, in, oy, ox, dst);
  return dst;
}

void td_conv2d(const td_conv_params *p, const int8_t *in, int8_t *out) {
  const int32_t kk = p->f_h * p->f_w * p->in_c;
  const int32_t npix = p->out_h * p->out_w;
  const int32_t out_c = p->out_c, out_offset = p->out_offset;
  const int32_t lo = p->act_min, hi = p->act_max;
  const int32_t direct = p->f_h == 1 && p->f_w == 1 && p->pad_h == 0 && p->pad_w == 0;
  const int32_t *bias = p->bias_eff, *mult = p->mult, *shift = p->shift;
  int32_t b, pix, oc;
  if (bias == 0 || (!direct && p->scratch == 0)) {
    td_conv2d_ref(p, in, out);
    return;
  }
  for (b = 0; b < p->batches; ++b) {
    const int8_t *inb = in + b * p->in_h * p->in_w * p->in_c;
    for (pix = 0; pix < npix; pix += 2) {
      const int32_t two = pix + 1 < npix;
      const int8_t *c0 = td_column(p, inb, pix, direct, p->scratch);
      const int8_t *c1 = two ? td_column(p, inb, pix + 1, direct, p->scratch + kk) : c0;
      int8_t *o0 = out + (b * npix + pix) * out_c;
      int8_t *o1 = o0 + out_c;
      const int8_t *w = p->filter;
      for (oc = 0; oc + 1 < out_c; oc += 2) {
        int32_t a[4];
        a[0] = a[1] = bias[oc];
        a[2] = a[3] = bias[oc + 1];
        td_dot_2x2(w, w + kk, c0, c1, kk, a);
        w += 2 * kk;
        o0[oc] = td_out8(a[0], mult[oc], shift[oc], out_offset, lo, hi);
        o0[oc + 1] = td_out8(a[2], mult[oc + 1], shift[oc + 1], out_offset, lo, hi);
        if (two) {
          o1[oc] = td_out8(a[1], mult[oc], shift[oc], out_offset, lo, hi);
          o1[oc + 1] = td_out8(a[3], mult[oc + 1], shift[oc + 1], out_offset, lo, hi);
        }
      }
      if (oc < out_c) {
        int32_t a[4];
        a[0] = a[1] = a[2] = a[3] = bias[oc];
        td_dot_2x2(w, w, c0, c1, kk, a);
        o0[oc] = td_out8(a[0], mult[oc], shift[oc], out_offset, lo, hi);
        if (two) o1[oc] = td_out8(a[1], mult[oc], shift[oc], out_offset, lo, hi);
      }
    }
  }
}

/* ---- DEPTHWISE_CONV_2D fast path (depth multiplier 1) ------------------------------ */
void td_depthwise_conv2d(const td_conv_params *p, const int8_t *in, int8_t *out) {
  const int32_t c = p->in_c, in_w = p->in_w, in_h = p->in_h;
  const int32_t off = p->in_offset, out_offset = p->out_offset;
  const int32_t lo = p->act_min, hi = p->act_max;
  const int32_t row_step = p->dil_h * in_w * c, tap_step = p->dil_w * c;
  int32_t b, oy, ox, ch, fy, fx;
  if (p->depth_mult != 1) {
    td_depthwise_ref(p, in, out);
    return;
  }
  for (b = 0; b < p->batches; ++b) {
    const int8_t *inb = in + b * in_h * in_w * c;
    int8_t *o = out + b * p->out_h * p->out_w * c;
    for (oy = 0; oy < p->out_h; ++oy) {
      const int32_t y0 = oy * p->stride_h - p->pad_h;
      int32_t fy0 = 0, fy1 = p->f_h;
      while (fy0 < fy1 && y0 + p->dil_h * fy0 < 0) ++fy0;
      while (fy1 > fy0 && y0 + p->dil_h * (fy1 - 1) >= in_h) --fy1;
      for (ox = 0; ox < p->out_w; ++ox) {
        const int32_t x0 = ox * p->stride_w - p->pad_w;
        int32_t fx0 = 0, fx1 = p->f_w;
        const int8_t *base;
        while (fx0 < fx1 && x0 + p->dil_w * fx0 < 0) ++fx0;
        while (fx1 > fx0 && x0 + p->dil_w * (fx1 - 1) >= in_w) --fx1;
        base = inb + ((y0 + p->dil_h * fy0) * in_w + x0 + p->dil_w * fx0) * c;
        ch = 0;
#if TD_DSP
        {
          const int16x2_t off2 = td_pack_offset(off);
          for (; ch + 4 <= c; ch += 4) {
            int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            const int8_t *xr = base + ch;
            const int8_t *wr = p->filter + (fy0 * p->f_w + fx0) * c + ch;
            for (fy = fy0; fy < fy1; ++fy) {
              const int8_t *xp = xr, *wp = wr;
              for (fx = fx0; fx < fx1; ++fx) {
                const uint32_t xv = td_read32(xp), wv = td_read32(wp);
                const int16x2_t xa = td_sxa02(off2, xv), xb = td_sxa13(off2, xv);
                const int16x2_t wa = td_sx02(wv), wb = td_sx13(wv);
                a0 = __smlabb(xa, wa, a0);
                a2 = __smlatt(xa, wa, a2);
                a1 = __smlabb(xb, wb, a1);
                a3 = __smlatt(xb, wb, a3);
                xp += tap_step;
                wp += c;
              }
              xr += row_step;
              wr += p->f_w * c;
            }
            if (p->bias) {
              a0 += p->bias[ch];
              a1 += p->bias[ch + 1];
              a2 += p->bias[ch + 2];
              a3 += p->bias[ch + 3];
            }
            o[ch] = td_out8(a0, p->mult[ch], p->shift[ch], out_offset, lo, hi);
            o[ch + 1] = td_out8(a1, p->mult[ch + 1], p->shift[ch + 1], out_offset, lo, hi);
            o[ch + 2] = td_out8(a2, p->mult[ch + 2], p->shift[ch + 2], out_offset, lo, hi);
            o[ch + 3] = td_out8(a3, p->mult[ch + 3], p->shift[ch + 3], out_offset, lo, hi);
          }
        }
#endif
        for (; ch < c; ++ch) {
          int32_t acc = p->bias ? p->bias[ch] : 0;
          const int8_t *xr = base + ch;
          const int8_t *wr = p->filter + (fy0 * p->f_w + fx0) * c + ch;
          for (fy = fy0; fy < fy1; ++fy) {
            const int8_t *xp = xr, *wp = wr;
            for (fx = fx0; fx < fx1; ++fx) {
              acc += (int32_t)*wp * ((int32_t)*xp + off);
              xp += tap_step;
              wp += c;
            }
            xr += row_step;
            wr += p->f_w * c;
          }
          o[ch] = td_out8(acc, p->mult[ch], p->shift[ch], out_offset, lo, hi);
        }
        o += c;
      }
    }
  }
}

/* ---- FULLY_CONNECTED ---------------------------------------------------------------- */
static void td_fc_ref(const td_fc_params *p, const int8_t *in, int8_t *out) {
  int32_t b, oc, k;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *x = in + b * p->accum;
    for (oc = 0; oc < p->out_c; ++oc) {
      const int8_t *w = p->filter + oc * p->accum;
      const int32_t ch = p->per_channel ? oc : 0;
      int32_t acc = 0;
      for (k = 0; k < p->accum; ++k) {
        acc += ((int32_t)w[k] + p->filter_offset) * ((int32_t)x[k] + p->in_offset);
      }
      if (p->bias) acc += p->bias[oc];
      out[b * p->out_c + oc] =
          td_out8(acc, p->mult[ch], p->shift[ch], p->out_offset, p->act_min, p->act_max);
    }
  }
}

void td_fully_connected(const td_fc_params *p, const int8_t *in, int8_t *out) {
  const int32_t n = p->accum, out_c = p->out_c, out_offset = p->out_offset;
  const int32_t lo = p->act_min, hi = p->act_max;
  const int32_t *bias = p->bias_eff;
  int32_t b, oc;
  if (bias == 0 || p->filter_offset != 0) {
    td_fc_ref(p, in, out);
    return;
  }
  for (b = 0; b < p->batches; ++b) {
    const int8_t *x = in + b * n;
    int8_t *y = out + b * out_c;
    const int8_t *w = p->filter;
    for (oc = 0; oc + 1 < out_c; oc += 2) {
      int32_t a[4];
      const int32_t c0 = p->per_channel ? oc : 0, c1 = p->per_channel ? oc + 1 : 0;
      a[0] = a[1] = bias[oc];
      a[2] = a[3] = bias[oc + 1];
      td_dot_2x2(w, w + n, x, x, n, a);
      w += 2 * n;
      y[oc] = td_out8(a[0], p->mult[c0], p->shift[c0], out_offset, lo, hi);
      y[oc + 1] = td_out8(a[2], p->mult[c1], p->shift[c1], out_offset, lo, hi);
    }
    if (oc < out_c) {
      int32_t a[4];
      const int32_t c0 = p->per_channel ? oc : 0;
      a[0] = a[1] = a[2] = a[3] = bias[oc];
      td_dot_2x2(w, w, x, x, n, a);
      y[oc] = td_out8(a[0], p->mult[c0], p->shift[c0], out_offset, lo, hi);
    }
  }
}

/* ---- pooling ------------------------------------------------------------------------ */
static void td_pool(const td_pool_params *p, const int8_t *in, int8_t *out, int32_t avg) {
  const int32_t c = p->c, in_w = p->in_w;
  int32_t b, oy, ox, ch, fy, fx;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *inb = in + b * p->in_h * in_w * c;
    for (oy = 0; oy < p->out_h; ++oy) {
      const int32_t y0 = oy * p->stride_h - p->pad_h;
      const int32_t fy0 = y0 < 0 ? -y0 : 0;
      const int32_t fy1 = p->f_h < p->in_h - y0 ? p->f_h : p->in_h - y0;
      for (ox = 0; ox < p->out_w; ++ox) {
        const int32_t x0 = ox * p->stride_w - p->pad_w;
        const int32_t fx0 = x0 < 0 ? -x0 : 0;
        const int32_t fx1 = p->f_w < in_w - x0 ? p->f_w : in_w - x0;
        const int32_t count = (fy1 - fy0) * (fx1 - fx0);
        const int8_t *base = inb + ((y0 + fy0) * in_w + x0 + fx0) * c;
        for (ch = 0; ch < c; ++ch) {
          int32_t acc = avg ? 0 : -128;
          const int8_t *row = base + ch;
          for (fy = fy0; fy < fy1; ++fy) {
            const int8_t *q = row;
            for (fx = fx0; fx < fx1; ++fx) {
              const int32_t v = *q;
              if (avg) {
                acc += v;
              } else if (v > acc) {
                acc = v;
              }
              q += c;
            }
            row += in_w * c;
          }
          if (avg && count > 0) {
            acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
          }
          *out++ = (int8_t)td_clamp_i32(acc, p->act_min, p->act_max);
        }
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
