/* tinydeploy kernels: FULLY_CONNECTED on the weights as a TFLM model stores them (plain
 * [out_c][accum] rows, read in place, e.g. from flash), for tinydeploy's TFLM kernel
 * (td_tflm_fc.cpp; the C runtime stores its own interleaved layout, td_kernels_conv.c, and
 * does not compile this file). The generator-side contract is td_kernels.h's table:
 * td_fully_connected_plain / _plaing read plain rows, the input offset folded into
 * bias_eff, the rq requantization pairs (_plaing: shifts >= 0 allowed), filter offset 0.
 * The same integer sums as TFLM's reference loop, so bit-identical to it. */
#include "td_kernels.h"
#include "td_simd.h"

/* acc[r] += sum_k w[r * n + k] * x[k], r = 0..3: four plain rows (row stride n, the layout
 * of a TFLM weight tensor) against one input vector; the input's sign-extended halves are
 * shared by the four rows (CMSIS-NN's vector x matrix kernel does the same for two). */
TD_HOT void td_dot_4rows(const int8_t *w, const int8_t *x, int32_t n, int32_t *acc) {
  const int32_t n2 = 2 * n;
  const int8_t *w3 = w + 3 * n;
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
  int32_t k;
#if TD_DSP
  const int8_t *const x_end = x + (n & ~3);
  while (x < x_end) {
    const uint32_t xv = td_read32(x);
    const int16x2_t xa = td_sx02(xv), xb = td_sx13(xv);
    uint32_t wv = td_read32(w);
    a0 = __smlad(td_sx02(wv), xa, a0);
    a0 = __smlad(td_sx13(wv), xb, a0);
    wv = td_read32(w + n);
    a1 = __smlad(td_sx02(wv), xa, a1);
    a1 = __smlad(td_sx13(wv), xb, a1);
    wv = td_read32(w + n2);
    a2 = __smlad(td_sx02(wv), xa, a2);
    a2 = __smlad(td_sx13(wv), xb, a2);
    wv = td_read32(w3);
    a3 = __smlad(td_sx02(wv), xa, a3);
    a3 = __smlad(td_sx13(wv), xb, a3);
    x += 4;
    w += 4;
    w3 += 4;
  }
  for (k = 0; k < (n & 3); ++k) {
#else
  for (k = 0; k < n; ++k) {
#endif
    const int32_t xv = x[k];
    a0 += w[k] * xv;
    a1 += w[n + k] * xv;
    a2 += w[n2 + k] * xv;
    a3 += w3[k] * xv;
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
}

/* Four outputs per pass; the last group of a layer whose out_c is not a multiple of four
 * overlaps the one before (it recomputes up to three outputs), a layer with fewer than four
 * outputs runs the plain loop. */
TD_ALWAYS_INLINE void td_fc_plain_b(const td_fc_params *p, const int8_t *in, int8_t *out,
                                    const int32_t gen) {
  const int32_t n = p->accum, out_c = p->out_c, step = p->per_channel ? 2 : 0;
  int32_t b, oc, j, k;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *x = in + b * n;
    int8_t *y = out + b * out_c;
    for (oc = 0; oc < out_c && out_c >= 4; oc += 4) {
      const int32_t o = oc + 4 <= out_c ? oc : out_c - 4;
      int32_t a[4];
      for (j = 0; j < 4; ++j) a[j] = p->bias_eff[o + j];
      td_dot_4rows(p->filter + o * n, x, n, a);
      for (j = 0; j < 4; ++j) {
        y[o + j] = td_out8q(a[j], p->rq + step * (o + j), p->out_offset, gen);
      }
    }
    for (oc = 0; oc < out_c && out_c < 4; ++oc) {
      const int8_t *w = p->filter + oc * n;
      int32_t acc = p->bias_eff[oc];
      for (k = 0; k < n; ++k) acc += w[k] * x[k];
      y[oc] = td_out8q(acc, p->rq + step * oc, p->out_offset, gen);
    }
  }
  td_act_clamp(out, p->batches * out_c, p->act_min, p->act_max);
}

void td_fully_connected_plain(const td_fc_params *p, const int8_t *in, int8_t *out) {
  td_fc_plain_b(p, in, out, 0);
}
void td_fully_connected_plaing(const td_fc_params *p, const int8_t *in, int8_t *out) {
  td_fc_plain_b(p, in, out, 1);
}
