/* tinydeploy 16x8 kernels: int16 activations, int8 weights, int64 (or int32) bias, as
 * TFLite Micro's reference kernels compute them (see td_kernels_ext.h).
 */
#include <string.h>

#include "td_kernels_ext.h"
#include "td_simd.h"

int32_t td_mbqm64(int64_t x, int32_t mult, int32_t shift) {
  const int32_t reduced = mult < 0x7FFF0000 ? (mult + (1 << 15)) >> 16 : 0x7FFF;
  const int32_t total_shift = 15 - shift;
  const int64_t round = (int64_t)1 << (total_shift - 1);
  return (int32_t)((x * (int64_t)reduced + round) >> total_shift);
}

static int16_t td_clamp16(int32_t v, int32_t lo, int32_t hi) {
  if (v < lo) v = lo;
  if (v > hi) v = hi;
  return (int16_t)v;
}

/* accumulator + bias, then rescale: int64 bias (TFLM's 64-bit requantization), or int32
 * bias with TFLM's int32 wrap and its 32-bit requantization */
static int32_t td_scale_acc(int64_t acc, const int32_t *bias, int32_t bias64, int32_t c,
                            int32_t mult, int32_t shift) {
  if (bias64) {
    if (bias) acc += ((const int64_t *)(const void *)bias)[c];
    return td_mbqm64(acc, mult, shift);
  } else {
    uint32_t a = (uint32_t)acc;
    if (bias) a += (uint32_t)bias[c];
    return td_mbqm((int32_t)a, mult, shift);
  }
}

void td_conv2d_16(const td_conv_params *p, int32_t bias64, const int16_t *in, int16_t *out) {
  int32_t b, oy, ox, oc, fy, fx, ic;
  for (b = 0; b < p->batches; ++b) {
    for (oy = 0; oy < p->out_h; ++oy) {
      const int32_t y0 = oy * p->stride_h - p->pad_h;
      for (ox = 0; ox < p->out_w; ++ox) {
        const int32_t x0 = ox * p->stride_w - p->pad_w;
        for (oc = 0; oc < p->out_c; ++oc) {
          int64_t acc = 0;
          for (fy = 0; fy < p->f_h; ++fy) {
            const int32_t y = y0 + p->dil_h * fy;
            if (y < 0 || y >= p->in_h) continue;
            for (fx = 0; fx < p->f_w; ++fx) {
              const int32_t x = x0 + p->dil_w * fx;
              const int16_t *src;
              const int8_t *w;
              if (x < 0 || x >= p->in_w) continue;
              src = in + ((b * p->in_h + y) * p->in_w + x) * p->in_c;
              w = p->filter + ((oc * p->f_h + fy) * p->f_w + fx) * p->in_c;
              for (ic = 0; ic < p->in_c; ++ic) acc += (int32_t)w[ic] * (int32_t)src[ic];
            }
          }
          out[((b * p->out_h + oy) * p->out_w + ox) * p->out_c + oc] = td_clamp16(
              td_scale_acc(acc, p->bias, bias64, oc, p->mult[oc], p->shift[oc]) +
                  p->out_offset,
              p->act_min, p->act_max);
        }
      }
    }
  }
}

void td_depthwise_conv2d_16(const td_conv_params *p, int32_t bias64, const int16_t *in,
                            int16_t *out) {
  int32_t b, oy, ox, ic, m, fy, fx;
  for (b = 0; b < p->batches; ++b) {
    for (oy = 0; oy < p->out_h; ++oy) {
      const int32_t y0 = oy * p->stride_h - p->pad_h;
      for (ox = 0; ox < p->out_w; ++ox) {
        const int32_t x0 = ox * p->stride_w - p->pad_w;
        for (ic = 0; ic < p->in_c; ++ic) {
          for (m = 0; m < p->depth_mult; ++m) {
            const int32_t oc = m + ic * p->depth_mult;
            int64_t acc = 0;
            for (fy = 0; fy < p->f_h; ++fy) {
              const int32_t y = y0 + p->dil_h * fy;
              if (y < 0 || y >= p->in_h) continue;
              for (fx = 0; fx < p->f_w; ++fx) {
                const int32_t x = x0 + p->dil_w * fx;
                if (x < 0 || x >= p->in_w) continue;
                acc += (int32_t)p->filter[(fy * p->f_w + fx) * p->out_c + oc] *
                       (int32_t)in[((b * p->in_h + y) * p->in_w + x) * p->in_c + ic];
              }
            }
            out[((b * p->out_h + oy) * p->out_w + ox) * p->out_c + oc] = td_clamp16(
                td_scale_acc(acc, p->bias, bias64, oc, p->mult[oc], p->shift[oc]) +
                    p->out_offset,
                p->act_min, p->act_max);
          }
        }
      }
    }
  }
}

