/*
 * igor.h — igord agent SDK for C (guest ABI v1, see docs/ABI.md).
 *
 * Build an agent as a WASI reactor with Debian's clang, lld and wasi-libc:
 *
 *   clang --target=wasm32-wasi -mexec-model=reactor -O2 -I agents-c/include \
 *         agents-c/agents/hello.c -o agents-c/build/hello.wasm
 *
 * and give it a manifest (hello.manifest.json) next to the .wasm. An agent defines agent_tick()
 * with IGOR_EXPORT("agent_tick") and optionally agent_init() with IGOR_EXPORT("agent_init"):
 *
 *   #include <stdio.h>
 *   #include "igor.h"
 *   IGOR_EXPORT("agent_tick") int agent_tick(void) { printf("hello\n"); return IGOR_IDLE; }
 *
 * The reactor's _initialize (C constructors, libc set-up) runs once at birth, before agent_init;
 * neither runs again on resume: everything the agent keeps — static variables, the malloc heap,
 * stdio buffers — lives in linear memory and globals, which igord checkpoints and restores whole.
 *
 * Two ways to reach the host:
 *  - wasi-libc (printf, clock_gettime, getentropy, malloc…) imports `wasi_snapshot_preview1`,
 *    granted by the capability "wasi": igord's own subset — stdout/stderr lines go to the agent's
 *    log, clocks and random bytes are recorded, there are no files, sockets, arguments or
 *    environment (every such call fails with an errno), exit(code) retires the agent.
 *  - the `igor` functions below, each granted by the capability named beside it (clock, rand,
 *    log, wallet, identity, inbox, timer, http).
 * A function the agent never calls is not imported, so its capability is not needed.
 */
#ifndef IGOR_H
#define IGOR_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- exports ---- */

/** Marks a function as a wasm export named `name` (e.g. "agent_tick", "agent_init"). */
#define IGOR_EXPORT(name) __attribute__((export_name(name)))

/* agent_tick results (the int that agent_tick returns) */
/** Nothing more to do now: the next tick comes after the interval. */
#define IGOR_IDLE 0
/** More work waiting: the next tick comes at once. */
#define IGOR_MORE 1
/** The agent is done: igord writes a final checkpoint (status finished) and retires it. */
#define IGOR_FINISHED 2

/** One step of work; returns IGOR_IDLE, IGOR_MORE or IGOR_FINISHED. Required. */
int agent_tick(void);
/** Runs once in the agent's life, at birth (after _initialize). Optional. */
void agent_init(void);

/* ---- result codes of the igor functions ---- */

/** igor_rand_bytes: the request was longer than 64 MiB. */
#define IGOR_E_TOO_LONG (-2)
/** igor_rand_bytes / igor_agent_did / igor_agent_sign: a buffer lies outside linear memory. */
#define IGOR_E_BOUNDS (-4)
/** Length of an igor_agent_sign signature, bytes (Ed25519, RFC 8032). */
#define IGOR_SIGNATURE_BYTES 64

/* igor_http_request results */
/** the URL's host (and port) is not in the manifest's http.allow. */
#define IGOR_E_NOT_ALLOWED (-5)
/** bad method, URL not absolute http(s) or with userinfo, malformed header line or one the host sets. */
#define IGOR_E_BAD_REQUEST (-6)
/** http.max_pending requests are already waiting for their outcome. */
#define IGOR_E_TOO_MANY (-7)

/* HTTP outcomes: igor_message.status when negative */
/** no complete response within http.timeout_ms. */
#define IGOR_E_HTTP_TIMEOUT (-10)
/** connection refused, DNS, reset or TLS failure before a response. */
#define IGOR_E_HTTP_CONNECT (-11)
/** the response body was over http.max_response_bytes. */
#define IGOR_E_HTTP_TOO_LARGE (-12)
/** a redirect to a host not allowed, more than 5 hops, or a bad Location. */
#define IGOR_E_HTTP_REDIRECT (-13)
/** an unsafe request (POST, PUT, PATCH, DELETE) may or may not have reached the server. */
#define IGOR_E_HTTP_IN_DOUBT (-14)

