/* Per-operator instruction counts of TFLite Micro on qemu-cm4 (benchmarks/per_op_speed.py).
 *
 * A bare-metal image for QEMU's mps2-an386 (firmware/cm4: startup, UART0, SysTick; the C++
 * glue of firmware/arduino_core/td_core_cm4.c): it runs
 * the model of the generated "op_model.h" on its embedded inputs with a
 * tflite::MicroProfilerInterface passed to the MicroInterpreter. TFLM opens one event per
 * operator's Invoke (ScopedMicroProfiler in micro_interpreter_graph.cc, tag = op name);
 * BeginEvent/EndEvent read the same SysTick counter as the C runtime's profile
 * (cm4_timer_ticks(): QEMU -icount shift=0, 1 tick = 40 instructions). Per inference UART0
 * gets
 *   N tag0 tag1 ...      the events' tags (first inference only)
 *   P d0 d1 ...          ticks per event
 *   T total              ticks of the whole Invoke()
 *   O hash               FNV-1a 32 of the output tensors' bytes (checked against the host)
 * and "DONE" at the end ("ERROR what" if TFLM refuses the model).
 *
 * op_model.h defines: OPP_NUM_OPS, OPP_REGISTER_OPS(resolver) (a statement list of
 * resolver.AddXxx() calls), OPP_ARENA_SIZE, OPP_SAMPLES, OPP_INPUT_BYTES (all inputs of
 * one sample), opp_model[] and opp_inputs[] (samples x OPP_INPUT_BYTES).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "op_model.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"

extern "C" {
#include "cm4.h"
int td_core_init(int argc, char **argv); /* firmware/arduino_core/td_core_cm4.c */
}

namespace {

constexpr uint32_t kMaxEvents = 512;

/* One tick count per event; events are the operators in execution order. */
class TickProfiler : public tflite::MicroProfilerInterface {
 public:
  uint32_t BeginEvent(const char *tag) override {
    if (count_ >= kMaxEvents) return kMaxEvents;
    tags_[count_] = tag;
    start_[count_] = cm4_timer_ticks();
    return count_++;
  }
  void EndEvent(uint32_t handle) override {
    const uint32_t now = cm4_timer_ticks();
    if (handle < count_) ticks_[handle] = now - start_[handle];
  }
  void Clear() { count_ = 0; }
  uint32_t count() const { return count_; }
  const char *tag(uint32_t i) const { return tags_[i]; }
  uint32_t ticks(uint32_t i) const { return ticks_[i]; }

 private:
  const char *tags_[kMaxEvents] = {};
  uint32_t start_[kMaxEvents] = {};
  uint32_t ticks_[kMaxEvents] = {};
  uint32_t count_ = 0;
};

void PutNumber(uint32_t v) {
  char digits[12];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + v % 10u);
    v /= 10u;
  } while (v != 0u);
  while (n > 0) cm4_uart_putc(static_cast<uint8_t>(digits[--n]));
}

uint32_t Fnv1a(uint32_t h, const uint8_t *data, size_t n) {
  for (size_t i = 0; i < n; ++i) h = (h ^ data[i]) * 16777619u;
  return h;
}

alignas(16) uint8_t g_arena[OPP_ARENA_SIZE];
TickProfiler g_profiler;

int Run() {
  const tflite::Model *model = tflite::GetModel(opp_model);
  static tflite::MicroMutableOpResolver<OPP_NUM_OPS> resolver;
  OPP_REGISTER_OPS(resolver);
  static tflite::MicroInterpreter interpreter(model, resolver, g_arena, sizeof g_arena, nullptr,
                                              &g_profiler);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    cm4_uart_puts("ERROR AllocateTensors\n");
    return 1;
  }
  for (uint32_t s = 0; s < OPP_SAMPLES; ++s) {
    const uint8_t *src = opp_inputs + static_cast<size_t>(s) * OPP_INPUT_BYTES;
    for (size_t i = 0; i < interpreter.inputs_size(); ++i) {
      TfLiteTensor *t = interpreter.input(i);
      memcpy(t->data.raw, src, t->bytes);
      src += t->bytes;
    }
    g_profiler.Clear();
    cm4_timer_restart();
    const TfLiteStatus status = interpreter.Invoke();
    const uint32_t total = cm4_timer_ticks();
    SYST_CSR = 0;
    if (status != kTfLiteOk) {
      cm4_uart_puts("ERROR Invoke\n");
      return 1;
    }
    if (s == 0) {
      cm4_uart_puts("N");
      for (uint32_t i = 0; i < g_profiler.count(); ++i) {
        cm4_uart_putc(' ');
        cm4_uart_puts(g_profiler.tag(i));
      }
      cm4_uart_putc('\n');
    }
    cm4_uart_puts("P");
    for (uint32_t i = 0; i < g_profiler.count(); ++i) {
      cm4_uart_putc(' ');
      PutNumber(g_profiler.ticks(i));
    }
    cm4_uart_puts("\nT ");
    PutNumber(total);
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < interpreter.outputs_size(); ++i) {
      const TfLiteTensor *t = interpreter.output(i);
      h = Fnv1a(h, static_cast<const uint8_t *>(static_cast<const void *>(t->data.raw)),
                t->bytes);
    }
    cm4_uart_puts("\nO ");
    PutNumber(h);
    cm4_uart_putc('\n');
  }
  return 0;
}

}  // namespace

int main(void) {
  td_core_init(0, nullptr); /* C++ constructors, UART0, SysTick */
  if (Run() == 0) cm4_uart_puts("DONE\n");
  for (;;) {
  }
}
