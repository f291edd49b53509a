/* td_core.h for the native board: Serial on a pseudo-terminal whose name the program prints
 * as "PTY /dev/pts/N" (the host opens it like a serial port), or on stdin/stdout with
 * --stdio; time from clock_gettime (td_posix_micros of firmware/td_posix.c). No cycle
 * counter (0). */
#define _XOPEN_SOURCE 600

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "td_core.h"
#include "td_posix.h"

static int in_fd = -1;
static int out_fd = -1;
static int slave_fd = -1;
static pid_t parent;
static uint8_t rx_buf[512];
static size_t rx_len, rx_pos;
static int at_eof; /* --stdio: the input ended */

int td_core_init(int argc, char **argv) {
  const char *name;
  int master;
  parent = getppid();
  if (argc > 1 && strcmp(argv[1], "--stdio") == 0) {
    in_fd = STDIN_FILENO;
    out_fd = STDOUT_FILENO;
    return 0;
  }
  name = td_posix_open_pty(&master, &slave_fd);
  if (name == NULL) return 1;
  (void)fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
  printf("PTY %s\n", name);
  fflush(stdout);
  in_fd = out_fd = master;
  return 0;
}

/* Read ahead without blocking; the buffer is refilled only when empty. */
int td_core_available(void) {
  if (rx_pos == rx_len) {
    ssize_t n;
    struct pollfd p;
    rx_pos = rx_len = 0;
    p.fd = in_fd;
    p.events = POLLIN;
    p.revents = 0;
    if (poll(&p, 1, 0) <= 0 || !(p.revents & POLLIN)) return 0;
    n = read(in_fd, rx_buf, sizeof rx_buf);
    if (n > 0) rx_len = (size_t)n;
    if (n == 0 && in_fd == STDIN_FILENO) at_eof = 1;
  }
  return (int)(rx_len - rx_pos);
}

int td_core_read(void) {
  if (td_core_available() == 0) return -1;
  return rx_buf[rx_pos++];
}

void td_core_write(const uint8_t *data, size_t len) { td_posix_write(&out_fd, data, len); }

int td_core_wait(void) {
  struct pollfd p;
  if (at_eof) return 1;
  p.fd = in_fd;
  p.events = POLLIN;
  p.revents = 0;
  if (poll(&p, 1, 1000) < 0 && errno != EINTR) return 1;
  if (getppid() != parent) return 1; /* the host is gone: no orphan device */
  if (p.revents & POLLIN) return 0;
  if (p.revents & (POLLHUP | POLLERR)) {
    if (in_fd == STDIN_FILENO) return 1; /* --stdio: end of input */
    usleep(50000); /* pty: no slave open right now */
  }
  return 0;
}

uint32_t td_core_micros(void) { return td_posix_micros(); }

uint32_t td_core_cycles(void) { return 0; }
