/* Stand-in for the TFLM C types the firmware touches (syntax checks only). */
#ifndef TD_STUB_TFLITE_COMMON_H
#define TD_STUB_TFLITE_COMMON_H

#include <stddef.h>
#include <stdint.h>

typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;

typedef enum {
  kTfLiteNoType = 0,
  kTfLiteFloat32 = 1,
  kTfLiteInt32 = 2,
  kTfLiteUInt8 = 3,
  kTfLiteInt16 = 7,
  kTfLiteInt8 = 9,
} TfLiteType;

typedef struct {
  int size;
  int data[8];
} TfLiteIntArray;

typedef struct {
  float scale;
  int32_t zero_point;
} TfLiteQuantizationParams;

typedef union {
  int32_t *i32;
  float *f;
  uint8_t *uint8;
  int8_t *int8;
  int16_t *i16;
  void *raw;
  const void *raw_const;
} TfLitePtrUnion;

typedef struct {
  TfLiteType type;
  TfLitePtrUnion data;
  TfLiteIntArray *dims;
  TfLiteQuantizationParams params;
  size_t bytes;
} TfLiteTensor;

#endif
