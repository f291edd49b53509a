/* tinydeploy extension kernels: element-wise ADD/SUB/MUL/MAXIMUM/MINIMUM on int8 or int16,
 * STRIDED_SLICE (and TRANSPOSE as a gather or a permutation) and TRANSPOSE_CONV (see
 * td_kernels_ext.h).
 */
#include <string.h>

#include "td_kernels_ext.h"
#include "td_simd.h"

static int32_t td_ld(const void *p, int32_t i, int32_t es) {
  return es == 2 ? (int32_t)((const int16_t *)p)[i] : (int32_t)((const int8_t *)p)[i];
}

static void td_st(void *p, int32_t i, int32_t es, int32_t v) {
  if (es == 2) {
    ((int16_t *)p)[i] = (int16_t)v;
  } else {
    ((int8_t *)p)[i] = (int8_t)v;
  }
}

void td_binary_ext(const td_binary_params *p, int32_t kind, int32_t es, const void *in1,
                   const void *in2, void *out) {
  if (p->broadcast) {
    td_binary_rows(p, kind, es, in1, in2, out);
  } else {
    td_binary_row(p, kind, es, p->size, in1, 1, in2, 1, out);
  }
}

/* one run of the innermost axis: inner_n copies of run bytes, inner_step apart */
static uint8_t *td_slice_row(const td_strided_slice_params *p, const uint8_t *src,
                             uint8_t *dst) {
  const int32_t n = p->inner_n, step = p->inner_step, run = p->run;
  int32_t i;
  if (step == run) { /* contiguous: one copy */
    memcpy(dst, src, (size_t)run * (size_t)n);
    return dst + run * n;
  }
  if (run == 1) {
    for (i = 0; i < n; ++i) dst[i] = src[i * step];
  } else if (run == 2) {
    for (i = 0; i < n; ++i) memcpy(dst + 2 * i, src + i * step, 2);
  } else if (run == 4) {
    for (i = 0; i < n; ++i) memcpy(dst + 4 * i, src + i * step, 4);
  } else {
    for (i = 0; i < n; ++i) memcpy(dst + i * run, src + i * step, (size_t)run);
  }
  return dst + run * n;
}

