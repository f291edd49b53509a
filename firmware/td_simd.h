/* tinydeploy kernel internals: inline requantization and 2x16-bit SIMD helpers.
 *
 * TD_DSP is 1 where the Arm DSP extension is available (__ARM_FEATURE_DSP: Cortex-M4/M7/M33
 * ...): packed sign extension (SXTB16/SXTAB16) and dual 16-bit multiply-accumulate (SMLAD)
 * through the ACLE intrinsics of <arm_acle.h>. Elsewhere (Cortex-M0+, host), or when
 * TD_PORTABLE is defined, the kernels use plain C loops. Both compute the same integer sums
 * (products of int8 values and int16 lanes are exact), so the results are identical.
 */
#ifndef TD_SIMD_H
#define TD_SIMD_H

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
#define TD_INLINE static inline __attribute__((always_inline))
#else
#define TD_INLINE static inline
#endif

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && !defined(TD_PORTABLE)
#define TD_DSP 1
#include <arm_acle.h>
#else
#define TD_DSP 0
#endif

/* Multiply by a quantized multiplier exactly as TFLM's MultiplyByQuantizedMultiplier:
 * saturating rounding doubling high multiply, then rounding divide by 2^-shift.
 * mult is in [0, 2^31) (QuantizeMultiplier), so the only saturating case of the high
 * multiply (both operands INT32_MIN) cannot occur. (a*b + 2^30) >> 31 (arithmetic) equals
 * TFLM's (a*b + nudge) / 2^31 rounded towards zero for both signs of a*b. */
TD_INLINE int32_t td_requant(int32_t x, int32_t mult, int32_t shift) {
  const int32_t left = shift > 0 ? shift : 0;
  const int32_t right = shift > 0 ? 0 : -shift;
  const int64_t ab = (int64_t)(int32_t)((uint32_t)x << left) * (int64_t)mult;
  const int32_t hi = (int32_t)((ab + ((int64_t)1 << 30)) >> 31);
  const int32_t mask = (int32_t)(((uint32_t)1 << right) - 1u);
  const int32_t threshold = (mask >> 1) + (hi < 0 ? 1 : 0);
  return (hi >> right) + ((hi & mask) > threshold ? 1 : 0);
}

/* The same result for a channel whose shift is negative (shift = -(sh + 1), sh in [0, 30])
 * in one 64-bit multiply-accumulate: TFLM rounds twice, (x*m + 2^30) >> 31 and then half
 * away from zero by 2^e (e = sh + 1); both roundings fold into one floor,
 *   floor((x*m + 2^30 + 2^(30+e) - [x < 0] * 2^31) / 2^(31+e))
 * (x < 0 stands for "the first rounding's result is negative": they differ only where
 * -2^30 <= x*m < 0, and there both forms give 0), i.e. the high word of that sum >> sh.
 * The generator uses this form (td_conv_params.rq) when every channel of a layer has it;
 * tests/test_cruntime_requant.py checks it against TFLM's two-step arithmetic. */
TD_INLINE int32_t td_requant_rq(int32_t x, int32_t mult, int32_t sh) {
  const uint32_t t = 1u << sh; /* 2^(e-1): the rounding constant is 2^30 + t * 2^31 */
#if defined(__thumb2__) && !defined(TD_PORTABLE)
  uint32_t lo = 0x40000000u | (t << 31);
  int32_t hi = (int32_t)(t >> 1);
  __asm__("smlal %0, %1, %2, %3" : "+r"(lo), "+r"(hi) : "r"(x), "r"(mult));
  __asm__("smlal %0, %1, %2, %3" : "+r"(lo), "+r"(hi) : "r"((uint32_t)x >> 31), "r"(INT32_MIN));
  return hi >> sh;
#else
  int64_t acc = (int64_t)(((uint64_t)(t >> 1) << 32) | (0x40000000u | (t << 31)));
  acc += (int64_t)x * mult;
  acc -= (int64_t)((uint32_t)x >> 31) << 31;
  return (int32_t)(acc >> 32) >> sh;
#endif
}

/* td_requant for a shift L >= 0 (TFLM: x * 2^L in int32, then the rounding doubling high
 * multiply; no second rounding) */
TD_INLINE int32_t td_requant_lsh(int32_t x, int32_t mult, int32_t lsh) {
  const int64_t ab = (int64_t)(int32_t)((uint32_t)x << lsh) * (int64_t)mult;
  return (int32_t)((ab + ((int64_t)1 << 30)) >> 31);
}

