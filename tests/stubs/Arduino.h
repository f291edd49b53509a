/* Stand-in for the Arduino core API used by tinydeploy firmware (syntax checks): the one
 * stand-in of tests/arduino_host/, which also links and runs on the host. */
#ifndef TD_STUB_ARDUINO_H
#define TD_STUB_ARDUINO_H

#include "../arduino_host/Arduino.h"

#endif
