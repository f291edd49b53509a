/* tinydeploy Arduino-core stand-in: an empty Wire.h (some TFLM Arduino libraries include it;
 * the generated firmware uses no I2C). */
#ifndef TD_ARDUINO_CORE_WIRE_H
#define TD_ARDUINO_CORE_WIRE_H

#include "Arduino.h"

#endif /* TD_ARDUINO_CORE_WIRE_H */
