/*
 * floodrandom — hostile: every tick asks WASI random_get for 64 KiB in an endless loop. Each
 * answer is recorded in the event log; the tick traps at max_random_bytes_per_tick (docs/ABI.md
 * "Per-tick limits").
 * Capabilities: wasi.
 */
#include <wasi/api.h>

#include "igor.h"

static uint8_t buf[64 * 1024];
static volatile uint8_t sink;

IGOR_EXPORT("agent_tick") int agent_tick(void) {
  for (;;) {
    sink ^= buf[0] ^ (uint8_t)__wasi_random_get(buf, sizeof buf);
  }
  return IGOR_IDLE;
}
