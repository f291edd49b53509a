/* Elapsed-time counter from SysTick (processor clock, 24-bit, wraps counted in the
 * SysTick interrupt). The DWT cycle counter is not modelled by QEMU's Cortex-M4, SysTick
 * is. Under -icount shift=0 the tick rate is fixed in emulated instructions, and restarting
 * the counter before a measurement makes repeated measurements of the same code identical.
 */
#include "cm4.h"

static volatile uint32_t systick_wraps;

void SysTick_Handler(void) { systick_wraps++; }

void cm4_timer_restart(void) {
  SYST_CSR = 0;
  systick_wraps = 0;
  SYST_RVR = SYST_RELOAD;
  SYST_CVR = 0; /* clears the count and COUNTFLAG; the first tick loads the reload value */
  SYST_CSR = SYST_CSR_CLKSOURCE | SYST_CSR_TICKINT | SYST_CSR_ENABLE;
}

uint32_t cm4_timer_ticks(void) {
  uint32_t wraps, value;
  do {
    wraps = systick_wraps;
    value = SYST_CVR;
  } while (wraps != systick_wraps);
  /* after the restart: 0, then RELOAD, RELOAD-1, ..., 1, 0 (interrupt: one more wrap),
   * RELOAD, ... so the ticks of the current period are (RELOAD + 1 - value) mod 2^24 */
  return wraps * (SYST_RELOAD + 1u) + ((SYST_RELOAD + 1u - value) & SYST_RELOAD);
}