void td_strided_slice(const td_strided_slice_params *p, const void *in, void *out) {
  /* the last outer axis is a loop of its own around the rows (no index walk per row);
   * single bytes (a TRANSPOSE or slice of int8 along an outer axis) are gathered inline */
  const int32_t last = TD_MAX_RANK - 2, rows = p->count[last], row_step = p->step[last];
  const int32_t n = p->inner_n, step = p->inner_step;
  const int32_t bytes = p->run == 1 && step != 1;
  int32_t idx[TD_MAX_RANK - 2] = {0, 0, 0, 0};
  const uint8_t *src = (const uint8_t *)in + p->base;
  uint8_t *dst = (uint8_t *)out;
  int32_t d, r, i;
  for (;;) {
    const uint8_t *s = src;
    for (r = 0; r < rows; ++r, s += row_step) {
      if (bytes) {
        const uint8_t *q = s;
        for (i = 0; i < n; ++i, q += step) *dst++ = *q;
      } else {
        dst = td_slice_row(p, s, dst);
      }
    }
    for (d = last - 1; d >= 0; --d) {
      src += p->step[d];
      if (++idx[d] < p->count[d]) break;
      src -= p->step[d] * p->count[d];
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

void td_permute(const td_permute_params *p, const void *in, void *out) {
  const int32_t last = TD_MAX_RANK - 1, n = p->count[last], es = p->es;
  const int32_t ss = p->src_step[last], ds = p->dst_step[last];
  int32_t idx[TD_MAX_RANK - 1] = {0, 0, 0, 0, 0};
  const uint8_t *src = (const uint8_t *)in;
  uint8_t *dst = (uint8_t *)out;
  int32_t d, i;
  for (;;) {
    const uint8_t *s = src;
    uint8_t *o = dst;
    if (es == 1) {
      i = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
      if (ss == 1) { /* a word of consecutive input bytes, scattered */
        const int32_t ds2 = 2 * ds, ds3 = 3 * ds, ds4 = 4 * ds;
        for (; i + 4 <= n; i += 4, s += 4, o += ds4) {
          uint32_t v;
          memcpy(&v, s, 4);
          o[0] = (uint8_t)v;
          o[ds] = (uint8_t)(v >> 8);
          o[ds2] = (uint8_t)(v >> 16);
          o[ds3] = (uint8_t)(v >> 24);
        }
      }
#endif
      for (; i < n; ++i, s += ss, o += ds) *o = *s;
    } else if (es == 2) {
      for (i = 0; i < n; ++i, s += ss, o += ds) memcpy(o, s, 2);
    } else {
      for (i = 0; i < n; ++i, s += ss, o += ds) memcpy(o, s, 4);
    }
    for (d = last - 1; d >= 0; --d) {
      src += p->src_step[d];
      dst += p->dst_step[d];
      if (++idx[d] < p->count[d]) break;
      src -= p->src_step[d] * p->count[d];
      dst -= p->dst_step[d] * p->count[d];
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

/* sum_k w[k] * (x[k] + off) over n int8 (SXTAB16 + SMLAD with the DSP extension) */
static int32_t td_dot_off(const int8_t *w, const int8_t *x, int32_t n, int32_t off) {
  int32_t acc = 0, k = 0;
#if TD_DSP
  const int16x2_t off2 = td_pack_offset(off);
  for (; k + 4 <= n; k += 4) {
    const uint32_t xv = td_read32(x + k), wv = td_read32(w + k);
    acc = __smlad(td_sx02(wv), td_sxa02(off2, xv), acc);
    acc = __smlad(td_sx13(wv), td_sxa13(off2, xv), acc);
  }
#endif
  for (; k < n; ++k) acc += (int32_t)w[k] * ((int32_t)x[k] + off);
  return acc;
}

void td_transpose_conv8(const td_tconv_params *p, const int8_t *in, int8_t *out,
                        int32_t *scratch) {
  const int32_t in_c = p->in_c, out_c = p->out_c, f_h = p->f_h, f_w = p->f_w;
  const int32_t n_out = p->batches * p->out_h * p->out_w * out_c;
  const int32_t w_oc = f_h * f_w * in_c; /* filter step between output channels */
  uint32_t *const acc0 = (uint32_t *)scratch; /* TFLM sums in int32, wrapping */
  int32_t b, y, x, fy, fx, oc, i;
  for (i = 0; i < n_out; ++i) acc0[i] = 0;
  for (b = 0; b < p->batches; ++b) {
    for (y = 0; y < p->in_h; ++y) {
      const int32_t oy0 = y * p->stride_h - p->pad_h;
      for (x = 0; x < p->in_w; ++x) {
        const int32_t ox0 = x * p->stride_w - p->pad_w;
        const int8_t *xv = in + ((b * p->in_h + y) * p->in_w + x) * in_c;
        for (fy = 0; fy < f_h; ++fy) {
          const int32_t oy = oy0 + fy;
          if (oy < 0 || oy >= p->out_h) continue;
          for (fx = 0; fx < f_w; ++fx) {
            const int32_t ox = ox0 + fx;
            const int8_t *w = p->filter + (fy * f_w + fx) * in_c;
            uint32_t *acc;
            if (ox < 0 || ox >= p->out_w) continue;
            acc = acc0 + ((b * p->out_h + oy) * p->out_w + ox) * out_c;
            for (oc = 0; oc < out_c; ++oc) {
              acc[oc] += (uint32_t)td_dot_off(w + oc * w_oc, xv, in_c, p->in_offset);
            }
          }
        }
      }
    }
  }
  for (i = 0; i < n_out; ++i) {
    const int32_t c = i % out_c;
    uint32_t a = acc0[i];
    int32_t v;
    if (p->bias) a += (uint32_t)((const int32_t *)p->bias)[c];
    v = td_mbqm((int32_t)a, p->mult[c], p->shift[c]) + p->out_offset;
    out[i] = (int8_t)td_clamp_i32(v, p->act_min, p->act_max);
  }
}

void td_transpose_conv(const td_tconv_params *p, const void *in, void *out, int64_t *scratch) {
  const int32_t es = p->in16 ? 2 : 1;
  const int32_t n_out = p->batches * p->out_h * p->out_w * p->out_c;
  int32_t b, y, x, ic, fy, fx, oc, i;
  for (i = 0; i < n_out; ++i) scratch[i] = 0;
  for (b = 0; b < p->batches; ++b) {
    for (y = 0; y < p->in_h; ++y) {
      for (x = 0; x < p->in_w; ++x) {
        for (ic = 0; ic < p->in_c; ++ic) {
          const int32_t v =
              td_ld(in, ((b * p->in_h + y) * p->in_w + x) * p->in_c + ic, es) + p->in_offset;
          const int32_t oy0 = y * p->stride_h - p->pad_h;
          const int32_t ox0 = x * p->stride_w - p->pad_w;
          for (fy = 0; fy < p->f_h; ++fy) {
            const int32_t oy = oy0 + fy;
            if (oy < 0 || oy >= p->out_h) continue;
            for (fx = 0; fx < p->f_w; ++fx) {
              const int32_t ox = ox0 + fx;
              int64_t *acc;
              if (ox < 0 || ox >= p->out_w) continue;
              acc = scratch + ((b * p->out_h + oy) * p->out_w + ox) * p->out_c;
              for (oc = 0; oc < p->out_c; ++oc) {
                const int32_t w = p->filter[((oc * p->f_h + fy) * p->f_w + fx) * p->in_c + ic];
                acc[oc] += (int64_t)v * w;
              }
            }
          }
        }
      }
    }
  }
  for (i = 0; i < n_out; ++i) {
    const int32_t c = i % p->out_c;
    int32_t v;
    if (p->in16) {
      int64_t acc = scratch[i];
      if (p->bias) acc += ((const int64_t *)p->bias)[c];
      v = td_mbqm64(acc, p->mult[c], p->shift[c]);
    } else {
      /* TFLM accumulates in int32 (wrapping); the low 32 bits are the same */
      uint32_t acc = (uint32_t)scratch[i];
      if (p->bias) acc += (uint32_t)((const int32_t *)p->bias)[c];
      v = td_mbqm((int32_t)acc, p->mult[c], p->shift[c]);
    }
    v += p->out_offset;
    if (v < p->act_min) v = p->act_min;
    if (v > p->act_max) v = p->act_max;
    td_st(out, i, es, v);
  }
}
