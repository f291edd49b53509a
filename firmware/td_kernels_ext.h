/* tinydeploy extension kernels: SUB, MAXIMUM/MINIMUM, STRIDED_SLICE, TRANSPOSE_CONV,
 * 16x8 variants (int16 activations, int8 weights) and UNIDIRECTIONAL_SEQUENCE_LSTM (int8).
 *
 * Same rules as td_kernels.h: integer arithmetic reproducing TFLite Micro's reference
 * kernels bit for bit, every parameter computed offline by tinydeploy.cruntime.emit_ext.
 * int16 tensors are 2-byte aligned (the generated arena is aligned for them).
 */
#ifndef TD_KERNELS_EXT_H
#define TD_KERNELS_EXT_H

#include <stdint.h>

#include "td_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- element-wise binary ops, int8 or int16 (td_kernels_ext.c) -------------------- */
#define TD_BIN_ADD 0
#define TD_BIN_SUB 1
#define TD_BIN_MUL 2
#define TD_BIN_MAX 3
#define TD_BIN_MIN 4
/* es: element size in bytes (1 = int8, 2 = int16); td_binary_params as for td_add/td_mul */
void td_binary_ext(const td_binary_params *p, int32_t kind, int32_t es, const void *in1,
                   const void *in2, void *out);

/* ---- strided slice (any element size) --------------------------------------------- */
/* The generator merges axes: the innermost copy is `run` contiguous bytes (the last axes
 * taken whole, or one element); outer axes (leading count 1s) step the source by `step`
 * bytes. The output is written in order. */
typedef struct {
  int32_t base;                  /* byte offset of the first element read */
  int32_t run;                   /* contiguous bytes per copy */
  int32_t inner_n, inner_step;   /* copies along the innermost outer axis, its byte step */
  int32_t count[TD_MAX_RANK - 1]; /* the other outer axes' extents */
  int32_t step[TD_MAX_RANK - 1];  /* their source byte steps */
} td_strided_slice_params;
void td_strided_slice(const td_strided_slice_params *p, const void *in, void *out);

/* ---- element permutation in input order (TRANSPOSE with short output rows) --------- */
/* The loops walk the input (the innermost reads consecutive elements) and scatter the
 * elements to the output: output bytes are not written in increasing order, so the output
 * must not overlap the input (the planner never places a TRANSPOSE in place). */
typedef struct {
  int32_t es;                    /* element bytes: 1, 2 or 4 */
  int32_t count[TD_MAX_RANK];    /* loop extents, outermost first (leading 1s) */
  int32_t src_step[TD_MAX_RANK]; /* input byte step per loop */
  int32_t dst_step[TD_MAX_RANK]; /* output byte step per loop */
} td_permute_params;
void td_permute(const td_permute_params *p, const void *in, void *out);

/* ---- transpose convolution (int8 and 16x8) ----------------------------------------- */
typedef struct {
  int32_t batches, in_h, in_w, in_c, out_h, out_w, out_c, f_h, f_w;
  int32_t stride_h, stride_w, pad_h, pad_w;
  int32_t in_offset, out_offset, act_min, act_max;
  int32_t in16;          /* 1: int16 input/output, int64 bias */
  const int8_t *filter;  /* [out_c][f_h][f_w][in_c] */
  const void *bias;      /* int32 (int8) or int64 (16x8); may be 0 */
  const int32_t *mult;
  const int32_t *shift;
} td_tconv_params;
/* scratch: out_h * out_w * out_c * batches int64 accumulators */
/* int8: an int32 scratch of out_h * out_w * out_c sums (TFLM's int32 wrapping sums), the
 * filter in its own layout (each output channel's taps hold in_c contiguous weights) */
void td_transpose_conv8(const td_tconv_params *p, const int8_t *in, int8_t *out,
                        int32_t *scratch);
void td_transpose_conv(const td_tconv_params *p, const void *in, void *out, int64_t *scratch);

/* ---- 16x8 kernels (td_kernels_int16.c) --------------------------------------------- */
/* int64 x (multiplier, shift) as TFLM's 64-bit MultiplyByQuantizedMultiplier */
int32_t td_mbqm64(int64_t x, int32_t mult, int32_t shift);
/* conv / depthwise with int16 input and output, int8 weights; bias int64 (bias64 = 1) or
 * int32 (accumulator wraps like TFLM's int32 AccumScalar) */
void td_conv2d_16(const td_conv_params *p, int32_t bias64, const int16_t *in, int16_t *out);
void td_depthwise_conv2d_16(const td_conv_params *p, int32_t bias64, const int16_t *in,
                            int16_t *out);
void td_fully_connected_16(const td_fc_params *p, int32_t bias64, const int16_t *in,
                           int16_t *out);
/* fast paths (td_kernels_int16_fast.c): input zero point 0, int32 partial sums where the
 * generator proved them exact; `filter` in the pair layout described there */
