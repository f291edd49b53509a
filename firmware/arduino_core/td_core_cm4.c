/* td_core.h for the emulated Cortex-M4 board qemu-cm4 (QEMU mps2-an386): Serial on the
 * CMSDK UART0 (firmware/cm4/cm4_uart.c), time from SysTick (firmware/cm4/cm4_timer.c),
 * started once at boot and left running.
 *
 * Cycles: with -icount shift=0 one guest instruction is 1 ns of virtual time and SysTick
 * counts the 25 MHz processor clock, so td_core_cycles() = SysTick ticks x 40 is an
 * emulated instruction count (not real Cortex-M4 timing), like the C runtime's firmware.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "cm4.h"
#include "td_core.h"

/* C++ runtime glue without crt files (-nostartfiles): the DSO handle that registrations of
 * static destructors name (they never run: main() does not return), and no heap -- TFLM
 * allocates everything in its arena, so a malloc() that newlib code may reach fails. */
void *__dso_handle = 0;

void *_sbrk(ptrdiff_t increment);
void *_sbrk(ptrdiff_t increment) {
  (void)increment;
  errno = ENOMEM;
  return (void *)-1;
}

/* C++ constructors of the image (linker script cm4.ld collects .init_array). */
extern void (*__init_array_start[])(void);
extern void (*__init_array_end[])(void);

int td_core_init(int argc, char **argv) {
  void (**ctor)(void);
  (void)argc;
  (void)argv;
  for (ctor = __init_array_start; ctor < __init_array_end; ++ctor) (*ctor)();
  cm4_uart_init();
  cm4_timer_restart();
  return 0;
}

int td_core_available(void) { return (UART0_STATE & UART_STATE_RXFULL) ? 1 : 0; }

int td_core_read(void) {
  return (UART0_STATE & UART_STATE_RXFULL) ? (int)(UART0_DATA & 0xFFu) : -1;
}

void td_core_write(const uint8_t *data, size_t len) { cm4_uart_write(data, (uint32_t)len); }

int td_core_wait(void) {
  /* interrupts masked between the check and WFI: a byte arriving in between leaves the RX
   * interrupt pending, which ends the WFI at once (the SysTick wrap also wakes the core) */
  __asm volatile("cpsid i" ::: "memory");
  if (!(UART0_STATE & UART_STATE_RXFULL)) __asm volatile("wfi" ::: "memory");
  __asm volatile("cpsie i" ::: "memory");
  return 0;
}

/* SysTick ticks extended to 64 bits (cm4_timer_ticks() wraps after 2^32 ticks, 171 s). */
static uint64_t ticks64(void) {
  static uint32_t last, high;
  const uint32_t now = cm4_timer_ticks();
  if (now < last) ++high;
  last = now;
  return ((uint64_t)high << 32) | now;
}

uint32_t td_core_micros(void) {
  return (uint32_t)(ticks64() / (TD_CM4_SYSCLK_HZ / 1000000u));
}

uint32_t td_core_cycles(void) { return (uint32_t)(ticks64() * TD_CM4_NS_PER_TICK); }
