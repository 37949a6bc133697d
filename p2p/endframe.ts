/**
 * The `end` frame of `/igor/migrate/1.0.0` (docs/PROTOCOL.md "`end` frame"): the agent's secret
 * seed, the offered checkpoint C's event log and I/O state, and — with a replay base P — P's I/O
 * state. Two rules live here:
 *
 * - **Bodies travel once.** An entry P's I/O state shares with C's (a pending inbox message of the
 *   same `seq` and id, an outbox message of the same number and id, an HTTP request of the same id
 *   and key, with equal bodies) is sent in `baseIo` with an empty body and listed in `baseShared`;
 *   the target takes the body from C's I/O state and checks the whole against P's `io` CID, so its
 *   check stays exact ({@link shareBaseIo}, {@link restoreBaseIo}).
 * - **One frame always fits.** The source encodes `end` before it offers: over {@link MAX_FRAME} it
 *   offers without the replay base (the target then accepts without replaying), and when C's log
 *   and I/O state alone are over it the agent cannot move now — a clear refusal before anything is
 *   sent ({@link planEnd}). The manifest limits do not bound an I/O state on their own (bounces,
 *   timer and `room` messages are never refused), so the bound is checked on the actual bytes.
 */
import { describe, encode } from '../checkpoint/cbor.ts'
import { cidOf } from '../checkpoint/hash.ts'
import { decodeIo, encodeIo } from '../checkpoint/io.ts'
import type { IoState } from '../checkpoint/io.ts'
import { NetworkError, RequestError } from './errors.ts'
import { MAX_FRAME } from './wire.ts'

/**
 * Which of P's entries `baseIo` carries without their body (each list ascending): pending inbox
 * messages by `seq`, outbox messages by number `n`, HTTP requests by `id`. The frame's
 * `baseShared` map `{outbox, pending, requests}` (canonical key order).
 */
export interface SharedBodies { pending: number[]; outbox: number[]; requests: number[] }

const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.compare(a, b) === 0

/**
 * P's I/O state with the bodies it shares with C's emptied, and which ones (null: nothing shared,
 * `baseIo` is P's blob as is). Checks its own work: when the target could not rebuild P's exact
 * bytes from the result, it returns P's blob whole.
 * @param baseIo P's I/O state blob; @param io C's (null when C has none)
 * @throws CheckpointError when either does not decode
 */
export function shareBaseIo (baseIo: Uint8Array, io: Uint8Array | null): { baseIo: Uint8Array; shared: SharedBodies | null } {
  if (io === null) return { baseIo, shared: null }
  const p = decodeIo(baseIo, 'replay base I/O state')
  const c = decodeIo(io, 'I/O state')
  const shared: SharedBodies = { pending: [], outbox: [], requests: [] }
  const cPending = new Map(c.pending.map((m) => [m.seq, m]))
  const cOutbox = new Map(c.outbox.map((o) => [o.n, o]))
  const cRequests = new Map(c.requests.map((r) => [r.id, r]))
  const pending = p.pending.map((m) => {
    const x = cPending.get(m.seq)
    if (m.body.length === 0 || x === undefined || !same(x.id, m.id) || !same(x.body, m.body)) return m
    shared.pending.push(m.seq)
    return { ...m, body: new Uint8Array(0) }
  })
  const outbox = p.outbox.map((o) => {
    const x = cOutbox.get(o.n)
    if (o.body.length === 0 || x === undefined || !same(x.id, o.id) || !same(x.body, o.body)) return o
    shared.outbox.push(o.n)
    return { ...o, body: new Uint8Array(0) }
  })
  const requests = p.requests.map((r) => {
    const x = cRequests.get(r.id)
    if (r.body.length === 0 || x === undefined || x.key !== r.key || !same(x.body, r.body)) return r
    shared.requests.push(r.id)
    return { ...r, body: new Uint8Array(0) }
  })
  if (shared.pending.length + shared.outbox.length + shared.requests.length === 0) return { baseIo, shared: null }
  const stripped = encodeIo({ ...p, pending, outbox, requests })
  try {
    if (cidOf(encodeIo(fill(decodeIo(stripped, 'baseIo'), shared, c))) === cidOf(baseIo)) return { baseIo: stripped, shared }
  } catch { /* fall through: send it whole */ }
  return { baseIo, shared: null }
}

/** P's state with the shared bodies taken from C's. @throws NetworkError naming the entry */
function fill (p: IoState, shared: SharedBodies, c: IoState): IoState {
  const bad = (what: string): never => { throw new NetworkError(`verify: "baseShared" lists ${what}`) }
  const pick = <T extends { body: Uint8Array }>(list: T[], keys: number[], keyOf: (x: T) => number, from: T[], match: (a: T, b: T) => boolean, name: string): T[] => {
    const want = new Set(keys)
    const src = new Map(from.map((x) => [keyOf(x), x]))
    const out = list.map((x) => {
      const k = keyOf(x)
      if (!want.has(k)) return x
      want.delete(k)
      const y = src.get(k)
      if (x.body.length !== 0) bad(`${name} ${k}, whose body was sent`)
      if (y === undefined || !match(x, y)) bad(`${name} ${k}, which the offered checkpoint's I/O state does not hold`)
      return { ...x, body: y!.body }
    })
    for (const k of want) bad(`${name} ${k}, which the replay base's I/O state does not hold`)
    return out
  }
  return {
    ...p,
    pending: pick(p.pending, shared.pending, (m) => m.seq, c.pending, (a, b) => same(a.id, b.id), 'pending message'),
    outbox: pick(p.outbox, shared.outbox, (o) => o.n, c.outbox, (a, b) => same(a.id, b.id), 'outbox message'),
    requests: pick(p.requests, shared.requests, (r) => r.id, c.requests, (a, b) => a.key === b.key, 'request'),
  }
}

