/* tinydeploy kernels: ADD, MUL (with broadcasting), requantize (QUANTIZE, RELU), RELU6,
 * LEAKY_RELU, HARD_SWISH, PAD, MEAN, CONCATENATION and copies (int8).
 */
#include "td_kernels.h"
#include "td_simd.h"

static int8_t td_clamp8(int32_t v, int32_t lo, int32_t hi) {
  if (v < lo) v = lo;
  if (v > hi) v = hi;
  return (int8_t)v;
}

/* Advance a multi-index over dims (last axis fastest); returns 0 after the last one. */
/* dst[0..n) = src[0..n) forward in word loads and stores (unaligned word loads from
 * Cortex-M3 on; the portable build: eight words at a time, the compiler picks): on Thumb-2
 * dst is aligned first, then 16 bytes per STM (from an LDM where src is aligned too, else
 * four LDRs). Safe for the in-place case dst <= src, like a byte loop: each block is read
 * before any byte of it is written. */
static void td_copy_fwd(int8_t *dst, const int8_t *src, int32_t n) {
  int32_t i = 0;
#if defined(__thumb2__) && !defined(TD_PORTABLE)
  if (n >= 16) { /* dst word-aligned, then 16 bytes per STM (LDM too where src is aligned) */
    int32_t k;
    while (((uintptr_t)dst & 3u) != 0u) {
      *dst++ = *src++;
      --n;
    }
    k = n >> 4;
    n &= 15;
    if (k > 0) {
      register uint32_t r0 __asm__("r8"), r1 __asm__("r9"), r2 __asm__("r10"),
          r3 __asm__("r11");
      if (((uintptr_t)src & 3u) == 0u) {
        __asm__ volatile(
            "1:\n\t"
            "ldmia %[s]!, {%[r0], %[r1], %[r2], %[r3]}\n\t"
            "stmia %[d]!, {%[r0], %[r1], %[r2], %[r3]}\n\t"
            "subs %[k], %[k], #1\n\t"
            "bne 1b"
            : [s] "+r"(src), [d] "+r"(dst), [k] "+r"(k), [r0] "=&r"(r0), [r1] "=&r"(r1),
              [r2] "=&r"(r2), [r3] "=&r"(r3)
            :
            : "cc", "memory");
      } else {
        __asm__ volatile(
            "1:\n\t"
            "ldr %[r0], [%[s]]\n\t"
            "ldr %[r1], [%[s], #4]\n\t"
            "ldr %[r2], [%[s], #8]\n\t"
            "ldr %[r3], [%[s], #12]\n\t"
            "adds %[s], %[s], #16\n\t"
            "stmia %[d]!, {%[r0], %[r1], %[r2], %[r3]}\n\t"
            "subs %[k], %[k], #1\n\t"
            "bne 1b"
            : [s] "+r"(src), [d] "+r"(dst), [k] "+r"(k), [r0] "=&r"(r0), [r1] "=&r"(r1),
              [r2] "=&r"(r2), [r3] "=&r"(r3)
            :
            : "cc", "memory");
      }
    }
  }
#else
  for (; i + 32 <= n; i += 32) {
    uint32_t a, b, c, d, e, f, g, h;
    memcpy(&a, src + i, 4);
    memcpy(&b, src + i + 4, 4);
    memcpy(&c, src + i + 8, 4);
    memcpy(&d, src + i + 12, 4);
    memcpy(&e, src + i + 16, 4);
    memcpy(&f, src + i + 20, 4);
    memcpy(&g, src + i + 24, 4);
    memcpy(&h, src + i + 28, 4);
    memcpy(dst + i, &a, 4);
    memcpy(dst + i + 4, &b, 4);
    memcpy(dst + i + 8, &c, 4);
    memcpy(dst + i + 12, &d, 4);
    memcpy(dst + i + 16, &e, 4);
    memcpy(dst + i + 20, &f, 4);
    memcpy(dst + i + 24, &g, 4);
    memcpy(dst + i + 28, &h, 4);
  }
#endif
  for (; i + 4 <= n; i += 4) {
    uint32_t v;
    memcpy(&v, src + i, sizeof v);
    memcpy(dst + i, &v, sizeof v);
  }
  for (; i < n; ++i) dst[i] = src[i];
}

