/* POSIX file-descriptor adapter for the tinydeploy protocol core. */
#if !defined(_POSIX_C_SOURCE) || _POSIX_C_SOURCE < 200112L
#undef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200112L
#endif

#include "td_posix.h"

#include <errno.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

static TD_DEVICE_STORAGE(td_posix_storage);
static int td_posix_out_fd = -1;

/* Wait up to timeout_ms for a non-blocking fd to become ready (EAGAIN). */
static void wait_fd(int fd, short events, int timeout_ms) {
  struct pollfd p;
  p.fd = fd;
  p.events = events;
  p.revents = 0;
  (void)poll(&p, 1, timeout_ms);
}

void td_posix_write(void *ctx, const uint8_t *data, size_t len) {
  int fd = *(const int *)ctx;
  while (len > 0) {
    ssize_t n = write(fd, data, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        wait_fd(fd, POLLOUT, 100);
        continue;
      }
      return; /* the peer is gone: drop the frame, the host retries */
    }
    data += n;
    len -= (size_t)n;
  }
}

td_device *td_posix_attach(int out_fd, const td_info *info, td_infer_fn infer, void *ctx) {
  td_posix_out_fd = out_fd;
  return td_init(td_posix_storage, info, infer, ctx, td_posix_write, &td_posix_out_fd);
}

int td_posix_serve(td_device *dev, int in_fd) {
  uint8_t buf[512];
  for (;;) {
    ssize_t n = read(in_fd, buf, sizeof buf);
    if (n == 0) return 0;
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        wait_fd(in_fd, POLLIN, 1000);
        continue;
      }
      return -1;
    }
    td_feed_buf(dev, buf, (size_t)n);
  }
}

uint32_t td_posix_micros(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint32_t)((uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
}
