/* Stand-in for the MicroContext calls tinydeploy's TFLM kernels make (our own declarations). */
#ifndef TD_STUB_MICRO_CONTEXT_H
#define TD_STUB_MICRO_CONTEXT_H

#include "tensorflow/lite/c/common.h"

namespace tflite {

class MicroContext {
 public:
  virtual ~MicroContext() {}
  virtual TfLiteTensor *AllocateTempInputTensor(const TfLiteNode *node, int index) = 0;
  virtual TfLiteTensor *AllocateTempOutputTensor(const TfLiteNode *node, int index) = 0;
  virtual void DeallocateTempTfLiteTensor(TfLiteTensor *tensor) = 0;
};

inline MicroContext *GetMicroContext(const TfLiteContext *context) {
  return static_cast<MicroContext *>(context->impl_);
}

}  // namespace tflite

#endif
