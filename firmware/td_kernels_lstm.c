/* tinydeploy UNIDIRECTIONAL_SEQUENCE_LSTM kernel: int8 activations, int8 weights, int16
 * cell state, int32 bias -- TFLite Micro's integer LSTM (gates in Q3.12, gate outputs in
 * Q0.15) with the same integer results as its reference kernels (see td_kernels_ext.h).
 *
 * Per time step and state unit, one pass over the input row and one over the hidden state
 * give the unit's 4 gate pre-activations (input and recurrent sums kept apart: TFLM
 * requantizes and saturates each to int16 before adding them). The generator folded the
 * input / hidden zero points into the biases (bias + in_offset * sum(row): the same integer
 * sums), so the loops are plain int8 dot products: SXTB16 + SMLAD with the DSP extension,
 * plain C otherwise (identical sums). The unit's cell state and hidden output follow at
 * once; the new hidden values go to the output row and become the state after the step.
 */
#include "td_kernels_ext.h"
#include "td_model.h" /* TD_MODEL_HAS_LSTM: the table below exists only in such models */
#include "td_simd.h"

#if TD_MODEL_HAS_LSTM

/* the steps: optimized for speed even in a size-optimized (-Os) build */
#if defined(__GNUC__) && !defined(__clang__)
#define TD_LSTM_HOT __attribute__((noinline, optimize("O2")))
#elif defined(__GNUC__)
#define TD_LSTM_HOT __attribute__((noinline))
#else
#define TD_LSTM_HOT
#endif

#if TD_DSP
TD_INLINE int32_t td_lstm_sat16(int32_t v) {
  __asm__("ssat %0, #16, %1" : "=r"(v) : "r"(v));
  return v;
}
TD_INLINE int32_t td_lstm_sat8(int32_t v) {
  __asm__("ssat %0, #8, %1" : "=r"(v) : "r"(v));
  return v;
}
/* (a * b + 2^31) >> 32, the rounded high word of the product */
TD_INLINE int32_t td_lstm_mulhr(int32_t a, int32_t b) {
  int32_t r;
  __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
  return r;
}
/* acc + ((a * b + 2^31) >> 32) */
TD_INLINE int32_t td_lstm_mulhr_acc(int32_t a, int32_t b, int32_t acc) {
  int32_t r;
  __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
  return r;
}
#else
TD_INLINE int32_t td_lstm_sat16(int32_t v) { return td_clamp_i32(v, -32768, 32767); }
TD_INLINE int32_t td_lstm_sat8(int32_t v) { return td_clamp_i32(v, -128, 127); }
TD_INLINE int32_t td_lstm_mulhr(int32_t a, int32_t b) {
  return (int32_t)(((int64_t)a * b + ((int64_t)1 << 31)) >> 32);
}
TD_INLINE int32_t td_lstm_mulhr_acc(int32_t a, int32_t b, int32_t acc) {
  return acc + td_lstm_mulhr(a, b);
}
#endif

/* TFLM's MultiplyByQuantizedMultiplier: fast 0 computes it as TFLM does. Fast forms (1, 2):
 * its rounding doubling high multiply of x * 2^left is hi = mulhr(x * 2^(left + 1), mult), and
 * its rounding (half away from zero) divide by 2^rsh is (hi + 2^(rsh-1) - [hi < 0]) >> rsh
 * -- equal whenever x * 2^(left+1) and hi + rnd stay within int32, which the generator
 * checked for every value this layer can produce. With every shift negative (fast 2: left
 * 0, rsh >= 1) [x < 0] may stand for [hi < 0] (they differ only where hi = 0, and there
 * both give 0), so the rounding constant joins the multiply (SMMLAR). */
TD_INLINE int32_t td_lstm_requant(const td_lstm_rq *q, int32_t x, int32_t fast) {
  int32_t hi;
  if (fast == 0) return td_mbqm(x, q->mult, q->shift);
  if (fast == 2) {
    return td_lstm_mulhr_acc((int32_t)((uint32_t)x << 1), q->mult, q->rnd + (x >> 31)) >>
           q->rsh;
  }
  hi = td_lstm_mulhr((int32_t)((uint32_t)x << q->lsh), q->mult);
  return (hi + q->rnd + ((hi >> 31) & q->nmask)) >> q->rsh;
}