/* dst[0..n) = v, four bytes per store; 16 per STM once dst is word-aligned. */
static void td_fill(int8_t *dst, int8_t v, int32_t n) {
  const uint32_t word = 0x01010101u * (uint8_t)v;
  int32_t i = 0;
#if defined(__thumb2__) && !defined(TD_PORTABLE)
  if (n >= 16) {
    int32_t k;
    while (((uintptr_t)dst & 3u) != 0u) {
      *dst++ = v;
      --n;
    }
    k = n >> 4;
    n &= 15;
    if (k > 0) {
      register uint32_t r0 __asm__("r8") = word, r1 __asm__("r9") = word,
                        r2 __asm__("r10") = word, r3 __asm__("r11") = word;
      __asm__ volatile(
          "1:\n\t"
          "stmia %[d]!, {%[r0], %[r1], %[r2], %[r3]}\n\t"
          "subs %[k], %[k], #1\n\t"
          "bne 1b"
          : [d] "+r"(dst), [k] "+r"(k)
          : [r0] "r"(r0), [r1] "r"(r1), [r2] "r"(r2), [r3] "r"(r3)
          : "cc", "memory");
    }
  }
#else
  for (; i + 16 <= n; i += 16) {
    memcpy(dst + i, &word, sizeof word);
    memcpy(dst + i + 4, &word, sizeof word);
    memcpy(dst + i + 8, &word, sizeof word);
    memcpy(dst + i + 12, &word, sizeof word);
  }
#endif
  for (; i + 4 <= n; i += 4) memcpy(dst + i, &word, sizeof word);
  for (; i < n; ++i) dst[i] = v;
}

static int32_t td_next_index(int32_t *idx, const int32_t *dims, int32_t rank) {
  int32_t d;
  for (d = rank - 1; d >= 0; --d) {
    if (++idx[d] < dims[d]) return 1;
    idx[d] = 0;
  }
  return 0;
}

/* n elements of ADD/SUB of int8 (es 1) or int16 (es 2) tensors, input k read st_k apart
 * (1, or 0: a broadcast value): every parameter in a local, the three requantizations
 * prepared once (td_rq_prepare); es and sub are constants at each call, so the loads and
 * stores fold to one width (every instance is used). */
TD_INLINE void td_addsub_run(const td_binary_params *p, int32_t sub, int32_t es, int32_t n,
                             const void *in1, int32_t st1, const void *in2, int32_t st2,
                             void *out) {
  const int32_t o1 = p->in1_offset, o2 = p->in2_offset, ls = p->left_shift;
  const td_rqp r1 = td_rq_prepare(p->in1_mult, p->in1_shift);
  const td_rqp r2 = td_rq_prepare(p->in2_mult, p->in2_shift);
  const td_rqp ro = td_rq_prepare(p->out_mult, p->out_shift);
  const int32_t oo = p->out_offset, lo = p->act_min, hi = p->act_max;
  int32_t i, j1 = 0, j2 = 0;
  for (i = 0; i < n; ++i, j1 += st1, j2 += st2) {
    const int32_t a = es == 2 ? ((const int16_t *)in1)[j1] : ((const int8_t *)in1)[j1];
    const int32_t b = es == 2 ? ((const int16_t *)in2)[j2] : ((const int8_t *)in2)[j2];
    const int32_t x1 = td_rq_apply(r1, (int32_t)((uint32_t)(a + o1) << ls));
    const int32_t x2 = td_rq_apply(r2, (int32_t)((uint32_t)(b + o2) << ls));
    const int32_t v = td_clamp_i32(td_rq_apply(ro, sub ? x1 - x2 : x1 + x2) + oo, lo, hi);
    if (es == 2) {
      ((int16_t *)out)[i] = (int16_t)v;
    } else {
      ((int8_t *)out)[i] = (int8_t)v;
    }
  }
}

