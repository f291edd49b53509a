/* Stand-in for the TensorFlowLite_ESP32 library's main header (empty on purpose). */
#ifndef TD_STUB_TFLITE_ESP32_H
#define TD_STUB_TFLITE_ESP32_H
#endif
