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

TD_INLINE int32_t td_clamp_i32(int32_t v, int32_t lo, int32_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
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

#endif /* TD_SIMD_H */
