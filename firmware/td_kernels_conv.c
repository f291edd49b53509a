/* tinydeploy kernels: the fast variants of CONV_2D and FULLY_CONNECTED
 * (the reference variants: td_kernels_conv_ref.c; pooling: td_kernels_pool.c). Each entry
 * point reads the data layout td_kernels.h declares for it.
 *
 * Tensors are NHWC int8. Accumulation is int32 over (input + input_offset) * filter,
 * then bias, per-channel fixed-point requantization, output offset and activation clamp.
 * Taps outside the input (implicit padding) contribute nothing.
 *
 * Fast paths (same integer sums, so bit-identical to the reference variants). Each hot
 * loop has two instances: requantization in one multiply (td_requant_rq), and the general
 * one that also takes channels with a shift >= 0 (the *_fastg entry points).
 * - CONV_2D: the generator folds input_offset * sum(weights) into the bias (bias_eff), so
 *   the inner loop is a plain int8 dot product, and interleaves the filter rows by four.
 *   Two output pixels' receptive fields are gathered (im2col) into the scratch buffer,
 *   padding filled with the input zero point (whose offset-corrected value is 0); an
 *   unpadded 1x1 convolution reads its input directly (a matrix product). With the scratch
 *   for it, a pixel pair is widened to int16 once and runs 2 pixels x 2 output channels per
 *   inner loop (td_kernels_gemm.c); else one pixel x 4 output channels (SXTB16 + SMLAD).
 * (DEPTHWISE_CONV_2D: td_kernels_dww.c.)
 * - FULLY_CONNECTED (filter offset 0): the same dot products as CONV_2D.
 */
#include "td_kernels.h"
#include "td_simd.h"

/* ---- CONV_2D / FULLY_CONNECTED fast path ------------------------------------------ */

/* acc[r] += sum_k w_r[k] * x[k], r = 0..3, over n int8. w is one group of four filter rows
 * in the generator's interleaved layout (td_kernels.h): for each 4 k, 4 bytes of row 0, of
 * row 1, of row 2, of row 3; then the n % 4 tail bytes of row 0, 1, 2, 3. */
