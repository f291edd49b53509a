/* POSIX file-descriptor adapter for the tinydeploy protocol core. */
#if !defined(_XOPEN_SOURCE) || _XOPEN_SOURCE < 600
#undef _XOPEN_SOURCE
#define _XOPEN_SOURCE 600 /* posix_openpt, grantpt, unlockpt, ptsname */
#endif

#include "td_posix.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <termios.h>
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

static int set_raw(int fd) {
  struct termios t;
  if (tcgetattr(fd, &t) != 0) return -1;
  t.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
  t.c_oflag &= ~(tcflag_t)OPOST;
  t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
  t.c_cflag &= ~(tcflag_t)(CSIZE | PARENB);
  t.c_cflag |= CS8;
  t.c_cc[VMIN] = 1;
  t.c_cc[VTIME] = 0;
  return tcsetattr(fd, TCSANOW, &t);
}

const char *td_posix_open_pty(int *master, int *slave) {
  const char *name;
  *master = posix_openpt(O_RDWR | O_NOCTTY);
  if (*master < 0 || grantpt(*master) != 0 || unlockpt(*master) != 0) {
    perror("posix_openpt");
    return NULL;
  }
  name = ptsname(*master);
  if (name == NULL) {
    perror("ptsname");
    return NULL;
  }
  /* Keep one slave descriptor open: the terminal stays raw and reads on the master do not
   * fail with EIO while the host has the port closed (so the host can reopen it). */
  *slave = open(name, O_RDWR | O_NOCTTY);
  if (*slave < 0 || set_raw(*slave) != 0 || set_raw(*master) != 0) {
    perror("raw mode");
    return NULL;
  }
  return name;
}
