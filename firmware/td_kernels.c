/* tinydeploy kernels: fixed-point primitives, SOFTMAX, LOGISTIC, TANH (int8).
 *
 * The arithmetic follows TFLite's documented integer-only scheme (gemmlowp-style Q-format
 * fixed point): rounding doubling high multiply, rounding right shift, exp on negative
 * values by Taylor expansion plus a barrel shifter, and Newton-Raphson reciprocals.
 */
#include "td_kernels.h"

#define TD_I32_MAX ((int32_t)0x7fffffff)
#define TD_I32_MIN ((int32_t)(-0x7fffffff - 1))

static int32_t td_wrap_shl(int32_t x, int32_t s) {
  return (int32_t)((uint32_t)x << s);
}

int32_t td_srdhm(int32_t a, int32_t b) {
  int64_t ab;
  int64_t nudge;
  if (a == b && a == TD_I32_MIN) return TD_I32_MAX;
  ab = (int64_t)a * (int64_t)b;
  nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
  return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

int32_t td_rdbpot(int32_t x, int32_t exponent) {
  const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

int32_t td_mbqm(int32_t x, int32_t mult, int32_t shift) {
  const int32_t left = shift > 0 ? shift : 0;
  const int32_t right = shift > 0 ? 0 : -shift;
  return td_rdbpot(td_srdhm(td_wrap_shl(x, left), mult), right);
}

/* Saturating multiply by 2^e, e >= 0 (Q-format rescale towards fewer integer bits). */
static int32_t td_sat_shl(int32_t x, int32_t e) {
  int32_t threshold;
  if (e == 0) return x;
  threshold = (int32_t)(((int64_t)1 << (31 - e)) - 1);
  if (x > threshold) return TD_I32_MAX;
  if (x < -threshold) return TD_I32_MIN;
  return td_wrap_shl(x, e);
}

/* exp(a) for a in [-1/4, 0), Q0.31 in and out. */
static int32_t td_exp_on_interval(int32_t a) {
  const int32_t constant_term = 1895147668;    /* exp(-1/8) */
  const int32_t constant_1_over_3 = 715827883; /* 1/3 */
  const int32_t x = a + ((int32_t)1 << 28);    /* a + 1/8 */
  const int32_t x2 = td_srdhm(x, x);
  const int32_t x3 = td_srdhm(x2, x);
  const int32_t x4 = td_srdhm(x2, x2);
  const int32_t x4_over_4 = td_rdbpot(x4, 2);
  const int32_t poly = td_rdbpot(td_srdhm(x4_over_4 + x3, constant_1_over_3) + x2, 1);
  return constant_term + td_srdhm(constant_term, x + poly);
}

int32_t td_exp_on_negative_values(int32_t a, int32_t int_bits) {
  static const int32_t k_mult[7] = {1672461947, 1302514674, 790015084, 290630308,
                                    39332535,   720401,     242};
  const int32_t frac = 31 - int_bits;
  const int32_t one_quarter = (int32_t)1 << (frac - 2);
  const int32_t mask = one_quarter - 1;
  const int32_t a_mod_quarter_minus_quarter = (a & mask) - one_quarter;
  int32_t result = td_exp_on_interval(td_sat_shl(a_mod_quarter_minus_quarter, int_bits));
  const int32_t remainder = a_mod_quarter_minus_quarter - a;
  int32_t k;
  for (k = 0; k < 7; ++k) {
    const int32_t exponent = k - 2;
    if (int_bits > exponent) {
      const int32_t bit = (int32_t)1 << (frac + exponent);
      if (remainder & bit) result = td_srdhm(result, k_mult[k]);
    }
  }
  if (int_bits > 5) {
    const int32_t clamp = -((int32_t)1 << (36 - int_bits));
    if (a < clamp) result = 0;
  }
  if (a == 0) result = TD_I32_MAX;
  return result;
}

/* Newton-Raphson 1/d for d (Q0.31) in [1/2, 1); result in Q2.29. */
static int32_t td_nr_reciprocal(int32_t half_denominator) {
  int32_t x = 1515870810 + td_srdhm(half_denominator, -1010580540); /* 48/17 - 32/17 d */
  int32_t i;
  for (i = 0; i < 3; ++i) {
    const int32_t hd_x = td_srdhm(half_denominator, x);
    const int32_t one_minus = ((int32_t)1 << 29) - hd_x;
    x = x + td_sat_shl(td_srdhm(x, one_minus), 2);
  }
  return x;
}

static int32_t td_rounding_half_sum(int32_t a, int32_t b) {
  const int64_t sum = (int64_t)a + (int64_t)b;
  const int64_t sign = sum >= 0 ? 1 : -1;
  return (int32_t)((sum + sign) / 2);
}

int32_t td_one_over_one_plus_x(int32_t a) {
  const int32_t x = td_nr_reciprocal(td_rounding_half_sum(a, TD_I32_MAX));
  return td_sat_shl(x, 1); /* Q1 (x/2) -> Q0 */
}

int32_t td_one_minus_x_over_one_plus_x(int32_t a) {
  const int32_t x = td_nr_reciprocal(td_rounding_half_sum(a, TD_I32_MAX));
  return td_sat_shl(x - ((int32_t)1 << 29), 2);
}

static int32_t td_clz32(uint32_t x) {
  int32_t n = 0;
  if (x == 0) return 32;
  while (!(x & 0x80000000u)) {
    x <<= 1;
    ++n;
  }
  return n;
}

static int8_t td_sat8(int32_t v) {
  if (v < -128) v = -128;
  if (v > 127) v = 127;
  return (int8_t)v;
}

/* exp((x - max) * beta) in Q0.31 for one element, 0 below diff_min (an exp of 0 and an
 * element below diff_min both give -128). */
static int32_t td_softmax_exp(const td_softmax_params *p, int32_t diff) {
  if (diff < p->diff_min) return 0;
  return td_exp_on_negative_values(td_srdhm(td_wrap_shl(diff, p->left_shift), p->mult), 5);
}

/* Rows of up to TD_SOFTMAX_CACHE elements keep their exps on the stack between the sum and
 * the output pass (one exp per element instead of two); longer rows compute them twice. */
#define TD_SOFTMAX_CACHE 64

void td_softmax(const td_softmax_params *p, const int8_t *in, int8_t *out) {
  int32_t r, c;
  int32_t cache[TD_SOFTMAX_CACHE];
  const int cached = p->depth <= TD_SOFTMAX_CACHE;
  for (r = 0; r < p->rows; ++r) {
    const int8_t *x = in + r * p->depth;
    int8_t *y = out + r * p->depth;
    int32_t max_in = -128;
    int32_t sum = 0; /* Q12.19 */
    int32_t headroom, shift, scale;
    for (c = 0; c < p->depth; ++c) {
      if (x[c] > max_in) max_in = x[c];
    }
    for (c = 0; c < p->depth; ++c) {
      const int32_t e = td_softmax_exp(p, (int32_t)x[c] - max_in);
      if (cached) cache[c] = e;
      sum += td_rdbpot(e, 12);
    }
    headroom = td_clz32((uint32_t)sum);
    shift = 12 - headroom + 31 - 8; /* num_bits_over_unit + 31 - 8 */
    scale = td_one_over_one_plus_x(
        (int32_t)(((uint32_t)sum << headroom) - ((uint32_t)1 << 31)));
    for (c = 0; c < p->depth; ++c) {
      const int32_t e = cached ? cache[c] : td_softmax_exp(p, (int32_t)x[c] - max_in);
      y[c] = td_sat8(td_rdbpot(td_srdhm(scale, e), shift) - 128);
    }
  }
}

/* logistic(a) for a in Q4.27, result in Q0.31. */
static int32_t td_logistic_q4(int32_t a) {
  int32_t abs_a, pos;
  if (a == 0) return (int32_t)1 << 30;
  abs_a = a > 0 ? a : -a;
  pos = td_one_over_one_plus_x(td_exp_on_negative_values(-abs_a, 4));
  return a > 0 ? pos : TD_I32_MAX - pos;
}

/* tanh(a) for a in Q4.27, result in Q0.31. */
static int32_t td_tanh_q4(int32_t a) {
  int32_t n, t;
  if (a == 0) return 0;
  n = a < 0 ? a : -a;
  t = td_one_minus_x_over_one_plus_x(td_exp_on_negative_values(n, 5)); /* exp(2n) */
  return a < 0 ? -t : t;
}

/* LOGISTIC and TANH: inputs beyond +-radius saturate; the others are rescaled to Q4.27,
 * mapped by f to Q0.31, divided by 2^exponent (rounding) and shifted by `out_zp`. */
static void td_sigmoid_like(const td_sigmoid_params *p, const int8_t *in, int8_t *out,
                            int32_t (*f)(int32_t), int32_t exponent, int32_t out_zp) {
  int32_t i;
  for (i = 0; i < p->size; ++i) {
    const int32_t x = (int32_t)in[i] - p->in_zp;
    if (x <= -p->radius) {
      out[i] = -128;
    } else if (x >= p->radius) {
      out[i] = 127;
    } else {
      const int32_t q4 = td_mbqm(x, p->mult, p->left_shift);
      out[i] = td_sat8(td_rdbpot(f(q4), exponent) + out_zp);
    }
  }
}

void td_logistic(const td_sigmoid_params *p, const int8_t *in, int8_t *out) {
  td_sigmoid_like(p, in, out, td_logistic_q4, 23, -128);
}

void td_tanh(const td_sigmoid_params *p, const int8_t *in, int8_t *out) {
  td_sigmoid_like(p, in, out, td_tanh_q4, 24, 0);
}
