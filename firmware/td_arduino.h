/* Arduino adapter for the tinydeploy protocol core: serve it on any `Stream`
 * (Serial, SerialUSB, Serial1...). The core itself (td_protocol.c) has no Arduino code.
 *
 *   td_device *dev;
 *   void setup() { Serial.begin(115200); dev = td_arduino_attach(Serial, &info, infer, 0); }
 *   void loop() { td_arduino_poll(dev, Serial); }
 */
#ifndef TD_ARDUINO_H
#define TD_ARDUINO_H

#include <Arduino.h>

#include "td_protocol.h"

/* Initialise the (single, statically allocated) device writing to `serial` and announce
 * it with an unsolicited HELLO so the host sees the reset. */
td_device *td_arduino_attach(Stream &serial, const td_info *info, td_infer_fn infer, void *ctx);

/* Feed every byte available on `serial` to the device (call from loop()). */
void td_arduino_poll(td_device *dev, Stream &serial);

#endif /* TD_ARDUINO_H */
