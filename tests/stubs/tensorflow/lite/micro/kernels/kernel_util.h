/* Stand-in for the TFLM kernel helpers tinydeploy's TFLM kernels call (our own declarations). */
#ifndef TD_STUB_MICRO_KERNEL_UTIL_H
#define TD_STUB_MICRO_KERNEL_UTIL_H

#include "tensorflow/lite/c/common.h"

namespace tflite {
namespace micro {

TfLiteRegistration RegisterOp(void *(*init)(TfLiteContext *context, const char *buffer,
                                            size_t length),
                              TfLiteStatus (*prepare)(TfLiteContext *context, TfLiteNode *node),
                              TfLiteStatus (*invoke)(TfLiteContext *context, TfLiteNode *node),
                              void (*free)(TfLiteContext *context, void *buffer) = nullptr);

const TfLiteEvalTensor *GetEvalInput(const TfLiteContext *context, const TfLiteNode *node,
                                     int index);
TfLiteEvalTensor *GetEvalOutput(const TfLiteContext *context, const TfLiteNode *node, int index);

}  // namespace micro
}  // namespace tflite

#endif
