/**
 * The `igor` host module (DESIGN §4): the functions an agent imports, each present only if its
 * manifest grants the capability, plus the `env` functions AssemblyScript needs, and the load-time
 * check that a module imports nothing its manifest does not grant.
 *
 * Names and signatures match Igor's, so calls through Igor's guest SDK link unchanged. Every value that
 * enters the agent is recorded in the context's event log (DESIGN §8). Pointers and lengths are
 * i32 arguments read as unsigned; every memory access is checked against the memory's current
 * size (the buffer changes after `memory.grow`).
 */
import { ModuleError } from '../checkpoint/errors.ts'
import { encodeMessage, encodeRequest, encodeSendEvent, MAX_DID_BYTES } from '../checkpoint/io.ts'
import { isAgentDid } from '../checkpoint/envelope.ts'
import type { HttpRequestRecord, Message, OutboundMessage } from '../checkpoint/io.ts'
import type { EventLog } from './eventlog.ts'
import { HostTrap } from './eventlog.ts'
import { capabilityFor, grantedImports } from './manifest.ts'
import type { Manifest } from './manifest.ts'
import { WASI_SIGNATURES } from './wasi.ts'

/** What the host functions need from the runtime for one agent. */
export interface HostContext {
  /**
   * The agent instance's linear memory (read on every call: it may have grown). A host function
   * that writes into it must report the bytes with {@link HostContext.wrote}.
   */
  memory (): WebAssembly.Memory
  /**
   * Reports that a host function wrote bytes [ptr, ptr + len) of memory (within bounds), so that
   * the runtime's dirty tracking compares them at the tick's commit (runtime/memory.ts `wrote`):
   * an unreported host write could be missed by the next checkpoint. Absent: nothing tracks writes.
   */
  wrote? (ptr: number, len: number): void
  /** The agent's `did:key` (W3C did:key, Ed25519). */
  did: string
  /** Signs `msg` with the agent's Ed25519 key (RFC 8032, deterministic); returns the 64-byte signature. */
  sign (msg: Uint8Array): Uint8Array
  /** The agent's remaining budget, microcents. */
  budget (): bigint
  /** Current time, ns since the Unix epoch (live clock, simulated, or replayed from the log). */
  now (): bigint
  /** Fills `buf` with random bytes (CSPRNG, simulated, or replayed from the log). */
  randomFill (buf: Uint8Array): void
  /** Where the host functions record every value they hand to the agent. */
  log: EventLog
  /** Writes one line of the agent's log output (already decoded from UTF-8). */
  emit (line: string): void
  /**
   * Records the agent's request to move (capability `migrate`): to the peer at multiaddr `target`,
   * or to the cheapest known peer granting its capabilities when `target` is null. The node acts
   * after the tick; a later request in the same tick replaces an earlier one.
   */
  requestMigration (target: string | null): void
  /**
   * Capability `inbox`: the oldest message the agent may read (never a top-up: the host applies
   * those), without consuming it; null when the inbox is empty. Live, from the agent's inbox;
   * in replay, from the event the tick's log holds at this point.
   */
  inboxPeek? (): Message | null
  /** Consumes `m`, the message {@link HostContext.inboxPeek} just returned. */
  inboxTake? (m: Message): void
  /** Capability `timer`: records the agent's `sleep_until` (ns; 0n = until the next inbox message). */
  sleep? (at: bigint): void
  /**
   * Capability `http`: issues a request (performed by the host after the tick is checkpointed).
   * Returns the request as recorded (with its id and idempotency key) or a negative error code
   * (E_NOT_ALLOWED, E_BAD_REQUEST, E_TOO_LONG, E_TOO_MANY).
   */
  httpRequest? (r: { method: string; url: string; headers: string; body: Uint8Array }): HttpRequestRecord | number
  /**
   * Capability `message`: queues a message to agent `to` (a did:key, already checked well-formed),
   * sent by the host after the tick is checkpointed. Returns the message as kept in the outbox
   * (with its number and id) or a negative error code (E_TOO_LONG, E_TOO_MANY).
   */
  messageSend? (m: { to: string; body: Uint8Array }): OutboundMessage | number
}

