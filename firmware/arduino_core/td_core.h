/* tinydeploy Arduino-core stand-in: the port layer under Arduino.h (one per board).
 *
 * td_core_cm4.c maps it to the CMSDK UART0 and SysTick of QEMU's mps2-an386 (qemu-cm4),
 * td_core_posix.c to a pseudo-terminal and clock_gettime() (native). Only what the
 * generated TFLM firmware (td_tflm_app.cpp, td_arduino.cpp, the TFLM library) needs.
 */
#ifndef TD_CORE_H
#define TD_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Board start-up before setup(): C++ constructors (bare metal), the serial line. Returns
 * 0 on success; a non-zero value ends main() with that exit status. */
int td_core_init(int argc, char **argv);
/* Bytes that can be read without waiting (may read ahead into a small buffer). */
int td_core_available(void);
/* One received byte, or -1 if none is waiting. */
int td_core_read(void);
/* Send all bytes (blocking). */
void td_core_write(const uint8_t *data, size_t len);
/* Sleep until a byte arrives or a timeout passes; non-zero = stop the main loop (native:
 * the parent process is gone or the line closed). */
int td_core_wait(void);
/* Microseconds since start (wraps). */
uint32_t td_core_micros(void);
/* The board's cycle counter (qemu-cm4: emulated instructions, SysTick ticks x 40; 0 where
 * there is none). Differences of two readings are valid across wraps. */
uint32_t td_core_cycles(void);

#ifdef __cplusplus
}
#endif

#endif /* TD_CORE_H */