/* igor_message.kind */
/** a message someone sent the agent (igord send, another agent). */
#define IGOR_KIND_MESSAGE 1
/** the outcome of an igor_http_request (igor_message.req names it). */
#define IGOR_KIND_HTTP 2
/** the wake-up an igor_sleep_until asked for. */
#define IGOR_KIND_TIMER 3
/** a message this agent sent (igor_send_to) came back undelivered: req = its number, status = IGOR_E_MSG_*, from = the recipient DID, body = the reason. */
#define IGOR_KIND_BOUNCE 4
/**
 * the outbox has room again: after igor_send_to returned IGOR_E_TOO_MANY, the first message of this
 * agent's that its recipient's host takes wakes it with this (req = that message's number, from =
 * its recipient DID, body empty); one that comes back wakes it with its IGOR_KIND_BOUNCE instead.
 * See igor_wait_for_room.
 */
#define IGOR_KIND_ROOM 5

/* igor_send_to: IGOR_E_BAD_TARGET when the recipient is not an Ed25519 did:key */
#define IGOR_E_BAD_TARGET (-3)
/* bounce reasons: igor_message.status of an IGOR_KIND_BOUNCE */
/** no host of the recipient DID was found in time. */
#define IGOR_E_MSG_UNKNOWN (-20)
/** the recipient's inbox is full. */
#define IGOR_E_MSG_FULL (-21)
/** the recipient's host refused it (the recipient reads no messages, the body is over its limit, …). */
#define IGOR_E_MSG_REFUSED (-22)
/** its host was found but did not take it within the retry time. */
#define IGOR_E_MSG_UNREACHABLE (-23)
/** Size of the fixed part of the inbox_next layout, bytes. */
#define IGOR_MESSAGE_HEAD 40

#define IGOR_IMPORT(name) __attribute__((import_module("igor"), import_name(name)))

/* ---- raw imports (module "igor"; names and signatures match Igor's) ---- */

/** capability clock: current time, ns since the Unix epoch. Recorded for replay. */
IGOR_IMPORT("clock_now") int64_t igor_clock_now(void);

/** capability rand: fills len bytes at buf with random bytes. 0 ok, IGOR_E_TOO_LONG, IGOR_E_BOUNDS. Recorded. */
IGOR_IMPORT("rand_bytes") int32_t igor_rand_bytes(void *buf, uint32_t len);

/** capability log: one UTF-8 line (len bytes at msg, no newline needed) to the agent's log. len 0 is ignored. */
IGOR_IMPORT("log_emit") void igor_log_emit(const char *msg, uint32_t len);

/** capability wallet: the agent's remaining budget, microcents (1 unit = 1,000,000). */
IGOR_IMPORT("wallet_balance") int64_t igor_wallet_balance(void);

/**
 * capability identity: writes the agent's DID (did:key:z6Mk…, UTF-8, not NUL-terminated) at buf
 * and returns its length; if cap is too small writes nothing and returns -(needed length);
 * IGOR_E_BOUNDS if buf is outside memory.
 */
IGOR_IMPORT("agent_did") int32_t igor_agent_did(char *buf, uint32_t cap);

/**
 * capability identity: signs msg_len bytes at msg with the agent's Ed25519 key (RFC 8032) and
 * writes the IGOR_SIGNATURE_BYTES-byte signature at sig. 0 ok, IGOR_E_BOUNDS.
 */
IGOR_IMPORT("agent_sign") int32_t igor_agent_sign(const void *msg, uint32_t msg_len, uint8_t *sig);

/**
 * capability inbox: writes the oldest pending inbox message at buf in the layout below, consumes
 * it and returns its total length; 0 when the inbox is empty; -(needed length) (<= -40) when cap
 * is too small (nothing consumed — call again with a buffer that big); IGOR_E_BOUNDS if buf is
 * outside memory. igor_next_message() below parses the layout. Recorded.
 */
