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
#include "td_model_api.h"

#ifndef TD_FIRMWARE_VERSION
#define TD_FIRMWARE_VERSION "tinydeploy-qemu-cm4 0.1.0"
#endif

static TD_DEVICE_STORAGE(device_storage);
static td_info info;

static int cm4_infer(void *ctx, const uint8_t *in, uint32_t in_len, uint8_t *out,
                     uint32_t out_len, td_timing *timing) {
  uint32_t ticks;
  int rc;
  (void)ctx;
  (void)in_len;
  (void)out_len;
  cm4_timer_restart();
  rc = td_invoke((const int8_t *)in, (int8_t *)out);
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
  dev = td_init(device_storage, &info, cm4_infer, 0, cm4_write, 0);
  td_announce(dev);
  for (;;) td_feed(dev, cm4_uart_getc());
}