/* n elements of MUL, as td_addsub_run */
TD_INLINE void td_mul_run(const td_binary_params *p, int32_t es, int32_t n, const void *in1,
                          int32_t st1, const void *in2, int32_t st2, void *out) {
  const int32_t o1 = p->in1_offset, o2 = p->in2_offset;
  const td_rqp ro = td_rq_prepare(p->out_mult, p->out_shift);
  const int32_t oo = p->out_offset, lo = p->act_min, hi = p->act_max;
  int32_t i, j1 = 0, j2 = 0;
  for (i = 0; i < n; ++i, j1 += st1, j2 += st2) {
    const int32_t a = es == 2 ? ((const int16_t *)in1)[j1] : ((const int8_t *)in1)[j1];
    const int32_t b = es == 2 ? ((const int16_t *)in2)[j2] : ((const int8_t *)in2)[j2];
    const int32_t v = td_clamp_i32(td_rq_apply(ro, (a + o1) * (b + o2)) + oo, lo, hi);
    if (es == 2) {
      ((int16_t *)out)[i] = (int16_t)v;
    } else {
      ((int8_t *)out)[i] = (int8_t)v;
    }
  }
}

/* one row (the innermost axis, strides 1 or 0) of ADD (kind 0), SUB (1) or MUL (2) */
/* n elements of MAXIMUM (max 1) or MINIMUM (max 0), as td_addsub_run (no requantization:
 * input and output share scale and zero point) */
TD_INLINE void td_maxmin_run(int32_t max, int32_t es, int32_t n, const void *in1, int32_t st1,
                             const void *in2, int32_t st2, void *out) {
  int32_t i, j1 = 0, j2 = 0;
  for (i = 0; i < n; ++i, j1 += st1, j2 += st2) {
    const int32_t a = es == 2 ? ((const int16_t *)in1)[j1] : ((const int8_t *)in1)[j1];
    const int32_t b = es == 2 ? ((const int16_t *)in2)[j2] : ((const int8_t *)in2)[j2];
    const int32_t v = max ? (a > b ? a : b) : (a < b ? a : b);
    if (es == 2) {
      ((int16_t *)out)[i] = (int16_t)v;
    } else {
      ((int8_t *)out)[i] = (int8_t)v;
    }
  }
}

void td_binary_row(const td_binary_params *p, int32_t kind, int32_t es, int32_t n,
                   const void *in1, int32_t st1, const void *in2, int32_t st2, void *out) {
  if (kind >= 3) { /* MAXIMUM (3), MINIMUM (4): td_kernels_ext.h's TD_BIN_* */
    if (es == 2) {
      if (kind == 3) {
        td_maxmin_run(1, 2, n, in1, st1, in2, st2, out);
      } else {
        td_maxmin_run(0, 2, n, in1, st1, in2, st2, out);
      }
    } else if (kind == 3) {
      td_maxmin_run(1, 1, n, in1, st1, in2, st2, out);
    } else {
      td_maxmin_run(0, 1, n, in1, st1, in2, st2, out);
    }
    return;
  }
  if (es == 2) {
    if (kind == 2) {
      td_mul_run(p, 2, n, in1, st1, in2, st2, out);
    } else if (kind == 1) {
      td_addsub_run(p, 1, 2, n, in1, st1, in2, st2, out);
    } else {
      td_addsub_run(p, 0, 2, n, in1, st1, in2, st2, out);
    }
  } else if (kind == 2) {
    td_mul_run(p, 1, n, in1, st1, in2, st2, out);
  } else if (kind == 1) {
    td_addsub_run(p, 1, 1, n, in1, st1, in2, st2, out);
  } else {
    td_addsub_run(p, 0, 1, n, in1, st1, in2, st2, out);
  }
}

