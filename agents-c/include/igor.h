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
 *  - the `igor` functions below, each granted by the capability named beside it.
 * A function the agent never calls is not imported, so its capability is not needed.
 */
#ifndef IGOR_H
#define IGOR_H

#include <stdint.h>
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

#undef IGOR_IMPORT

/* ---- helpers ---- */

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

#ifdef __cplusplus
}
#endif

#endif /* IGOR_H */
