/*
 * cpong — the C twin of agents-as/agents/pong.ts: answers every message from another agent with
 * igor_send_to. "ping <k>" from did:key:A gets "pong <k>" sent back to did:key:A; any other text t
 * gets "pong t". It logs what it got, and every answer that came back undelivered:
 *
 *   cpong got "ping 3" from did:key:z6Mk... (3 so far)
 *   cpong bounce #4 (E_MSG_UNKNOWN): no host of did:key:... found within 10 s
 *
 * A message from a person (a peer ID sender, `igord send cpong ...`) is logged and not answered.
 * When its outbox is full (IGOR_E_TOO_MANY: 64 answers wait for their acknowledgement) the answer
 * is kept, cpong sleeps until the outbox has room (igor_wait_for_room: an IGOR_KIND_ROOM or
 * IGOR_KIND_BOUNCE message wakes it) and sends the kept answer at its next tick, before any further
 * message is read, so the answers keep their order.
 * Logs through igor_log_emit, formatting by hand (snprintf would pull in WASI imports).
 * Capabilities: inbox, timer, log, message.
 */
#include <stdlib.h>

#include "igor.h"

/** Longest DID kept, bytes (the host refuses longer ones). */
#define DID_MAX 128
/** Longest answer sent, bytes (the message is cut there). */
#define ANSWER_MAX 4096
/** Longest preview of a message in a log line, bytes. */
#define PREVIEW_MAX 200

/* ---- a log line built piece by piece (cut at its capacity) ---- */

static char line_buf[DID_MAX + PREVIEW_MAX + 128];
static igor_line line = { line_buf, sizeof line_buf, 0 };

static void put(const char *s, uint32_t n) { igor_line_put(&line, s, n); }
static void puts_(const char *s) { igor_line_puts(&line, s); }
static void put_i64(int64_t v) { igor_line_i64(&line, v); }

static void emit(void) { igor_line_emit(&line); }

static const char *bounce_name(int32_t code) {
  switch (code) {
    case IGOR_E_MSG_UNKNOWN: return "E_MSG_UNKNOWN";
    case IGOR_E_MSG_FULL: return "E_MSG_FULL";
    case IGOR_E_MSG_REFUSED: return "E_MSG_REFUSED";
    case IGOR_E_MSG_UNREACHABLE: return "E_MSG_UNREACHABLE";
    default: return "bounce";
  }
}

/* ---- state ---- */

static uint8_t *buf;          /* the inbox buffer, grown to the largest message seen */
static uint32_t cap;
static int64_t got;           /* messages from agents so far */
static char to[DID_MAX + 1];  /* an answer that found the outbox full: its recipient (NUL-terminated) ... */
static char answer[ANSWER_MAX];
static uint32_t answer_len;   /* ... and its body; held = to[0] != 0 */

/* Builds the answer to message m into answer / to. */
static void make_answer(const igor_message *m) {
  const char *t = (const char *)m->body;
  uint32_t n = m->body_len;
  memcpy(answer, "pong", 4);
  answer_len = 4;
  if (n >= 4 && memcmp(t, "ping", 4) == 0) { t += 4; n -= 4; }
  else answer[answer_len++] = ' ';
  if (n > ANSWER_MAX - answer_len) n = ANSWER_MAX - answer_len;
  memcpy(answer + answer_len, t, n);
  answer_len += n;
  memcpy(to, m->from, m->from_len);
  to[m->from_len] = 0;
}

/* Sends the answer held in answer / to; 0 when the outbox is full (kept for the tick that room wakes). */
static int send_answer(void) {
  int32_t r = igor_send_to(to, answer, answer_len);
  if (r == IGOR_E_TOO_MANY) return 0;
  if (r < 0) {
    puts_("cpong: send failed: ");
    puts_(igor_error_name(r));
    emit();
  }
  to[0] = 0;
  return 1;
}

IGOR_EXPORT("agent_tick") int agent_tick(void) {
  if (to[0] && !send_answer()) { igor_wait_for_room(); return IGOR_IDLE; }
  igor_message m;
  while (igor_take_message(&buf, &cap, &m)) {
    uint32_t pn = m.body_len > PREVIEW_MAX ? PREVIEW_MAX : m.body_len;
    if (m.kind == IGOR_KIND_MESSAGE && m.from_len > 8 && m.from_len <= DID_MAX && memcmp(m.from, "did:key:", 8) == 0) {
      got++;
      puts_("cpong got \"");
      put((const char *)m.body, pn);
      puts_("\" from ");
      put(m.from, m.from_len);
      puts_(" (");
      put_i64(got);
      puts_(" so far)");
      emit();
      make_answer(&m);
      if (!send_answer()) { igor_wait_for_room(); return IGOR_IDLE; }
    } else if (m.kind == IGOR_KIND_MESSAGE) {
      puts_("cpong: message #");
      put_i64((int64_t)m.seq);
      puts_(" from ");
      put(m.from, m.from_len > DID_MAX ? DID_MAX : m.from_len);
      puts_(" is not from an agent: not answered");
      emit();
    } else if (m.kind == IGOR_KIND_BOUNCE) {
      puts_("cpong bounce #");
      put_i64(m.req);
      puts_(" (");
      puts_(bounce_name(m.status));
      puts_("): ");
      put((const char *)m.body, pn);
      emit();
    }
  }
  igor_sleep_until(0);
  return IGOR_IDLE;
}
