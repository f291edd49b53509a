/* Stand-in for the Arduino core API that tinydeploy's generated libraries use (our own
 * declarations, not a copy of any core): enough to compile the sources to objects with
 * arm-none-eabi-gcc and, with arduino_host.cpp, to run the examples on the host with
 * Serial mapped to stdin/stdout. */
#ifndef TD_HOST_ARDUINO_H
#define TD_HOST_ARDUINO_H

#include <stddef.h>
#include <stdint.h>

unsigned long millis(void);
unsigned long micros(void);
void delay(unsigned long ms);

class Print {
 public:
  virtual ~Print() {}
  virtual size_t write(uint8_t byte) = 0;
  virtual size_t write(const uint8_t *buffer, size_t size);
  size_t print(const char *text);
  size_t print(char c);
  size_t print(int value);
  size_t print(unsigned int value);
  size_t print(long value);
  size_t print(unsigned long value);
  size_t print(double value, int digits = 2);
  size_t println();
  size_t println(const char *text);
  size_t println(int value);
  size_t println(unsigned int value);
  size_t println(long value);
  size_t println(unsigned long value);
  size_t println(double value, int digits = 2);
};

class Stream : public Print {
 public:
  virtual int available() = 0;
  virtual int read() = 0;
  virtual int peek() = 0;
  size_t readBytes(char *buffer, size_t length);
  size_t readBytes(uint8_t *buffer, size_t length);
};

class HardwareSerial : public Stream {
 public:
  void begin(unsigned long baud);
  explicit operator bool() const;
  size_t write(uint8_t byte) override;
  size_t write(const uint8_t *buffer, size_t size) override;
  int available() override;
  int read() override;
  int peek() override;
};

extern HardwareSerial Serial;

/* arduino-esp32's EspClass (Esp.h, included by its Arduino.h) */
class EspClass {
 public:
  uint32_t getCycleCount();
};
extern EspClass ESP;

#endif