TD_ALWAYS_INLINE void td_dot_1x4(const int8_t *w, const int8_t *x, int32_t n, int32_t *acc) {
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
  int32_t k, t = n & 3;
#if TD_DSP
  k = n >> 2;
  if (((uintptr_t)w & 3u) == 0 && k > 0) {
    /* one LDM of the four rows' words per 4 k (ascending registers), one asm block:
     * 16 multiply-accumulates in 22 instructions */
    register uint32_t w0 __asm__("r8"), w1 __asm__("r9"), w2 __asm__("r10"),
        w3 __asm__("r11");
    uint32_t xv, xa, tt;
    __asm__ volatile(
        "1:\n\t"
        "ldr %[xv], [%[x]], #4\n\t"
        "ldm %[w]!, {%[w0], %[w1], %[w2], %[w3]}\n\t"
        "sxtb16 %[xa], %[xv]\n\t"
        "sxtb16 %[xv], %[xv], ror #8\n\t"
        "sxtb16 %[t], %[w0]\n\t"
        "smlad %[a0], %[t], %[xa], %[a0]\n\t"
        "sxtb16 %[w0], %[w0], ror #8\n\t"
        "smlad %[a0], %[w0], %[xv], %[a0]\n\t"
        "sxtb16 %[t], %[w1]\n\t"
        "smlad %[a1], %[t], %[xa], %[a1]\n\t"
        "sxtb16 %[w1], %[w1], ror #8\n\t"
        "smlad %[a1], %[w1], %[xv], %[a1]\n\t"
        "sxtb16 %[t], %[w2]\n\t"
        "smlad %[a2], %[t], %[xa], %[a2]\n\t"
        "sxtb16 %[w2], %[w2], ror #8\n\t"
        "smlad %[a2], %[w2], %[xv], %[a2]\n\t"
        "sxtb16 %[t], %[w3]\n\t"
        "smlad %[a3], %[t], %[xa], %[a3]\n\t"
        "sxtb16 %[w3], %[w3], ror #8\n\t"
        "smlad %[a3], %[w3], %[xv], %[a3]\n\t"
        "subs %[n], %[n], #1\n\t"
        "bne 1b"
        : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(x),
          [w] "+r"(w), [n] "+r"(k), [xv] "=&r"(xv), [xa] "=&r"(xa), [t] "=&r"(tt),
          [w0] "=&r"(w0), [w1] "=&r"(w1), [w2] "=&r"(w2), [w3] "=&r"(w3)
        :
        : "cc", "memory");
  }
  for (; k > 0; --k) {
    const uint32_t xv = td_read32(x);
    const int16x2_t xa = td_sx02(xv), xb = td_sx13(xv);
    uint32_t wv = td_read32(w);
    a0 = __smlad(td_sx02(wv), xa, a0);
    a0 = __smlad(td_sx13(wv), xb, a0);
    wv = td_read32(w + 4);
    a1 = __smlad(td_sx02(wv), xa, a1);
    a1 = __smlad(td_sx13(wv), xb, a1);
    wv = td_read32(w + 8);
    a2 = __smlad(td_sx02(wv), xa, a2);
    a2 = __smlad(td_sx13(wv), xb, a2);
    wv = td_read32(w + 12);
    a3 = __smlad(td_sx02(wv), xa, a3);
    a3 = __smlad(td_sx13(wv), xb, a3);
    x += 4;
    w += 16;
  }
#else
  for (k = n >> 2; k > 0; --k) {
    int32_t j;
    for (j = 0; j < 4; ++j) {
      const int32_t xv = x[j];
      a0 += w[j] * xv;
      a1 += w[4 + j] * xv;
      a2 += w[8 + j] * xv;
      a3 += w[12 + j] * xv;
    }
    x += 4;
    w += 16;
  }
#endif
  for (k = 0; k < t; ++k) {
    const int32_t xv = x[k];
    a0 += w[k] * xv;
    a1 += w[t + k] * xv;
    a2 += w[2 * t + k] * xv;
    a3 += w[3 * t + k] * xv;
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
}

/* sum_k w[k] * x[k] over n int8 (plain layout). */
TD_HOT int32_t td_dot_1x1(const int8_t *w, const int8_t *x, int32_t n, int32_t acc) {
  int32_t k;
#if TD_DSP
  for (k = n >> 2; k > 0; --k) {
    const uint32_t xv = td_read32(x), wv = td_read32(w);
    acc = __smlad(td_sx02(wv), td_sx02(xv), acc);
    acc = __smlad(td_sx13(wv), td_sx13(xv), acc);
    x += 4;
    w += 4;
  }
  n &= 3;
#endif
  for (k = 0; k < n; ++k) acc += w[k] * x[k];
  return acc;
}

/* One output pixel / FC row: x (n int8) against all out_c filter rows (interleaved
 * layout), folded bias, requantization: channel c's rq entry at rq + rs * c (rs 4: the
 * conv's quads, 2: per-channel FC pairs, 0: one pair). */
TD_ALWAYS_INLINE void td_rows_b(const int8_t *w, const int8_t *x, int32_t n, int32_t out_c,
                                const int32_t *bias, const int32_t *rq, int32_t rs,
                                int32_t out_offset, int8_t *y, const int32_t gen) {
  int32_t oc = 0;
  for (; oc + 4 <= out_c; oc += 4) {
    int32_t a[4], j;
    a[0] = bias[oc];
    a[1] = bias[oc + 1];
    a[2] = bias[oc + 2];
    a[3] = bias[oc + 3];
    td_dot_1x4(w, x, n, a);
    w += 4 * n;
    for (j = 0; j < 4; ++j) y[oc + j] = td_out8q(a[j], rq + rs * (oc + j), out_offset, gen);
  }
  for (; oc < out_c; ++oc) {
    y[oc] = td_out8q(td_dot_1x1(w, x, n, bias[oc]), rq + rs * oc, out_offset, gen);
    w += n;
  }
}

TD_HOT void td_rows(const int8_t *w, const int8_t *x, int32_t n, int32_t out_c,
                    const int32_t *bias, const int32_t *rq, int32_t rs, int32_t out_offset,
                    int8_t *y) {
  td_rows_b(w, x, n, out_c, bias, rq, rs, out_offset, y, 0);
}
TD_HOT void td_rows_g(const int8_t *w, const int8_t *x, int32_t n, int32_t out_c,
                      const int32_t *bias, const int32_t *rq, int32_t rs, int32_t out_offset,
                      int8_t *y) {
  td_rows_b(w, x, n, out_c, bias, rq, rs, out_offset, y, 1);
}

/* Gather the receptive field of output pixel (oy, ox) into dst (padding: zero point). */
static void td_im2col(const td_conv_params *p, const int8_t *in, int32_t oy, int32_t ox,
                      int8_t *dst) {
  const int32_t y0 = oy * p->stride_h - p->pad_h;
  const int32_t x0 = ox * p->stride_w - p->pad_w;
  const int32_t c = p->in_c, f_h = p->f_h, f_w = p->f_w, in_h = p->in_h, in_w = p->in_w;
  const int32_t dil_h = p->dil_h, dil_w = p->dil_w;
  const int8_t zp = (int8_t)(-p->in_offset);
  int32_t fy, fx, i;
  for (fy = 0; fy < f_h; ++fy) {
    const int32_t iy = y0 + dil_h * fy;
    const int32_t row_ok = iy >= 0 && iy < in_h;
    if (row_ok && dil_w == 1 && x0 >= 0 && x0 + f_w <= in_w) { /* whole row inside */
      memcpy(dst, in + (iy * in_w + x0) * c, (size_t)(f_w * c));
      dst += f_w * c;
      continue;
    }
    for (fx = 0; fx < f_w; ++fx) {
      const int32_t ix = x0 + dil_w * fx;
      if (row_ok && ix >= 0 && ix < in_w) {
        const int8_t *src = in + (iy * in_w + ix) * c;
        for (i = 0; i < c; ++i) dst[i] = src[i];
      } else {
        for (i = 0; i < c; ++i) dst[i] = zp;
      }
      dst += c;
    }
  }
}

/* td_conv2d_1x1c1: an unpadded 1x1 convolution of one input channel, every shift <= -1 (the
 * generator picks it; the quads hold the rounding constant): the interleaved layout then
 * holds one weight per output channel in order. Per output: one multiply, the quad's one-multiply
 * requantization and the activation clamp inline (no per-group call, no second pass). The
 * pixel is loaded before any of its outputs is written (the in-place overlap of overlap.py
 * holds). */
void td_conv2d_1x1c1(const td_conv_params *p, const int8_t *in, int8_t *out) {
  /* every field in a local: the int8 output stores may alias *p for the compiler */
  const int32_t out_c = p->out_c, out_w = p->out_w, out_h = p->out_h, off = p->out_offset;
  const int32_t lo = p->act_min > -128 ? p->act_min : -128, hi = p->act_max < 127 ? p->act_max : 127;
  const int32_t pix_stride = p->stride_w, row_stride = p->stride_h * p->in_w;
  const int32_t image = p->in_h * p->in_w, batches = p->batches;
  const int8_t *const filter = p->filter;
  const int32_t *const bias = p->bias_eff, *const rq = p->rq;
  int32_t b, oy, ox, oc;
  for (b = 0; b < batches; ++b) {
    const int8_t *inb = in + b * image;
    for (oy = 0; oy < out_h; ++oy) {
      for (ox = 0; ox < out_w; ++ox) {
        const int32_t x0 = inb[oy * row_stride + ox * pix_stride];
        for (oc = 0; oc < out_c; ++oc) {
          const int32_t *q = rq + 4 * oc;
          int32_t acc = bias[oc] + filter[oc] * x0, v;
#if defined(__thumb2__) && !defined(TD_PORTABLE)
          {
            uint32_t l = (uint32_t)q[2];
            int32_t h = q[3];
            __asm__("smlal %0, %1, %2, %3" : "+r"(l), "+r"(h) : "r"(acc), "r"(q[0]));
            __asm__("smlal %0, %1, %2, %3" : "+r"(l), "+r"(h) : "r"((uint32_t)acc >> 31), "r"(INT32_MIN));
            v = h >> q[1];
          }
#else
          v = td_requant_rq(acc, q[0], q[1]);
#endif
          v += off;
          out[oc] = (int8_t)(v < lo ? lo : v > hi ? hi : v);
        }
        out += out_c;
      }
    }
  }
}

TD_ALWAYS_INLINE void td_conv2d_b(const td_conv_params *p, const int8_t *in, int8_t *out,
                                  const int32_t gen) {
  const int32_t kk = p->f_h * p->f_w * p->in_c, out_c = p->out_c, out_w = p->out_w;
  const int32_t npix = p->out_h * out_w;
  const int32_t direct = p->f_h == 1 && p->f_w == 1 && p->pad_h == 0 && p->pad_w == 0;
  const int32_t pix_stride = p->stride_w * p->in_c, row_stride = p->stride_h * p->in_w * p->in_c;
  /* the widened pixel pair (td_kernels_gemm.c): after the raw fields in the scratch,
   * word-aligned, when the plan reserved it (scratch_cols 2, kk >= 4) */
  uint32_t *const u = p->scratch && p->scratch_cols >= 2 && kk >= 4 ? (uint32_t *)(void *)(
      ((uintptr_t)(p->scratch + (direct ? 0 : 2 * kk)) + 3u) & ~(uintptr_t)3u) : 0;
  int8_t *const out0 = out;
  int32_t b, pix;
  /* output pixels in pairs (flat order within an image). A pair's fields are read in full
   * (widened, or gathered into the scratch) before its outputs are written, and pixels
   * taken one at a time write theirs after reading only their own field, so the in-place
   * overlap planned by overlap.py holds (a 1x1 convolution reads its input in place). */
  for (b = 0; b < p->batches; ++b) {
    const int8_t *inb = in + b * p->in_h * p->in_w * p->in_c;
    if (!direct && p->scratch_cols < 2) { /* room for one receptive field only */
      for (pix = 0; pix < npix; ++pix) {
        const int32_t oy = pix / out_w;
        td_im2col(p, inb, oy, pix - oy * out_w, p->scratch);
        (gen ? td_rows_g : td_rows)(p->filter, p->scratch, kk, out_c, p->bias_eff, p->rq, 4, p->out_offset, out);
        out += out_c;
      }
      continue;
    }
    for (pix = 0; pix < npix; pix += 2) {
      const int32_t oy = pix / out_w, ox = pix - oy * out_w;
      const int32_t oy1 = ox + 1 < out_w ? oy : oy + 1, ox1 = ox + 1 < out_w ? ox + 1 : 0;
      const int8_t *c0, *c1;
      if (direct) {
        c0 = inb + oy * row_stride + ox * pix_stride;
        c1 = inb + oy1 * row_stride + ox1 * pix_stride;
      } else {
        td_im2col(p, inb, oy, ox, p->scratch);
        c0 = p->scratch;
        c1 = p->scratch + kk;
        if (pix + 1 < npix) td_im2col(p, inb, oy1, ox1, p->scratch + kk);
      }
      if (pix + 1 < npix && u) { /* both fields widened first: outputs in place */
        td_widen2(c0, c1, kk >> 2, u);
        (gen ? td_rows2u_g : td_rows2u)(p->filter, u, c0, c1, kk, out_c, p->bias_eff, p->rq, p->out_offset, out, out + out_c);
        out += 2 * out_c;
      } else { /* one pixel at a time (a 1x1 without the scratch, or the last pixel) */
        (gen ? td_rows_g : td_rows)(p->filter, c0, kk, out_c, p->bias_eff, p->rq, 4, p->out_offset, out);
        out += out_c;
        if (pix + 1 < npix) {
          (gen ? td_rows_g : td_rows)(p->filter, c1, kk, out_c, p->bias_eff, p->rq, 4, p->out_offset, out);
          out += out_c;
        }
      }
    }
  }
  td_act_clamp(out0, p->batches * npix * out_c, p->act_min, p->act_max);
}
void td_conv2d_fast(const td_conv_params *p, const int8_t *in, int8_t *out) {
  td_conv2d_b(p, in, out, 0);
}
void td_conv2d_fastg(const td_conv_params *p, const int8_t *in, int8_t *out) {
  td_conv2d_b(p, in, out, 1);
}

/* ---- FULLY_CONNECTED ---------------------------------------------------------------- */
TD_ALWAYS_INLINE void td_fc_b(const td_fc_params *p, const int8_t *in, int8_t *out,
                              const int32_t gen) {
  int32_t b;
  for (b = 0; b < p->batches; ++b) {
    (gen ? td_rows_g : td_rows)(p->filter, in + b * p->accum, p->accum, p->out_c, p->bias_eff,
                                p->rq, 2 * p->per_channel, p->out_offset,
                                out + b * p->out_c);
  }
  td_act_clamp(out, p->batches * p->out_c, p->act_min, p->act_max);
}
void td_fully_connected_fast(const td_fc_params *p, const int8_t *in, int8_t *out) {
  td_fc_b(p, in, out, 0);
}
void td_fully_connected_fastg(const td_fc_params *p, const int8_t *in, int8_t *out) {
  td_fc_b(p, in, out, 1);
}

/* ---- FULLY_CONNECTED streaming (td_kernels.h) ---------------------------------------- */
void td_fc_stream_begin(const td_fc_params *p, int32_t *acc) {
  int32_t oc;
  for (oc = 0; oc < p->out_c; ++oc) acc[oc] = p->bias_eff[oc];
}

/* the slice's filter columns: four rows at a time (td_dot_1x4, SMLAD on int16 pairs), then
 * the out_c % 4 last rows one at a time, as td_rows */
TD_O2 void td_fc_stream_accum(const td_fc_params *p, int32_t k0, int32_t n, const int8_t *x,
                              int32_t *acc) {
  const int32_t out_c = p->out_c;
  const int8_t *w = p->filter + out_c * k0;
  int32_t oc = 0;
  for (; oc + 4 <= out_c; oc += 4) {
    td_dot_1x4(w, x, n, acc + oc);
    w += 4 * n;
  }
  for (; oc < out_c; ++oc) {
    acc[oc] = td_dot_1x1(w, x, n, acc[oc]);
    w += n;
  }
}

TD_ALWAYS_INLINE void td_fc_stream_end_b(const td_fc_params *p, const int32_t *acc,
                                         int8_t *out, const int32_t gen) {
  const int32_t rs = 2 * p->per_channel;
  int32_t oc;
  for (oc = 0; oc < p->out_c; ++oc) out[oc] = td_out8q(acc[oc], p->rq + rs * oc, p->out_offset, gen);
  td_act_clamp(out, p->out_c, p->act_min, p->act_max);
}
void td_fc_stream_end(const td_fc_params *p, const int32_t *acc, int8_t *out) {
  td_fc_stream_end_b(p, acc, out, 0);
}
void td_fc_stream_endg(const td_fc_params *p, const int32_t *acc, int8_t *out) {
  td_fc_stream_end_b(p, acc, out, 1);
}