/* The longest run of the broadcast shape's inner axes that is one row (each input read
 * st_k apart: axes of size 1 vanish, and an axis joins when both inputs step over it as
 * over the run so far): its length in n, the strides in st1 and st2; returns the number of
 * outer axes left (rows are their index tuples, first axis slowest). */
static int32_t td_bcast_run(const td_binary_params *p, int32_t *n, int32_t *st1,
                            int32_t *st2) {
  int32_t d = TD_MAX_RANK - 1, len = p->dims[d], s1 = p->stride1[d], s2 = p->stride2[d];
  for (--d; d >= 0; --d) {
    if (p->dims[d] == 1) continue;
    if (len == 1) {
      len = p->dims[d];
      s1 = p->stride1[d];
      s2 = p->stride2[d];
    } else if (p->stride1[d] == s1 * len && p->stride2[d] == s2 * len) {
      len *= p->dims[d];
    } else {
      break;
    }
  }
  *n = len;
  *st1 = s1;
  *st2 = s2;
  return d + 1;
}

/* ADD/SUB/MUL over the broadcast shape: one td_binary_row per row (td_bcast_run) */
void td_binary_rows(const td_binary_params *p, int32_t kind, int32_t es, const void *in1,
                    const void *in2, void *out) {
  int32_t n, st1, st2, i = 0, idx[TD_MAX_RANK] = {0, 0, 0, 0, 0, 0};
  const int32_t outer = td_bcast_run(p, &n, &st1, &st2);
  if (n <= 0 || p->size <= 0) return;
  do {
    int32_t a = 0, b = 0, d;
    for (d = 0; d < outer; ++d) {
      a += idx[d] * p->stride1[d];
      b += idx[d] * p->stride2[d];
    }
    td_binary_row(p, kind, es, n, (const char *)in1 + a * es, st1, (const char *)in2 + b * es,
                  st2, (char *)out + i * es);
    i += n;
  } while (outer > 0 && td_next_index(idx, p->dims, outer));
}

/* n elements of int8 ADD with the input rescalings looked up: t1/t2 point at entry 0 of
 * 256-entry tables (index -128..127) the generator made with TFLM's arithmetic */
static void td_add_lut_row(const td_binary_params *p, const int32_t *t1, const int32_t *t2,
                           int32_t n, const int8_t *in1, int32_t st1, const int8_t *in2,
                           int32_t st2, int8_t *out) TD_O2;
static void td_add_lut_row(const td_binary_params *p, const int32_t *t1, const int32_t *t2,
                           int32_t n, const int8_t *in1, int32_t st1, const int8_t *in2,
                           int32_t st2, int8_t *out) {
  const td_rqp ro = td_rq_prepare(p->out_mult, p->out_shift);
  const int32_t oo = p->out_offset, lo = p->act_min, hi = p->act_max;
  int32_t i;
  for (i = 0; i < n; ++i, in1 += st1, in2 += st2) {
    const int32_t v = td_rq_apply(ro, t1[*in1] + t2[*in2]) + oo;
    out[i] = (int8_t)td_clamp_i32(v, lo, hi);
  }
}

void td_add_lut(const td_binary_params *p, const int32_t *lut1, const int32_t *lut2,
                const int8_t *in1, const int8_t *in2, int8_t *out) {
  int32_t n, st1, st2, i = 0, idx[TD_MAX_RANK] = {0, 0, 0, 0, 0, 0}, outer;
  if (!p->broadcast) {
    td_add_lut_row(p, lut1 + 128, lut2 + 128, p->size, in1, 1, in2, 1, out);
    return;
  }
  outer = td_bcast_run(p, &n, &st1, &st2);
  if (n <= 0 || p->size <= 0) return;
  do {
    int32_t a = 0, b = 0, d;
    for (d = 0; d < outer; ++d) {
      a += idx[d] * p->stride1[d];
      b += idx[d] * p->stride2[d];
    }
    td_add_lut_row(p, lut1 + 128, lut2 + 128, n, in1 + a, st1, in2 + b, st2, out + i);
    i += n;
  } while (outer > 0 && td_next_index(idx, p->dims, outer));
}

