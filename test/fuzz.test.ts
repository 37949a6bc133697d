/**
 * Bounded, seeded fuzzing of every decoder that reads bytes from a file or a peer: canonical CBOR
 * (checkpoint/cbor.ts), checkpoint headers, live checkpoints (`.ckpt`), history entries and history
 * segments, event-log
 * segments, manifests, migration frames (p2p/wire.ts decodeFrame and the field readers each frame's
 * receiver uses) and offers (p2p/migrate.ts decodeOffer).
 *
 * Each decoder gets valid encodings mutated at the byte level (bit flips, byte sets, truncation,
 * extension, splices and duplications, CBOR length heads blown up to 2^32/2^64) and at the structure
 * level (a decoded field replaced by a value of another type or range, deleted, added; headers
 * re-signed so the checks behind the signature are reached). Every result must be either
 * - a value that re-encodes to exactly the input bytes (canonical) or passes the module's own
 *   validation, or
 * - the module's own error class (CheckpointError / ManifestError / NetworkError) whose message
 *   names the file or protocol step it was given,
 * and never a TypeError, RangeError or other crash, nor a call slower than {@link SLOW_MS}.
 *
 * The seed is printed; `FUZZ_SEED=<n>` reproduces a run and `FUZZ_ITERS=<n>` (per decoder and kind
 * of mutation; default 150) extends it. A failure message names the seed, decoder, iteration and
 * the input's hex.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { decode, decodeFile, encode, encodeFile } from '../checkpoint/cbor.ts'
import { CheckpointError, ManifestError } from '../checkpoint/errors.ts'
import { cidOf, sha256 } from '../checkpoint/hash.ts'
import { decodeHeader, encodeHeader, signHeader } from '../checkpoint/header.ts'
import type { CheckpointHeader } from '../checkpoint/header.ts'
import { generateIdentity } from '../checkpoint/identity.ts'
import { decodeLive, encodeLive, liveItems } from '../checkpoint/live.ts'
import type { LiveCheckpoint } from '../checkpoint/live.ts'
import { PAGE_SIZE, stateRoot } from '../checkpoint/state.ts'
import type { GlobalValue } from '../checkpoint/state.ts'
import { FRAME_HEAD_BYTES, frameHead, scanSegment, SEGMENT_MAGIC } from '../checkpoint/segment.ts'
import { decodeEntry, encodeEntry } from '../checkpoint/writer.ts'
import { EventLog } from '../hostcalls/eventlog.ts'
import type { TickRecord } from '../hostcalls/eventlog.ts'
import { CAPABILITIES, parseManifest } from '../hostcalls/manifest.ts'
import { NetworkError } from '../p2p/errors.ts'
import { decodeOffer } from '../p2p/migrate.ts'
import { bytesOf, decodeFrame, textOf } from '../p2p/wire.ts'
import type { Frame } from '../p2p/wire.ts'
import { prng } from './prng.ts'

const SEED = process.env.FUZZ_SEED !== undefined && process.env.FUZZ_SEED !== '' ? Number(process.env.FUZZ_SEED) : Math.floor(Math.random() * 2 ** 31)
const ITERS = Number(process.env.FUZZ_ITERS ?? 150)
if (!Number.isSafeInteger(SEED) || !Number.isSafeInteger(ITERS) || ITERS < 1) throw new Error(`FUZZ_SEED=${process.env.FUZZ_SEED} / FUZZ_ITERS=${process.env.FUZZ_ITERS}: integers expected`)
console.log(`fuzz seed ${SEED}, ${ITERS} iterations per decoder and mutation kind (reproduce with FUZZ_SEED=${SEED} FUZZ_ITERS=${ITERS})`)
/** A single decode slower than this is a failure (a hang in the making); generous for a loaded machine. */
const SLOW_MS = 5000

// ---- deterministic randomness ------------------------------------------------------------------

let rnd = prng(SEED)
const int = (n: number) => Math.floor(rnd() * n)
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')

// ---- byte-level mutations ----------------------------------------------------------------------

