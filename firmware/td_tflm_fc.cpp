/* td_tflm_fc.cpp -- tinydeploy's int8 FULLY_CONNECTED kernel for TFLite Micro (see
 * td_tflm_fc.h). Written for tinydeploy against the TFLM kernel API (Init / Prepare / Eval,
 * MicroContext temp tensors, eval tensors); the arithmetic is td_kernels_conv*.c's. */
#include "td_tflm_overrides.h" /* generated: the board's TFLM library header first */

#include "td_tflm_fc.h"

#include <math.h>
#include <string.h>

#include "tensorflow/lite/c/builtin_op_data.h"
#include "tensorflow/lite/micro/micro_context.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "td_kernels.h"

namespace {

constexpr int kInputTensor = 0;
constexpr int kWeightsTensor = 1;
constexpr int kBiasTensor = 2;
constexpr int kOutputTensor = 0;

/* Eval's form: the weights in place with the input offset folded into the bias
 * (td_fully_connected_plain, or _plaing when a channel's shift is >= 0), or TFLM's loop with the offsets (td_fully_connected_ref: a
 * per-tensor filter zero point, weights or bias that are not constant, a folded bias that
 * leaves int32). */
enum FcPath : int32_t { kPathPlain = 0, kPathRef = 1 };

struct FcData {
  int32_t batches, accum, out_c;
  int32_t in_offset, filter_offset, out_offset, act_min, act_max;
  int32_t per_channel; /* 1: one multiplier per output channel */
  int32_t path;        /* FcPath */
  int32_t rq_general;  /* plain: some channel has a shift >= 0 */
  int32_t one[2];      /* per-tensor: {mult, shift} (ref) or the rq pair (plain) */
  int32_t *table;      /* per channel, see TableWords() */
};

int32_t *g_pool = nullptr;
size_t g_pool_left = 0;

/* Words of FcData::table: plain: folded bias [out_c], then (per channel) rq pairs
 * [2 * out_c]; ref: (per channel) multipliers [out_c], then shifts [out_c]. */
size_t TableWords(const FcData &d) {
  const size_t n = static_cast<size_t>(d.out_c);
  if (d.path == kPathPlain) return n + (d.per_channel ? 2 * n : 0);
  return d.per_channel ? 2 * n : 0;
}

int32_t *TakeWords(TfLiteContext *context, size_t words) {
  if (words == 0) return nullptr;
  if (words <= g_pool_left) {
    int32_t *p = g_pool;
    g_pool += words;
    g_pool_left -= words;
    return p;
  }
  return static_cast<int32_t *>(context->AllocatePersistentBuffer(context, words * 4));
}

TfLiteStatus Refuse(const char *what) {
  MicroPrintf("tinydeploy FULLY_CONNECTED: %s", what);
  return kTfLiteError;
}

/* TFLM's QuantizeMultiplier: real = mult * 2^(shift - 31), mult in [2^30, 2^31) rounded
 * half away from zero; 0 and shifts below -31 give {0, 0}. */
void QuantizeMultiplier(double real, int32_t *mult, int32_t *shift) {
  if (real == 0.0) {
    *mult = 0;
    *shift = 0;
    return;
  }
  int exponent = 0;
  const double fraction = frexp(real, &exponent);
  int64_t fixed = static_cast<int64_t>(round(fraction * 2147483648.0));
  if (fixed == (static_cast<int64_t>(1) << 31)) {
    fixed /= 2;
    ++exponent;
  }
  if (exponent < -31) {
    exponent = 0;
    fixed = 0;
  }
  *mult = static_cast<int32_t>(fixed);
  *shift = exponent;
}

/* zero_point + round(value / scale), the division and rounding in float as in TFLM */
bool QuantizeBound(float value, float scale, int32_t zero_point, int32_t *q) {
  const float t = roundf(value / scale);
  if (!(t >= -2147483648.0f && t <= 2147483647.0f)) return false;
  *q = zero_point + static_cast<int32_t>(t);
  return true;
}

/* TFLM's CalculateActivationRangeQuantized for an int8 output */
bool ActivationRange(int activation, const TfLiteTensor *output, int32_t *lo, int32_t *hi) {
  const float scale = output->params.scale;
  const int32_t zp = output->params.zero_point;
  int32_t q = 0;
  *lo = -128;
  *hi = 127;
  if (activation == kTfLiteActRelu || activation == kTfLiteActRelu6) {
    if (!QuantizeBound(0.0f, scale, zp, &q)) return false;
    *lo = q > *lo ? q : *lo;
    if (activation == kTfLiteActRelu6) {
      if (!QuantizeBound(6.0f, scale, zp, &q)) return false;
      *hi = q < *hi ? q : *hi;
    }
  } else if (activation == kTfLiteActReluN1To1) {
    if (!QuantizeBound(-1.0f, scale, zp, &q)) return false;
    *lo = q > *lo ? q : *lo;
    if (!QuantizeBound(1.0f, scale, zp, &q)) return false;
    *hi = q < *hi ? q : *hi;
  }
  return true;
}

const TfLiteAffineQuantization *Affine(const TfLiteTensor *t) {
  if (t->quantization.type != kTfLiteAffineQuantization) return nullptr;
  return static_cast<const TfLiteAffineQuantization *>(t->quantization.params);
}

bool Constant(const TfLiteTensor *t) {
  return t == nullptr || (t->allocation_type == kTfLiteMmapRo && t->data.raw != nullptr);
}

/* bias + input offset * (sum of the channel's weights) */
int64_t FoldedBias(const TfLiteTensor *filter, const TfLiteTensor *bias, const FcData *d,
                   int32_t oc) {
  const int8_t *w = filter->data.int8 + static_cast<size_t>(oc) * static_cast<size_t>(d->accum);
  int64_t sum = 0;
  for (int32_t k = 0; k < d->accum; ++k) sum += w[k];
  return static_cast<int64_t>(d->in_offset) * sum + (bias != nullptr ? bias->data.i32[oc] : 0);
}

/* The requantization of each output channel (TFLM's CalculateOpDataFullyConnected) and the
 * Eval form; fills d->table. */
TfLiteStatus Requantization(TfLiteContext *context, const TfLiteTensor *input,
                            const TfLiteTensor *filter, const TfLiteTensor *bias,
                            const TfLiteTensor *output, FcData *d) {
  const TfLiteAffineQuantization *q = Affine(filter);
  if (q != nullptr && q->scale == nullptr) return Refuse("weights without scales");
  d->per_channel = q != nullptr && q->scale->size > 1;
  const int32_t n = d->out_c;
  if (d->per_channel) {
    const int dim = q->quantized_dimension;
    if (dim < 0 || dim >= filter->dims->size || filter->dims->data[dim] != q->scale->size ||
        q->scale->size < n) {
      return Refuse("per-channel scales do not match the weights");
    }
  } else {
    /* input scale x weight scale / output scale in double, as the TFLM Python runtime
     * computes it (its per-tensor multipliers match the double product, never the float
     * one, where the two differ); TFLM's bias scale check */
    const double product = static_cast<double>(input->params.scale) *
                           static_cast<double>(filter->params.scale);
    if (bias != nullptr &&
        fabs(product - static_cast<double>(bias->params.scale)) /
                static_cast<double>(output->params.scale) > 0.02) {
      return Refuse("bias scale differs from input scale x weight scale");
    }
    if (!(product >= 0.0)) return Refuse("negative scale");
    QuantizeMultiplier(product / static_cast<double>(output->params.scale), &d->one[0],
                       &d->one[1]);
  }
  /* the folded bias: bias + input offset * row sum, when it stays in int32 */
  bool fold = (d->per_channel || filter->params.zero_point == 0) && Constant(filter) &&
              Constant(bias);
  for (int32_t oc = 0; fold && oc < n; ++oc) {
    const int64_t v = FoldedBias(filter, bias, d, oc);
    fold = v >= INT32_MIN && v <= INT32_MAX;
  }
  d->path = fold ? kPathPlain : kPathRef;
  if (d->per_channel) d->filter_offset = 0; /* TFLM's per-channel loop ignores it */
  d->table = TakeWords(context, TableWords(*d));
  if (TableWords(*d) != 0 && d->table == nullptr) return Refuse("no memory for its tables");
  int32_t *mult = d->table;
  int32_t *shift = d->table + n;
  int32_t *rq = d->table + n;
  for (int32_t oc = 0; d->path == kPathPlain && oc < n; ++oc) {
    d->table[oc] = static_cast<int32_t>(FoldedBias(filter, bias, d, oc));
  }
  for (int32_t oc = 0; oc < (d->per_channel ? n : 1); ++oc) {
    int32_t m = d->one[0];
    int32_t s = d->one[1];
    if (d->per_channel) {
      const double real = static_cast<double>(input->params.scale) *
                          static_cast<double>(q->scale->data[oc]) /
                          static_cast<double>(output->params.scale);
      QuantizeMultiplier(real, &m, &s);
    }
    if (d->path == kPathRef) {
      if (d->per_channel) {
        mult[oc] = m;
        shift[oc] = s;
      }
      continue;
    }
    /* rq pair {mult, -shift - 1} (td_kernels.h); a zero multiplier stays {0, 0} */
    int32_t *pair = d->per_channel ? rq + 2 * oc : d->one;
    pair[0] = m;
    pair[1] = m != 0 ? -s - 1 : 0;
    if (pair[1] < 0) d->rq_general = 1;
  }
  return kTfLiteOk;
}

TfLiteStatus PrepareTensors(TfLiteContext *context, TfLiteNode *node, const TfLiteTensor *input,
                            const TfLiteTensor *filter, const TfLiteTensor *bias,
                            const TfLiteTensor *output, FcData *d) {
  if (input->type != kTfLiteInt8 || filter->type != kTfLiteInt8 ||
      output->type != kTfLiteInt8) {
    return Refuse("int8 input, weights and output only");
  }
  if (bias != nullptr && bias->type != kTfLiteInt32) return Refuse("int32 bias only");
  const TfLiteFullyConnectedParams *params =
      static_cast<const TfLiteFullyConnectedParams *>(node->builtin_data);
  if (params == nullptr || params->weights_format != kTfLiteFullyConnectedWeightsFormatDefault) {
    return Refuse("shuffled weights");
  }
  const TfLiteIntArray *od = output->dims;
  const TfLiteIntArray *fd = filter->dims;
  if (od->size < 1 || fd->size < 2) return Refuse("shapes");
  d->batches = 1;
  for (int i = 0; i + 1 < od->size; ++i) d->batches *= od->data[i];
  d->out_c = od->data[od->size - 1];
  d->accum = fd->data[fd->size - 1];
  if (d->out_c > fd->data[fd->size - 2]) return Refuse("more outputs than weight rows");
  d->in_offset = -input->params.zero_point;
  d->filter_offset = -filter->params.zero_point;
  d->out_offset = output->params.zero_point;
  if (!ActivationRange(params->activation, output, &d->act_min, &d->act_max)) {
    return Refuse("activation range");
  }
  return Requantization(context, input, filter, bias, output, d);
}

}  // namespace

