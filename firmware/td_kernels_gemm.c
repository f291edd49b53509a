/* tinydeploy kernels: the CONV_2D pixel-pair product on a pre-widened input (used by
 * td_conv2d_fast / _fastg in td_kernels_conv.c when the plan gives the layer the scratch
 * for it: scratch_cols 2, emit.scratch_bytes).
 *
 * Two output pixels' receptive fields c0, c1 (n int8 each) are sign-extended once into u:
 * per 4 k the words {k0|k2, k1|k3 of c0, k0|k2, k1|k3 of c1} (int16 lanes). Every filter row
 * pair of the interleaved4 layout then runs over them with one load of four words, one
 * doubleword of weights, four SXTB16 and eight SMLAD per 4 k: 16 multiply-accumulates in 17
 * instructions, against 24 when both sides are unpacked in the loop. The n % 4 tail reads
 * c0/c1 directly. The same integer sums as td_rows2, so bit-identical; the plain C build
 * reads the same words lane by lane.
 */
#include "td_kernels.h"
#include "td_simd.h"

/* u[4j..4j+3] = the widened words of group j of c0 and c1, j < n4 */
TD_O2 void td_widen2(const int8_t *c0, const int8_t *c1, int32_t n4, uint32_t *u) {
  for (; n4 > 0; --n4) {
    const uint32_t v0 = td_read32(c0), v1 = td_read32(c1);
#if TD_DSP
    u[0] = (uint32_t)td_sx02(v0);
    u[1] = (uint32_t)td_sx13(v0);
    u[2] = (uint32_t)td_sx02(v1);
    u[3] = (uint32_t)td_sx13(v1);
#else
    u[0] = (uint32_t)(uint16_t)(int16_t)c0[0] | (uint32_t)(uint16_t)(int16_t)c0[2] << 16;
    u[1] = (uint32_t)(uint16_t)(int16_t)c0[1] | (uint32_t)(uint16_t)(int16_t)c0[3] << 16;
    u[2] = (uint32_t)(uint16_t)(int16_t)c1[0] | (uint32_t)(uint16_t)(int16_t)c1[2] << 16;
    u[3] = (uint32_t)(uint16_t)(int16_t)c1[1] | (uint32_t)(uint16_t)(int16_t)c1[3] << 16;
    (void)v0;
    (void)v1;
#endif
    c0 += 4;
    c1 += 4;
    u += 4;
  }
}

#if !TD_DSP
TD_ALWAYS_INLINE int32_t td_lane(uint32_t v, int32_t hi) {
  return (int32_t)(int16_t)(uint16_t)(hi ? v >> 16 : v & 0xffffu);
}
#endif

/* a[0..3] += rows r0, r1 (w: r0's 4 bytes, then r1's, stride 16 per 4 k) x columns 0, 1
 * of u, over n4 groups: a = {r0.c0, r0.c1, r1.c0, r1.c1} */
TD_ALWAYS_INLINE void td_dot_2x2u(const int8_t *w, const uint32_t *u, int32_t n4, int32_t *a) {
  int32_t a00 = a[0], a01 = a[1], a10 = a[2], a11 = a[3];
  if (n4 <= 0) return;
#if TD_DSP
  {
    /* ascending registers for the LDM of the four words */
    register uint32_t x0a __asm__("r8"), x0b __asm__("r9"), x1a __asm__("r10"),
        x1b __asm__("r11");
    uint32_t wa, wb, t;
    __asm__ volatile(
        "1:\n\t"
        "ldm %[u]!, {%[x0a], %[x0b], %[x1a], %[x1b]}\n\t"
        "ldrd %[wa], %[wb], [%[w]], #16\n\t"
        "sxtb16 %[t], %[wa]\n\t"
        "smlad %[a00], %[t], %[x0a], %[a00]\n\t"
        "smlad %[a01], %[t], %[x1a], %[a01]\n\t"
        "sxtb16 %[wa], %[wa], ror #8\n\t"
        "smlad %[a00], %[wa], %[x0b], %[a00]\n\t"
        "smlad %[a01], %[wa], %[x1b], %[a01]\n\t"
        "sxtb16 %[t], %[wb]\n\t"
        "smlad %[a10], %[t], %[x0a], %[a10]\n\t"
        "smlad %[a11], %[t], %[x1a], %[a11]\n\t"
        "sxtb16 %[wb], %[wb], ror #8\n\t"
        "smlad %[a10], %[wb], %[x0b], %[a10]\n\t"
        "smlad %[a11], %[wb], %[x1b], %[a11]\n\t"
        "subs %[n], %[n], #1\n\t"
        "bne 1b"
        : [a00] "+r"(a00), [a01] "+r"(a01), [a10] "+r"(a10), [a11] "+r"(a11),
          [u] "+r"(u), [w] "+r"(w), [n] "+r"(n4), [x0a] "=&r"(x0a), [x0b] "=&r"(x0b),
          [x1a] "=&r"(x1a), [x1b] "=&r"(x1b), [wa] "=&r"(wa), [wb] "=&r"(wb), [t] "=&r"(t)
        :
        : "cc", "memory");
  }
#else
  for (; n4 > 0; --n4) {
    int32_t j;
    for (j = 0; j < 4; ++j) {
      const int32_t x0 = td_lane(u[j & 1], j >> 1), x1 = td_lane(u[2 + (j & 1)], j >> 1);
      a00 += w[j] * x0;
      a01 += w[j] * x1;
      a10 += w[4 + j] * x0;
      a11 += w[4 + j] * x1;
    }
    u += 4;
    w += 16;
  }
#endif
  a[0] = a00;
  a[1] = a01;
  a[2] = a10;
  a[3] = a11;
}