IGOR_IMPORT("inbox_next") int32_t igor_inbox_next(void *buf, uint32_t cap);

/**
 * capability timer: if this tick returns IGOR_IDLE, the next tick runs at at_ns (ns since the
 * Unix epoch; a IGOR_KIND_TIMER message wakes it) or at the first inbox message, whichever comes
 * first; at_ns 0: only an inbox message wakes it. A later call in the same tick replaces an
 * earlier one. Returns 0, or -3 for a negative at_ns. Recorded.
 */
IGOR_IMPORT("sleep_until") int32_t igor_sleep_until(int64_t at_ns);

/**
 * capability http: asks the host to perform an HTTP request after this tick's checkpoint. method
 * (GET HEAD POST PUT PATCH DELETE OPTIONS), an absolute http(s) url whose host is in the
 * manifest's http.allow, headers as "Name: value\r\n" lines (may be empty), body (may be empty).
 * Lengths are bytes, strings UTF-8 and not NUL-terminated. Returns the request id (> 0) — the
 * outcome arrives later as an IGOR_KIND_HTTP inbox message with that req — or IGOR_E_TOO_LONG,
 * IGOR_E_BOUNDS, IGOR_E_NOT_ALLOWED, IGOR_E_BAD_REQUEST, IGOR_E_TOO_MANY (nothing sent). Recorded.
 */
IGOR_IMPORT("http_request") int32_t igor_http_request(const char *method, uint32_t method_len,
                                                      const char *url, uint32_t url_len,
                                                      const char *headers, uint32_t headers_len,
                                                      const void *body, uint32_t body_len);

/**
 * capability message: sends body to the agent whose DID (UTF-8 "did:key:z…", not NUL-terminated)
 * is given, after this tick's checkpoint, signed with this agent's key, again until its host takes
 * it (the recipient reads it exactly once, from = this agent's DID). Returns the message number
 * (> 0) — an IGOR_KIND_BOUNCE with that req comes back if it cannot be delivered — or
 * IGOR_E_TOO_LONG (body over max_message_bytes), IGOR_E_BAD_TARGET, IGOR_E_BOUNDS, IGOR_E_TOO_MANY
 * (max_outbox_messages, default 64, not acknowledged yet: see igor_wait_for_room). Recorded.
 */
IGOR_IMPORT("message_send") int32_t igor_message_send(const char *did, uint32_t did_len, const void *body, uint32_t body_len);

#undef IGOR_IMPORT

/* ---- helpers ---- */

/** capability message: igor_message_send to a NUL-terminated DID. */
static inline int32_t igor_send_to(const char *did, const void *body, uint32_t body_len) {
  return igor_message_send(did, (uint32_t)strlen(did), body, body_len);
}

/**
 * capability timer: after igor_send_to returned IGOR_E_TOO_MANY, sleeps until the outbox has room —
 * call it and return IGOR_IDLE. The next tick comes with an IGOR_KIND_ROOM message when one of this
 * agent's messages was delivered, the IGOR_KIND_BOUNCE of one that came back, or any other inbox
 * message: keep what could not be sent and try it first. (Returning IGOR_MORE instead burns a tick,
 * its fuel and a checkpoint, after another until the recipient's host answers.)
 */
static inline void igor_wait_for_room(void) {
  igor_sleep_until(0);
}

/** capability log: logs a NUL-terminated string as one line. */
static inline void igor_log(const char *line) {
  igor_log_emit(line, (uint32_t)strlen(line));
}

/** capability rand: a random 64-bit value. */
static inline uint64_t igor_rand_u64(void) {
  uint64_t v = 0;
  igor_rand_bytes(&v, sizeof v);
  return v;
}

/* ---- inbox ---- */

/**
 * A view of one inbox message inside the buffer igor_inbox_next filled (pointers into it, valid
 * until the buffer is reused). Strings are UTF-8 and not NUL-terminated: print with "%.*s".
 */