/* td_requant(x, mult, shift) with the per-layer part done once (td_rq_prepare): for a
 * shift <= -1 the one-multiply form td_requant_rq with its rounding constant precomputed
 * (sh = -shift - 1 >= 0), else td_requant_lsh (sh = -shift - 1 < 0: left shift -sh - 1). */
typedef struct {
  int32_t m, sh;
  uint32_t lo;
  int32_t hi;
} td_rqp;

TD_INLINE td_rqp td_rq_prepare(int32_t mult, int32_t shift) {
  td_rqp r;
  const uint32_t t = shift <= -1 ? 1u << (-shift - 1) : 0u;
  r.m = mult;
  r.sh = -shift - 1;
  r.lo = shift <= -1 ? 0x40000000u | (t << 31) : 0u;
  r.hi = (int32_t)(t >> 1);
  return r;
}

TD_INLINE int32_t td_rq_apply(const td_rqp r, int32_t x) {
  if (r.sh < 0) return td_requant_lsh(x, r.m, -r.sh - 1);
  {
#if defined(__thumb2__) && !defined(TD_PORTABLE)
    uint32_t lo = r.lo;
    int32_t hi = r.hi;
    __asm__("smlal %0, %1, %2, %3" : "+r"(lo), "+r"(hi) : "r"(x), "r"(r.m));
    __asm__("smlal %0, %1, %2, %3" : "+r"(lo), "+r"(hi) : "r"((uint32_t)x >> 31), "r"(INT32_MIN));
    return hi >> r.sh;
#else
    int64_t acc = (int64_t)(((uint64_t)(uint32_t)r.hi << 32) | r.lo);
    acc += (int64_t)x * r.m;
    acc -= (int64_t)((uint32_t)x >> 31) << 31;
    return (int32_t)(acc >> 32) >> r.sh;
#endif
  }
}

/* td_rq_apply for a multiplier of either sign (LEAKY_RELU's alpha may be negative): the
 * one-multiply form's correction follows the sign of the product, not of x */
TD_INLINE int32_t td_rq_apply_signed(const td_rqp r, int32_t x) {
  if (r.sh < 0) return td_requant_lsh(x, r.m, -r.sh - 1);
  {
    const uint32_t neg = ((uint32_t)x ^ (uint32_t)r.m) >> 31;
#if defined(__thumb2__) && !defined(TD_PORTABLE)
    uint32_t lo = r.lo;
    int32_t hi = r.hi;
    __asm__("smlal %0, %1, %2, %3" : "+r"(lo), "+r"(hi) : "r"(x), "r"(r.m));
    __asm__("smlal %0, %1, %2, %3" : "+r"(lo), "+r"(hi) : "r"(neg), "r"(INT32_MIN));
    return hi >> r.sh;
#else
    int64_t acc = (int64_t)(((uint64_t)(uint32_t)r.hi << 32) | r.lo);
    acc += (int64_t)x * r.m;
    acc -= (int64_t)neg << 31;
    return (int32_t)(acc >> 32) >> r.sh;
#endif
  }
}

TD_INLINE int32_t td_clamp_i32(int32_t v, int32_t lo, int32_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

/* v saturated to int8 (one SSAT where the saturation instructions exist) */
TD_INLINE int32_t td_sat8(int32_t v) {
#if defined(__ARM_FEATURE_SAT) && __ARM_FEATURE_SAT && !defined(TD_PORTABLE)
  __asm__("ssat %0, #8, %1" : "=r"(v) : "r"(v));
  return v;
#else
  return td_clamp_i32(v, -128, 127);
#endif
}

TD_INLINE uint32_t td_read32(const int8_t *p) {
  uint32_t v;
  memcpy(&v, p, sizeof v); /* one (unaligned) load on Cortex-M3 and up */
  return v;
}

#if TD_DSP
/* lanes (b0, b2) and (b1, b3) of a word of four int8, sign-extended to int16 */
TD_INLINE int16x2_t td_sx02(uint32_t x) { return __sxtb16(x); }
TD_INLINE int16x2_t td_sx13(uint32_t x) {
  uint32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
  return (int16x2_t)r;
}
/* the same plus a packed pair of int16 (the input offset in both lanes) */
TD_INLINE int16x2_t td_sxa02(int16x2_t off, uint32_t x) { return __sxtab16(off, x); }
TD_INLINE int16x2_t td_sxa13(int16x2_t off, uint32_t x) {
  uint32_t r;
  __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(off), "r"(x));
  return (int16x2_t)r;
}
TD_INLINE int16x2_t td_pack_offset(int32_t off) {
  return (int16x2_t)(((uint32_t)off & 0xffffu) * 0x10001u);
}
#endif

