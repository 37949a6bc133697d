// The igor AssemblyScript SDK for component agents (world igor:agent/agent@1.0.0, wit/agent.wit):
// the same functions as ../sdk/igor.ts, each calling the capability interface's canonical-ABI
// lowering instead of the core `igor.*` import. `make agents` builds an unchanged agent source
// (agents-as/agents/ledger.ts) against this file in place of ../sdk/igor.ts, then makes it a
// component (scripts/componentize-core.ts).

/** Tick results (world export `tick` returns the enum tick-result: idle 0, more 1, finished 2). */
export const IDLE: i32 = 0;
export const MORE: i32 = 1;
export const FINISHED: i32 = 2;

@external("igor:agent/clock@1.0.0", "now")
declare function clock_now(): i64;
// get-bytes: func(len: u32) -> result<list<u8>, error-code>, lowered with a return area.
@external("igor:agent/random@1.0.0", "get-bytes")
declare function random_get_bytes(len: u32, ret: usize): void;
@external("igor:agent/log@1.0.0", "emit")
declare function log_emit(ptr: usize, len: i32): void;
@external("igor:agent/wallet@1.0.0", "balance")
declare function wallet_balance(): i64;

/** The return area of lowered calls: result<list<u8>, e> is 12 bytes, align 4. */
const RET: usize = memory.data(16, 8);

/**
 * The canonical ABI allocator the host calls to place lists and strings it returns: raw heap
 * blocks (not GC-managed; the SDK frees what it copied).
 */
export function cabi_realloc(old: usize, oldSize: usize, align: usize, newSize: usize): usize {
  if (old == 0) return heap.alloc(newSize);
  return heap.realloc(old, newSize);
}

/** Current time, nanoseconds since the Unix epoch (capability clock). */
export function clockNow(): i64 {
  return clock_now();
}

/** Current time, whole milliseconds since the Unix epoch (capability clock). */
export function clockMillis(): i64 {
  return clock_now() / 1_000_000;
}

/** Fills `buf` with random bytes (capability rand). Returns 0, or -2 (E_TOO_LONG). */
export function randBytes(buf: Uint8Array): i32 {
  random_get_bytes(<u32>buf.byteLength, RET);
  if (load<u8>(RET) != 0) return -2;
  const ptr = load<usize>(RET, 4);
  const len = load<u32>(RET, 8);
  memory.copy(buf.dataStart, ptr, len);
  if (ptr != 0) heap.free(ptr);
  return 0;
}

/** A random u32 (capability rand). */
export function randU32(): u32 {
  const b = new Uint8Array(4);
  randBytes(b);
  return load<u32>(b.dataStart);
}

/** A random u64 (capability rand). */
export function randU64(): u64 {
  const b = new Uint8Array(8);
  randBytes(b);
  return load<u64>(b.dataStart);
}

/** Writes one line to the agent's log (capability log), UTF-8 encoded. */
export function log(s: string): void {
  const buf = String.UTF8.encode(s);
  log_emit(changetype<usize>(buf), buf.byteLength);
}

/** The agent's remaining budget, microcents (capability wallet). */
export function walletBalance(): i64 {
  return wallet_balance();
}
