/* tinydeploy kernels: the reference variants of CONV_2D and FULLY_CONNECTED, written as
 * TFLM's reference int8 kernels compute them: plain filter layouts and TFLM's (multiplier,
 * shift) per output channel (td_kernels.h). The generator uses them where no fast variant
 * applies (a weight zero point, bias + offset sums that leave int32, no scratch planned).
 */
#include "td_kernels.h"
#include "td_simd.h"

static int8_t td_out8(int32_t acc, int32_t mult, int32_t shift, int32_t out_offset, int32_t lo,
                      int32_t hi) {
  return (int8_t)td_clamp_i32(td_requant(acc, mult, shift) + out_offset, lo, hi);
}

void td_conv2d_ref(const td_conv_params *p, const int8_t *in, int8_t *out) {
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

void td_fully_connected_ref(const td_fc_params *p, const int8_t *in, int8_t *out) {
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