const INTERESTING = [0x00, 0x01, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1f, 0x20, 0x3b, 0x40, 0x5b, 0x5f, 0x60, 0x7b, 0x7f, 0x80, 0x9b, 0x9f, 0xa0, 0xbb, 0xbf, 0xc0, 0xd9, 0xf4, 0xf5, 0xf6, 0xf7, 0xf9, 0xfa, 0xfb, 0xff]

/** One random byte-level mutation of `b` (a fresh array); `others` are splice donors. */
function mutateBytes (b: Uint8Array, others: Uint8Array[]): Uint8Array {
  const out = Buffer.from(b)
  const at = () => int(Math.max(1, out.length))
  switch (int(9)) {
    case 0: { // flip 1–4 bits
      const n = 1 + int(4)
      for (let k = 0; k < n && out.length > 0; k++) out[at()] ^= 1 << int(8)
      return out
    }
    case 1: { // set bytes to interesting values
      const n = 1 + int(3)
      for (let k = 0; k < n && out.length > 0; k++) out[at()] = pick(INTERESTING)
      return out
    }
    case 2: return out.subarray(0, int(out.length)) // truncate
    case 3: { // extend with random or interesting bytes
      const extra = Buffer.alloc(1 + int(16))
      for (let k = 0; k < extra.length; k++) extra[k] = rnd() < 0.5 ? int(256) : pick(INTERESTING)
      return Buffer.concat([out, extra])
    }
    case 4: { // splice a piece of another valid encoding (or of itself) in
      const donor = rnd() < 0.5 ? b : pick(others)
      const s = int(donor.length); const e = s + int(Math.min(64, donor.length - s) + 1)
      const p = at()
      return Buffer.concat([out.subarray(0, p), donor.subarray(s, e), out.subarray(p + int(8))])
    }
    case 5: { // delete a range
      const p = at()
      return Buffer.concat([out.subarray(0, p), out.subarray(p + 1 + int(16))])
    }
    case 6: { // duplicate a range
      const p = at(); const e = p + 1 + int(32)
      return Buffer.concat([out.subarray(0, e), out.subarray(p, e), out.subarray(e)])
    }
    case 7: { // blow up a length: overwrite a head with a 4- or 8-byte length near the maximum
      const p = at(); const major = pick([2, 3, 4, 5])
      const big = rnd() < 0.5
        ? [(major << 5) | 27, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, int(256)]
        : [(major << 5) | 26, 0xff, 0xff, 0xff, int(256)]
      const head = Buffer.from(big)
      return Buffer.concat([out.subarray(0, p), head, out.subarray(p + (rnd() < 0.5 ? head.length : 1))])
    }
    default: { // grow an existing head's value: bump the byte after a 1/2/4/8-byte head marker
      for (let tries = 0; tries < 16; tries++) {
        const p = at()
        const ai = out[p] & 31
        if (ai >= 24 && ai <= 27 && p + 1 < out.length) { out[p + 1] = 0xff; return out }
      }
      out[at()] = 0xff
      return out
    }
  }
}

// ---- structure-level mutations -----------------------------------------------------------------

/** A random CBOR-encodable value (bounded size and depth). */
function randomValue (depth = 0): unknown {
  switch (int(depth > 2 ? 9 : 11)) {
    case 0: return int(30)
    case 1: return pick([-1, -(2 ** 31), 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, -(2 ** 53 - 1), 65535, 65536, 65537, 4294967296])
    case 2: return pick([(1n << 64n) - 1n, 1n << 63n, -(1n << 64n) + 1n, -(1n << 63n), 1n << 53n])
    case 3: return pick(['', 'x', 'running', 'handoff', 'paused', 'finished', 'i32', 'i64', 'f32', 'f64', 'v128', 'offer', 'did:key:z', 'bafkrei', 'a'.repeat(5000), '\u00e9\u{1F600}'])
    case 4: return cidOf(Buffer.from([int(256)]))
    case 5: return Buffer.alloc(pick([0, 1, 4, 8, 16, 31, 32, 33, 64, 65]), int(256))
    case 6: return null
    case 7: return rnd() < 0.5
    case 8: return Buffer.alloc(pick([PAGE_SIZE, PAGE_SIZE - 1]), int(256))
    case 9: return Array.from({ length: int(4) }, () => randomValue(depth + 1))
    default: {
      const o: Record<string, unknown> = {}
      for (let k = int(4); k > 0; k--) o[pick(['t', 'v', 'a', 'tick', 'header', 'pages', 'x'])] = randomValue(depth + 1)
      return o
    }
  }
}