/* ---- shared by the conv / depthwise / FC fast variants (td_kernels_conv.c, _dwm.c) -- */
#if defined(__GNUC__)
#define TD_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define TD_ALWAYS_INLINE static inline
#endif
/* the inner loops: a function of their own (registers), optimized for speed even in a
 * size-optimized (-Os) build */
#if defined(__GNUC__) && !defined(__clang__)
#define TD_HOT static __attribute__((noinline, optimize("O2")))
#define TD_O2 __attribute__((optimize("O2")))
#elif defined(__GNUC__)
#define TD_HOT static __attribute__((noinline))
#define TD_O2
#else
#define TD_HOT static
#define TD_O2
#endif

/* the fast paths' output: rq points at the channel's {mult, -shift - 1} (td_kernels.h),
 * saturated to int8; a narrower activation range is applied afterwards (td_act_clamp).
 * gen (a constant in each instance): the pair may hold a shift >= 0 (*_fastg). */
TD_ALWAYS_INLINE int8_t td_out8q(int32_t acc, const int32_t *rq, int32_t out_offset,
                                 const int32_t gen) {
  const int32_t v = gen && rq[1] < 0 ? td_requant_lsh(acc, rq[0], -rq[1] - 1)
                                     : td_requant_rq(acc, rq[0], rq[1]);
  return (int8_t)td_sat8(v + out_offset);
}

/* td_out8q of one channel at two pixels (pair path) from its {mult, code, lo, hi} quad
 * (rq4: the rounding constant precomputed) */
TD_ALWAYS_INLINE void td_out8q_pair(int32_t acc0, int32_t acc1, const int32_t *q,
                                    int32_t out_offset, const int32_t gen, int8_t *p0,
                                    int8_t *p1) {
  const int32_t m = q[0], sh = q[1];
  if (gen && sh < 0) {
    *p0 = (int8_t)td_sat8(td_requant_lsh(acc0, m, -sh - 1) + out_offset);
    *p1 = (int8_t)td_sat8(td_requant_lsh(acc1, m, -sh - 1) + out_offset);
    return;
  }
  {
#if defined(__thumb2__) && !defined(TD_PORTABLE)
    uint32_t lo0 = (uint32_t)q[2], lo1 = lo0;
    int32_t hi0 = q[3], hi1 = hi0;
    __asm__("smlal %0, %1, %2, %3" : "+r"(lo0), "+r"(hi0) : "r"(acc0), "r"(m));
    __asm__("smlal %0, %1, %2, %3" : "+r"(lo0), "+r"(hi0) : "r"((uint32_t)acc0 >> 31), "r"(INT32_MIN));
    __asm__("smlal %0, %1, %2, %3" : "+r"(lo1), "+r"(hi1) : "r"(acc1), "r"(m));
    __asm__("smlal %0, %1, %2, %3" : "+r"(lo1), "+r"(hi1) : "r"((uint32_t)acc1 >> 31), "r"(INT32_MIN));
    *p0 = (int8_t)td_sat8((hi0 >> sh) + out_offset);
    *p1 = (int8_t)td_sat8((hi1 >> sh) + out_offset);
#else
    *p0 = (int8_t)td_sat8(td_requant_rq(acc0, m, sh) + out_offset);
    *p1 = (int8_t)td_sat8(td_requant_rq(acc1, m, sh) + out_offset);
#endif
  }
}

/* clamp n outputs to [lo, hi] unless that is the whole int8 range (the converter's usual
 * choice, e.g. ReLU with the output zero point at -128) */
TD_ALWAYS_INLINE void td_act_clamp(int8_t *y, int32_t n, int32_t lo, int32_t hi) {
  int32_t i;
  if (lo <= -128 && hi >= 127) return;
  for (i = 0; i < n; ++i) y[i] = (int8_t)td_clamp_i32(y[i], lo, hi);
}

/* the pixel-pair product on a widened input (td_kernels_gemm.c, used by td_kernels_conv.c) */
void td_widen2(const int8_t *c0, const int8_t *c1, int32_t n4, uint32_t *u);
void td_rows2u(const int8_t *w, const uint32_t *u, const int8_t *c0, const int8_t *c1,
               int32_t n, int32_t out_c, const int32_t *bias, const int32_t *rq,
               int32_t out_offset, int8_t *y0, int8_t *y1);
void td_rows2u_g(const int8_t *w, const uint32_t *u, const int8_t *c0, const int8_t *c1,
                 int32_t n, int32_t out_c, const int32_t *bias, const int32_t *rq,
                 int32_t out_offset, int8_t *y0, int8_t *y1);

#endif /* TD_SIMD_H */