/** Size of the fixed part of a message as `inbox_next` writes it, bytes (docs/ABI.md "Inbox"). */
export const MESSAGE_HEADER_BYTES = 40
/** `inbox_next` kind codes. */
export const MESSAGE_KIND_CODES: Readonly<Record<string, number>> = { message: 1, http: 2, timer: 3, bounce: 4, room: 5 }
/** Largest part (method, URL, headers or body) `http_request` reads from memory, bytes (1 MiB). */
export const MAX_HTTP_PART_BYTES = 1024 * 1024

/**
 * A message in the layout `inbox_next` writes (little-endian; docs/ABI.md "Inbox"):
 * `u32 kind, i32 status, u32 req, u32 from_len, u64 seq, u64 time, u32 headers_len, u32 body_len`,
 * then `from ‖ headers ‖ body`.
 */
export function messageLayout (m: Message): Uint8Array {
  const from = utf8.encode(m.from)
  const headers = utf8.encode(m.headers ?? '')
  const out = new Uint8Array(MESSAGE_HEADER_BYTES + from.length + headers.length + m.body.length)
  const dv = new DataView(out.buffer)
  dv.setUint32(0, MESSAGE_KIND_CODES[m.kind] ?? 0, true)
  dv.setInt32(4, m.status ?? 0, true)
  dv.setUint32(8, m.req ?? 0, true)
  dv.setUint32(12, from.length, true)
  dv.setBigUint64(16, BigInt(m.seq), true)
  dv.setBigUint64(24, m.time, true)
  dv.setUint32(32, headers.length, true)
  dv.setUint32(36, m.body.length, true)
  out.set(from, 40)
  out.set(headers, 40 + from.length)
  out.set(m.body, 40 + from.length + headers.length)
  return out
}

/** `rand_bytes`: success. */
export const RAND_OK = 0
/** `rand_bytes`: `len` is more than {@link MAX_RAND_BYTES}. */
export const E_TOO_LONG = -2
/** `rand_bytes`, `agent_did`, `agent_sign`: a buffer lies outside linear memory. */
export const E_BOUNDS = -4
/** Largest `rand_bytes` request, bytes (64 MiB, as in Igor). */
export const MAX_RAND_BYTES = 64 * 1024 * 1024
/** Longest `log_emit` line, bytes (1 MiB); longer lines are dropped, as in Igor. */
export const MAX_LOG_BYTES = 1024 * 1024
/** Length of an `agent_sign` signature, bytes (Ed25519, RFC 8032). */
export const SIGNATURE_BYTES = 64
/** `http_request`: the URL's host is not in the manifest's `http.allow` list. */
export const E_NOT_ALLOWED = -5
/** `migrate_request`: the target is not a multiaddr (must start with `/`, printable ASCII). */
export const E_BAD_TARGET = -3
/** Longest `migrate_request` target, bytes. */
export const MAX_TARGET_BYTES = 1024

/**
 * A host function refused to go on (memory access out of bounds, `env.abort`, a per-tick limit):
 * the tick traps with this message, which is what the event log records as the trap reason.
 * Defined in `eventlog.ts` (which throws {@link TickLimitTrap}, a HostTrap); re-exported here.
 */
export { HostTrap, TickLimitTrap } from './eventlog.ts'

const utf8 = new TextEncoder()
const utf8Lossy = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true })
const utf16 = new TextDecoder('utf-16le', { fatal: false, ignoreBOM: true })

/** Is [ptr, ptr+len) inside memory? ptr and len are unsigned. */
function inBounds (mem: WebAssembly.Memory, ptr: number, len: number): boolean {
  return ptr + len <= mem.buffer.byteLength
}

/**
 * The typed halves of the `igor` host functions, shared by the core ABI (below: each reads its
 * arguments from linear memory and checks their bounds first) and the component interfaces
 * (hostcalls/component.ts: jco's glue lifts them). Each does its capability's own checks, counts
 * against the tick's limits and records its event exactly as docs/ABI.md says, and returns the
 * core result: a value, or a negative result code.
 */
