/* tinydeploy UNIDIRECTIONAL_SEQUENCE_LSTM kernel: int8 activations, int8 weights, int16
 * cell state, int32 bias -- TFLite Micro's integer LSTM (gates in Q3.12, gate outputs in
 * Q0.15), step by step as its reference kernels compute it (see td_kernels_ext.h).
 */
#include "td_kernels_ext.h"
#include "td_model.h" /* TD_MODEL_HAS_LSTM: the table below exists only in such models */

#if TD_MODEL_HAS_LSTM


static int16_t td_sat16(int32_t v) {
  if (v < -32768) v = -32768;
  if (v > 32767) v = 32767;
  return (int16_t)v;
}

/* int16 LOGISTIC of a Q3.12 value: (x * mult + round) >> shift, then table interpolation */
static int16_t td_sigmoid16(int32_t x, int32_t mult, int32_t shift) {
  const int32_t round = shift > 0 ? 1 << (shift - 1) : 0;
  const int32_t v = (x * mult + round) >> shift;
  const uint32_t a = (uint32_t)(v < 0 ? -v : v);
  const uint32_t uh = a >> 9;
  uint32_t r;
  if (uh >= 255) {
    r = 0x7FFFu << 10;
  } else {
    const uint32_t ua = td_sigmoid_table[uh], ub = td_sigmoid_table[uh + 1];
    r = (ua << 9) + (a & 0x1ffu) * (ub - ua);
  }
  r = v >= 0 ? r + (1u << 9) : (1u << (16 + 9)) - r + (1u << 9) - 1u;
  return (int16_t)(r >> 10);
}

/* int16 TANH: same table, tanh(x) = 2 sigmoid(2x) - 1 */
static int16_t td_tanh16(int32_t x, int32_t mult, int32_t shift) {
  const int32_t round = shift > 0 ? 1 << (shift - 1) : 0;
  const int32_t v = (x * mult + round) >> shift;
  const uint32_t a = (uint32_t)(v < 0 ? -v : v);
  const uint32_t uh = a >> 8;
  int32_t r;
  if (uh >= 255) {
    r = 0xFFFF << 8;
  } else {
    const uint32_t ua = td_sigmoid_table[uh], ub = td_sigmoid_table[uh + 1];
    const uint32_t ut = a & 0xffu;
    r = (int32_t)((ua << 8) + ut * (ub - ua));
  }
  r = v >= 0 ? r - (1 << (14 + 9)) + (1 << (9 - 2)) : -r + (1 << (14 + 9)) + (1 << (9 - 2)) - 1;
  return (int16_t)(r >> (9 - 1));
}

/* gate[s] = sat16(FC(x) + FC(h)) with both FCs in Q3.12 */
static void td_lstm_gate(const td_lstm_fc *fi, const td_lstm_fc *fr, const int8_t *x,
                         int32_t n_in, const int8_t *h, int32_t n_state, int16_t *gate) {
  int32_t s, d;
  for (s = 0; s < n_state; ++s) {
    int32_t a = 0, r = 0, vi, vr;
    const int8_t *wi = fi->w + s * n_in;
    const int8_t *wr = fr->w + s * n_state;
    for (d = 0; d < n_in; ++d) a += (int32_t)wi[d] * ((int32_t)x[d] + fi->in_offset);
    if (fi->bias) a += fi->bias[s];
    vi = td_sat16(td_mbqm(a, fi->mult, fi->shift));
    for (d = 0; d < n_state; ++d) r += (int32_t)wr[d] * ((int32_t)h[d] + fr->in_offset);
    if (fr->bias) r += fr->bias[s];
    vr = td_sat16(td_mbqm(r, fr->mult, fr->shift));
    gate[s] = td_sat16(vi + vr);
  }
}

static void td_lstm_act(int16_t *g, int32_t n, int32_t tanh) {
  int32_t s;
  for (s = 0; s < n; ++s) g[s] = tanh ? td_tanh16(g[s], 3, 0) : td_sigmoid16(g[s], 3, 0);
}

void td_lstm(const td_lstm_params *p, const int8_t *in, int8_t *hidden, int16_t *cell,
             int8_t *out, int16_t *scratch) {
  const int32_t S = p->n_state;
  int16_t *forget = scratch, *input = scratch + S, *cellg = scratch + 2 * S;
  int32_t b, t, s;
  for (b = 0; b < p->batches; ++b) {
    for (t = 0; t < p->steps; ++t) {
      /* batch-major [b][t][.] or time-major [t][b][.] */
      const int32_t row = p->time_major ? t * p->batches + b : b * p->steps + t;
      const int8_t *x = in + row * p->n_in;
      int8_t *h = hidden + b * S;
      int16_t *c = cell + b * S;
      td_lstm_gate(&p->in_fc[1], &p->rec_fc[1], x, p->n_in, h, S, forget);
      td_lstm_act(forget, S, 0);
      td_lstm_gate(&p->in_fc[0], &p->rec_fc[0], x, p->n_in, h, S, input);
      td_lstm_act(input, S, 0);
      td_lstm_gate(&p->in_fc[2], &p->rec_fc[2], x, p->n_in, h, S, cellg);
      td_lstm_act(cellg, S, p->cell_act == 0);
      for (s = 0; s < S; ++s) {
        const int32_t fc = td_sat16(td_mbqm((int32_t)forget[s] * c[s], p->fc_mult, p->fc_shift));
        const int32_t ic = td_sat16(td_mbqm((int32_t)input[s] * cellg[s], p->ic_mult,
                                            p->ic_shift));
        int32_t v = td_sat16(fc + ic);
        if (p->cell_clip > 0) {
          if (v > p->cell_clip) v = p->cell_clip;
          if (v < -p->cell_clip) v = -p->cell_clip;
        }
        c[s] = (int16_t)v;
      }
      td_lstm_gate(&p->in_fc[3], &p->rec_fc[3], x, p->n_in, h, S, input); /* output gate */
      td_lstm_act(input, S, 0);
      for (s = 0; s < S; ++s) {
        const int32_t th = td_tanh16(c[s], p->tanh_mult, p->tanh_shift);
        int32_t v = td_mbqm(th * input[s], p->out_mult, p->out_shift) + p->hidden_zp;
        if (v < -128) v = -128;
        if (v > 127) v = 127;
        h[s] = (int8_t)v;
      }
      for (s = 0; s < S; ++s) out[row * S + s] = h[s];
    }
  }
}
#else
typedef int td_kernels_lstm_unused; /* ISO C: no empty translation unit */
#endif /* TD_MODEL_HAS_LSTM */