/* int16 LOGISTIC of 3 * g, g a Q3.12 gate (TFLM's input multiplier 3, shift 0): table
 * interpolation in Q0.15. |3 g| <= 98304, so the table index (|3 g| >> 9 <= 192) never
 * reaches TFLM's saturation branch (index >= 255). */
TD_INLINE int32_t td_sigmoid16(int32_t g) {
  const int32_t v = 3 * g;
  const uint32_t a = (uint32_t)(v < 0 ? -v : v);
  const uint32_t uh = a >> 9;
  const uint32_t ua = td_sigmoid_table[uh], ub = td_sigmoid_table[uh + 1];
  uint32_t r = (ua << 9) + (a & 0x1ffu) * (ub - ua);
  r = v >= 0 ? r + (1u << 9) : (1u << (16 + 9)) - r + (1u << 9) - 1u;
  return (int16_t)(r >> 10);
}

/* int16 TANH: same table, tanh(x) = 2 sigmoid(2x) - 1 */
TD_INLINE int32_t td_tanh16(int32_t v) {
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

/* acc[r] += sum_k w_r[k] * x[k] for the 4 interleaved rows at w (n columns); returns the
 * next unit's rows */
TD_INLINE const int8_t *td_lstm_dot4(const int8_t *w, const int8_t *x, int32_t n,
                                     int32_t *acc) {
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
  const int32_t t = n & 3;
  int32_t k;
#if TD_DSP
#if defined(__GNUC__)
  w = (const int8_t *)__builtin_assume_aligned(w, 4); /* word loads in pairs (LDRD) */
#endif
  for (k = n >> 2; k > 0; --k) {
    const uint32_t xv = td_read32(x);
    const int16x2_t xa = td_sx02(xv), xb = td_sx13(xv);
    uint32_t wv[4];
    memcpy(wv, w, sizeof wv);
    a0 = __smlad(td_sx02(wv[0]), xa, a0);
    a0 = __smlad(td_sx13(wv[0]), xb, a0);
    a1 = __smlad(td_sx02(wv[1]), xa, a1);
    a1 = __smlad(td_sx13(wv[1]), xb, a1);
    a2 = __smlad(td_sx02(wv[2]), xa, a2);
    a2 = __smlad(td_sx13(wv[2]), xb, a2);
    a3 = __smlad(td_sx02(wv[3]), xa, a3);
    a3 = __smlad(td_sx13(wv[3]), xb, a3);
    x += 4;
    w += 16;
  }
#else
  for (k = n >> 2; k > 0; --k) {
    const int32_t x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3];
    a0 += w[0] * x0 + w[1] * x1 + w[2] * x2 + w[3] * x3;
    a1 += w[4] * x0 + w[5] * x1 + w[6] * x2 + w[7] * x3;
    a2 += w[8] * x0 + w[9] * x1 + w[10] * x2 + w[11] * x3;
    a3 += w[12] * x0 + w[13] * x1 + w[14] * x2 + w[15] * x3;
    x += 4;
    w += 16;
  }
#endif
  for (k = 0; k < t; ++k) {
    const int32_t xk = x[k];
    a0 += w[k] * xk;
    a1 += w[t + k] * xk;
    a2 += w[2 * t + k] * xk;
    a3 += w[3 * t + k] * xk;
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
  return w + 4 * t;
}

/* one gate: sat16(sat16(input FC) + sat16(recurrent FC)), both requantized to Q3.12 */
TD_INLINE int32_t td_lstm_gate(const td_lstm_params *p, const int32_t *ai, const int32_t *ar,
                               int32_t g, int32_t fast) {
  return td_lstm_sat16(td_lstm_sat16(td_lstm_requant(&p->in_rq[g], ai[g], fast)) +
                       td_lstm_sat16(td_lstm_requant(&p->rec_rq[g], ar[g], fast)));
}

/* one time step of one batch row: x the input row, h the hidden state (read), c the cell
 * state (updated), hout the new hidden state */
TD_INLINE void td_lstm_step(const td_lstm_params *p, const int8_t *x, const int8_t *h,
                            int16_t *c, int8_t *hout, int32_t fast) {
  const int32_t S = p->n_state, n_in = p->n_in;
  const int8_t *wi = p->w_in, *wr = p->w_rec;
  const int32_t *bi = p->bias_in, *br = p->bias_rec;
  int32_t s;
  for (s = 0; s < S; ++s) {
    int32_t ai[4], ar[4], ig, fg, cg, og, fc, ic, v, th;
    ai[0] = bi[0];
    ai[1] = bi[1];
    ai[2] = bi[2];
    ai[3] = bi[3];
    bi += 4;
    wi = td_lstm_dot4(wi, x, n_in, ai);
    ar[0] = br[0];
    ar[1] = br[1];
    ar[2] = br[2];
    ar[3] = br[3];
    br += 4;
    wr = td_lstm_dot4(wr, h, S, ar);
    ig = td_sigmoid16(td_lstm_gate(p, ai, ar, 0, fast));
    fg = td_sigmoid16(td_lstm_gate(p, ai, ar, 1, fast));
    cg = td_tanh16(3 * td_lstm_gate(p, ai, ar, 2, fast)); /* TANH, input multiplier 3 */
    og = td_sigmoid16(td_lstm_gate(p, ai, ar, 3, fast));
    fc = td_lstm_sat16(td_lstm_requant(&p->fc_rq, fg * c[s], fast));
    ic = td_lstm_sat16(td_lstm_requant(&p->ic_rq, ig * cg, fast));
    v = td_lstm_sat16(fc + ic);
    if (p->cell_clip > 0) v = td_clamp_i32(v, -p->cell_clip, p->cell_clip);
    c[s] = (int16_t)v;
    th = td_tanh16((v * p->tanh_mult + (p->tanh_shift > 0 ? 1 << (p->tanh_shift - 1) : 0)) >>
                   p->tanh_shift);
    v = td_lstm_requant(&p->out_rq, th * og, fast) + p->hidden_zp;
    hout[s] = (int8_t)td_lstm_sat8(v);
  }
}

/* the step with the fast requantizations (every shift negative, any shifts), and with
 * TFLM's general one (td_lstm_step_fn) */
TD_LSTM_HOT void td_lstm_step_fast2(const td_lstm_params *p, const int8_t *x, const int8_t *h,
                                    int16_t *c, int8_t *hout) {
  td_lstm_step(p, x, h, c, hout, 2);
}
TD_LSTM_HOT void td_lstm_step_fast(const td_lstm_params *p, const int8_t *x, const int8_t *h,
                                   int16_t *c, int8_t *hout) {
  td_lstm_step(p, x, h, c, hout, 1);
}
TD_LSTM_HOT void td_lstm_step_any(const td_lstm_params *p, const int8_t *x, const int8_t *h,
                                  int16_t *c, int8_t *hout) {
  td_lstm_step(p, x, h, c, hout, 0);
}

void td_lstm(const td_lstm_params *p, const int8_t *in, int8_t *hidden, int16_t *cell,
             int8_t *out) {
  const int32_t S = p->n_state;
  int32_t b, t;
  for (b = 0; b < p->batches; ++b) {
    int8_t *h = hidden + b * S;
    int16_t *c = cell + b * S;
    for (t = 0; t < p->steps; ++t) {
      /* batch-major [b][t][.] or time-major [t][b][.] */
      const int32_t row = p->time_major ? t * p->batches + b : b * p->steps + t;
      p->step(p, in + row * p->n_in, h, c, out + row * S);
      memcpy(h, out + row * S, (size_t)S);
    }
  }
}
#else
typedef int td_kernels_lstm_unused; /* ISO C: no empty translation unit */
#endif /* TD_MODEL_HAS_LSTM */
