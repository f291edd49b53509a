/* Stand-in for the Arduino core API used by tinydeploy firmware (syntax checks only). */
#ifndef TD_STUB_ARDUINO_H
#define TD_STUB_ARDUINO_H

#include <stddef.h>
#include <stdint.h>

unsigned long millis();
unsigned long micros();
void delay(unsigned long ms);

class Print {
 public:
  virtual ~Print() {}
  virtual size_t write(uint8_t byte) = 0;
  virtual size_t write(const uint8_t *buffer, size_t size);
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
