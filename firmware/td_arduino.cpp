/* Arduino `Stream` adapter for the tinydeploy protocol core. */
#include "td_arduino.h"

static TD_DEVICE_STORAGE(td_arduino_storage);

static void td_arduino_write(void *ctx, const uint8_t *data, size_t len) {
  Stream *serial = static_cast<Stream *>(ctx);
  while (len > 0) {
    size_t n = serial->write(data, len);
    if (n == 0) continue; /* USB CDC not ready yet: retry */
    data += n;
    len -= n;
  }
}

td_device *td_arduino_attach(Stream &serial, const td_info *info, td_infer_fn infer, void *ctx) {
  td_device *dev = td_init(td_arduino_storage, info, infer, ctx, td_arduino_write, &serial);
  td_announce(dev);
  return dev;
}

void td_arduino_poll(td_device *dev, Stream &serial) {
  uint8_t buf[64];
  int avail;
  while ((avail = serial.available()) > 0) {
    size_t want = (size_t)avail < sizeof buf ? (size_t)avail : sizeof buf;
    size_t n = serial.readBytes(buf, want);
    if (n == 0) break;
    td_feed_buf(dev, buf, n);
  }
}
