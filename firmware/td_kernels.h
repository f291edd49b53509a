/* tinydeploy interpreter-free int8 kernels (C99, integers only, no allocation).
 *
 * Each kernel reproduces the integer arithmetic of TFLite Micro's reference int8 kernels
 * bit for bit. Every multiplier, shift and range is computed offline by the Python
 * code generator (tinydeploy.cruntime) and passed in a const parameter struct.
 */
#ifndef TD_KERNELS_H
#define TD_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TD_MAX_RANK 6

/* the generator's kernel-layout weight arrays start on a word (the fast loops read them
 * with LDRD/LDM, which need it) */
#if defined(__GNUC__)
#define TD_ALIGN4 __attribute__((aligned(4)))
#else
#define TD_ALIGN4
#endif

/* ---- fixed-point primitives (td_kernels.c) ---------------------------------------- */
int32_t td_srdhm(int32_t a, int32_t b);               /* saturating rounding doubling high mul */
int32_t td_rdbpot(int32_t x, int32_t exponent);       /* rounding divide by power of two */
int32_t td_mbqm(int32_t x, int32_t mult, int32_t shift); /* multiply by quantized multiplier */
int32_t td_exp_on_negative_values(int32_t a, int32_t int_bits);
int32_t td_one_over_one_plus_x(int32_t a);
int32_t td_one_minus_x_over_one_plus_x(int32_t a);

/* ---- convolutions, fully connected, pooling (td_kernels_conv*.c, _dwm.c, _pool.c; the TFLM
 * kernel's in-place FULLY_CONNECTED: td_kernels_fc_plain.c) -----------------------------
 * Each kernel variant is its own entry point and reads exactly one data layout; the
 * generator picks the variant per layer and emits the layout it declares
 * (tinydeploy/cruntime/variants.py holds the same table and checks every call):
 *
 *   entry point                 filter layout              requantization  also needs
 *   td_conv2d_fast              interleaved4 [out_c][K]    rq4             bias_eff, scratch*
 *   td_conv2d_fastg             interleaved4 [out_c][K]    rq4_general     bias_eff, scratch*
 *   td_conv2d_1x1c1             interleaved4 [out_c][1]    rq4             bias_eff (1x1, in_c 1, no pad)
 *   td_conv2d_ref               plain [out_c][f_h][f_w][in_c]  mult/shift  -
 *   td_depthwise_conv2d_fastw   dw16 [g][f_h*f_w] pairs    rq4             filter_w (any depth_mult)
 *   td_depthwise_conv2d_fastwg  dw16 [g][f_h*f_w] pairs    rq4_general     filter_w (any depth_mult)
 *   td_fully_connected_fast     interleaved4 [out_c][K]    rq              bias_eff, w zp 0
 *   td_fully_connected_fastg    interleaved4 [out_c][K]    rq_general      bias_eff, w zp 0
 *   td_fully_connected_ref      plain [out_c][accum]       mult/shift      -
 *   td_fully_connected_plain    plain [out_c][accum]       rq              bias_eff, w zp 0
 *   td_fully_connected_plaing   plain [out_c][accum]       rq_general      bias_eff, w zp 0
 *   td_fc_stream_end            bands4 [out_c][K]          rq              bias_eff, w zp 0
 *   td_fc_stream_endg           bands4 [out_c][K]          rq_general      bias_eff, w zp 0
 *   (* scratch unless the conv is an unpadded 1x1, which reads its input directly)
 *
 * dw16 (field filter_w, int32 words): per group of four channels g, per tap t (row-major),
 * {w[t][4g] | w[t][4g+2] << 16, w[t][4g+1] | w[t][4g+3] << 16} as int16, channels past
 * out_c zero (td_kernels_dww.c).
 * interleaved4: rows in groups of four; per group, for each 4 k the 4 bytes of each row,
 * then each row's K % 4 tail; the out_c % 4 last rows plain.
 * bands4 (FULLY_CONNECTED streaming): the columns cut into the slices the producer's row
 * bands write, each slice [k0, k0 + n) in interleaved4 of its own, the slices in order: the
 * slice from k0 starts at byte out_c * k0.
 * rq: pairs {mult, -shift - 1} per output channel (one pair for a per-tensor FC), every
 * -shift - 1 >= 0 (shift <= -1; a zero multiplier is stored as {0, 0}, which yields 0 like
 * TFLM's): one 64-bit multiply per output (td_requant_rq). rq_general: the same pairs, some
 * with -shift - 1 < 0 (shift >= 0: TFLM's left shift), at one compare more per output; only
 * a model with such a layer links these instances. rq4 / rq4_general: quads {mult,
 * -shift - 1, lo, hi}, lo/hi td_requant_rq's 64-bit rounding constant 2^30 + 2^(31 + sh)
 * precomputed (unused for a shift >= 0). mult/shift: TFLM's QuantizeMultiplier
 * values per output channel. */
