/* tinydeploy bare-metal Cortex-M4 support for QEMU's mps2-an386 machine (board qemu-cm4).
 *
 * Own minimal code (no CMSIS, no vendor files): the few Cortex-M system registers and
 * the CMSDK APB UART0 registers this firmware uses, a polled UART driver (RX wakes the
 * core from WFI through the UART0 RX interrupt), and a SysTick-based cycle timer.
 */
#ifndef TD_CM4_H
#define TD_CM4_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TD_REG(addr) (*(volatile uint32_t *)(addr))

/* Cortex-M System Control Space */
#define SYST_CSR TD_REG(0xE000E010u)  /* SysTick control and status */
#define SYST_RVR TD_REG(0xE000E014u)  /* SysTick reload value (24 bits) */
#define SYST_CVR TD_REG(0xE000E018u)  /* SysTick current value (any write clears it) */
#define NVIC_ISER0 TD_REG(0xE000E100u) /* interrupt set-enable, IRQ 0..31 */
#define NVIC_ICPR0 TD_REG(0xE000E280u) /* interrupt clear-pending, IRQ 0..31 */
#define SCB_VTOR TD_REG(0xE000ED08u)
#define SCB_AIRCR TD_REG(0xE000ED0Cu)

#define SYST_CSR_ENABLE 0x1u
#define SYST_CSR_TICKINT 0x2u
#define SYST_CSR_CLKSOURCE 0x4u /* 1 = processor clock */
#define SYST_RELOAD 0xFFFFFFu

/* CMSDK APB UART0 of the MPS2 AN385/AN386 images */
#define UART0_BASE 0x40004000u
#define UART0_DATA TD_REG(UART0_BASE + 0x00u)
#define UART0_STATE TD_REG(UART0_BASE + 0x04u)     /* bit0 TX full, bit1 RX full */
#define UART0_CTRL TD_REG(UART0_BASE + 0x08u)      /* bit0 TX en, bit1 RX en, bit3 RX int en */
#define UART0_INTSTATUS TD_REG(UART0_BASE + 0x0Cu) /* write 1 to clear; bit1 RX */
#define UART0_BAUDDIV TD_REG(UART0_BASE + 0x10u)
#define UART0_RX_IRQ 0u
#define UART1_BASE 0x40005000u /* TD_PROFILE builds: per-layer counts, QEMU's serial1 */
#define UART1_DATA TD_REG(UART1_BASE + 0x00u)
#define UART1_STATE TD_REG(UART1_BASE + 0x04u)
#define UART1_CTRL TD_REG(UART1_BASE + 0x08u)
#define UART1_BAUDDIV TD_REG(UART1_BASE + 0x10u) /* IRQ number of UART0 RX on AN385/AN386 */

#define UART_STATE_TXFULL 0x1u
#define UART_STATE_RXFULL 0x2u
#define UART_CTRL_TXEN 0x1u
#define UART_CTRL_RXEN 0x2u
#define UART_CTRL_RXINTEN 0x8u
#define UART_INT_RX 0x2u

/* Board clock (SYSCLK of the AN386 image, drives the processor-clock SysTick). */
#ifndef TD_CM4_SYSCLK_HZ
#define TD_CM4_SYSCLK_HZ 25000000u
#endif
/* QEMU runs with -icount shift=0: one guest instruction = 1 ns of virtual time, so the
 * "cycles" reported are emulated instruction counts (a nominal 1 GHz clock), not the
 * timing of real silicon. */
#define TD_CM4_VIRTUAL_HZ 1000000000u
#define TD_CM4_NS_PER_TICK (TD_CM4_VIRTUAL_HZ / TD_CM4_SYSCLK_HZ)

void cm4_uart_init(void);
void cm4_uart_putc(uint8_t c);
void cm4_uart_write(const uint8_t *data, uint32_t len);
void cm4_uart_puts(const char *s);
/* Wait (sleeping in WFI) for one received byte. */
uint8_t cm4_uart_getc(void);

/* SysTick timer: restart the count from zero, then read elapsed SysTick ticks
 * (24-bit wraps are counted by the SysTick interrupt). */
void cm4_timer_restart(void);
uint32_t cm4_timer_ticks(void);

#ifdef __cplusplus
}
#endif

#endif /* TD_CM4_H */
