/* Host implementation of the Arduino stand-in (Arduino.h): Serial is stdout, the clock is
 * CLOCK_MONOTONIC; main() calls the sketch's setup() once and loop() TD_LOOPS times
 * (default 1). With the environment variable TD_HOST_PTY set, Serial is a pseudo-terminal
 * instead: main() prints "PTY /dev/pts/N" and calls loop() until its parent exits (the way
 * tinydeploy's native board serves the protocol). */
#define _XOPEN_SOURCE 600
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "Arduino.h"

#ifndef TD_LOOPS
#define TD_LOOPS 1
#endif

HardwareSerial Serial;
EspClass ESP;
static int g_pty = -1; /* master side of the pseudo-terminal, -1: stdout */

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
  if (g_pty < 0) return fread(buffer, 1, length, stdin);
  const ssize_t n = ::read(g_pty, buffer, length);
  return n > 0 ? (size_t)n : 0;
}

void HardwareSerial::begin(unsigned long baud) { (void)baud; }
HardwareSerial::operator bool() const { return true; }
size_t HardwareSerial::write(uint8_t byte) { return write(&byte, 1); }
size_t HardwareSerial::write(const uint8_t *buffer, size_t size) {
  if (g_pty < 0) return fwrite(buffer, 1, size, stdout);
  const ssize_t n = ::write(g_pty, buffer, size);
  return n > 0 ? (size_t)n : 0;
}
int HardwareSerial::available() {
  if (g_pty < 0) return 0;
  struct pollfd p = {g_pty, POLLIN, 0};
  int n = 0;
  if (poll(&p, 1, 10) <= 0 || ioctl(g_pty, FIONREAD, &n) != 0) return 0;
  return n;
}
int HardwareSerial::read() { return -1; }
int HardwareSerial::peek() { return -1; }

void setup();
void loop();

static int raw(int fd) {
  struct termios t;
  if (tcgetattr(fd, &t) != 0) return -1;
  cfmakeraw(&t);
  return tcsetattr(fd, TCSANOW, &t);
}

int main() {
  if (getenv("TD_HOST_PTY") != NULL) {
    const pid_t parent = getppid();
    g_pty = posix_openpt(O_RDWR | O_NOCTTY);
    if (g_pty < 0 || grantpt(g_pty) != 0 || unlockpt(g_pty) != 0) return 1;
    const char *name = ptsname(g_pty);
    const int slave = name ? open(name, O_RDWR | O_NOCTTY) : -1; /* keep it raw and open */
    if (slave < 0 || raw(slave) != 0 || raw(g_pty) != 0) return 1;
    printf("PTY %s\n", name);
    fflush(stdout);
    setup();
    while (getppid() == parent) loop();
    close(slave);
    return 0;
  }
  setup();
  for (int i = 0; i < TD_LOOPS; ++i) loop();
  fflush(stdout);
  return 0;
}
