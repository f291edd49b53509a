/* Serve the tinydeploy protocol on a POSIX file descriptor (pty, pipe, socket, tty). */
#ifndef TD_POSIX_H
#define TD_POSIX_H

#include "td_protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Initialise a device (static storage, one per process) that writes its frames to out_fd. */
td_device *td_posix_attach(int out_fd, const td_info *info, td_infer_fn infer, void *ctx);

/* Read from in_fd and feed the device until EOF (returns 0) or a read error (returns -1,
 * errno set). EINTR/EAGAIN are retried. */
int td_posix_serve(td_device *dev, int in_fd);

/* Write all bytes to fd, retrying partial writes; the td_write_fn for a file descriptor
 * whose number is stored in *(int *)ctx. */
void td_posix_write(void *ctx, const uint8_t *data, size_t len);

/* Open a raw pseudo-terminal for the device: *master is its end, *slave one slave
 * descriptor kept open (the terminal stays raw and the master readable while the host has
 * the port closed). Returns the slave's name, or NULL after perror(). */
const char *td_posix_open_pty(int *master, int *slave);

/* Microseconds from a monotonic clock (for td_timing.time_us). */
uint32_t td_posix_micros(void);

#ifdef __cplusplus
}
#endif

#endif /* TD_POSIX_H */