export const hostOps = {
  /** An s64 input (`clock_now`, `wallet_balance`) read by `read` once admitted (a refused call reads nothing), recorded under `event`. @throws TickLimitTrap */
  recordI64 (ctx: HostContext, event: 'clock_now' | 'wallet_balance', read: () => bigint): bigint {
    ctx.log.admit(event, 8)
    const v = BigInt.asIntN(64, read())
    ctx.log.record(event, v)
    return v
  },
  /** `len` (1 … {@link MAX_RAND_BYTES}) random bytes, recorded as `rand_bytes`. @throws TickLimitTrap */
  randomBytes (ctx: HostContext, len: number): Uint8Array {
    ctx.log.admit('rand_bytes', len)
    const buf = new Uint8Array(len)
    ctx.randomFill(buf)
    ctx.log.record('rand_bytes', buf)
    return buf
  },
  /** The 64-byte Ed25519 signature of `msg` (a copy the caller owns), recorded as `agent_sign`. @throws TickLimitTrap; Error for a signer returning another length */
  sign (ctx: HostContext, msg: Uint8Array): Uint8Array {
    const sig = ctx.sign(msg)
    if (sig.length !== SIGNATURE_BYTES) throw new Error(`agent_sign: host signer returned ${sig.length} bytes, not ${SIGNATURE_BYTES}`)
    ctx.log.record('agent_sign', sig, msg.length)
    return sig
  },
  /** `sleep_until(at)`: 0, or {@link E_BAD_TARGET} for a negative time (nothing recorded). */
  sleepUntil (ctx: HostContext, at: bigint): number {
    if (at < 0n) return E_BAD_TARGET
    ctx.log.record('sleep_until', at)
    ctx.sleep?.(at)
    return 0
  },
  /** Issues an HTTP request (parts already read and within {@link MAX_HTTP_PART_BYTES}): its id, or a negative code; recorded as `http_request`. @throws TickLimitTrap */
  httpRequest (ctx: HostContext, req: { method: string; url: string; headers: string; body: Uint8Array }): number {
    const r = ctx.httpRequest?.(req) ?? E_NOT_ALLOWED
    if (typeof r === 'number') {
      ctx.log.record('http_request', BigInt(r))
      return r
    }
    ctx.log.record('http_request', encodeRequest(r))
    return r.id
  },
  /** Queues a message to `to` (`body` a copy the caller owns): its number, or a negative code; recorded as `message_send`. @throws TickLimitTrap */
  messageSend (ctx: HostContext, to: string, body: Uint8Array): number {
    const r = isAgentDid(to) ? ctx.messageSend?.({ to, body }) ?? E_BAD_TARGET : E_BAD_TARGET
    if (typeof r === 'number') {
      ctx.log.record('message_send', BigInt(r))
      return r
    }
    ctx.log.record('message_send', encodeSendEvent(r))
    return r.n
  },
  /** `migrate_request(target)` (at most {@link MAX_TARGET_BYTES}; '' = the cheapest peer): 0, or {@link E_BAD_TARGET}; recorded as `migrate_request`. */
  migrate (ctx: HostContext, target: string): number {
    if (target !== '' && !/^\/[\x21-\x7e]+$/.test(target)) return E_BAD_TARGET
    ctx.log.record('migrate_request', target)
    ctx.requestMigration(target === '' ? null : target)
    return 0
  },
}

