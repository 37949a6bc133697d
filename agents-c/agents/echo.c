/*
 * echo — logs every inbox message it receives and how many it has seen so far (the C twin of
 * agents-as/agents/echo.ts). It sleeps until the next message (igor_sleep_until(0)), so it ticks
 * only when someone writes to it:
 *
 *   igord send echo "hello" --node D   →   echo #1 from 12D3KooW…: hello (1 so far)
 *
 * The count and the inbox buffer are statics and malloc'd memory, so after a resume (or a
 * migration) the count goes on from where it was. It logs through igor_log_emit and formats by
 * hand: wasi-libc's snprintf would pull in stdio and with it WASI imports (capability wasi).
 * Capabilities: inbox, timer, log.
 */
#include <stdlib.h>

#include "igor.h"

/* ---- a log line built piece by piece (cut at its capacity) ---- */

static char line_buf[65536 + 256];
static igor_line line = { line_buf, sizeof line_buf, 0 };

static void put(const char *s, uint32_t n) { igor_line_put(&line, s, n); }
static void puts_(const char *s) { igor_line_puts(&line, s); }
static void put_u64(uint64_t v) { igor_line_u64(&line, v); }

static void emit(void) { igor_line_emit(&line); }

/* ---- inbox ---- */

static uint8_t *buf;     /* the inbox buffer, grown to the largest message seen */
static uint32_t cap;
static uint64_t count;   /* messages echoed over the agent's life */

/* Takes the next message into buf (grown to fit); 1, or 0 when the inbox is empty. */
static int next(igor_message *m) { return igor_take_message(&buf, &cap, m); }

/** Reads every pending message, logs each with the running count, then waits for the next one. */
IGOR_EXPORT("agent_tick") int agent_tick(void) {
  igor_message m;
  while (next(&m)) {
    puts_("echo #");
    put_u64(m.seq);
    if (m.kind == IGOR_KIND_MESSAGE) {
      count++;
      puts_(" from ");
      put(m.from, m.from_len);
      puts_(": ");
      put((const char *)m.body, m.body_len);
      puts_(" (");
      put_u64(count);
      puts_(" so far)");
    } else {
      puts_(": ignoring a message of kind ");
      put_u64(m.kind);
    }
    emit();
  }
  igor_sleep_until(0);
  return IGOR_IDLE;
}
