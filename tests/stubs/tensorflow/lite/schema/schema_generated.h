/* Stand-in for the flatbuffer model accessor (syntax checks only). TFLITE_SCHEMA_VERSION is
 * left undefined on purpose: the firmware must supply a fallback. */
#ifndef TD_STUB_SCHEMA_GENERATED_H
#define TD_STUB_SCHEMA_GENERATED_H

#include <stdint.h>

namespace tflite {

class Model {
 public:
  uint32_t version() const;
};

const Model *GetModel(const void *buffer);

}  // namespace tflite

#endif