/** A deep copy of a decoded value (byte strings copied, so the original stays intact). */
function clone (v: unknown): unknown {
  if (v instanceof Uint8Array) return Buffer.from(v)
  if (Array.isArray(v)) return v.map(clone)
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, clone(x)]))
  return v
}

/** Every container (map or array) inside `v`, with `v` itself first. */
function containers (v: unknown, out: (unknown[] | Record<string, unknown>)[] = []): (unknown[] | Record<string, unknown>)[] {
  if (v instanceof Uint8Array || v === null || typeof v !== 'object') return out
  out.push(v as unknown[] | Record<string, unknown>)
  for (const x of Array.isArray(v) ? v : Object.values(v)) containers(x, out)
  return out
}

/** One random structural mutation of a decoded value (returns a mutated deep copy). */
function mutateValue (v: unknown, keys: readonly string[]): unknown {
  const root = clone(v)
  const cs = containers(root)
  if (cs.length === 0) return randomValue()
  const c = pick(cs)
  if (Array.isArray(c)) {
    const i = int(c.length + 1)
    switch (int(5)) {
      case 0: if (c.length > 0) c.splice(int(c.length), 1); break
      case 1: c.splice(i, 0, randomValue()); break
      case 2: if (c.length > 0) c.splice(i, 0, clone(c[int(c.length)])); break
      case 3: if (c.length > 1) { const a = int(c.length); const b = int(c.length);[c[a], c[b]] = [c[b], c[a]] } break
      default: if (c.length > 0) c[int(c.length)] = randomValue()
    }
  } else {
    const ks = Object.keys(c)
    switch (int(3)) {
      case 0: if (ks.length > 0) delete c[pick(ks)]; break
      case 1: c[pick([...keys, 'zz', 'extra'])] = randomValue(); break
      default: if (ks.length > 0) c[pick(ks)] = randomValue()
    }
  }
  return root
}

// ---- the harness -------------------------------------------------------------------------------

interface Target {
  /** the decoder's name in messages */
  name: string
  /** decodes `bytes`; returns nothing (the oracle for success lives inside) */
  run: (bytes: Uint8Array) => void
  /** the module's error class and a pattern its messages must match (names the file / step) */
  error: new (...a: never[]) => Error
  names: RegExp
}

interface Stats { ok: number; refused: number }

