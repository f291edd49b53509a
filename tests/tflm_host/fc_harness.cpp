/* Host harness for tinydeploy's TFLM FULLY_CONNECTED kernel (firmware/td_tflm_fc.cpp), built
 * against the stand-in TFLM headers of tests/stubs: it plays the interpreter for one node --
 * a MicroContext handing out the node's TfLiteTensors in Prepare, eval tensors in Eval, a
 * counting persistent allocator -- and runs Init, Prepare and Eval on every sample.
 *
 * stdin (whitespace-separated integers; float scales as their IEEE-754 bits):
 *   in_rank in_dims...  out_rank out_dims...  rows accum
 *   in_scale in_zp out_scale out_zp  nscales scales... w_zp quantized_dimension
 *   has_bias activation  weights[rows*accum]  bias[rows] (if has_bias)
 *   pool_words (-1: no pool)  nsamples  inputs[nsamples * in_elems]
 * stdout: "arena N" (bytes the kernel took from the arena), then one line of outputs per
 * sample; or "prepare failed". */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "td_tflm_fc.h"
#include "tensorflow/lite/c/builtin_op_data.h"
#include "tensorflow/lite/micro/micro_context.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace {

long Next() {
  long v = 0;
  if (scanf("%ld", &v) != 1) {
    fprintf(stderr, "harness: short input\n");
    exit(2);
  }
  return v;
}

float Bits(long v) {
  const uint32_t u = static_cast<uint32_t>(v);
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

TfLiteIntArray Dims() {
  TfLiteIntArray a;
  memset(&a, 0, sizeof a);
  a.size = static_cast<int>(Next());
  for (int i = 0; i < a.size; ++i) a.data[i] = static_cast<int>(Next());
  return a;
}

int Elems(const TfLiteIntArray &a) {
  int n = 1;
  for (int i = 0; i < a.size; ++i) n *= a.data[i];
  return n;
}

size_t g_arena = 0;

void *Persistent(TfLiteContext *, size_t bytes) {
  g_arena += bytes;
  return calloc(1, bytes);
}

TfLiteEvalTensor g_eval[4];  // input, weights, bias, output (tensor indices 0..3)

TfLiteEvalTensor *EvalTensor(const TfLiteContext *, int index) { return &g_eval[index]; }

class Context : public tflite::MicroContext {
 public:
  explicit Context(TfLiteTensor *tensors) : tensors_(tensors) {}
  TfLiteTensor *AllocateTempInputTensor(const TfLiteNode *node, int index) override {
    if (index >= node->inputs->size || node->inputs->data[index] < 0) return nullptr;
    ++live_;
    return &tensors_[node->inputs->data[index]];
  }
  TfLiteTensor *AllocateTempOutputTensor(const TfLiteNode *node, int index) override {
    ++live_;
    return &tensors_[node->outputs->data[index]];
  }
  void DeallocateTempTfLiteTensor(TfLiteTensor *) override { --live_; }
  int live() const { return live_; }

 private:
  TfLiteTensor *tensors_;
  int live_ = 0;
};

}  // namespace

void MicroPrintf(const char *format, ...) {
  va_list args;
  va_start(args, format);
  vfprintf(stderr, format, args);
  va_end(args);
  fputc('\n', stderr);
}

namespace tflite {
namespace micro {

TfLiteRegistration RegisterOp(void *(*init)(TfLiteContext *, const char *, size_t),
                              TfLiteStatus (*prepare)(TfLiteContext *, TfLiteNode *),
                              TfLiteStatus (*invoke)(TfLiteContext *, TfLiteNode *),
                              void (*free)(TfLiteContext *, void *)) {
  TfLiteRegistration r;
  r.init = init;
  r.free = free;
  r.prepare = prepare;
  r.invoke = invoke;
  return r;
}

const TfLiteEvalTensor *GetEvalInput(const TfLiteContext *context, const TfLiteNode *node,
                                     int index) {
  if (index >= node->inputs->size || node->inputs->data[index] < 0) return nullptr;
  return context->GetEvalTensor(context, node->inputs->data[index]);
}

TfLiteEvalTensor *GetEvalOutput(const TfLiteContext *context, const TfLiteNode *node,
                                int index) {
  return context->GetEvalTensor(context, node->outputs->data[index]);
}

}  // namespace micro
}  // namespace tflite

