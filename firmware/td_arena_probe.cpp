/* td_arena_probe.cpp -- tinydeploy's arena probe firmware (`tinydeploy arena --target qemu-cm4`).
 *
 * One trial per boot: build a TFLite Micro interpreter over the first td_probe_arena_bytes
 * bytes of a large, 16-byte aligned static buffer, AllocateTensors(), zero the inputs,
 * Invoke(), and print one result line on the serial port:
 *   TD_PROBE OK <arena_used_bytes>   |   TD_PROBE FAIL allocate   |   TD_PROBE FAIL invoke
 * (after TD_PROBE START <size>, and TD_PROBE ALLOCATED <size> once the tensors are allocated)
 * TFLM touches only [arena, arena + size), so one firmware serves every trial: the host
 * writes the trial size into the word at TD_PROBE_SIZE_ADDR before the core starts (QEMU
 * `-device loader`; the last word of the image memory, outside the image, so neither the
 * ELF load nor the startup code overwrite it); a crash (hard fault) or a hang counts as a
 * failed trial. td_arena_probe.h (generated) sets TD_PROBE_ARENA_MAX, TD_PROBE_SIZE_ADDR,
 * TD_PROBE_NUM_OPS and TD_PROBE_REGISTER_OPS(resolver) (exactly the model's operators).
 */
#include <Arduino.h>
#include <string.h>

#include <new>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

#include "model_data.h"
#include "td_arena_probe.h"

alignas(16) static uint8_t td_probe_arena[TD_PROBE_ARENA_MAX];

/* Objects built in place: nothing registers a destructor (no atexit, no __dso_handle). */
using ProbeResolver = tflite::MicroMutableOpResolver<TD_PROBE_NUM_OPS>;
alignas(ProbeResolver) static uint8_t td_probe_resolver[sizeof(ProbeResolver)];
alignas(tflite::MicroInterpreter) static uint8_t td_probe_interpreter[sizeof(tflite::MicroInterpreter)];

static void Result(const char *what, unsigned long value) {
  Serial.print("TD_PROBE ");
  Serial.print(what);
  Serial.print(" ");
  Serial.println(value);
}

void setup() {
  Serial.begin(115200);
  uint32_t size = *reinterpret_cast<volatile const uint32_t *>(TD_PROBE_SIZE_ADDR);
  if (size > TD_PROBE_ARENA_MAX) size = TD_PROBE_ARENA_MAX;
  Result("START", static_cast<unsigned long>(size));
  const tflite::Model *model = tflite::GetModel(g_model);
  ProbeResolver &resolver = *new (td_probe_resolver) ProbeResolver();
  if (TD_PROBE_REGISTER_OPS(resolver) != kTfLiteOk) {
    Result("FAIL register", 0);
    return;
  }
  tflite::MicroInterpreter &interpreter =
      *new (td_probe_interpreter) tflite::MicroInterpreter(model, resolver, td_probe_arena, size);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    Result("FAIL allocate", 0);
    return;
  }
  Result("ALLOCATED", static_cast<unsigned long>(size));  /* a hang from here on is slow */
  for (size_t i = 0; i < interpreter.inputs_size(); ++i) {
    TfLiteTensor *t = interpreter.input(i);
    if (t != nullptr && t->data.raw != nullptr) memset(t->data.raw, 0, t->bytes);
  }
  if (interpreter.Invoke() != kTfLiteOk) {
    Result("FAIL invoke", 0);
    return;
  }
  Result("OK", static_cast<unsigned long>(interpreter.arena_used_bytes()));
}

void loop() {}