typedef struct {
  int32_t batches, in_h, in_w, in_c, out_h, out_w, out_c, f_h, f_w;
  int32_t stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
  int32_t depth_mult; /* depthwise only */
  int32_t in_offset, out_offset, act_min, act_max;
  const int8_t *filter;  /* in the layout of the entry point (above) */
  const int32_t *bias;   /* may be 0 */
  const int32_t *mult;   /* _ref variants: one per output channel */
  const int32_t *shift;
  /* _fast variants: bias + in_offset * sum of the channel's weights (conv: required;
   * depthwise: optional, for the 3x3 interior fast path), and scratch_cols * f_h * f_w *
   * in_c bytes of im2col scratch */
  const int32_t *bias_eff;
  int8_t *scratch;
  int32_t scratch_cols;  /* receptive fields the scratch holds: 2 (pixel pairs) or 1 */
  const int32_t *rq;     /* _fast/_fastg variants (see above) */
  const int32_t *filter_w; /* _fastw/_fastwg: the dw16 filter (filter unused) */
} td_conv_params;

typedef struct {
  int32_t batches, accum, out_c;
  int32_t in_offset, filter_offset, out_offset, act_min, act_max;
  int32_t per_channel;   /* 1: requantization per output channel, 0: one value */
  const int8_t *filter;  /* in the layout of the entry point (above) */
  const int32_t *bias;   /* may be 0 */
  const int32_t *mult;   /* _ref */
  const int32_t *shift;
  const int32_t *bias_eff; /* _fast: bias + in_offset * row sum */
  const int32_t *rq;     /* _fast/_fastg: as in td_conv_params (one pair when per_channel
                          * is 0) */
} td_fc_params;

typedef struct {
  int32_t batches, in_h, in_w, c, out_h, out_w, f_h, f_w;
  int32_t stride_h, stride_w, pad_h, pad_w, act_min, act_max;
} td_pool_params;

void td_conv2d_fast(const td_conv_params *p, const int8_t *in, int8_t *out);
void td_conv2d_fastg(const td_conv_params *p, const int8_t *in, int8_t *out);
void td_conv2d_1x1c1(const td_conv_params *p, const int8_t *in, int8_t *out);
void td_conv2d_ref(const td_conv_params *p, const int8_t *in, int8_t *out);
void td_depthwise_conv2d_fastw(const td_conv_params *p, const int8_t *in, int8_t *out);
void td_depthwise_conv2d_fastwg(const td_conv_params *p, const int8_t *in, int8_t *out);
void td_fully_connected_fast(const td_fc_params *p, const int8_t *in, int8_t *out);
void td_fully_connected_fastg(const td_fc_params *p, const int8_t *in, int8_t *out);
void td_fully_connected_ref(const td_fc_params *p, const int8_t *in, int8_t *out);
void td_fully_connected_plain(const td_fc_params *p, const int8_t *in, int8_t *out);
void td_fully_connected_plaing(const td_fc_params *p, const int8_t *in, int8_t *out);
/* FULLY_CONNECTED streaming (tinydeploy/cruntime/fc_stream.py; one batch): the input is
 * never stored whole. begin sets acc[o] = bias_eff[o]; after each row band of the producer
 * accum adds the products of the slice x = input[k0, k0 + n) (filter bands4); end
 * requantizes acc and clamps as td_fully_connected_fast / _fastg: the same int32 sums. */
void td_fc_stream_begin(const td_fc_params *p, int32_t *acc);
void td_fc_stream_accum(const td_fc_params *p, int32_t k0, int32_t n, const int8_t *x,
                        int32_t *acc);
void td_fc_stream_end(const td_fc_params *p, const int32_t *acc, int8_t *out);
void td_fc_stream_endg(const td_fc_params *p, const int32_t *acc, int8_t *out);
void td_max_pool(const td_pool_params *p, const int8_t *in, int8_t *out);
void td_avg_pool(const td_pool_params *p, const int8_t *in, int8_t *out);

/* ---- softmax, logistic, tanh (td_kernels.c) ---------------------------------------- */
typedef struct {
  int32_t rows, depth, mult, left_shift, diff_min;
} td_softmax_params;

typedef struct {
  int32_t size, in_zp, radius, mult, left_shift;
} td_sigmoid_params; /* LOGISTIC and TANH */

void td_softmax(const td_softmax_params *p, const int8_t *in, int8_t *out);
void td_logistic(const td_sigmoid_params *p, const int8_t *in, int8_t *out);
void td_tanh(const td_sigmoid_params *p, const int8_t *in, int8_t *out);

/* ---- element-wise and data movement (td_kernels_elem.c) ---------------------------- */
typedef struct {
  int32_t size;          /* output elements */
  int32_t broadcast;     /* 0: same shapes, flat loop */
  int32_t dims[TD_MAX_RANK];    /* output shape, padded to TD_MAX_RANK with leading 1s */
  int32_t stride1[TD_MAX_RANK]; /* input strides per output dim (0 where broadcast) */
  int32_t stride2[TD_MAX_RANK];
  int32_t in1_offset, in2_offset, out_offset, left_shift;
  int32_t in1_mult, in1_shift, in2_mult, in2_shift, out_mult, out_shift;
  int32_t act_min, act_max;
} td_binary_params; /* ADD uses all fields, MUL ignores left_shift and in*_mult/shift */

