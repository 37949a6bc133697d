/*
 * floodwrite — hostile: every tick writes 1 KiB lines to stdout with raw WASI fd_write in an
 * endless loop. Each line goes to the host's output and the event log; the tick traps at
 * max_log_bytes_per_tick (docs/ABI.md "Per-tick limits").
 * Capabilities: wasi.
 */
#include <string.h>
#include <wasi/api.h>

#include "igor.h"

static uint8_t line[1024];
static volatile int sink; /* keeps every call's errno, so the loop cannot be optimized away */

IGOR_EXPORT("agent_tick") int agent_tick(void) {
  memset(line, 'w', sizeof line - 1);
  line[sizeof line - 1] = '\n';
  __wasi_ciovec_t iov = { .buf = line, .buf_len = sizeof line };
  for (;;) {
    __wasi_size_t n;
    sink += __wasi_fd_write(1, &iov, 1, &n);
  }
  return IGOR_IDLE;
}