/**
 * Reads a frame's `baseShared` field: a map `{outbox, pending, requests}` of ascending arrays of
 * integers 1 … 2^53 − 1 (each key optional, no other key).
 * @throws NetworkError `end: field "baseShared" …`
 */
export function sharedOf (v: unknown): SharedBodies {
  const fail = (msg: string): never => { throw new NetworkError(`end: field "baseShared" ${msg}`) }
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) return fail(`must be a map, got ${describe(v)}`)
  const m = v as Record<string, unknown>
  for (const k of Object.keys(m)) if (!['outbox', 'pending', 'requests'].includes(k)) fail(`has an unknown key ${JSON.stringify(k.slice(0, 40))}`)
  const list = (k: string): number[] => {
    const a = m[k] ?? []
    if (!Array.isArray(a)) return fail(`.${k} must be an array`)
    const out: number[] = []
    for (const x of a as unknown[]) {
      const n = typeof x === 'bigint' && x <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(x) : x
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1 || (out.length > 0 && n <= out[out.length - 1])) return fail(`.${k} must hold ascending integers ≥ 1`)
      out.push(n)
    }
    return out
  }
  return { pending: list('pending'), outbox: list('outbox'), requests: list('requests') }
}

/**
 * The target's rebuild of P's I/O state from `end`: `baseIo` decoded, the bodies `shared` lists
 * taken from C's state `io`; its canonical bytes must hash to `want` (P's header `io`).
 * @param shared null when `baseIo` is P's blob as is
 * @throws NetworkError `verify: …` (a listed entry missing on either side, or the CID differs)
 */
export function restoreBaseIo (baseIo: Uint8Array, shared: SharedBodies | null, io: Uint8Array | null, want: string): IoState {
  let p: IoState
  try { p = decodeIo(baseIo, `replay base I/O state ${want}`) } catch (e) { throw new NetworkError(`verify: ${(e as Error).message}`) }
  if (shared === null) {
    if (cidOf(baseIo) !== want) throw new NetworkError('verify: "baseIo" does not match the replay base\'s io CID')
    return p
  }
  if (io === null) throw new NetworkError('verify: "baseShared" names bodies of an I/O state the offered checkpoint does not have')
  let c: IoState
  try { c = decodeIo(io, 'I/O state') } catch (e) { throw new NetworkError(`verify: ${(e as Error).message}`) }
  const full = fill(p, shared, c)
  if (cidOf(encodeIo(full)) !== want) throw new NetworkError('verify: "baseIo" with the bodies "baseShared" names does not match the replay base\'s io CID')
  return full
}

/** What the source sends as `end` ({@link planEnd}). */
export interface EndPlan {
  /** the encoded `end` frame, at most the frame bound */
  frame: Uint8Array
  /** false: the replay base is left out of the offer (with it, `end` would be over the frame bound) */
  withBase: boolean
  /** P's I/O state bytes the frame carries after sharing, and the bytes sharing saved (0 without a base) */
  baseIoBytes: number; savedBytes: number
}

/**
 * Encodes the `end` frame `{t: "end", key, log, io?, baseIo?, baseShared?}` for C (`live`) and
 * its replay base's I/O state (`baseIo`: undefined without a base, null when P has none), sharing
 * bodies ({@link shareBaseIo}). Over `max` bytes with the base's I/O state, it plans without the
 * base; over it without, it refuses.
 * @param max the frame bound, bytes (default {@link MAX_FRAME}, what a target reads `end` under)
 * @throws RequestError (exit 2) `<name> cannot move now: its end frame would be N bytes (event log L,
 *   I/O state I), over the largest frame M; it can once fewer messages wait in its inbox and outbox`
 */
export function planEnd (name: string, live: { seed: Uint8Array; log: Uint8Array | null; io: Uint8Array | null }, baseIo: Uint8Array | null | undefined, max = MAX_FRAME): EndPlan {
  const own = { t: 'end', key: live.seed, log: live.log, ...(live.io === null ? {} : { io: live.io }) }
  if (baseIo !== undefined) {
    const s = baseIo === null ? { baseIo: null, shared: null } : shareBaseIo(baseIo, live.io)
    const frame = encode({ ...own, ...(s.baseIo === null ? {} : { baseIo: s.baseIo }), ...(s.shared === null ? {} : { baseShared: s.shared }) })
    const sent = s.baseIo?.length ?? 0
    if (frame.length <= max) return { frame, withBase: true, baseIoBytes: sent, savedBytes: (baseIo?.length ?? 0) - sent }
  }
  const frame = encode(own)
  if (frame.length > max) {
    throw new RequestError(`${name} cannot move now: its end frame would be ${frame.length} bytes (event log ${live.log?.length ?? 0}, I/O state ${live.io?.length ?? 0}), over the largest frame ${max}; it can once fewer messages wait in its inbox and outbox`)
  }
  return { frame, withBase: false, baseIoBytes: 0, savedBytes: 0 }
}