typedef struct {
  int32_t size, in_zp, out_zp, mult, shift, act_min, act_max;
} td_requant_params; /* QUANTIZE (int8 -> int8) and RELU */

typedef struct {
  int32_t size, in_zp, out_zp, mult_id, shift_id, mult_alpha, shift_alpha;
} td_leaky_relu_params;

typedef struct {
  int32_t size, in_zp, out_zp;
  int32_t out_mult16, out_exp, relu_mult16, relu_exp;
} td_hard_swish_params;

typedef struct {
  int32_t rank;
  int32_t in_dims[TD_MAX_RANK];
  int32_t before[TD_MAX_RANK];
  int32_t out_dims[TD_MAX_RANK];
  int32_t pad_value;
} td_pad_params;

typedef struct {
  int32_t rank;
  int32_t dims[TD_MAX_RANK];
  int32_t reduce[TD_MAX_RANK]; /* 1 where the axis is reduced */
  int32_t count;               /* elements per output value */
  int32_t in_zp, out_zp, mult, shift;
} td_mean_params;

void td_add(const td_binary_params *p, const int8_t *in1, const int8_t *in2, int8_t *out);
/* int8 ADD with each input's rescaling (offset, << left_shift, in*_mult/shift) looked up in
 * a 256-entry int32 table per input (lut[v + 128], made by the generator) */
void td_add_lut(const td_binary_params *p, const int32_t *lut1, const int32_t *lut2,
                const int8_t *in1, const int8_t *in2, int8_t *out);
void td_mul(const td_binary_params *p, const int8_t *in1, const int8_t *in2, int8_t *out);
/* same-shape ADD (sub 0) or SUB (sub 1), requantization inline (int8 or int16) */
void td_addsub_flat8(const td_binary_params *p, int32_t sub, const int8_t *in1,
                     const int8_t *in2, int8_t *out);
void td_addsub_flat16(const td_binary_params *p, int32_t sub, const int16_t *in1,
                      const int16_t *in2, int16_t *out);
/* ADD (kind 0), SUB (1), MUL (2), MAXIMUM (3) or MINIMUM (4) of int8 (es 1) or int16
 * (es 2): n elements, input k read st_k apart (1, or 0: broadcast); _rows: the whole
 * broadcast shape, row by row */
void td_binary_row(const td_binary_params *p, int32_t kind, int32_t es, int32_t n,
                   const void *in1, int32_t st1, const void *in2, int32_t st2, void *out);
void td_binary_rows(const td_binary_params *p, int32_t kind, int32_t es, const void *in1,
                    const void *in2, void *out);
void td_requantize(const td_requant_params *p, const int8_t *in, int8_t *out);
void td_clamp(int32_t size, int32_t lo, int32_t hi, const int8_t *in, int8_t *out);
void td_leaky_relu(const td_leaky_relu_params *p, const int8_t *in, int8_t *out);
void td_hard_swish(const td_hard_swish_params *p, const int8_t *in, int8_t *out);
void td_pad(const td_pad_params *p, const int8_t *in, int8_t *out);
void td_mean(const td_mean_params *p, const int8_t *in, int8_t *out);
void td_copy(int32_t size, const int8_t *in, int8_t *out);
/* in-place rows x cols -> cols x rows of px-byte elements (cycle leaders from the generator) */
void td_transpose_px(int8_t *p, int32_t rows, int32_t cols, int32_t px,
                     const uint16_t *leaders, int32_t n_leaders);
/* out[i] = lut[in[i] + 128]: int8 LOGISTIC/TANH with a generator-made table */
void td_lut8(int32_t size, const int8_t *lut, const int8_t *in, int8_t *out);
/* Concatenation as outer x (per input: inner[i] bytes): out = in0 rows | in1 rows | ... */
void td_concat(int32_t n, int32_t outer, const int32_t *inner, const int8_t *const *ins,
               int8_t *out);

/* ---- float model boundaries (td_kernels_io.c) ------------------------------------- */
void td_quantize_f32(int32_t size, float scale, int32_t zero_point, const uint8_t *in,
                     int8_t *out);
/* the same by 255 generator-made thresholds (ordered float keys, cruntime/f32thr.py) */
void td_quantize_f32_thr(int32_t size, const int32_t *thr, float scale, int32_t zero_point,
                         const uint8_t *in, int8_t *out);
void td_quantize_f32_16(int32_t size, float scale, int32_t zero_point, const uint8_t *in,
                        int16_t *out);
/* lut[q + 128] holds the float32 bit pattern of scale * (q - zero_point) */
void td_dequantize_lut(int32_t size, const uint32_t *lut, const int8_t *in, uint8_t *out);
void td_dequantize_16(int32_t size, float scale, int32_t zero_point, const int16_t *in,
                      uint8_t *out);

#ifdef __cplusplus
}
#endif

#endif /* TD_KERNELS_H */