void td_addsub_flat8(const td_binary_params *p, int32_t sub, const int8_t *in1,
                     const int8_t *in2, int8_t *out) {
  td_binary_row(p, sub, 1, p->size, in1, 1, in2, 1, out);
}

void td_addsub_flat16(const td_binary_params *p, int32_t sub, const int16_t *in1,
                      const int16_t *in2, int16_t *out) {
  td_binary_row(p, sub, 2, p->size, in1, 1, in2, 1, out);
}

static void td_binary(const td_binary_params *p, const int8_t *in1, const int8_t *in2,
                      int8_t *out, int32_t mul) {
  if (!p->broadcast) {
    td_binary_row(p, mul ? 2 : 0, 1, p->size, in1, 1, in2, 1, out);
  } else {
    td_binary_rows(p, mul ? 2 : 0, 1, in1, in2, out);
  }
}

void td_add(const td_binary_params *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
  td_binary(p, in1, in2, out, 0);
}

void td_mul(const td_binary_params *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
  td_binary(p, in1, in2, out, 1);
}

void td_requantize(const td_requant_params *p, const int8_t *in, int8_t *out) {
  const int32_t n = p->size, in_zp = p->in_zp, out_zp = p->out_zp;
  const int32_t mult = p->mult, shift = p->shift, lo = p->act_min, hi = p->act_max;
  int32_t i;
  for (i = 0; i < n; ++i) {
    const int32_t v = td_requant((int32_t)in[i] - in_zp, mult, shift) + out_zp;
    out[i] = td_clamp8(v, lo, hi);
  }
}

void td_clamp(int32_t size, int32_t lo, int32_t hi, const int8_t *in, int8_t *out) {
  int32_t i;
  for (i = 0; i < size; ++i) out[i] = td_clamp8(in[i], lo, hi);
}

void td_leaky_relu(const td_leaky_relu_params *p, const int8_t *in, int8_t *out) {
  const td_rqp id = td_rq_prepare(p->mult_id, p->shift_id);
  const td_rqp al = td_rq_prepare(p->mult_alpha, p->shift_alpha);
  const int32_t n = p->size, in_zp = p->in_zp, out_zp = p->out_zp;
  int32_t i;
  for (i = 0; i < n; ++i) {
    const int32_t x = (int32_t)in[i] - in_zp;
    const int32_t v = x >= 0 ? td_rq_apply_signed(id, x) : td_rq_apply_signed(al, x);
    out[i] = (int8_t)td_sat8(v + out_zp);
  }
}

/* 16-bit fixed point helpers for HARD_SWISH. */
static int32_t td_sat16(int32_t v) {
  if (v < -32768) v = -32768;
  if (v > 32767) v = 32767;
  return v;
}

static int32_t td_srdhm16(int32_t a, int32_t b) {
  const int32_t ab = a * b;
  const int32_t nudge = ab >= 0 ? (1 << 14) : (1 - (1 << 14));
  if (a == b && a == -32768) return 32767;
  return (int32_t)(int16_t)((ab + nudge) / (1 << 15));
}

static int32_t td_sdhm16(int32_t a, int32_t b) {
  if (a == b && a == -32768) return 32767;
  return (int32_t)(int16_t)((a * b) / (1 << 15));
}

void td_hard_swish(const td_hard_swish_params *p, const int8_t *in, int8_t *out) {
  int32_t i;
  for (i = 0; i < p->size; ++i) {
    const int32_t x = (int32_t)(int16_t)((int32_t)in[i] - p->in_zp);
    const int32_t hires = (int32_t)(int16_t)(x * 128);
    const int32_t preshift = td_srdhm16(hires, p->out_mult16);
    int32_t reluish = hires;
    int32_t v;
    if (p->relu_exp > 0) reluish = td_sat16(reluish * (1 << (p->relu_exp - 1)));
    reluish = td_srdhm16(reluish, p->relu_mult16);
    if (p->relu_exp > 0) reluish = td_sat16(reluish * 2);
    if (p->relu_exp < 0) reluish = td_rdbpot(reluish, -p->relu_exp);
    reluish = (reluish + (1 << 15)) >> 1;
    v = td_sdhm16(reluish, preshift);
    v = (int32_t)(int16_t)(td_rdbpot(v, -p->out_exp) + p->out_zp);
    out[i] = td_clamp8(v, -128, 127);
  }
}

