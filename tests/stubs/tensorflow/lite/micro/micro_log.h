/* Stand-in for TFLM's logging function (our own declaration). */
#ifndef TD_STUB_MICRO_LOG_H
#define TD_STUB_MICRO_LOG_H

void MicroPrintf(const char *format, ...);

#endif
