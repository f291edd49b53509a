/* tinydeploy Arduino-core stand-in: Serial, time functions and main() over td_core.h. */
#include "Arduino.h"

HardwareSerial Serial;

size_t Print::write(uint8_t c) {
  td_core_write(&c, 1);
  return 1;
}

size_t Print::write(const uint8_t *data, size_t len) {
  td_core_write(data, len);
  return len;
}

size_t Print::print(unsigned long n, int base) {
  char buf[8 * sizeof(unsigned long) + 1];
  char *p = buf + sizeof buf;
  if (base < 2 || base > 16) base = DEC;
  *--p = '\0';
  do {
    *--p = "0123456789ABCDEF"[n % static_cast<unsigned long>(base)];
    n /= static_cast<unsigned long>(base);
  } while (n != 0);
  return write(p);
}

size_t Print::print(long n, int base) {
  if (n < 0 && base == DEC) {
    return print('-') + print(0ul - static_cast<unsigned long>(n), base);
  }
  return print(static_cast<unsigned long>(n), base);
}

size_t Print::print(double x, int digits) {
  size_t n = 0;
  if (isnan(x)) return write("nan");
  if (isinf(x)) return write(x < 0 ? "-inf" : "inf");
  if (x < 0) {
    n += print('-');
    x = -x;
  }
  double rounding = 0.5;
  for (int i = 0; i < digits; ++i) rounding /= 10.0;
  x += rounding;
  const unsigned long whole = static_cast<unsigned long>(x);
  n += print(whole);
  if (digits > 0) n += print('.');
  double rest = x - static_cast<double>(whole);
  for (int i = 0; i < digits; ++i) {
    rest *= 10.0;
    const int d = static_cast<int>(rest);
    n += print(static_cast<char>('0' + d));
    rest -= d;
  }
  return n;
}

size_t Stream::readBytes(uint8_t *buf, size_t len) {
  size_t n = 0;
  const unsigned long start = millis();
  while (n < len) {
    const int c = read();
    if (c >= 0) {
      buf[n++] = static_cast<uint8_t>(c);
    } else if (millis() - start >= timeout_ms_) {
      break;
    }
  }
  return n;
}

extern "C" unsigned long micros(void) { return td_core_micros(); }

extern "C" unsigned long millis(void) { return td_core_micros() / 1000u; }

extern "C" void delayMicroseconds(unsigned int us) {
  const uint32_t start = td_core_micros();
  while (td_core_micros() - start < us) {
  }
}

extern "C" void delay(unsigned long ms) {
  while (ms-- > 0) delayMicroseconds(1000);
}

/* Like the Arduino core: setup() once, then loop() forever; between two loop() calls the
 * board sleeps until the serial line has a byte (a real core spins instead). */
int main(int argc, char **argv) {
  const int rc = td_core_init(argc, argv);
  if (rc != 0) return rc;
  setup();
  for (;;) {
    loop();
    if (td_core_available() == 0 && td_core_wait() != 0) return 0;
  }
}
