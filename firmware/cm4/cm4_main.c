/* tinydeploy device firmware for the emulated Cortex-M4 board qemu-cm4 (QEMU mps2-an386).
 *
 * The interpreter-free C model (td_model_describe()/td_invoke(), td_model_api.h) behind the
 * device protocol core (td_protocol.c) on UART0: announce HELLO at boot, then feed every
 * received byte to td_feed() forever.
 *
 * Timing: SysTick counts the processor clock of the AN386 image (25 MHz); QEMU runs with
 * -icount shift=0, where one guest instruction takes 1 ns of virtual time. The RESULT's
 * cycles are therefore emulated instruction counts (40 per SysTick tick, nominal 1 GHz)
 * and time_us = cycles / 1000: deterministic, comparable between builds and models, but not
 * the timing of a real Cortex-M4 (no pipeline, wait-state or memory effects).
 */
#include <stdint.h>

#include "cm4.h"
#include "td_model.h"
#include "td_model_api.h"

/* The model's input and output buffers: DATA/INFER chunks land straight in td_in. */
#ifndef TD_INPUT_BYTES
#define TD_INPUT_BYTES TD_MODEL_INPUT_SIZE
#endif
#ifndef TD_OUTPUT_BYTES
#define TD_OUTPUT_BYTES TD_MODEL_OUTPUT_SIZE
#endif
static uint64_t td_in[(TD_INPUT_BYTES + 7) / 8];
static uint64_t td_out[(TD_OUTPUT_BYTES + 7) / 8];

#ifndef TD_FIRMWARE_VERSION
#define TD_FIRMWARE_VERSION "tinydeploy-qemu-cm4 0.1.0"
#endif

static TD_DEVICE_STORAGE(device_storage);
static td_info info;

static int cm4_infer(void *ctx, uint32_t flags, td_timing *timing) {
  uint32_t ticks;
  int rc;
  (void)ctx;
#ifdef TD_HAS_RESET
  if (flags & TD_INFER_RESET) td_reset();
#else
  (void)flags;
#endif
  cm4_timer_restart();
  rc = td_invoke((const int8_t *)td_in, (int8_t *)td_out);
  ticks = cm4_timer_ticks();
  SYST_CSR = 0; /* no SysTick interrupts while idle */
  timing->cycles = ticks * TD_CM4_NS_PER_TICK;
  timing->time_us = timing->cycles / (TD_CM4_VIRTUAL_HZ / 1000000u);
  return rc;
}

static void cm4_write(void *ctx, const uint8_t *data, size_t len) {
  (void)ctx;
  cm4_uart_write(data, (uint32_t)len);
}

int main(void) {
  td_device *dev;
  cm4_uart_init();
  info.firmware_version = TD_FIRMWARE_VERSION;
  info.board_id = "qemu-cm4";
  info.runtime = "c";
  info.cpu_hz = TD_CM4_VIRTUAL_HZ;
  td_model_describe(&info);
  if (td_bind_buffer(&info, 0, (uint8_t *)td_in, sizeof td_in) != 0 ||
      td_bind_buffer(&info, 1, (uint8_t *)td_out, sizeof td_out) != 0) {
    info.model_status = -1; /* sizes disagree with td_model.h: INFER answers ERROR MODEL */
  }
  dev = td_init(device_storage, &info, cm4_infer, 0, cm4_write, 0);
  td_announce(dev);
  for (;;) td_feed(dev, cm4_uart_getc());
}
