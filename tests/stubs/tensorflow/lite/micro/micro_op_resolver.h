/* Stand-in for the abstract op resolver base class (syntax checks only). */
#ifndef TD_STUB_MICRO_OP_RESOLVER_H
#define TD_STUB_MICRO_OP_RESOLVER_H

namespace tflite {

class MicroOpResolver {
 public:
  virtual ~MicroOpResolver() {}
};

}  // namespace tflite

#endif
