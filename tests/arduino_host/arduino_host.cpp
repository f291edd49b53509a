/* Host implementation of the Arduino stand-in (Arduino.h): Serial is stdin/stdout, the
 * clock is CLOCK_MONOTONIC; main() calls the sketch's setup() once and loop() TD_LOOPS
 * times (default 1). */
#include <stdio.h>
#include <time.h>

#include "Arduino.h"

#ifndef TD_LOOPS
#define TD_LOOPS 1
#endif

HardwareSerial Serial;
EspClass ESP;

static unsigned long long now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000ull;
}

unsigned long micros(void) { return (unsigned long)now_us(); }
unsigned long millis(void) { return (unsigned long)(now_us() / 1000ull); }
void delay(unsigned long ms) {
  const unsigned long long end = now_us() + ms * 1000ull;
  while (now_us() < end) {
  }
}
uint32_t EspClass::getCycleCount() { return 0; }

size_t Print::write(const uint8_t *buffer, size_t size) {
  size_t n = 0;
  while (n < size && write(buffer[n]) == 1) ++n;
  return n;
}
size_t Print::print(const char *text) { return (size_t)printf("%s", text); }
size_t Print::print(char c) { return (size_t)printf("%c", c); }
size_t Print::print(int value) { return (size_t)printf("%d", value); }
size_t Print::print(unsigned int value) { return (size_t)printf("%u", value); }
size_t Print::print(long value) { return (size_t)printf("%ld", value); }
size_t Print::print(unsigned long value) { return (size_t)printf("%lu", value); }
size_t Print::print(double value, int digits) { return (size_t)printf("%.*f", digits, value); }
size_t Print::println() { return (size_t)printf("\n"); }
size_t Print::println(const char *text) { return print(text) + println(); }
size_t Print::println(int value) { return print(value) + println(); }
size_t Print::println(unsigned int value) { return print(value) + println(); }
size_t Print::println(long value) { return print(value) + println(); }
size_t Print::println(unsigned long value) { return print(value) + println(); }
size_t Print::println(double value, int digits) { return print(value, digits) + println(); }

size_t Stream::readBytes(char *buffer, size_t length) {
  return readBytes(reinterpret_cast<uint8_t *>(buffer), length);
}
size_t Stream::readBytes(uint8_t *buffer, size_t length) {
  return fread(buffer, 1, length, stdin);
}

void HardwareSerial::begin(unsigned long baud) { (void)baud; }
HardwareSerial::operator bool() const { return true; }
size_t HardwareSerial::write(uint8_t byte) { return fwrite(&byte, 1, 1, stdout); }
size_t HardwareSerial::write(const uint8_t *buffer, size_t size) {
  return fwrite(buffer, 1, size, stdout);
}
int HardwareSerial::available() { return 0; }
int HardwareSerial::read() { return -1; }
int HardwareSerial::peek() { return -1; }

void setup();
void loop();

int main() {
  setup();
  for (int i = 0; i < TD_LOOPS; ++i) loop();
  fflush(stdout);
  return 0;
}
