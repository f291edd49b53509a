/* Polled driver for the CMSDK APB UART0 of QEMU's mps2-an386 (tinydeploy board qemu-cm4).
 *
 * Transmit busy-waits on TX full. Receive polls RX full; while nothing has arrived the
 * core sleeps in WFI and the UART0 RX interrupt (whose handler only clears the interrupt
 * status) wakes it, so an idle emulator does not spin a host CPU.
 */
#include "cm4.h"

void cm4_uart_init(void) {
  UART0_CTRL = 0;
  UART0_BAUDDIV = 16u; /* the smallest legal divider; QEMU ignores the baud rate */
  UART0_INTSTATUS = 0xFu;
  UART0_CTRL = UART_CTRL_TXEN | UART_CTRL_RXEN | UART_CTRL_RXINTEN;
  NVIC_ICPR0 = 1u << UART0_RX_IRQ;
  NVIC_ISER0 = 1u << UART0_RX_IRQ;
}

void UART0RX_Handler(void) { UART0_INTSTATUS = UART_INT_RX; }

void cm4_uart_putc(uint8_t c) {
  while (UART0_STATE & UART_STATE_TXFULL) {
  }
  UART0_DATA = c;
}

void cm4_uart_write(const uint8_t *data, uint32_t len) {
  uint32_t i;
  for (i = 0; i < len; i++) cm4_uart_putc(data[i]);
}

void cm4_uart_puts(const char *s) {
  while (*s) cm4_uart_putc((uint8_t)*s++);
}

uint8_t cm4_uart_getc(void) {
  for (;;) {
    if (UART0_STATE & UART_STATE_RXFULL) return (uint8_t)UART0_DATA;
    /* interrupts masked between the check and WFI: a byte arriving in between leaves the
     * RX interrupt pending, which ends the WFI at once (no lost wake-up) */
    __asm volatile("cpsid i" ::: "memory");
    if (!(UART0_STATE & UART_STATE_RXFULL)) __asm volatile("wfi" ::: "memory");
    __asm volatile("cpsie i" ::: "memory");
  }
}