/** Runs `t` on `input`; anything but success or the module's own error fails with a reproducible message. */
function attempt (t: Target, input: Uint8Array, label: string, stats: Stats): void {
  const t0 = performance.now()
  try {
    t.run(input)
    stats.ok++
  } catch (e) {
    const ms = performance.now() - t0
    const where = `${t.name} (${label}), FUZZ_SEED=${SEED} FUZZ_ITERS=${ITERS}, input ${hex(input).slice(0, 400)}${input.length > 200 ? '…' : ''} (${input.length} bytes)`
    if (!(e instanceof t.error)) throw new Error(`${where}: threw ${(e as Error)?.constructor?.name}: ${(e as Error)?.stack ?? String(e)}`)
    if (!t.names.test((e as Error).message)) throw new Error(`${where}: the message does not name the input: ${(e as Error).message}`)
    if (/(?<!CBOR )\bundefined\b|\bNaN\b|\[object /.test((e as Error).message)) throw new Error(`${where}: unclear message: ${(e as Error).message}`)
    if (ms > SLOW_MS) throw new Error(`${where}: took ${ms.toFixed(0)} ms`)
    stats.refused++
    return
  }
  const ms = performance.now() - t0
  if (ms > SLOW_MS) throw new Error(`${t.name} (${label}), FUZZ_SEED=${SEED}: took ${ms.toFixed(0)} ms`)
}

/**
 * Fuzzes `t`: every valid input must decode; then ITERS byte mutations and, when `structure` is
 * given (decoded value → re-encoded bytes after a structural mutation), ITERS structural ones.
 */
function fuzz (t: Target, valid: Uint8Array[], structure?: (bytes: Uint8Array) => Uint8Array): Stats {
  rnd = prng(SEED ^ hashName(t.name)) // each decoder its own stream: adding one does not shift the others
  const stats: Stats = { ok: 0, refused: 0 }
  for (const v of valid) {
    try { t.run(v) } catch (e) { throw new Error(`${t.name}: a valid input is refused: ${(e as Error).stack}`) }
  }
  for (let i = 0; i < ITERS; i++) {
    let b = pick(valid)
    const rounds = 1 + int(3)
    for (let r = 0; r < rounds; r++) b = mutateBytes(b, valid)
    attempt(t, b, `byte mutation ${i}`, stats)
  }
  if (structure !== undefined) {
    for (let i = 0; i < ITERS; i++) {
      let b: Uint8Array
      try { b = structure(pick(valid)) } catch (e) { throw new Error(`${t.name}: the structural mutator failed (a test bug): ${(e as Error).stack}`) }
      attempt(t, b, `structure mutation ${i}`, stats)
    }
  }
  return stats
}

function hashName (s: string): number {
  let h = 2166136261
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619)
  return h >>> 0
}

/** Asserts `a` and `b` are the same bytes (the canonical round trip). */
function sameBytes (a: Uint8Array, b: Uint8Array, what: string): void {
  if (Buffer.compare(Buffer.from(a), Buffer.from(b)) !== 0) throw new Error(`${what}: decoded, but does not re-encode to the same bytes (not canonical):\n in  ${hex(b).slice(0, 300)}\n out ${hex(a).slice(0, 300)}`)
}

// ---- valid inputs ------------------------------------------------------------------------------

const id = generateIdentity()
const wasm = Buffer.from('\0asm\x01\0\0\0' + 'w'.repeat(40))
const manifestBytes = Buffer.from('{"capabilities":{"clock":{"version":1}},"resource_limits":{"max_fuel_per_tick":1000000}}')
const records: TickRecord[] = [
  { tick: 0, events: [], fuel: 10n, result: null, trap: null },
  { tick: 1, events: [['clock_now', 1234567890123n], ['rand_bytes', Uint8Array.of(1, 2, 3)], ['log_emit', 'hello']], fuel: 5000n, result: 0, trap: null },
  { tick: 2, events: [['wallet_balance', 0n]], fuel: 1n << 40n, result: -1, trap: 'unreachable' },
]
const segment = EventLog.encodeSegment(records)
const globals: GlobalValue[] = [{ index: 0, type: 'i32', bytes: Uint8Array.of(1, 2, 3, 4) }, { index: 3, type: 'i64', bytes: new Uint8Array(8).fill(9) }, { index: 4, type: 'v128', bytes: new Uint8Array(16).fill(2) }]

function header (o: Partial<CheckpointHeader> & { pageCount: number; pages: [number, Uint8Array][] }): CheckpointHeader {
  const fuel = o.fuel ?? 123456n; const budget = o.budget ?? 999n
  const state = stateRoot({ pages: o.pageCount, digests: o.pages.map(([i, p]) => [i, sha256(p)]), globals, fuel, budget })
  const h: CheckpointHeader = { v: 1, agent: id.did, code: cidOf(wasm), manifest: cidOf(manifestBytes), tick: 7, epoch: 0, prev: cidOf(Buffer.from('p')), state, log: cidOf(segment), fuel, budget, price: 1000n, host: '12D3KooWhost', time: 1_700_000_000_000, status: 'running' }
  const { pageCount: _c, pages: _p, ...rest } = o
  return { ...h, ...rest }
}

