/* tinydeploy Arduino-core stand-in (boards qemu-cm4 and native): the subset of the Arduino
 * API the generated TFLM firmware and the TFLM Arduino libraries use -- Serial (a Stream
 * over the board's serial line), millis()/micros()/delay(), and a main() that calls the
 * sketch's setup() once and loop() forever. Not the Arduino core: no pins, no interrupts. */
#ifndef TD_ARDUINO_CORE_ARDUINO_H
#define TD_ARDUINO_CORE_ARDUINO_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "td_core.h"

#ifdef __cplusplus
extern "C" {
#endif

unsigned long millis(void);
unsigned long micros(void);
void delay(unsigned long ms);
void delayMicroseconds(unsigned int us);

#ifdef __cplusplus
}

void setup(void);
void loop(void);

#define DEC 10
#define HEX 16

/* Text and byte output (Arduino's Print). */
class Print {
 public:
  size_t write(uint8_t c);
  size_t write(const uint8_t *data, size_t len);
  size_t write(const char *s) { return s ? write(reinterpret_cast<const uint8_t *>(s), strlen(s)) : 0; }
  size_t print(const char *s) { return write(s); }
  size_t print(char c) { return write(static_cast<uint8_t>(c)); }
  size_t print(int n, int base = DEC) { return print(static_cast<long>(n), base); }
  size_t print(unsigned int n, int base = DEC) { return print(static_cast<unsigned long>(n), base); }
  size_t print(long n, int base = DEC);
  size_t print(unsigned long n, int base = DEC);
  size_t print(double x, int digits = 2);
  size_t println(void) { return write("\r\n"); }
  template <typename T>
  size_t println(T value) { return print(value) + println(); }
  template <typename T>
  size_t println(T value, int arg) { return print(value, arg) + println(); }
};

/* Byte input on top of Print (Arduino's Stream). */
class Stream : public Print {
 public:
  int available(void) { return td_core_available(); }
  int read(void) { return td_core_read(); }
  size_t readBytes(uint8_t *buf, size_t len);
  size_t readBytes(char *buf, size_t len) { return readBytes(reinterpret_cast<uint8_t *>(buf), len); }
  void setTimeout(unsigned long ms) { timeout_ms_ = ms; }
  void flush(void) {}

 protected:
  unsigned long timeout_ms_ = 1000;
};

/* The board's serial line; always connected, the baud rate is ignored. */
class HardwareSerial : public Stream {
 public:
  void begin(unsigned long baud) { (void)baud; }
  void end(void) {}
  explicit operator bool() const { return true; }
};

extern HardwareSerial Serial;

#endif /* __cplusplus */

#endif /* TD_ARDUINO_CORE_ARDUINO_H */