/**
 * Builds the import object for one agent instance.
 *
 * `igor` holds only the functions of the capabilities `manifest` grants:
 * - clock: `clock_now() -> i64` — `ctx.now()`, Unix ns; recorded as `clock_now` (int).
 * - rand: `rand_bytes(ptr, len) -> i32` — 0 ok (len 0: nothing done, nothing recorded),
 *   −2 len > 64 MiB, −4 out of bounds; the bytes are recorded as `rand_bytes`.
 * - log: `log_emit(ptr, len)` — a UTF-8 line (malformed sequences become U+FFFD) to `ctx.emit`,
 *   recorded as `log_emit` (text); len 0 ignored; len > 1 MiB dropped; out of bounds traps.
 * - wallet: `wallet_balance() -> i64` — `ctx.budget()`, microcents; recorded as `wallet_balance`.
 * - identity: `agent_did(ptr, cap) -> i32` — writes the DID (UTF-8), returns its byte length, or
 *   −(needed length) if `cap` is too small, −4 out of bounds; recorded as `agent_did` (text).
 *   `agent_sign(msg_ptr, msg_len, sig_ptr) -> i32` — writes the 64-byte Ed25519 signature of the
 *   message, 0 ok, −4 out of bounds; recorded as `agent_sign` (the signature bytes).
 * - migrate: `migrate_request(ptr, len) -> i32` — asks the node to move the agent after this tick
 *   to the multiaddr in [ptr, ptr+len) (UTF-8), or with len 0 to the cheapest known peer that
 *   grants its capabilities; 0 accepted, −2 longer than 1024 bytes, −3 not a multiaddr, −4 out of
 *   bounds; recorded as `migrate_request` (text, empty for "cheapest"). A tick that traps drops
 *   its request with the rest of its effects.
 * - message: `message_send(did_ptr, did_len, body_ptr, body_len) -> i32` — queues a message to the
 *   agent whose did:key is in [did_ptr, did_ptr+did_len), sent by the host after this tick's
 *   checkpoint, signed with the agent's key; returns its message number (> 0), or −2 a DID over
 *   128 bytes or a body over `max_message_bytes`, −3 not an Ed25519 did:key, −4 out of bounds,
 *   −7 too many messages not acknowledged yet; recorded as `message_send` (the CBOR
 *   `{to, id, body}`, or the int error code).
 *
 * Every function that records also counts against the tick's limits (`EventLog.admit` before it
 * takes a value or does length-proportional work, `EventLog.record` when it records): crossing one
 * throws {@link TickLimitTrap} (a HostTrap), e.g. `tick limit: 10001 events > max_events_per_tick
 * 10000`; `agent_sign` counts its message's bytes too (docs/ABI.md "Per-tick limits").
 *
 * `env` always holds `abort(msg, file, line, col)` (throws {@link HostTrap}
 * `abort: <msg> at <file>:<line>:<col>`, decoding AssemblyScript strings), and with `rand` also
 * `seed() -> f64` (AssemblyScript's `Math.random` seed: 8 random bytes recorded as `env.seed`,
 * returned as the integer `u64 >> 11`, so the value is exact in an f64).
 * @throws nothing itself; the returned functions throw HostTrap on an out-of-bounds log line or
 *   abort, and TickLimitTrap when a call would cross a per-tick limit
 */