function live (pageCount: number, pages: [number, Uint8Array][], extra: Partial<CheckpointHeader> = {}): Omit<LiveCheckpoint, 'parsed'> {
  const hb = encodeHeader(header({ pageCount, pages, ...extra }))
  return { header: hb, sig: signHeader(id, hb), wasm, manifest: manifestBytes, pageCount, pages, globals, log: segment, seed: id.seed, io: null }
}
const liveSmall = live(2, [])
const livePaged = live(3, [[1, Buffer.alloc(PAGE_SIZE, 5)]], { tick: 9, status: 'paused', reason: 'three failures' })
const liveNoLog = live(1, [], { log: null, tick: 0, prev: null })
const liveFiles = [liveSmall, livePaged, { ...liveNoLog, log: null }].map((c) => Buffer.concat(encodeLive(c)))

const headers = [
  liveSmall.header,
  livePaged.header,
  encodeHeader(header({ pageCount: 1, pages: [], status: 'handoff', target: '12D3KooWtarget', epoch: 3 })),
  encodeHeader(header({ pageCount: 1, pages: [], prev: null, log: null, fuel: (1n << 64n) - 1n })),
]

const pageCid = cidOf(Buffer.alloc(PAGE_SIZE, 5))
const entries = [
  encodeEntry({ headerBytes: liveSmall.header, sig: liveSmall.sig, base: true, pageCount: 2, pages: [], globals }),
  encodeEntry({ headerBytes: livePaged.header, sig: livePaged.sig, base: false, pageCount: 3, pages: [[0, null], [1, pageCid]], globals }),
  encodeEntry({ headerBytes: headers[2], sig: signHeader(id, headers[2]), base: true, pageCount: 65536, pages: [[65535, pageCid]], globals: [] }),
]

const cborValues = [
  encode({ a: 1, b: [1, 2, { c: 'x', d: null }], e: Buffer.from('bytes'), f: -5, g: 1n << 40n, h: true, i: false, '': '' }),
  encode([[[[[]]]], {}, 0, -(2 ** 32), (1n << 64n) - 1n, -(1n << 64n) + 1n, 'é😀']),
  encodeFile({ v: 1, x: Buffer.alloc(300, 1) }),
  segment, headers[0], entries[1],
]

const manifests = [
  manifestBytes,
  Buffer.from('{}'),
  Buffer.from(JSON.stringify({ capabilities: Object.keys(CAPABILITIES), resource_limits: { max_memory_bytes: 65536 * 4, max_consecutive_failures: 2, max_cpu_millis: 0 }, migration_policy: { enabled: false, max_price_per_second: 5, preferred_regions: ['eu'] }, http: { allow: ['127.0.0.1:8080', 'api.example.com'], timeout_ms: 1000 } }, null, 2)),
  Buffer.from(JSON.stringify({ capabilities: { clock: { version: 1, options: { a: 1 } }, rand: {} } })),
]

function offerFrame (c: Omit<LiveCheckpoint, 'parsed'>, base?: Omit<LiveCheckpoint, 'parsed'>): Frame {
  const rows = (x: Omit<LiveCheckpoint, 'parsed'>) => x.pages.map(([i, p]) => [i, cidOf(p)])
  return {
    t: 'offer', v: 1, id: 'offer-1', name: 'heartbeat', header: c.header, sig: c.sig, manifest: c.manifest,
    pageCount: c.pageCount, pages: rows(c), globals: c.globals.map((g) => [g.index, g.type, g.bytes]), from: ['/ip4/127.0.0.1/tcp/1'],
    ...(base === undefined ? {} : { base: { header: base.header, sig: base.sig, pageCount: base.pageCount, pages: rows(base), globals: base.globals.map((g) => [g.index, g.type, g.bytes]) } }),
  }
}
const baseLive = live(3, [[1, Buffer.alloc(PAGE_SIZE, 5)]], { tick: 6 })
const childLive = live(3, [[1, Buffer.alloc(PAGE_SIZE, 5)]], { tick: 8, prev: cidOf(baseLive.header) })
const offers = [encode(offerFrame(liveSmall)), encode(offerFrame(childLive, baseLive))]