/* Two output pixels against all out_c filter rows (interleaved4), u = td_widen2 of c0, c1
 * (n bytes each): outputs to y0 and y1 (written per channel group of four, in flat order
 * for the pixel pair once both receptive fields are read) */
TD_ALWAYS_INLINE void td_rows2u_b(const int8_t *w, const uint32_t *u, const int8_t *c0,
                                  const int8_t *c1, int32_t n, int32_t out_c,
                                  const int32_t *bias, const int32_t *rq, int32_t out_offset,
                                  int8_t *y0, int8_t *y1, const int32_t gen) {
  const int32_t n4 = n >> 2, t = n & 3, body = 16 * n4;
  int32_t oc = 0, k, x0t[3] = {0, 0, 0}, x1t[3] = {0, 0, 0};
  for (k = 0; k < t; ++k) { /* the tails, read before any output is written */
    x0t[k] = c0[4 * n4 + k];
    x1t[k] = c1[4 * n4 + k];
  }
  for (; oc + 4 <= out_c; oc += 4) {
    int32_t a[4], b[4];
    a[0] = a[1] = bias[oc];
    a[2] = a[3] = bias[oc + 1];
    b[0] = b[1] = bias[oc + 2];
    b[2] = b[3] = bias[oc + 3];
    td_dot_2x2u(w, u, n4, a);
    td_dot_2x2u(w + 8, u, n4, b);
    for (k = 0; k < t; ++k) {
      const int32_t x0 = x0t[k], x1 = x1t[k];
      const int8_t *wt = w + body + k;
      a[0] += wt[0] * x0;
      a[1] += wt[0] * x1;
      a[2] += wt[t] * x0;
      a[3] += wt[t] * x1;
      b[0] += wt[2 * t] * x0;
      b[1] += wt[2 * t] * x1;
      b[2] += wt[3 * t] * x0;
      b[3] += wt[3 * t] * x1;
    }
    td_out8q_pair(a[0], a[1], rq + 4 * oc, out_offset, gen, y0 + oc, y1 + oc);
    td_out8q_pair(a[2], a[3], rq + 4 * oc + 4, out_offset, gen, y0 + oc + 1, y1 + oc + 1);
    td_out8q_pair(b[0], b[1], rq + 4 * oc + 8, out_offset, gen, y0 + oc + 2, y1 + oc + 2);
    td_out8q_pair(b[2], b[3], rq + 4 * oc + 12, out_offset, gen, y0 + oc + 3, y1 + oc + 3);
    w += 4 * n;
  }
  for (; oc < out_c; ++oc) { /* the out_c % 4 last rows, plain layout */
    int32_t s0 = bias[oc], s1 = bias[oc];
    const uint32_t *up = u;
    for (k = 0; k < n4; ++k) {
#if TD_DSP
      const uint32_t wv = td_read32(w + 4 * k);
      const int16x2_t wa = td_sx02(wv), wb = td_sx13(wv);
      s0 = __smlad(wa, (int16x2_t)up[0], s0);
      s0 = __smlad(wb, (int16x2_t)up[1], s0);
      s1 = __smlad(wa, (int16x2_t)up[2], s1);
      s1 = __smlad(wb, (int16x2_t)up[3], s1);
#else
      int32_t j;
      for (j = 0; j < 4; ++j) {
        s0 += w[4 * k + j] * td_lane(up[j & 1], j >> 1);
        s1 += w[4 * k + j] * td_lane(up[2 + (j & 1)], j >> 1);
      }
#endif
      up += 4;
    }
    for (k = 0; k < t; ++k) {
      s0 += w[4 * n4 + k] * x0t[k];
      s1 += w[4 * n4 + k] * x1t[k];
    }
    td_out8q_pair(s0, s1, rq + 4 * oc, out_offset, gen, y0 + oc, y1 + oc);
    w += n;
  }
}

TD_O2 void td_rows2u(const int8_t *w, const uint32_t *u, const int8_t *c0, const int8_t *c1,
               int32_t n, int32_t out_c, const int32_t *bias, const int32_t *rq,
               int32_t out_offset, int8_t *y0, int8_t *y1) {
  td_rows2u_b(w, u, c0, c1, n, out_c, bias, rq, out_offset, y0, y1, 0);
}
TD_O2 void td_rows2u_g(const int8_t *w, const uint32_t *u, const int8_t *c0, const int8_t *c1,
                 int32_t n, int32_t out_c, const int32_t *bias, const int32_t *rq,
                 int32_t out_offset, int8_t *y0, int8_t *y1) {
  td_rows2u_b(w, u, c0, c1, n, out_c, bias, rq, out_offset, y0, y1, 1);
}