void td_pad(const td_pad_params *p, const int8_t *in, int8_t *out) {
  /* output rows (last axis) in increasing order, each element written after the input
   * element it copies is read: the order overlap.py plans the in-place case for. Padding
   * between two copied runs (one row's right, the next row's left, whole padded rows) is
   * written as one fill just before the next copy: the same bytes in the same order. The
   * outer axes walk an index; the last two axes are a plain loop over rows. */
  const int32_t last = p->rank - 1, mid = p->rank - 2;
  const int32_t row = p->out_dims[last], in_row = p->in_dims[last], left = p->before[last];
  const int32_t right = row - left - in_row;
  const int32_t rows = mid >= 0 ? p->out_dims[mid] : 1, in_rows = mid >= 0 ? p->in_dims[mid] : 1;
  const int32_t top = (mid >= 0 ? p->before[mid] : 0) * row;
  const int32_t bottom = (rows - in_rows) * row - top;
  const int8_t pad = (int8_t)p->pad_value;
  int32_t idx[TD_MAX_RANK] = {0, 0, 0, 0, 0, 0};
  int32_t d, j, pending = 0; /* pad bytes owed before the next copy */
  if (p->rank < 1) return;
  do {
    int32_t src = 0, inside = 1;
    for (d = 0; d < mid; ++d) {
      const int32_t c = idx[d] - p->before[d];
      if (c < 0 || c >= p->in_dims[d]) {
        inside = 0;
        break;
      }
      src = src * p->in_dims[d] + c;
    }
    if (!inside) {
      pending += rows * row;
      continue;
    }
    {
      const int8_t *s = in + src * in_rows * in_row;
      pending += top;
      for (j = 0; j < in_rows; ++j) {
        td_fill(out, pad, pending + left);
        out += pending + left;
        td_copy_fwd(out, s, in_row);
        out += in_row;
        s += in_row;
        pending = right;
      }
      pending += bottom;
    }
  } while (mid > 0 && td_next_index(idx, p->out_dims, mid));
  td_fill(out, pad, pending);
}

/* MEAN over the middle axes of [outer][mid][inner] (global average pooling of NHWC). */
static void td_mean_middle(const td_mean_params *p, int32_t outer, int32_t mid, int32_t inner,
                           const int8_t *in, int8_t *out) {
  const int32_t corr = p->in_zp * p->count, mult = p->mult, shift = p->shift;
  const int32_t out_zp = p->out_zp;
  int32_t o, m, c;
  for (o = 0; o < outer; ++o) {
    const int8_t *base = in + o * mid * inner;
    for (c = 0; c < inner; ++c) {
      const int8_t *q = base + c;
      int32_t sum = 0;
      for (m = 0; m < mid; ++m) {
        sum += *q;
        q += inner;
      }
      *out++ = td_clamp8(td_requant(sum - corr, mult, shift) + out_zp, -128, 127);
    }
  }
}