/** The frames of docs/PROTOCOL.md with the fields their receivers read. */
const frames: Frame[] = [
  { t: 'accept', want: [cidOf(wasm), pageCid] },
  { t: 'refuse', reason: 'capability "rand" not offered by this node' },
  { t: 'blobs', b: [wasm, Buffer.alloc(100, 3)] },
  { t: 'end', key: id.seed, log: segment },
  { t: 'end', key: id.seed, log: null },
  { t: 'pending', replayed: 3 },
  { t: 'handoff', header: headers[2], sig: signHeader(id, headers[2]) },
  { t: 'started' },
  { t: 'status', name: 'heartbeat', agent: id.did, offer: cidOf(liveSmall.header), id: 'offer-1', tick: 7 },
  { t: 'status', state: 'handoff', header: headers[2], sig: signHeader(id, headers[2]) },
  { t: 'status', state: 'pending' },
]

/**
 * What each frame's receiver reads from it, through the same field readers (p2p/wire.ts
 * bytesOf/textOf); a malformed field must be a NetworkError naming the step.
 */
function readFrame (f: Frame): void {
  switch (f.t) {
    case 'accept': if (!Array.isArray(f.want)) throw new NetworkError('offer: malformed accept: "want" must be an array'); break
    case 'refuse': textOf(f, 'reason', 'offer'); break
    case 'blobs': if (!Array.isArray(f.b)) throw new NetworkError('transfer: field "b" must be an array of byte strings'); break
    case 'end': bytesOf(f, 'key', 'end', 32); if (f.log !== null) bytesOf(f, 'log', 'end'); break
    case 'handoff': bytesOf(f, 'header', 'handoff'); bytesOf(f, 'sig', 'handoff', 64); break
    case 'status':
      if (f.state === 'handoff') { bytesOf(f, 'header', 'status'); bytesOf(f, 'sig', 'status', 64) }
      break
  }
}

// ---- the tests ---------------------------------------------------------------------------------

const report = (name: string, s: Stats) => console.log(`  ${name}: ${s.ok} decoded, ${s.refused} refused`)
const reencode = (v: unknown) => encode(v)
const structureOf = (keys: readonly string[], wrap: (v: unknown) => Uint8Array = reencode, unwrap: (b: Uint8Array) => unknown = (b) => decode(b, 'seed')) =>
  (b: Uint8Array) => wrap(mutateValue(unwrap(b), keys))

test('canonical CBOR: decode / decodeFile', () => {
  const t: Target = {
    name: 'cbor.decode',
    run: (b) => { const v = decode(b, 'fuzz.cbor'); sameBytes(encode(v), b, 'cbor.decode') },
    error: CheckpointError,
    names: /^fuzz\.cbor: /,
  }
  report(t.name, fuzz(t, cborValues.map((b) => b[0] === 0xd9 ? b.subarray(3) : b), structureOf(['a', 'v'])))
  const f: Target = {
    name: 'cbor.decodeFile',
    run: (b) => { const v = decodeFile(b, 'fuzz.file'); sameBytes(encodeFile(v), b, 'cbor.decodeFile') },
    error: CheckpointError,
    names: /^fuzz\.file: /,
  }
  report(f.name, fuzz(f, cborValues.map((b) => b[0] === 0xd9 ? b : encodeFile(decode(b, 'seed')))))
})

const HEADER_FIELDS = ['v', 'agent', 'code', 'manifest', 'tick', 'epoch', 'prev', 'state', 'log', 'fuel', 'budget', 'price', 'host', 'time', 'status', 'target', 'reason']

test('checkpoint header: decodeHeader', () => {
  const t: Target = {
    name: 'decodeHeader',
    run: (b) => { const h = decodeHeader(b, 'h.ckpt'); sameBytes(encodeHeader(h), b, 'decodeHeader') },
    error: CheckpointError,
    names: /^h\.ckpt/,
  }
  report(t.name, fuzz(t, headers, structureOf(HEADER_FIELDS)))
})

/** A live checkpoint or entry with its header mutated and re-signed (reaches the checks behind the signature). */
function resignedHeader (b: Uint8Array, file: (m: Record<string, unknown>) => Record<string, unknown>): Uint8Array {
  const m = decodeFile(b, 'seed') as Record<string, unknown>
  const h = mutateValue(decode(m.header as Uint8Array, 'seed'), HEADER_FIELDS)
  const hb = encode(h)
  return encodeFile(file({ ...(clone(m) as Record<string, unknown>), header: hb, sig: signHeader(id, hb) }))
}