export function igorImports (manifest: Manifest, ctx: HostContext): WebAssembly.Imports {
  const granted = grantedImports(manifest)
  const all: Record<string, Record<string, (...args: never[]) => unknown>> = {
    igor: {
      clock_now: (): bigint => hostOps.recordI64(ctx, 'clock_now', () => ctx.now()),
      rand_bytes: (ptr: number, len: number): number => {
        ptr >>>= 0; len >>>= 0
        if (len === 0) return RAND_OK
        if (len > MAX_RAND_BYTES) return E_TOO_LONG
        const mem = ctx.memory()
        if (!inBounds(mem, ptr, len)) return E_BOUNDS
        const buf = hostOps.randomBytes(ctx, len)
        new Uint8Array(mem.buffer, ptr, len).set(buf)
        ctx.wrote?.(ptr, len)
        return RAND_OK
      },
      log_emit: (ptr: number, len: number): void => {
        ptr >>>= 0; len >>>= 0
        if (len === 0 || len > MAX_LOG_BYTES) return
        const mem = ctx.memory()
        if (!inBounds(mem, ptr, len)) {
          throw new HostTrap(`log_emit: out of bounds (ptr ${ptr}, len ${len}, memory ${mem.buffer.byteLength} bytes)`)
        }
        ctx.log.admit('log_emit', len) // the decoded line is at least as long (U+FFFD is 3 bytes)
        const line = utf8Lossy.decode(new Uint8Array(mem.buffer, ptr, len))
        ctx.log.record('log_emit', line)
        ctx.emit(line)
      },
      wallet_balance: (): bigint => hostOps.recordI64(ctx, 'wallet_balance', () => ctx.budget()),
      agent_did: (ptr: number, cap: number): number => {
        ptr >>>= 0; cap >>>= 0
        const did = utf8.encode(ctx.did)
        if (cap < did.length) {
          ctx.log.record('agent_did', ctx.did)
          return -did.length
        }
        const mem = ctx.memory()
        if (!inBounds(mem, ptr, did.length)) return E_BOUNDS
        ctx.log.record('agent_did', ctx.did)
        new Uint8Array(mem.buffer, ptr, did.length).set(did)
        ctx.wrote?.(ptr, did.length)
        return did.length
      },
      agent_sign: (msgPtr: number, msgLen: number, sigPtr: number): number => {
        msgPtr >>>= 0; msgLen >>>= 0; sigPtr >>>= 0
        const mem = ctx.memory()
        if (!inBounds(mem, msgPtr, msgLen) || !inBounds(mem, sigPtr, SIGNATURE_BYTES)) return E_BOUNDS
        ctx.log.admit('agent_sign', SIGNATURE_BYTES + msgLen) // before hashing a message of any length
        const sig = hostOps.sign(ctx, new Uint8Array(mem.buffer, msgPtr, msgLen).slice())
        new Uint8Array(ctx.memory().buffer, sigPtr, SIGNATURE_BYTES).set(sig)
        ctx.wrote?.(sigPtr, SIGNATURE_BYTES)
        return 0
      },
      inbox_next: (ptr: number, cap: number): number => {
        ptr >>>= 0; cap >>>= 0
        if (cap > 0 && !inBounds(ctx.memory(), ptr, cap)) return E_BOUNDS
        const m = ctx.inboxPeek?.() ?? null
        if (m === null) {
          ctx.log.record('inbox', 0n)
          return 0
        }
        const cbor = encodeMessage(m)
        const bytes = messageLayout(m)
        if (cap < bytes.length) {
          ctx.log.record('inbox_peek', cbor)
          return -bytes.length
        }
        ctx.log.record('inbox', cbor)
        ctx.inboxTake?.(m)
        new Uint8Array(ctx.memory().buffer, ptr, bytes.length).set(bytes)
        ctx.wrote?.(ptr, bytes.length)
        return bytes.length
      },
      sleep_until: (at: bigint): number => hostOps.sleepUntil(ctx, at),
      http_request: (mp: number, ml: number, up: number, ul: number, hp: number, hl: number, bp: number, bl: number): number => {
        const parts: [number, number][] = [[mp >>> 0, ml >>> 0], [up >>> 0, ul >>> 0], [hp >>> 0, hl >>> 0], [bp >>> 0, bl >>> 0]]
        if (parts.some(([, l]) => l > MAX_HTTP_PART_BYTES)) return E_TOO_LONG
        const mem = ctx.memory()
        if (parts.some(([p, l]) => !inBounds(mem, p, l))) return E_BOUNDS
        ctx.log.admit('http_request', parts.reduce((n, [, l]) => n + l, 0))
        const [method, url, headers] = parts.slice(0, 3).map(([p, l]) => utf8Lossy.decode(new Uint8Array(mem.buffer, p, l)))
        const body = new Uint8Array(mem.buffer, parts[3][0], parts[3][1]).slice()
        return hostOps.httpRequest(ctx, { method, url, headers, body })
      },
      message_send: (dp: number, dl: number, bp: number, bl: number): number => {
        dp >>>= 0; dl >>>= 0; bp >>>= 0; bl >>>= 0
        if (dl > MAX_DID_BYTES || bl > MAX_HTTP_PART_BYTES) return E_TOO_LONG
        const mem = ctx.memory()
        if (!inBounds(mem, dp, dl) || !inBounds(mem, bp, bl)) return E_BOUNDS
        ctx.log.admit('message_send', dl + bl)
        const to = utf8Lossy.decode(new Uint8Array(mem.buffer, dp, dl))
        return hostOps.messageSend(ctx, to, new Uint8Array(mem.buffer, bp, bl).slice())
      },
      migrate_request: (ptr: number, len: number): number => {
        ptr >>>= 0; len >>>= 0
        if (len > MAX_TARGET_BYTES) return E_TOO_LONG
        const mem = ctx.memory()
        if (!inBounds(mem, ptr, len)) return E_BOUNDS
        return hostOps.migrate(ctx, utf8Lossy.decode(new Uint8Array(mem.buffer, ptr, len)))
      },
    },
    env: {
      abort: (msg: number, file: number, line: number, col: number): never => {
        const mem = ctx.memory()
        throw new HostTrap(`abort: ${asString(mem, msg) ?? 'null'} at ${asString(mem, file) ?? '?'}:${line >>> 0}:${col >>> 0}`)
      },
      seed: (): number => {
        ctx.log.admit('env.seed', 8)
        const b = new Uint8Array(8)
        ctx.randomFill(b)
        ctx.log.record('env.seed', b)
        return Number(new DataView(b.buffer).getBigUint64(0, true) >> 11n)
      },
    },
  }
  const out: WebAssembly.Imports = {}
  for (const [mod, fns] of Object.entries(all)) {
    const m: Record<string, WebAssembly.ImportValue> = {}
    for (const [name, fn] of Object.entries(fns)) {
      if (granted.has(`${mod}.${name}`)) m[name] = fn as unknown as WebAssembly.ImportValue
    }
    out[mod] = m
  }
  return out
}