int main() {
  TfLiteIntArray in_dims = Dims();
  TfLiteIntArray out_dims = Dims();
  TfLiteIntArray w_dims;
  memset(&w_dims, 0, sizeof w_dims);
  w_dims.size = 2;
  w_dims.data[0] = static_cast<int>(Next());
  w_dims.data[1] = static_cast<int>(Next());
  TfLiteIntArray b_dims = w_dims;
  b_dims.size = 1;
  const float in_scale = Bits(Next());
  const int32_t in_zp = static_cast<int32_t>(Next());
  const float out_scale = Bits(Next());
  const int32_t out_zp = static_cast<int32_t>(Next());
  TfLiteFloatArray scales;
  memset(&scales, 0, sizeof scales);
  scales.size = static_cast<int>(Next());
  for (int i = 0; i < scales.size; ++i) scales.data[i] = Bits(Next());
  const int32_t w_zp = static_cast<int32_t>(Next());
  TfLiteIntArray zps;
  memset(&zps, 0, sizeof zps);
  zps.size = 1;
  zps.data[0] = w_zp;
  TfLiteAffineQuantization affine = {&scales, &zps, static_cast<int32_t>(Next())};
  const bool has_bias = Next() != 0;
  TfLiteFullyConnectedParams params;
  memset(&params, 0, sizeof params);
  params.activation = static_cast<TfLiteFusedActivation>(Next());
  params.weights_format = kTfLiteFullyConnectedWeightsFormatDefault;
  const int rows = w_dims.data[0];
  const int accum = w_dims.data[1];
  std::vector<int8_t> weights(static_cast<size_t>(rows) * static_cast<size_t>(accum));
  for (int8_t &w : weights) w = static_cast<int8_t>(Next());
  std::vector<int32_t> bias(static_cast<size_t>(rows));
  for (int i = 0; has_bias && i < rows; ++i) bias[static_cast<size_t>(i)] = static_cast<int32_t>(Next());
  const long pool_words = Next();
  std::vector<int32_t> pool(pool_words > 0 ? static_cast<size_t>(pool_words) : 1u);
  td_fc_set_pool(pool_words >= 0 ? pool.data() : nullptr,
                 pool_words >= 0 ? static_cast<size_t>(pool_words) : 0u);

  const int n_in = Elems(in_dims);
  const int n_out = Elems(out_dims);
  std::vector<int8_t> input(static_cast<size_t>(n_in));
  std::vector<int8_t> output(static_cast<size_t>(n_out));
  TfLiteTensor tensors[4];
  memset(tensors, 0, sizeof tensors);
  tensors[0].type = kTfLiteInt8;
  tensors[0].dims = &in_dims;
  tensors[0].params = {in_scale, in_zp};
  tensors[0].allocation_type = kTfLiteArenaRw;
  tensors[1].type = kTfLiteInt8;
  tensors[1].dims = &w_dims;
  tensors[1].data.int8 = weights.data();
  tensors[1].params = {scales.data[0], w_zp};
  tensors[1].allocation_type = kTfLiteMmapRo;
  tensors[1].quantization = {kTfLiteAffineQuantization, &affine};
  tensors[2].type = kTfLiteInt32;
  tensors[2].dims = &b_dims;
  tensors[2].data.i32 = bias.data();
  tensors[2].params = {in_scale * scales.data[0], 0};
  tensors[2].allocation_type = kTfLiteMmapRo;
  tensors[3].type = kTfLiteInt8;
  tensors[3].dims = &out_dims;
  tensors[3].params = {out_scale, out_zp};
  tensors[3].allocation_type = kTfLiteArenaRw;
  g_eval[0] = {{nullptr}, &in_dims, kTfLiteInt8};
  g_eval[0].data.int8 = input.data();
  g_eval[1] = {{nullptr}, &w_dims, kTfLiteInt8};
  g_eval[1].data.int8 = weights.data();
  g_eval[2] = {{nullptr}, &b_dims, kTfLiteInt32};
  g_eval[2].data.i32 = bias.data();
  g_eval[3] = {{nullptr}, &out_dims, kTfLiteInt8};
  g_eval[3].data.int8 = output.data();

  TfLiteIntArray node_in;
  memset(&node_in, 0, sizeof node_in);
  node_in.size = 3;
  node_in.data[0] = 0;
  node_in.data[1] = 1;
  node_in.data[2] = has_bias ? 2 : -1;
  TfLiteIntArray node_out;
  memset(&node_out, 0, sizeof node_out);
  node_out.size = 1;
  node_out.data[0] = 3;
  Context micro(tensors);
  TfLiteContext context;
  memset(&context, 0, sizeof context);
  context.AllocatePersistentBuffer = Persistent;
  context.GetEvalTensor = EvalTensor;
  context.impl_ = &micro;
  TfLiteNode node;
  memset(&node, 0, sizeof node);
  node.inputs = &node_in;
  node.outputs = &node_out;
  node.builtin_data = &params;

  const TfLiteRegistration reg = td_fc_registration();
  node.user_data = reg.init(&context, nullptr, 0);
  if (reg.prepare(&context, &node) != kTfLiteOk || micro.live() != 0) {
    printf("prepare failed\n");
    return 0;
  }
  printf("arena %zu\n", g_arena);
  const long samples = Next();
  for (long s = 0; s < samples; ++s) {
    for (int8_t &v : input) v = static_cast<int8_t>(Next());
    if (reg.invoke(&context, &node) != kTfLiteOk) {
      printf("invoke failed\n");
      return 0;
    }
    for (int i = 0; i < n_out; ++i) printf("%d ", output[static_cast<size_t>(i)]);
    printf("\n");
  }
  return 0;
}
