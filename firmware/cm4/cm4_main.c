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

/* The model's input and output tensors: inside its memory plan (TD_PLANNED_IO: the model's
 * td_model_describe() binds them, DATA/INFER chunks land there, td_invoke(NULL, NULL) runs
 * on them), else two buffers here. */
#ifdef TD_PLANNED_IO
#define td_in NULL
#define td_out NULL
#else
#ifndef TD_INPUT_BYTES
#define TD_INPUT_BYTES TD_MODEL_INPUT_SIZE
#endif
#ifndef TD_OUTPUT_BYTES
#define TD_OUTPUT_BYTES TD_MODEL_OUTPUT_SIZE
#endif
static uint64_t td_in[(TD_INPUT_BYTES + 7) / 8];
static uint64_t td_out[(TD_OUTPUT_BYTES + 7) / 8];
#endif

#ifndef TD_FIRMWARE_VERSION
#define TD_FIRMWARE_VERSION "tinydeploy-qemu-cm4 0.1.0"
#endif

static TD_DEVICE_STORAGE(device_storage);
static td_info info;

#ifdef TD_PROFILE
/* Per-layer profile (profiling builds only): the generated td_invoke() calls
 * td_profile_mark(op) before each operator and with the operator count at the end; the
 * SysTick ticks at each mark go out after the inference as one text line on UART1
 * ("P t0 t1 ... tn", QEMU's second serial port), apart from the protocol on UART0. */
#define TD_PROFILE_MAX_MARKS 512
static uint32_t profile_ticks[TD_PROFILE_MAX_MARKS];
static int32_t profile_count;

void td_profile_mark(int32_t op);
void td_profile_mark(int32_t op) {
  if (op >= 0 && op < TD_PROFILE_MAX_MARKS) {
    profile_ticks[op] = cm4_timer_ticks();
    if (op + 1 > profile_count) profile_count = op + 1;
  }
}

static void uart1_putc(char c) {
  while (UART1_STATE & UART_STATE_TXFULL) {
  }
  UART1_DATA = (uint32_t)(uint8_t)c;
}

static void profile_flush(void) {
  int32_t i;
  UART1_BAUDDIV = 16u;
  UART1_CTRL = UART_CTRL_TXEN;
  uart1_putc('P');
  for (i = 0; i < profile_count; ++i) {
    char digits[12];
    int32_t n = 0;
    uint32_t v = profile_ticks[i];
    do {
      digits[n++] = (char)('0' + v % 10u);
      v /= 10u;
    } while (v != 0u);
    uart1_putc(' ');
    while (n > 0) uart1_putc(digits[--n]);
  }
  uart1_putc('\n');
  profile_count = 0;
}
#endif

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
#ifdef TD_PROFILE
  profile_flush();
#endif
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
#ifndef TD_PLANNED_IO
  if (td_bind_buffer(&info, 0, (uint8_t *)td_in, sizeof td_in) != 0 ||
      td_bind_buffer(&info, 1, (uint8_t *)td_out, sizeof td_out) != 0) {
    info.model_status = -1; /* sizes disagree with td_model.h: INFER answers ERROR MODEL */
  }
#endif
  dev = td_init(device_storage, &info, cm4_infer, 0, cm4_write, 0);
  td_announce(dev);
  for (;;) td_feed(dev, cm4_uart_getc());
}
