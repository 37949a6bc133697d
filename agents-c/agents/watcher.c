/*
 * watcher — polls a URL once a second and logs when its value changes (the C twin of
 * agents-as/agents/watcher.ts). It learns the URL from its first inbox message
 * (`igord send watcher http://127.0.0.1:8080/price`), then: GET it, wait for the outcome (an
 * IGOR_KIND_HTTP inbox message), compare, sleep 1 s, repeat. Never more than one request is
 * pending. A 200 body's value is the raw token after `"value":` when there is one, else the whole
 * body (trimmed, cut at 200 bytes).
 *
 *   watcher: first value 42
 *   watcher: http://127.0.0.1:8080/price changed: 42 -> 43
 *   watcher: http://127.0.0.1:8080/price error E_HTTP_CONNECT
 *
 * Logs through igor_log_emit, formatting by hand (snprintf would pull in WASI imports).
 * Capabilities: http (allow 127.0.0.1), inbox, timer, clock, log.
 */
#include <stdlib.h>

#include "igor.h"

/** Time between the outcome of one poll and the next request, ns. */
#define PERIOD_NS 1000000000LL
/** Longest URL kept, bytes. */
#define URL_MAX 2048
/** Longest value kept, bytes. */
#define VALUE_MAX 200

/* ---- a log line built piece by piece (cut at its capacity) ---- */

static char line_buf[URL_MAX + 2 * VALUE_MAX + 256];
static igor_line line = { line_buf, sizeof line_buf, 0 };

static void put(const char *s, uint32_t n) { igor_line_put(&line, s, n); }
static void puts_(const char *s) { igor_line_puts(&line, s); }
static void put_i64(int64_t v) { igor_line_i64(&line, v); }

static void emit(void) { igor_line_emit(&line); }

/* ---- inbox ---- */

static uint8_t *buf;     /* the inbox buffer, grown to the largest message seen */
static uint32_t cap;

/* Takes the next message into buf (grown to fit); 1, or 0 when the inbox is empty. */
static int next(igor_message *m) { return igor_take_message(&buf, &cap, m); }

/* ---- the watch ---- */

static char url[URL_MAX + 1];   /* NUL-terminated; "" until the first message names one */
static int32_t pending;         /* id of the request waiting for its outcome; 0 = none */
static int64_t next_ns;         /* when the next poll is due (0 = at once) */
static int woken;               /* a timer message arrived: the poll is due whatever the clock says */
static char last[VALUE_MAX];    /* the last value seen */
static uint32_t last_len;
static int seen;

static int space(uint8_t c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* The value in a response body: the raw token after "value":, else the trimmed body (cut). */
static void extract(const uint8_t *b, uint32_t n, const uint8_t **v, uint32_t *vn) {
  static const char key[] = "\"value\":";
  const uint32_t kn = sizeof key - 1;
  for (uint32_t i = 0; i + kn <= n; i++) {
    if (memcmp(b + i, key, kn) != 0) continue;
    uint32_t j = i + kn;
    while (j < n && (b[j] == ' ' || b[j] == '\t')) j++;
    uint32_t k = j;
    if (k < n && b[k] == '"') { /* a string: up to its closing quote */
      k++;
      while (k < n && b[k] != '"') k++;
      if (k < n) k++;
    } else {
      while (k < n && b[k] != ',' && b[k] != '}' && b[k] != ']' && !space(b[k])) k++;
    }
    *v = b + j;
    *vn = k - j;
    if (*vn > VALUE_MAX) *vn = VALUE_MAX;
    return;
  }
  while (n && space(*b)) { b++; n--; }
  while (n && space(b[n - 1])) n--;
  *v = b;
  *vn = n > VALUE_MAX ? VALUE_MAX : n;
}

/* Handles the outcome of the pending request. */
static void outcome(const igor_message *m) {
  if (m->status == 200) {
    const uint8_t *v;
    uint32_t vn;
    extract(m->body, m->body_len, &v, &vn);
    if (!seen) {
      puts_("watcher: first value ");
      put((const char *)v, vn);
      emit();
      seen = 1;
    } else if (vn != last_len || memcmp(v, last, vn) != 0) {
      puts_("watcher: ");
      puts_(url);
      puts_(" changed: ");
      put(last, last_len);
      puts_(" -> ");
      put((const char *)v, vn);
      emit();
    }
    memcpy(last, v, vn);
    last_len = vn;
  } else {
    puts_("watcher: ");
    puts_(url);
    if (m->status < 0) {
      puts_(" error ");
      puts_(igor_error_name(m->status));
    } else {
      puts_(" status ");
      put_i64(m->status);
    }
    emit();
  }
}

/* Takes the URL from a message body (trimmed); 1 if there was one. */
static int take_url(const igor_message *m) {
  const char *s = (const char *)m->body;
  uint32_t n = m->body_len;
  while (n && space((uint8_t)*s)) { s++; n--; }
  while (n && space((uint8_t)s[n - 1])) n--;
  if (n == 0) return 0;
  if (n > URL_MAX) {
    puts_("watcher: URL longer than 2048 bytes ignored");
    emit();
    return 0;
  }
  memcpy(url, s, n);
  url[n] = 0;
  return 1;
}

IGOR_EXPORT("agent_tick") int agent_tick(void) {
  igor_message m;
  while (next(&m)) {
    if (m.kind == IGOR_KIND_MESSAGE) {
      if (!url[0]) {
        if (take_url(&m)) {
          next_ns = 0;
          puts_("watcher: watching ");
          puts_(url);
          emit();
        }
      } else {
        puts_("watcher: already watching ");
        puts_(url);
        puts_(", message #");
        put_i64((int64_t)m.seq);
        puts_(" ignored");
        emit();
      }
    } else if (m.kind == IGOR_KIND_HTTP) {
      if (pending != 0 && m.req == (uint32_t)pending) {
        pending = 0;
        outcome(&m);
        next_ns = igor_clock_now() + PERIOD_NS;
      } else {
        puts_("watcher: outcome of unknown request ");
        put_i64(m.req);
        puts_(" ignored");
        emit();
      }
    } else if (m.kind == IGOR_KIND_TIMER) {
      woken = 1;
    }
  }

  if (!url[0] || pending != 0) { /* nothing to poll yet, or the outcome is still to come */
    igor_sleep_until(0);
    return IGOR_IDLE;
  }
  int64_t now = igor_clock_now();
  if (woken || now >= next_ns) {
    woken = 0;
    int32_t id = igor_http_get(url);
    if (id > 0) {
      pending = id;
      igor_sleep_until(0);
      return IGOR_IDLE;
    }
    puts_("watcher: ");
    puts_(url);
    puts_(" error ");
    puts_(igor_error_name(id));
    emit();
    if (id == IGOR_E_NOT_ALLOWED || id == IGOR_E_BAD_REQUEST || id == IGOR_E_TOO_LONG) { /* never works */
      puts_("watcher: send another URL");
      emit();
      url[0] = 0;
      igor_sleep_until(0);
      return IGOR_IDLE;
    }
    next_ns = now + PERIOD_NS;
  }
  igor_sleep_until(next_ns);
  return IGOR_IDLE;
}