void td_mean(const td_mean_params *p, const int8_t *in, int8_t *out) {
  int32_t strides[TD_MAX_RANK];
  int32_t first = -1, end = -1, outer = 1, mid = 1, inner = 1;
  int32_t kept[TD_MAX_RANK], red[TD_MAX_RANK];
  int32_t kidx[TD_MAX_RANK] = {0, 0, 0, 0, 0, 0};
  int32_t d, o = 0;
  int32_t s = 1;
  for (d = p->rank - 1; d >= 0; --d) {
    strides[d] = s;
    s *= p->dims[d];
  }
  for (d = 0; d < p->rank; ++d) {
    kept[d] = p->reduce[d] ? 1 : p->dims[d];
    red[d] = p->reduce[d] ? p->dims[d] : 1;
    if (p->reduce[d] && p->dims[d] > 1) {
      if (first < 0) first = d;
      end = d + 1;
    }
  }
  if (first >= 0) { /* one contiguous run of reduced axes: a strided sum per output */
    int32_t contiguous = 1;
    for (d = 0; d < p->rank; ++d) {
      if (d < first) {
        outer *= p->dims[d];
      } else if (d < end) {
        mid *= p->dims[d];
        if (!p->reduce[d] && p->dims[d] > 1) contiguous = 0;
      } else {
        inner *= p->dims[d];
        if (p->reduce[d] && p->dims[d] > 1) contiguous = 0;
      }
    }
    if (contiguous && mid == p->count) {
      td_mean_middle(p, outer, mid, inner, in, out);
      return;
    }
  }
  do {
    int32_t ridx[TD_MAX_RANK] = {0, 0, 0, 0, 0, 0};
    int32_t sum = 0;
    do {
      int32_t off = 0;
      for (d = 0; d < p->rank; ++d) off += (kidx[d] + ridx[d]) * strides[d];
      sum += in[off];
    } while (td_next_index(ridx, red, p->rank));
    sum -= p->in_zp * p->count;
    out[o++] = td_clamp8(td_mbqm(sum, p->mult, p->shift) + p->out_zp, -128, 127);
  } while (td_next_index(kidx, kept, p->rank));
}

void td_copy(int32_t size, const int8_t *in, int8_t *out) {
  if (in != out) td_copy_fwd(out, in, size);
}

/* In-place transposition of a rows x cols row-major matrix of px-byte elements (an NHWC
 * tensor's H and W swapped): the element landing at index i = c * rows + r comes from
 * r * cols + c = i * cols mod (rows * cols - 1) for the inner indices. Follows each
 * permutation cycle once from its smallest index (``leaders``, computed at generation
 * time: no marks in RAM), up to 32 bytes of every element per pass, a word at a time
 * when px is a multiple of 4. */
void td_transpose_px(int8_t *p, int32_t rows, int32_t cols, int32_t px,
                     const uint16_t *leaders, int32_t n_leaders) {
  int8_t tmp[32];
  const int32_t unit = (px & 3) == 0 ? 4 : 1;
  const uint32_t m = (uint32_t)(rows * cols - 1);
  int32_t c0, k, b;
  for (c0 = 0; c0 < px; c0 += 32) {
    const int32_t w = px - c0 < 32 ? px - c0 : 32;
    int8_t *q = p + c0;
    for (k = 0; k < n_leaders; ++k) {
      const int32_t s = leaders[k];
      int32_t i = s;
      memcpy(tmp, q + s * px, (size_t)w);
      for (;;) {
        /* (i % rows) * cols + i / rows, as one product modulo n - 1 (n < 2^16) */
        const int32_t j = (int32_t)((uint32_t)i * (uint32_t)cols % m);
        int8_t *dst = q + i * px;
        const int8_t *src = q + j * px;
        if (j == s) break;
        if (unit == 4) {
          for (b = 0; b < w; b += 4) memcpy(dst + b, src + b, 4);
        } else {
          for (b = 0; b < w; ++b) dst[b] = src[b];
        }
        i = j;
      }
      memcpy(q + i * px, tmp, (size_t)w);
    }
  }
}

void td_lut8(int32_t size, const int8_t *lut, const int8_t *in, int8_t *out) {
  int32_t i;
  for (i = 0; i < size; ++i) out[i] = lut[(int32_t)in[i] + 128];
}

void td_concat(int32_t n, int32_t outer, const int32_t *inner, const int8_t *const *ins,
               int8_t *out) {
  int32_t o, k;
  for (o = 0; o < outer; ++o) {
    for (k = 0; k < n; ++k) {
      td_copy_fwd(out, ins[k] + o * inner[k], inner[k]);
      out += inner[k];
    }
  }
}