/** Longest AssemblyScript string `env.abort` decodes, bytes; longer ones are cut. */
const MAX_ABORT_STRING_BYTES = 4096

/**
 * Reads an AssemblyScript string: UTF-16LE code units at `ptr`, byte length as a u32 at `ptr − 4`.
 * Returns null for a null pointer and a placeholder for one outside memory.
 */
function asString (mem: WebAssembly.Memory, ptr: number): string | null {
  ptr >>>= 0
  if (ptr === 0) return null
  const size = mem.buffer.byteLength
  if (ptr < 4 || ptr > size) return `<bad string pointer ${ptr}>`
  const len = new DataView(mem.buffer).getUint32(ptr - 4, true)
  if (ptr + len > size) return `<bad string pointer ${ptr}>`
  const n = Math.min(len, MAX_ABORT_STRING_BYTES) & ~1
  return utf16.decode(new Uint8Array(mem.buffer, ptr, n)) + (n < len ? '…' : '')
}

/**
 * Checks a module's imports against its manifest before instantiation (DESIGN §4, load-time rule).
 * Every import must be a function granted by the manifest (`igor.*` by its capability, `env.abort`
 * always, `env.seed` with `rand`); imported memories, tables and globals are never granted (an
 * agent owns its memory; nothing outside it could be checkpointed).
 * When the module's bytes are given, granted imports must also have the signature in
 * {@link IMPORT_SIGNATURES} or, for `wasi_snapshot_preview1.*` (capability `wasi`), `WASI_SIGNATURES`
 * (otherwise a mismatch only shows as a confusing trap at the first call).
 * @param file the module's name for the error message
 * @param wasm the module's bytes (optional; enables the signature check)
 * @throws ModuleError, one line listing every offending import as `module.name` with the
 *   capability that would grant it, e.g.
 *   `agent.wasm: imports not granted by the manifest: igor.rand_bytes needs capability "rand"`,
 *   or with its wrong signature: `igor.clock_now has type () -> i32, expected () -> i64`
 */
export function checkImports (module: WebAssembly.Module, manifest: Manifest, file: string, wasm?: Uint8Array): void {
  const granted = grantedImports(manifest)
  const types = wasm === undefined ? null : functionImportTypes(wasm)
  const problems: string[] = []
  for (const imp of WebAssembly.Module.imports(module)) {
    const id = `${imp.module}.${imp.name}`
    if (imp.kind !== 'function') {
      problems.push(`${id} is an imported ${imp.kind}; agents may import only host functions (an agent defines its own memory, tables and globals)`)
      continue
    }
    if (granted.has(id)) {
      const want = IMPORT_SIGNATURES[id] ?? WASI_SIGNATURES[id]
      const have = types?.get(id)
      if (want !== undefined && have !== undefined && have !== want) problems.push(`${id} has type ${have}, expected ${want}`)
      continue
    }
    const cap = capabilityFor(imp.module, imp.name)
    problems.push(cap === null ? `${id}: no capability grants it` : `${id} needs capability "${cap}"`)
  }
  if (problems.length > 0) {
    throw new ModuleError(`${file}: imports not granted by the manifest: ${problems.join('; ')}`)
  }
}

