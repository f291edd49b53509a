/* Reset and exception vectors for a bare-metal Cortex-M4 image (QEMU mps2-an386).
 *
 * The vector table sits at address 0 (section .vectors, first in cm4.ld). Reset_Handler
 * copies .data from its load address, zeroes .bss and calls main(). Faults print one line
 * on UART0 and halt the core (SysTick stopped, interrupts masked) so an emulator that hit a
 * fault sleeps instead of spinning; the host sees the missing reply.
 */
#include <stdint.h>

#include "cm4.h"

extern uint32_t _estack;
extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss;
extern uint32_t __vectors_start;

int main(void);
void Reset_Handler(void);
void Default_Handler(void);
void HardFault_Handler(void);
void SysTick_Handler(void);
void UART0RX_Handler(void);

typedef void (*td_vector)(void);

#define TD_NUM_IRQ 32

__attribute__((section(".vectors"), used)) const td_vector td_vectors[16 + TD_NUM_IRQ] = {
    (td_vector)(uintptr_t)&_estack, /* initial stack pointer */
    Reset_Handler,
    Default_Handler,   /* NMI */
    HardFault_Handler, /* HardFault */
    Default_Handler,   /* MemManage */
    Default_Handler,   /* BusFault */
    Default_Handler,   /* UsageFault */
    0, 0, 0, 0,        /* reserved */
    Default_Handler,   /* SVCall */
    Default_Handler,   /* DebugMonitor */
    0,                 /* reserved */
    Default_Handler,   /* PendSV */
    SysTick_Handler,
    UART0RX_Handler, /* IRQ 0: UART0 RX */
    Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler,
};

__attribute__((noreturn)) static void halt(const char *why) {
  __asm volatile("cpsid i" ::: "memory");
  SYST_CSR = 0;
  cm4_uart_puts("\n");
  cm4_uart_puts(why);
  cm4_uart_puts("\n");
  for (;;) __asm volatile("wfi");
}

void Default_Handler(void) { halt("td-cm4: unexpected exception"); }

void HardFault_Handler(void) { halt("td-cm4: hard fault"); }

__attribute__((noreturn)) void Reset_Handler(void) {
  uint32_t *src = &_sidata, *dst = &_sdata;
  while (dst < &_edata) *dst++ = *src++;
  for (dst = &_sbss; dst < &_ebss;) *dst++ = 0;
  SCB_VTOR = (uint32_t)(uintptr_t)&__vectors_start;
  (void)main();
  halt("td-cm4: main returned");
}