typedef struct igor_message {
  uint32_t kind;          /**< IGOR_KIND_MESSAGE, IGOR_KIND_HTTP or IGOR_KIND_TIMER */
  int32_t status;         /**< http: HTTP status (100-599) or a negative IGOR_E_HTTP_* outcome; else 0 */
  uint32_t req;           /**< http: the request id igor_http_request returned; else 0 */
  uint64_t seq;           /**< position in the agent's inbox: >= 1, strictly increasing */
  uint64_t time;          /**< when the host enqueued it, ns since the Unix epoch */
  const char *from;       /**< sender: peer ID 12D3KooW..., did:key:..., "http" or "timer" */
  uint32_t from_len;
  const char *headers;    /**< http: response headers, "name: value\r\n" lines, names lower-case */
  uint32_t headers_len;
  const uint8_t *body;    /**< message bytes / HTTP response body (empty for a timer) */
  uint32_t body_len;
} igor_message;

static inline uint32_t igor__u32le(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/**
 * Parses the len bytes igor_inbox_next wrote at buf (little-endian):
 *   0 u32 kind, 4 i32 status, 8 u32 req, 12 u32 from_len, 16 u64 seq, 24 u64 time,
 *   32 u32 headers_len, 36 u32 body_len, 40 from | headers | body.
 * Returns 0, or -1 if the lengths do not fit in len bytes.
 */
static inline int igor_parse_message(const void *buf, uint32_t len, igor_message *m) {
  const uint8_t *p = (const uint8_t *)buf;
  if (len < IGOR_MESSAGE_HEAD) return -1;
  m->kind = igor__u32le(p);
  m->status = (int32_t)igor__u32le(p + 4);
  m->req = igor__u32le(p + 8);
  m->from_len = igor__u32le(p + 12);
  m->seq = (uint64_t)igor__u32le(p + 16) | (uint64_t)igor__u32le(p + 20) << 32;
  m->time = (uint64_t)igor__u32le(p + 24) | (uint64_t)igor__u32le(p + 28) << 32;
  m->headers_len = igor__u32le(p + 32);
  m->body_len = igor__u32le(p + 36);
  uint64_t total = (uint64_t)IGOR_MESSAGE_HEAD + m->from_len + m->headers_len + m->body_len;
  if (total > len) return -1;
  m->from = (const char *)p + IGOR_MESSAGE_HEAD;
  m->headers = m->from + m->from_len;
  m->body = (const uint8_t *)m->headers + m->headers_len;
  return 0;
}

/**
 * capability inbox: takes the oldest pending message into buf (cap bytes) and parses it into *m.
 * Returns its length (> 0); 0 when the inbox is empty; -(needed length) when cap is too small
 * (nothing consumed: grow buf to that many bytes and call again); IGOR_E_BOUNDS. A parse failure
 * (a host bug) returns IGOR_E_BOUNDS too.
 */
static inline int32_t igor_next_message(void *buf, uint32_t cap, igor_message *m) {
  int32_t n = igor_inbox_next(buf, cap);
  if (n > 0 && igor_parse_message(buf, (uint32_t)n, m) != 0) return IGOR_E_BOUNDS;
  return n;
}

/**
 * capability inbox: takes the next message into *buf, a malloc'd buffer of *cap bytes that starts
 * at 4 KiB (allocated on first use) and grows to the largest message seen; parses it into *m (which
 * points into *buf until the next call). Returns 1, or 0 when the inbox is empty; aborts when
 * memory runs out or the host breaks the ABI.
 */
static inline int igor_take_message(uint8_t **buf, uint32_t *cap, igor_message *m) {
  if (*buf == NULL) {
    *cap = 4096;
    *buf = malloc(*cap);
    if (*buf == NULL) abort();
  }
  int32_t n = igor_next_message(*buf, *cap, m);
  while (n < 0) {
    if (n > -IGOR_MESSAGE_HEAD) abort(); /* IGOR_E_BOUNDS: cannot happen with a malloc'd buffer */
    free(*buf);
    *cap = (uint32_t)-n;
    *buf = malloc(*cap);
    if (*buf == NULL) abort();
    n = igor_next_message(*buf, *cap, m);
  }
  return n > 0;
}

/* ---- log lines built piece by piece ---- */

/** A log line being built in a caller-owned buffer of `cap` bytes; what does not fit is cut. */
typedef struct { char *buf; uint32_t cap; uint32_t len; } igor_line;

/** Appends n bytes (cut at the line's capacity). */
static inline void igor_line_put(igor_line *l, const char *s, uint32_t n) {
  if (n > l->cap - l->len) n = l->cap - l->len;
  memcpy(l->buf + l->len, s, n);
  l->len += n;
}

/** Appends a NUL-terminated string. */
static inline void igor_line_puts(igor_line *l, const char *s) { igor_line_put(l, s, (uint32_t)strlen(s)); }

/** Appends a signed integer in decimal. */
static inline void igor_line_i64(igor_line *l, int64_t v) {
  char d[21];
  int i = sizeof d;
  uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  do { d[--i] = (char)('0' + u % 10); u /= 10; } while (u);
  if (v < 0) d[--i] = '-';
  igor_line_put(l, d + i, (uint32_t)(sizeof d - i));
}

/** Appends an unsigned integer in decimal. */
static inline void igor_line_u64(igor_line *l, uint64_t v) {
  char d[20];
  int i = sizeof d;
  do { d[--i] = (char)('0' + v % 10); v /= 10; } while (v);
  igor_line_put(l, d + i, (uint32_t)(sizeof d - i));
}

/** capability log: emits the line (igor_log_emit) and empties it. */
static inline void igor_line_emit(igor_line *l) {
  igor_log_emit(l->buf, l->len);
  l->len = 0;
}

/* ---- http ---- */

/** capability http: a GET of the NUL-terminated url; the request id or an error code. */
static inline int32_t igor_http_get(const char *url) {
  return igor_http_request("GET", 3, url, (uint32_t)strlen(url), "", 0, "", 0);
}

/**
 * capability http: a POST of body_len bytes to url with the given NUL-terminated Content-Type
 * (NULL: application/json); the request id or an error code.
 */
static inline int32_t igor_http_post(const char *url, const void *body, uint32_t body_len,
                                     const char *content_type) {
  char headers[256];
  const char *ct = content_type ? content_type : "application/json";
  size_t ctl = strlen(ct);
  if (ctl > sizeof headers - 18) return IGOR_E_TOO_LONG;
  memcpy(headers, "Content-Type: ", 14);
  memcpy(headers + 14, ct, ctl);
  memcpy(headers + 14 + ctl, "\r\n", 2);
  return igor_http_request("POST", 4, url, (uint32_t)strlen(url), headers, (uint32_t)(16 + ctl),
                           body, body_len);
}

/** The name of an igor result or HTTP outcome code ("E_NOT_ALLOWED", "E_HTTP_TIMEOUT", ...), or "E?". */
static inline const char *igor_error_name(int32_t code) {
  switch (code) {
    case IGOR_E_TOO_LONG: return "E_TOO_LONG";
    case IGOR_E_BOUNDS: return "E_BOUNDS";
    case IGOR_E_NOT_ALLOWED: return "E_NOT_ALLOWED";
    case IGOR_E_BAD_REQUEST: return "E_BAD_REQUEST";
    case IGOR_E_TOO_MANY: return "E_TOO_MANY";
    case IGOR_E_HTTP_TIMEOUT: return "E_HTTP_TIMEOUT";
    case IGOR_E_HTTP_CONNECT: return "E_HTTP_CONNECT";
    case IGOR_E_HTTP_TOO_LARGE: return "E_HTTP_TOO_LARGE";
    case IGOR_E_HTTP_REDIRECT: return "E_HTTP_REDIRECT";
    case IGOR_E_HTTP_IN_DOUBT: return "E_HTTP_IN_DOUBT";
    default: return "E?";
  }
}

#ifdef __cplusplus
}
#endif

#endif /* IGOR_H */