test('history entry: decodeEntry', () => {
  const t: Target = {
    name: 'decodeEntry',
    run: (b) => { const e = decodeEntry(b, 'e.cbor'); sameBytes(encodeEntry(e), b, 'decodeEntry') },
    error: CheckpointError,
    names: /^e\.cbor/,
  }
  const keys = ['header', 'sig', 'base', 'pageCount', 'pages', 'globals']
  report(t.name, fuzz(t, entries, (b) => rnd() < 0.3 ? resignedHeader(b, (m) => m) : structureOf(keys, encodeFile, (x) => decodeFile(x, 'seed'))(b)))
})

test('history segment: scanSegment (frames, damaged bytes, torn tails)', () => {
  // a segment of several entries; every result must account for the bytes: intact frames (each
  // re-framed to the same bytes), damaged ranges and a torn tail, in order, without overlap
  const segments = [1, 3, 6].map((n) => Buffer.concat([SEGMENT_MAGIC, ...entries.slice(0, n).map((e) => Buffer.concat([frameHead(e), e]))]))
  const t: Target = {
    name: 'scanSegment',
    run: (b) => {
      const s = scanSegment(b, 'x.hist')
      const spans: [number, number][] = [...s.entries.map((e): [number, number] => [e.at, e.at + FRAME_HEAD_BYTES + e.bytes.length]), ...s.damaged]
      if (s.tail !== null && b.length > 0) spans.push([s.tail, b.length])
      spans.sort((x, y) => x[0] - y[0])
      let at = s.tail === 0 ? 0 : SEGMENT_MAGIC.length // tail 0: a file cut or zeroed inside its magic
      for (const [from, to] of spans) {
        if (from !== at || to <= from || to > b.length) throw new Error(`scanSegment: spans ${JSON.stringify(spans)} do not tile ${b.length} bytes`)
        at = to
      }
      if (b.length > SEGMENT_MAGIC.length && at !== b.length) throw new Error(`scanSegment: spans end at ${at} of ${b.length}`)
      for (const e of s.entries) sameBytes(Buffer.concat([frameHead(e.bytes), e.bytes]), b.subarray(e.at, e.at + FRAME_HEAD_BYTES + e.bytes.length), 'scanSegment frame')
    },
    error: CheckpointError,
    names: /^x\.hist: /,
  }
  report(t.name, fuzz(t, segments))
})

test('live checkpoint: decodeLive', () => {
  const t: Target = {
    name: 'decodeLive',
    // a torn or zeroed tail after the whole checkpoint is ignored by design (docs/FORMAT.md "Delta records"): the checkpoint read is the first item's
    run: (b) => { const c = decodeLive(b, 'a.ckpt'); const ends = liveItems(b, 'a.ckpt'); if (ends.length === 1) sameBytes(Buffer.concat(encodeLive(c)), b.subarray(0, ends[0]), 'decodeLive') },
    error: CheckpointError,
    names: /^a\.ckpt\b/,
  }
  const keys = ['v', 'key', 'log', 'sig', 'wasm', 'pages', 'header', 'globals', 'manifest', 'pageCount']
  report(t.name, fuzz(t, liveFiles, (b) => rnd() < 0.3 ? resignedHeader(b, (m) => m) : structureOf(keys, encodeFile, (x) => decodeFile(x, 'seed'))(b)))
})

test('event log segment: EventLog.decodeSegment', () => {
  const t: Target = {
    name: 'decodeSegment',
    run: (b) => { const r = EventLog.decodeSegment(b, 'seg.cbor'); sameBytes(EventLog.encodeSegment(r), b, 'decodeSegment') },
    error: CheckpointError,
    names: /^seg\.cbor: /,
  }
  report(t.name, fuzz(t, [segment, EventLog.encodeSegment([])], structureOf(['v', 'ticks', 'tick', 'events', 'fuel', 'result', 'trap'])))
})

