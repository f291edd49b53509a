/* tinydeploy kernels: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, MAX/AVERAGE_POOL_2D.
 *
 * Tensors are NHWC int8. Accumulation is int32 over (input + input_offset) * filter,
 * then bias, per-channel fixed-point requantization, output offset and activation clamp.
 * Taps outside the input (implicit padding) are skipped.
 */
#include "td_kernels.h"

static int32_t td_clamp32(int32_t v, int32_t lo, int32_t hi) {
  if (v < lo) v = lo;
  if (v > hi) v = hi;
  return v;
}

void td_conv2d(const td_conv_params *p, const int8_t *in, int8_t *out) {
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
          acc = td_mbqm(acc, p->mult[oc], p->shift[oc]) + p->out_offset;
          out[((b * p->out_h + oy) * p->out_w + ox) * p->out_c + oc] =
              (int8_t)td_clamp32(acc, p->act_min, p->act_max);
        }
      }
    }
  }
}

void td_depthwise_conv2d(const td_conv_params *p, const int8_t *in, int8_t *out) {
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
            acc = td_mbqm(acc, p->mult[oc], p->shift[oc]) + p->out_offset;
            out[((b * p->out_h + oy) * p->out_w + ox) * p->out_c + oc] =
                (int8_t)td_clamp32(acc, p->act_min, p->act_max);
          }
        }
      }
    }
  }
}

void td_fully_connected(const td_fc_params *p, const int8_t *in, int8_t *out) {
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
      acc = td_mbqm(acc, p->mult[ch], p->shift[ch]) + p->out_offset;
      out[b * p->out_c + oc] = (int8_t)td_clamp32(acc, p->act_min, p->act_max);
    }
  }
}

static void td_pool(const td_pool_params *p, const int8_t *in, int8_t *out, int32_t avg) {
  int32_t b, oy, ox, c, fy, fx;
  for (b = 0; b < p->batches; ++b) {
    for (oy = 0; oy < p->out_h; ++oy) {
      const int32_t y0 = oy * p->stride_h - p->pad_h;
      const int32_t fy0 = y0 < 0 ? -y0 : 0;
      const int32_t fy1 = p->f_h < p->in_h - y0 ? p->f_h : p->in_h - y0;
      for (ox = 0; ox < p->out_w; ++ox) {
        const int32_t x0 = ox * p->stride_w - p->pad_w;
        const int32_t fx0 = x0 < 0 ? -x0 : 0;
        const int32_t fx1 = p->f_w < p->in_w - x0 ? p->f_w : p->in_w - x0;
        for (c = 0; c < p->c; ++c) {
          int32_t acc = avg ? 0 : -128;
          int32_t count = 0;
          for (fy = fy0; fy < fy1; ++fy) {
            for (fx = fx0; fx < fx1; ++fx) {
              const int32_t v = in[((b * p->in_h + y0 + fy) * p->in_w + x0 + fx) * p->c + c];
              if (avg) {
                acc += v;
              } else if (v > acc) {
                acc = v;
              }
              ++count;
            }
          }
          if (avg && count > 0) {
            acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
          }
          out[((b * p->out_h + oy) * p->out_w + ox) * p->c + c] =
              (int8_t)td_clamp32(acc, p->act_min, p->act_max);
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