void td_fully_connected_16(const td_fc_params *p, int32_t bias64, const int16_t *in,
                           int16_t *out) {
  int32_t b, oc, d;
  for (b = 0; b < p->batches; ++b) {
    for (oc = 0; oc < p->out_c; ++oc) {
      const int32_t k = p->per_channel ? oc : 0;
      const int8_t *w = p->filter + oc * p->accum;
      const int16_t *x = in + b * p->accum;
      int64_t acc = 0;
      for (d = 0; d < p->accum; ++d) {
        acc += (int64_t)((int32_t)w[d] + p->filter_offset) * ((int32_t)x[d] + p->in_offset);
      }
      out[b * p->out_c + oc] = td_clamp16(
          td_scale_acc(acc, p->bias, bias64, oc, p->mult[k], p->shift[k]) + p->out_offset,
          p->act_min, p->act_max);
    }
  }
}

static int32_t td_ld_es(const void *p, int32_t i, int32_t es) {
  if (es == 4) return ((const int32_t *)p)[i];
  return es == 2 ? (int32_t)((const int16_t *)p)[i] : (int32_t)((const int8_t *)p)[i];
}

/* a + b with int32 wrap-around (what TFLM's int32 arithmetic does on every target) */
static int32_t td_add_wrap(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }

/* QUANTIZE between int8, int16 and int32 (TFLM's reference Requantize) */
void td_requantize_ext(const td_requant_params *p, int32_t es_in, int32_t es_out,
                       const void *in, void *out) {
  int32_t i;
  for (i = 0; i < p->size; ++i) {
    const int32_t x = td_add_wrap(td_ld_es(in, i, es_in), -p->in_zp);
    int32_t v = td_add_wrap(td_mbqm(x, p->mult, p->shift), p->out_zp);
    if (v < p->act_min) v = p->act_min;
    if (v > p->act_max) v = p->act_max;
    if (es_out == 4) {
      ((int32_t *)out)[i] = v;
    } else if (es_out == 2) {
      ((int16_t *)out)[i] = (int16_t)v;
    } else {
      ((int8_t *)out)[i] = (int8_t)v;
    }
  }
}

void td_leaky_relu_16(const td_leaky_relu_params *p, const int16_t *in, int16_t *out) {
  const td_rqp id = td_rq_prepare(p->mult_id, p->shift_id);
  const td_rqp al = td_rq_prepare(p->mult_alpha, p->shift_alpha);
  const int32_t n = p->size, in_zp = p->in_zp, out_zp = p->out_zp;
  int32_t i;
  for (i = 0; i < n; ++i) {
    const int32_t x = (int32_t)in[i] - in_zp;
    const int32_t v = x >= 0 ? td_rq_apply_signed(id, x) : td_rq_apply_signed(al, x);
    out[i] = (int16_t)td_clamp_i32(v + out_zp, -32768, 32767);
  }
}

/* n pad values of es bytes at dst */
static void td_fill_ext(uint8_t *dst, int32_t n, int32_t es, int32_t v) {
  int32_t i;
  for (i = 0; i < n; ++i) {
    if (es == 2) {
      ((int16_t *)(void *)dst)[i] = (int16_t)v;
    } else {
      ((int8_t *)dst)[i] = (int8_t)v;
    }
  }
}

void td_pad_ext(const td_pad_params *p, int32_t es, const void *in, void *out) {
  /* output rows (last axis) in increasing order, as td_pad: the row's copy (read before
   * any of the row is written), then its fills */
  const int32_t last = p->rank - 1;
  const int32_t row = p->out_dims[last], in_row = p->in_dims[last], left = p->before[last];
  const uint8_t *src = (const uint8_t *)in;
  uint8_t *dst = (uint8_t *)out;
  int32_t idx[TD_MAX_RANK] = {0, 0, 0, 0, 0, 0};
  int32_t d;
  if (last < 0) return;
  for (;;) {
    int32_t off = 0, inside = 1;
    for (d = 0; d < last; ++d) {
      const int32_t k = idx[d] - p->before[d];
      if (k < 0 || k >= p->in_dims[d]) {
        inside = 0;
        break;
      }
      off = off * p->in_dims[d] + k;
    }
    if (inside) {
      memmove(dst + left * es, src + off * in_row * es, (size_t)(in_row * es));
      td_fill_ext(dst, left, es, p->pad_value);
      td_fill_ext(dst + (left + in_row) * es, row - left - in_row, es, p->pad_value);
    } else {
      td_fill_ext(dst, row, es, p->pad_value);
    }
    dst += row * es;
    for (d = last - 1; d >= 0; --d) {
      if (++idx[d] < p->out_dims[d]) break;
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}
