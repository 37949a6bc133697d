// igord agent SDK for AssemblyScript (ABI v1, see docs/ABI.md).
//
// Typed wrappers over the `igor` host functions. An agent imports what it needs:
//
//   import { clockNow, log, IDLE } from "../sdk/igor";
//   export function agent_tick(): i32 { log("now " + clockNow().toString()); return IDLE; }
//
// Only the host functions an agent actually calls end up as imports of its wasm, and each needs its
// capability in the agent's manifest (clock, rand, log, wallet, identity) or the module is refused
// at load time. Build with `--exportStart _initialize` (agents-as/asconfig.json does).

// ---- tick results (the i32 that agent_tick returns) ----

/** Nothing more to do now: the next tick comes after the interval. */
export const IDLE: i32 = 0;
/** More work waiting: the next tick comes at once. */
export const MORE: i32 = 1;
/** The agent is done: igord writes a final checkpoint and retires it. */
export const FINISHED: i32 = 2;

// ---- result codes of the host functions ----

/** rand_bytes: the request was longer than 64 MiB. */
export const E_TOO_LONG: i32 = -2;
/** rand_bytes / agent_did / agent_sign: a buffer is outside linear memory. */
export const E_BOUNDS: i32 = -4;

// ---- raw imports (module "igor"; names and signatures match Igor's) ----

// @ts-ignore: decorator
@external("igor", "clock_now")
declare function clock_now(): i64;
// @ts-ignore: decorator
@external("igor", "rand_bytes")
declare function rand_bytes(ptr: usize, len: i32): i32;
// @ts-ignore: decorator
@external("igor", "log_emit")
declare function log_emit(ptr: usize, len: i32): void;
// @ts-ignore: decorator
@external("igor", "wallet_balance")
declare function wallet_balance(): i64;
// @ts-ignore: decorator
@external("igor", "agent_did")
declare function agent_did(ptr: usize, cap: i32): i32;
// @ts-ignore: decorator
@external("igor", "agent_sign")
declare function agent_sign(msg_ptr: usize, msg_len: i32, sig_ptr: usize): i32;
// @ts-ignore: decorator
@external("igor", "migrate_request")
declare function migrate_request(ptr: usize, len: i32): i32;

// ---- clock ----

/** Current time, nanoseconds since the Unix epoch (capability clock). Recorded for replay. */
export function clockNow(): i64 {
  return clock_now();
}

/** Current time, whole milliseconds since the Unix epoch (capability clock). */
export function clockMillis(): i64 {
  return clock_now() / 1_000_000;
}

// ---- rand ----

/** Fills `buf` with random bytes (capability rand). Returns 0, or E_TOO_LONG / E_BOUNDS. */
export function randBytes(buf: Uint8Array): i32 {
  return rand_bytes(buf.dataStart, buf.byteLength);
}

/** A random u32 (capability rand). */
export function randU32(): u32 {
  const b = new Uint8Array(4);
  rand_bytes(b.dataStart, 4);
  return load<u32>(b.dataStart);
}

/** A random u64 (capability rand). */
export function randU64(): u64 {
  const b = new Uint8Array(8);
  rand_bytes(b.dataStart, 8);
  return load<u64>(b.dataStart);
}

// ---- log ----

/** Writes one line to the agent's log (capability log), UTF-8 encoded; lines over 1 MiB are dropped. */
export function log(s: string): void {
  const buf = String.UTF8.encode(s);
  log_emit(changetype<usize>(buf), buf.byteLength);
}

// ---- wallet ----

/** The agent's remaining budget, microcents (1 unit = 1,000,000) (capability wallet). */
export function walletBalance(): i64 {
  return wallet_balance();
}

// ---- identity ----

/** The agent's own DID, `did:key:z6Mk…` (capability identity). */
export function agentDid(): string {
  let cap: i32 = 64;
  let buf = new ArrayBuffer(cap);
  let n = agent_did(changetype<usize>(buf), cap);
  if (n < 0 && n != E_BOUNDS) {
    cap = -n;
    buf = new ArrayBuffer(cap);
    n = agent_did(changetype<usize>(buf), cap);
  }
  if (n < 0) return "";
  return String.UTF8.decodeUnsafe(changetype<usize>(buf), <usize>n);
}

/** An Ed25519 signature (64 bytes, RFC 8032) of `msg` by the agent's own key (capability identity). */
export function agentSign(msg: Uint8Array): Uint8Array {
  const sig = new Uint8Array(64);
  const r = agent_sign(msg.dataStart, msg.byteLength, sig.dataStart);
  assert(r == 0, "agent_sign failed");
  return sig;
}

/** Signs a string's UTF-8 bytes (capability identity). */
export function agentSignString(s: string): Uint8Array {
  return agentSign(Uint8Array.wrap(String.UTF8.encode(s)));
}

/** Lower-case hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  const digits = "0123456789abcdef";
  let out = "";
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    out += digits.charAt(b >> 4) + digits.charAt(b & 15);
  }
  return out;
}

// ---- migrate ----

/** `migrateTo`: the target is not a multiaddr. */
export const E_BAD_TARGET: i32 = -3;

/**
 * Asks the node to move this agent, after the current tick, to the peer at `multiaddr`
 * (e.g. "/ip4/10.0.0.2/tcp/4001/p2p/12D3KooW…"). Capability: migrate.
 * Returns 0 when the request is recorded, E_BAD_TARGET, E_TOO_LONG or E_BOUNDS otherwise.
 * The agent keeps its DID, tick count and heap; it learns where it runs from its next ticks.
 */
export function migrateTo(multiaddr: string): i32 {
  const bytes = String.UTF8.encode(multiaddr);
  return migrate_request(changetype<usize>(bytes), bytes.byteLength);
}

/** Asks the node to move this agent, after this tick, to the cheapest known peer that grants its capabilities. */
export function migrateToCheapest(): i32 {
  return migrate_request(0, 0);
}
