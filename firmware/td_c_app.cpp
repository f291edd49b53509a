/* td_c_app.cpp -- Arduino firmware around the tinydeploy C runtime (td_model.c): the
 * validation server (td_tflm_app.h:
 * td_app_setup/td_app_loop serve the tinydeploy protocol on Serial, like the TFLite
 * Micro firmware does). Copied into generated projects from tinydeploy's firmware/. */
#include <Arduino.h>
#include <string.h>

#include "model_settings.h"
#include "td_app.h"
#include "td_arduino.h"
#include "td_model.h"
#include "td_protocol.h"
#include "td_tflm_app.h"

namespace {

#if TD_CYCLE_COUNTER == TD_CYCLES_DWT
/* Cortex-M DWT->CYCCNT, addressed directly (no CMSIS device header needed). */
volatile uint32_t *const kDemcr = reinterpret_cast<volatile uint32_t *>(0xE000EDFCu);
volatile uint32_t *const kDwtCtrl = reinterpret_cast<volatile uint32_t *>(0xE0001000u);
volatile uint32_t *const kDwtCyccnt = reinterpret_cast<volatile uint32_t *>(0xE0001004u);
volatile uint32_t *const kDwtLar = reinterpret_cast<volatile uint32_t *>(0xE0001FB0u);

void CyclesStart() {
  *kDemcr = *kDemcr | (1u << 24);
  *kDwtLar = 0xC5ACCE55u;
  *kDwtCyccnt = 0;
  *kDwtCtrl = *kDwtCtrl | 1u;
}
uint32_t Cycles() { return *kDwtCyccnt; }
#elif TD_CYCLE_COUNTER == TD_CYCLES_CCOUNT
void CyclesStart() {}
uint32_t Cycles() { return static_cast<uint32_t>(ESP.getCycleCount()); }
#else
void CyclesStart() {}
uint32_t Cycles() { return 0; } /* no cycle counter on this MCU */
#endif

td_info g_info;
td_device *g_dev = nullptr;

int RunTimed(const uint8_t *in, uint8_t *out, td_timing *timing) {
  const uint32_t c0 = Cycles();
  const uint32_t t0 = static_cast<uint32_t>(micros());
  const int rc = td_invoke(reinterpret_cast<const int8_t *>(in), reinterpret_cast<int8_t *>(out));
  const uint32_t t1 = static_cast<uint32_t>(micros());
  const uint32_t c1 = Cycles();
  timing->time_us = t1 - t0;
  timing->cycles = c1 - c0;
  return rc;
}

#if TD_PROTOCOL_VERSION >= 2
#ifdef TD_PLANNED_IO
/* protocol v2: the host writes the inputs into the model's planned input buffers (bound by
 * td_model_describe(), chunked), the server reads the outputs from the planned ones */
uint8_t *const g_in = nullptr;
uint8_t *const g_out = nullptr;
#else
/* protocol v2: the host writes the inputs into these buffers (chunked), the server reads
 * the outputs from them */
alignas(8) uint8_t g_in[TD_APP_INPUT_BYTES];
alignas(8) uint8_t g_out[TD_APP_OUTPUT_BYTES];
#endif

int Infer(void *ctx, uint32_t flags, td_timing *timing) {
  (void)ctx;
#if defined(TD_HAS_RESET)
  if (flags & TD_INFER_RESET) td_reset();
#else
  (void)flags;
#endif
  return RunTimed(g_in, g_out, timing);
}
#else
const int kBadLength = 6; /* INFER payload or output size differs from the tensors */

int Infer(void *ctx, const uint8_t *in, uint32_t in_len, uint8_t *out, uint32_t out_len,
          td_timing *timing) {
  (void)ctx;
  if (in_len != TD_APP_INPUT_BYTES || out_len != TD_APP_OUTPUT_BYTES) return kBadLength;
  return RunTimed(in, out, timing);
}
#endif

}  // namespace

/* td_backend_begin() / _invoke() / _tensor(), the API's backend, are in td_app.c (plain C). */

void td_app_setup(void) {
  Serial.begin(TD_SERIAL_BAUD);
  const unsigned long start = millis();
  while (!Serial && millis() - start < TD_SERIAL_WAIT_MS) delay(10);
  CyclesStart();
  memset(&g_info, 0, sizeof g_info);
  td_model_describe(&g_info); /* model hash, tensors, arena, runtime "c" */
  g_info.firmware_version = TD_FIRMWARE_VERSION;
  g_info.board_id = TD_BOARD_ID;
  g_info.cpu_hz = TD_CPU_HZ;
#if TD_PROTOCOL_VERSION >= 2 && !defined(TD_PLANNED_IO)
  td_bind_buffer(&g_info, 0, g_in, sizeof g_in);
  td_bind_buffer(&g_info, 1, g_out, sizeof g_out);
#endif
  g_dev = td_arduino_attach(Serial, &g_info, Infer, nullptr); /* sends the boot HELLO */
}

void td_app_loop(void) { td_arduino_poll(g_dev, Serial); }
