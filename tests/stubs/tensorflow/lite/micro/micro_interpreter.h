/* Stand-in for tflite::MicroInterpreter (syntax checks only). */
#ifndef TD_STUB_MICRO_INTERPRETER_H
#define TD_STUB_MICRO_INTERPRETER_H

#include <stddef.h>
#include <stdint.h>

#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/micro/micro_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace tflite {

class MicroInterpreter {
 public:
  MicroInterpreter(const Model *model, const MicroOpResolver &op_resolver,
                   uint8_t *tensor_arena, size_t tensor_arena_size);
  MicroInterpreter(const MicroInterpreter &) = delete;
  MicroInterpreter &operator=(const MicroInterpreter &) = delete;
  TfLiteStatus AllocateTensors();
  TfLiteStatus Invoke();
  TfLiteTensor *input(size_t index);
  TfLiteTensor *output(size_t index);
  size_t inputs_size() const;
  size_t outputs_size() const;
  size_t arena_used_bytes() const;
};

}  // namespace tflite

#endif
