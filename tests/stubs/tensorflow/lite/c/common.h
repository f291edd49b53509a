/* Stand-in for the TFLM C types the firmware and tinydeploy's TFLM kernels touch (our own
 * declarations of the members they use; syntax checks, and the host harness of
 * tests/test_tflm_fc_kernel.py, which fills them in itself). */
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
  int size;
  float data[256]; /* the real one is a flexible array */
} TfLiteFloatArray;

typedef struct {
  float scale;
  int32_t zero_point;
} TfLiteQuantizationParams;

typedef enum { kTfLiteNoQuantization = 0, kTfLiteAffineQuantization = 1 } TfLiteQuantizationType;

typedef struct {
  TfLiteQuantizationType type;
  void *params;
} TfLiteQuantization;

typedef struct {
  TfLiteFloatArray *scale;
  TfLiteIntArray *zero_point;
  int32_t quantized_dimension;
} TfLiteAffineQuantization;

typedef enum { kTfLiteMemNone = 0, kTfLiteMmapRo = 1, kTfLiteArenaRw = 2 } TfLiteAllocationType;

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
  TfLiteAllocationType allocation_type;
  size_t bytes;
  TfLiteQuantization quantization;
} TfLiteTensor;

typedef struct {
  TfLitePtrUnion data;
  TfLiteIntArray *dims;
  TfLiteType type;
} TfLiteEvalTensor;

typedef struct TfLiteNode {
  TfLiteIntArray *inputs;
  TfLiteIntArray *outputs;
  void *user_data;
  void *builtin_data;
} TfLiteNode;

typedef struct TfLiteContext {
  void *(*AllocatePersistentBuffer)(struct TfLiteContext *ctx, size_t bytes);
  TfLiteEvalTensor *(*GetEvalTensor)(const struct TfLiteContext *ctx, int tensor_idx);
  void *impl_;
} TfLiteContext;

typedef struct TfLiteRegistration {
  void *(*init)(TfLiteContext *context, const char *buffer, size_t length);
  void (*free)(TfLiteContext *context, void *buffer);
  TfLiteStatus (*prepare)(TfLiteContext *context, TfLiteNode *node);
  TfLiteStatus (*invoke)(TfLiteContext *context, TfLiteNode *node);
} TfLiteRegistration;

#endif