/** The signature of every host function, as `(params) -> result` in wasm value types. */
export const IMPORT_SIGNATURES: Readonly<Record<string, string>> = {
  'igor.clock_now': '() -> i64',
  'igor.rand_bytes': '(i32, i32) -> i32',
  'igor.log_emit': '(i32, i32) -> ()',
  'igor.wallet_balance': '() -> i64',
  'igor.agent_did': '(i32, i32) -> i32',
  'igor.agent_sign': '(i32, i32, i32) -> i32',
  'igor.migrate_request': '(i32, i32) -> i32',
  'igor.inbox_next': '(i32, i32) -> i32',
  'igor.sleep_until': '(i64) -> i32',
  'igor.http_request': '(i32, i32, i32, i32, i32, i32, i32, i32) -> i32',
  'igor.message_send': '(i32, i32, i32, i32) -> i32',
  'env.abort': '(i32, i32, i32, i32) -> ()',
  'env.seed': '() -> f64',
}

const VALTYPES: Record<number, string> = { 0x7f: 'i32', 0x7e: 'i64', 0x7d: 'f32', 0x7c: 'f64', 0x7b: 'v128', 0x70: 'funcref', 0x6f: 'externref' }

/**
 * Reads the signatures of a module's function imports from its type and import sections
 * (WebAssembly core spec, binary format §5.5.4, §5.5.5), as `module.name` → `(i32, i32) -> i32`.
 * Returns null for anything it does not understand (non-MVP type forms, malformed bytes): the
 * signature check is then skipped and compilation reports the real problem.
 */
export function functionImportTypes (wasm: Uint8Array): Map<string, string> | null {
  let p = 8
  const n = wasm.length
  const u32 = (): number => {
    let v = 0; let shift = 0
    for (;;) {
      if (p >= n || shift > 28) throw new RangeError('leb')
      const b = wasm[p++]
      v += (b & 0x7f) * 2 ** shift
      if ((b & 0x80) === 0) return v
      shift += 7
    }
  }
  const name = (): string => {
    const len = u32()
    if (p + len > n) throw new RangeError('name')
    const s = new TextDecoder().decode(wasm.subarray(p, p + len))
    p += len
    return s
  }
  const limits = (): void => {
    const flags = wasm[p++]
    u32()
    if (flags & 1) u32()
  }
  try {
    if (n < 8 || wasm[0] !== 0 || wasm[1] !== 0x61 || wasm[2] !== 0x73 || wasm[3] !== 0x6d) return null
    const sigs: string[] = []
    const out = new Map<string, string>()
    while (p < n) {
      const id = wasm[p++]
      const size = u32()
      const end = p + size
      if (end > n) return null
      if (id === 1) {
        const count = u32()
        for (let i = 0; i < count; i++) {
          if (wasm[p++] !== 0x60) return null
          const vec = (): string[] => Array.from({ length: u32() }, () => {
            const t = VALTYPES[wasm[p++]]
            if (t === undefined) throw new RangeError('valtype')
            return t
          })
          const params = vec()
          const results = vec()
          const res = results.length === 0 ? '()' : results.length === 1 ? results[0] : `(${results.join(', ')})`
          sigs.push(`(${params.join(', ')}) -> ${res}`)
        }
      } else if (id === 2) {
        const count = u32()
        for (let i = 0; i < count; i++) {
          const mod = name()
          const field = name()
          const kind = wasm[p++]
          if (kind === 0) {
            const sig = sigs[u32()]
            if (sig === undefined) return null
            out.set(`${mod}.${field}`, sig)
          } else if (kind === 1) { p++; limits() } else if (kind === 2) { limits() } else if (kind === 3) { p += 2 } else return null
        }
        return out
      } else if (id > 2 && id !== 0) {
        return out // sections are ordered: past the imports, there were none
      }
      p = end
    }
    return out
  } catch {
    return null
  }
}