void td_fc_set_pool(int32_t *words, size_t count) {
  g_pool = words;
  g_pool_left = words != nullptr ? count : 0;
}

namespace td_tflm {

void *FcInit(TfLiteContext *context, const char *buffer, size_t length) {
  (void)buffer;
  (void)length;
  void *data = context->AllocatePersistentBuffer(context, sizeof(FcData));
  if (data != nullptr) memset(data, 0, sizeof(FcData));
  return data;
}

TfLiteStatus FcPrepare(TfLiteContext *context, TfLiteNode *node) {
  if (node->user_data == nullptr) return Refuse("no OpData");
  FcData *d = static_cast<FcData *>(node->user_data);
  tflite::MicroContext *mc = tflite::GetMicroContext(context);
  TfLiteTensor *input = mc->AllocateTempInputTensor(node, kInputTensor);
  TfLiteTensor *filter = mc->AllocateTempInputTensor(node, kWeightsTensor);
  TfLiteTensor *bias = mc->AllocateTempInputTensor(node, kBiasTensor);
  TfLiteTensor *output = mc->AllocateTempOutputTensor(node, kOutputTensor);
  TfLiteStatus status = kTfLiteError;
  if (input == nullptr || filter == nullptr || output == nullptr) {
    Refuse("missing tensor");
  } else {
    status = PrepareTensors(context, node, input, filter, bias, output, d);
  }
  TfLiteTensor *const temps[] = {input, filter, bias, output};
  for (TfLiteTensor *t : temps) {
    if (t != nullptr) mc->DeallocateTempTfLiteTensor(t);
  }
  return status;
}

TfLiteStatus FcEval(TfLiteContext *context, TfLiteNode *node) {
  const FcData &d = *static_cast<const FcData *>(node->user_data);
  const TfLiteEvalTensor *input = tflite::micro::GetEvalInput(context, node, kInputTensor);
  const TfLiteEvalTensor *filter = tflite::micro::GetEvalInput(context, node, kWeightsTensor);
  const TfLiteEvalTensor *bias = tflite::micro::GetEvalInput(context, node, kBiasTensor);
  TfLiteEvalTensor *output = tflite::micro::GetEvalOutput(context, node, kOutputTensor);
  td_fc_params p;
  memset(&p, 0, sizeof(p));
  p.batches = d.batches;
  p.accum = d.accum;
  p.out_c = d.out_c;
  p.in_offset = d.in_offset;
  p.filter_offset = d.filter_offset;
  p.out_offset = d.out_offset;
  p.act_min = d.act_min;
  p.act_max = d.act_max;
  p.per_channel = d.per_channel;
  p.filter = filter->data.int8;
  if (d.path == kPathPlain) {
    p.bias_eff = d.table;
    p.rq = d.per_channel ? d.table + d.out_c : d.one;
    (d.rq_general ? td_fully_connected_plaing : td_fully_connected_plain)(&p, input->data.int8,
                                                                          output->data.int8);
  } else {
    p.bias = bias != nullptr ? bias->data.i32 : nullptr;
    p.mult = d.per_channel ? d.table : &d.one[0];
    p.shift = d.per_channel ? d.table + d.out_c : &d.one[1];
    td_fully_connected_ref(&p, input->data.int8, output->data.int8);
  }
  return kTfLiteOk;
}

}  // namespace td_tflm