test('manifest: parseManifest', () => {
  const t: Target = {
    name: 'parseManifest',
    run: (b) => {
      const m = parseManifest(b, 'm.json')
      if (m.raw !== b) throw new Error('raw is not the input')
      if (!(m.maxMemoryBytes > 0 && m.maxMemoryBytes % 65536 === 0)) throw new Error(`accepted max memory ${m.maxMemoryBytes}`)
      if (!(m.maxFuelPerTick > 0n) || !(m.maxFailures >= 1)) throw new Error('accepted a non-positive limit')
      for (const k of m.capabilities.keys()) if (!Object.hasOwn(CAPABILITIES, k)) throw new Error(`accepted capability ${k}`)
    },
    error: ManifestError,
    names: /^m\.json: /,
  }
  const keys = ['capabilities', 'resource_limits', 'migration_policy', 'max_memory_bytes', 'max_fuel_per_tick', 'version', 'options', 'enabled', 'clock']
  const json = (v: unknown) => Buffer.from(JSON.stringify(v, (_k, x) => typeof x === 'bigint' ? Number(x) : x instanceof Uint8Array ? hex(x) : x))
  report(t.name, fuzz(t, manifests, structureOf(keys, json, (b) => JSON.parse(Buffer.from(b).toString('utf8')))))
})

test('migration frames: decodeFrame and the receivers\' field readers', () => {
  const t: Target = {
    name: 'decodeFrame',
    run: (b) => {
      const f = decodeFrame(b, 'transfer', 'peerX', ['accept', 'refuse', 'blobs', 'end', 'pending', 'handoff', 'started', 'status'])
      sameBytes(encode(f), b, 'decodeFrame')
      readFrame(f)
    },
    error: NetworkError,
    names: /^(transfer|offer|end|handoff|status)\b/,
  }
  report(t.name, fuzz(t, frames.map((f) => encode(f)), structureOf(['t', 'want', 'reason', 'b', 'key', 'log', 'header', 'sig', 'state', 'replayed'])))
})

test('migration offer: decodeOffer', () => {
  const t: Target = {
    name: 'decodeOffer',
    run: (b) => {
      const o = decodeOffer(decodeFrame(b, 'offer', 'peerX', ['offer']))
      if (!/^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/.test(o.name)) throw new Error(`accepted name ${o.name}`)
      for (let k = 1; k < o.pages.length; k++) if (o.pages[k][0] <= o.pages[k - 1][0]) throw new Error('accepted unordered pages')
    },
    error: NetworkError,
    names: /^offer\b/,
  }
  const keys = ['t', 'v', 'id', 'name', 'header', 'sig', 'manifest', 'pageCount', 'pages', 'globals', 'from', 'base']
  /** an offer with its header (or its base's) mutated and re-signed */
  const resigned = (b: Uint8Array): Uint8Array => {
    const f = decode(b, 'seed') as Record<string, unknown>
    const inBase = f.base !== undefined && rnd() < 0.5
    const holder = (inBase ? f.base : f) as Record<string, unknown>
    const hb = encode(mutateValue(decode(holder.header as Uint8Array, 'seed'), HEADER_FIELDS))
    const out = clone(f) as Record<string, unknown>
    const h2 = (inBase ? out.base : out) as Record<string, unknown>
    h2.header = hb; h2.sig = signHeader(id, hb)
    return encode(out)
  }
  report(t.name, fuzz(t, offers, (b) => rnd() < 0.3 ? resigned(b) : structureOf(keys)(b)))
})

test('the fuzzer finds a planted bug (a decoder that throws a TypeError)', () => {
  const t: Target = {
    name: 'planted',
    run: (b) => { const v = decode(b, 'p.cbor') as { a?: { length: number } }; if (typeof v === 'object' && v !== null && 'a' in v) void (v.a as unknown as string).startsWith('x') },
    error: CheckpointError,
    names: /^p\.cbor: /,
  }
  assert.throws(() => fuzz(t, [encode({ b: 1 })], structureOf(['a'])), /threw TypeError/)
})

test.run()
