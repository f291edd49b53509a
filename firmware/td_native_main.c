/* Host build of a tinydeploy device: serve the protocol on a pseudo-terminal.
 *
 *   cc -std=c99 td_native_main.c td_posix.c td_protocol.c model.c -o device
 *   ./device            -> prints "PTY /dev/pts/N", serves until killed
 *   ./device --stdio    -> serves on stdin/stdout instead (pipes)
 *   ./device --profile FILE ...  (built with -DTD_PROFILE) -> after every inference one
 *                        line "P t0 t1 ... tn" of CLOCK_MONOTONIC ns at each operator
 *
 * The model comes from td_model_describe()/td_invoke() (td_model_api.h). When the model
 * binds its tensors itself (the C runtime: inputs and outputs inside its memory plan), DATA/
 * INFER chunks land in those buffers and td_invoke(NULL, NULL) runs on them; otherwise the
 * input and output tensors live in two buffers of their total sizes (td_bind_buffer).
 * Build with -DTD_HAS_RESET when the model provides td_reset() (stateful models).
 */
#define _XOPEN_SOURCE 600

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "td_model_api.h"
#include "td_posix.h"

#ifndef TD_FIRMWARE_VERSION
#define TD_FIRMWARE_VERSION "tinydeploy-native 0.1.0"
#endif

static uint8_t *in_buf, *out_buf;

#ifdef TD_PROFILE
#define TD_PROFILE_MAX_MARKS 512
static FILE *profile_file;
static long long profile_ns[TD_PROFILE_MAX_MARKS];
static int profile_count;

void td_profile_mark(int32_t op);
void td_profile_mark(int32_t op) {
  struct timespec ts;
  if (op < 0 || op >= TD_PROFILE_MAX_MARKS) return;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  profile_ns[op] = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
  if (op + 1 > profile_count) profile_count = op + 1;
}

static void profile_flush(void) {
  int i;
  if (profile_file == NULL) return;
  fputc('P', profile_file);
  for (i = 0; i < profile_count; ++i) fprintf(profile_file, " %lld", profile_ns[i]);
  fputc('\n', profile_file);
  fflush(profile_file);
  profile_count = 0;
}
#endif

static int native_infer(void *ctx, uint32_t flags, td_timing *timing) {
  uint32_t t0;
  int rc;
  (void)ctx;
#ifdef TD_HAS_RESET
  if (flags & TD_INFER_RESET) td_reset();
#else
  (void)flags;
#endif
  t0 = td_posix_micros();
  rc = td_invoke((const int8_t *)in_buf, (int8_t *)out_buf); /* NULL: the model's own */
  timing->time_us = td_posix_micros() - t0;
#ifdef TD_PROFILE
  profile_flush();
#endif
  timing->cycles = 0;
  return rc;
}

/* Like td_posix_serve, but also stop when orphaned (the parent test or CLI died). */
static int serve_pty(td_device *dev, int fd) {
  pid_t parent = getppid();
  uint8_t buf[512];
  for (;;) {
    struct pollfd p;
    ssize_t n;
    p.fd = fd;
    p.events = POLLIN;
    p.revents = 0;
    if (poll(&p, 1, 1000) < 0 && errno != EINTR) return 1;
    if (getppid() != parent) return 0;
    if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
    n = read(fd, buf, sizeof buf);
    if (n > 0) {
      td_feed_buf(dev, buf, (size_t)n);
    } else if (n == 0) {
      return 0;
    } else if (errno == EIO) {
      usleep(50000); /* no slave open right now */
    } else if (errno != EINTR && errno != EAGAIN) {
      return 1;
    }
  }
}

int main(int argc, char **argv) {
  static td_info info;
  td_device *dev;
  const char *name;
  int master, slave, rc;

  memset(&info, 0, sizeof info);
  info.firmware_version = TD_FIRMWARE_VERSION;
  info.board_id = "native";
  info.runtime = "c";
  td_model_describe(&info);
  if (info.num_inputs == 0u || info.inputs[0].data == NULL) { /* else: bound by the model */
    uint32_t in_bytes = td_tensors_bytes(&info, 0), out_bytes = td_tensors_bytes(&info, 1);
    in_buf = (uint8_t *)calloc(in_bytes ? in_bytes : 1u, 1);
    out_buf = (uint8_t *)calloc(out_bytes ? out_bytes : 1u, 1);
    if (in_buf == NULL || out_buf == NULL || td_bind_buffer(&info, 0, in_buf, in_bytes) != 0 ||
        td_bind_buffer(&info, 1, out_buf, out_bytes) != 0) {
      fprintf(stderr, "td_native: bad tensor sizes (%lu in, %lu out bytes)\n",
              (unsigned long)in_bytes, (unsigned long)out_bytes);
      return 1;
    }
  }

#ifdef TD_PROFILE
  if (argc > 2 && strcmp(argv[1], "--profile") == 0) {
    profile_file = fopen(argv[2], "w");
    if (profile_file == NULL) {
      perror(argv[2]);
      return 1;
    }
    argc -= 2;
    argv += 2;
  }
#endif
  if (argc > 1 && strcmp(argv[1], "--stdio") == 0) {
    dev = td_posix_attach(STDOUT_FILENO, &info, native_infer, NULL);
    td_announce(dev);
    return td_posix_serve(dev, STDIN_FILENO) == 0 ? 0 : 1;
  }

  name = td_posix_open_pty(&master, &slave);
  if (name == NULL) return 1;
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("PTY %s\n", name);
  fflush(stdout);

  dev = td_posix_attach(master, &info, native_infer, NULL);
  td_announce(dev);
  rc = serve_pty(dev, master);
  close(slave);
  return rc;
}