typedef struct {
  const td_conv_params *p; /* shapes, bias, multipliers (p->filter: the plain layout) */
  const int8_t *filter;    /* output channel pairs, per filter row */
  int16_t *scratch;        /* 2 * f_h * f_w * in_c int16 when a window leaves the input
                            * or dil_w > 1, else may be 0 */
  int32_t bias64;
  int32_t wide;            /* 0: int32 sum per output; 1: int32 per filter row, int64 total */
  /* per output channel, when the generator proved it exact (else 0): the output is the low
   * 32 bits of (acc * fold_mult + fold_bias) >> fold_shift, TFLM's 64-bit requantization of
   * acc + bias with the bias and rounding folded into fold_bias */
  const int64_t *fold_bias;
  const int32_t *fold_mult, *fold_shift;
} td_conv16_params;
void td_conv2d_16_fast(const td_conv16_params *q, const int16_t *in, int16_t *out);
typedef struct {
  const td_conv_params *p; /* depth multiplier 1, plain filter layout */
  int32_t bias64;
  const int64_t *fold_bias; /* as for td_conv16_params */
  const int32_t *fold_mult, *fold_shift;
} td_dw16_params;
void td_depthwise_conv2d_16_fast(const td_dw16_params *q, const int16_t *in, int16_t *out);
typedef struct {
  const td_fc_params *p;   /* filter_offset and in_offset 0 */
  const int8_t *filter;    /* output channel pairs, rows of seg */
  int32_t bias64;
  int32_t seg;              /* weights per int32 sum (accum: one; else sums added in int64) */
  const int64_t *fold_bias; /* as for td_conv16_params */
  const int32_t *fold_mult, *fold_shift;
} td_fc16_params;
void td_fully_connected_16_fast(const td_fc16_params *q, const int16_t *in, int16_t *out);
/* requantize between int8/int16 (QUANTIZE); es_in/es_out element sizes */
void td_requantize_ext(const td_requant_params *p, int32_t es_in, int32_t es_out,
                       const void *in, void *out);
void td_leaky_relu_16(const td_leaky_relu_params *p, const int16_t *in, int16_t *out);
/* generic PAD on elements of es bytes */
void td_pad_ext(const td_pad_params *p, int32_t es, const void *in, void *out);

/* sigmoid(i / 24) in unsigned 0.16 fixed point: the table TFLM's int16 LOGISTIC/TANH
 * interpolate in. Defined in the generated td_model.c of models that need it. */
extern const uint16_t td_sigmoid_table[256];

/* ---- UNIDIRECTIONAL_SEQUENCE_LSTM, int8 activations x int8 weights (td_kernels_lstm.c) */
/* one requantization: TFLM's (mult, shift), and for the fast forms (td_lstm_step_fast*)
 * lsh = max(shift, 0) + 1, rsh = max(-shift, 0), rnd = (1 << rsh) >> 1, nmask = rsh ? -1 : 0 */
typedef struct {
  int32_t mult, shift, lsh, rsh, rnd, nmask;
} td_lstm_rq;

typedef struct td_lstm_params td_lstm_params;
/* one time step of one batch row: x the input row, h the hidden state, c the cell state
 * (updated), hout the new hidden state. The generator names the one a layer uses (the
 * others are then not linked): _fast2 when every requantization has a negative shift,
 * _fast when no value the layer can produce overflows the fast form, else _any (TFLM's) */
typedef void (*td_lstm_step_fn)(const td_lstm_params *p, const int8_t *x, const int8_t *h,
                                int16_t *c, int8_t *hout);
void td_lstm_step_fast2(const td_lstm_params *p, const int8_t *x, const int8_t *h, int16_t *c,
                        int8_t *hout);
void td_lstm_step_fast(const td_lstm_params *p, const int8_t *x, const int8_t *h, int16_t *c,
                       int8_t *hout);
void td_lstm_step_any(const td_lstm_params *p, const int8_t *x, const int8_t *h, int16_t *c,
                      int8_t *hout);

struct td_lstm_params {
  int32_t batches, steps, n_in, n_state, time_major;
  /* the 4 gate rows of each state unit (gates: 0 input, 1 forget, 2 cell, 3 output),
   * units one after the other, each unit's 4 rows interleaved by 4 columns then the
   * (n % 4)-column tails (tinydeploy.cruntime.emit.interleave_rows); 4-byte aligned */
  const int8_t *w_in;    /* [n_state][4][n_in] */
  const int8_t *w_rec;   /* [n_state][4][n_state] */
  /* bias + in_offset * sum(row), [n_state][4]: plain int8 products accumulate on it */
  const int32_t *bias_in, *bias_rec;
  td_lstm_rq in_rq[4], rec_rq[4]; /* input / recurrent FC -> Q3.12, per gate */
  td_lstm_rq fc_rq;     /* forget x cell -> cell */
  td_lstm_rq ic_rq;     /* input x cell gate -> cell */
  td_lstm_rq out_rq;    /* tanh(cell) x output gate -> hidden (int8) */
  td_lstm_step_fn step;
  int32_t hidden_zp;
  int32_t tanh_mult, tanh_shift;   /* Tanh of the cell state (input_multiplier, shift) */
  int32_t cell_clip;               /* quantized, 0 = no clipping */
};
/* hidden: int8 [batches][n_state] (state), cell: int16 [batches][n_state] (state); out
 * [batches * steps][n_state] must not overlap in, hidden or cell */
void td_lstm(const td_lstm_params *p, const int8_t *in, int8_t *hidden, int16_t *cell,
             int8_t *out);

#ifdef __cplusplus
}
#endif

#endif /* TD_KERNELS_EXT_H */
