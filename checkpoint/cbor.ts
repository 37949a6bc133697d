/**
 * Canonical CBOR for everything igord signs or stores (RFC 8949 §4.2.1 "core deterministic
 * encoding"), on top of cbor-x.
 *
 * Encoding: maps are written with their keys sorted by the bytes of the encoded key, integers in
 * their shortest form (JS numbers with |n| ≥ 2^32 become BigInt, BigInts below 2^32 become numbers),
 * byte strings untagged. Floats, `undefined`, `Date`, `Set`, typed arrays other than Uint8Array and
 * class instances are refused: signed data holds none.
 *
 * Decoding treats its input as hostile. Before cbor-x sees a byte, {@link checkWellFormed} walks the
 * item iteratively (no recursion), checks every length against the bytes that remain (so nothing is
 * allocated for a lie), caps nesting depth, and refuses tags, floats, `undefined`, indefinite
 * lengths, non-shortest integer heads, invalid UTF-8, non-text map keys and keys out of canonical
 * order (which also rules out duplicate keys). So `encode(decode(x))` reproduces `x` byte for byte.
 * Every failure is a {@link CheckpointError} naming `what` (usually a file name).
 */
import { isUtf8 } from 'node:buffer'
import { createRequire } from 'node:module'
import type { Decoder, Encoder } from 'cbor-x'
import { CheckpointError } from './errors.ts'

/**
 * cbor-x's encoder and decoder, loaded on first use: commands that never touch CBOR (`--version`,
 * `--help`, manifest checks) do not pay for loading cbor-x and its native `cbor-extract` addon.
 */
let codec: { encoder: Encoder, decoder: Decoder } | undefined
function cborX (): { encoder: Encoder, decoder: Decoder } {
  if (codec === undefined) {
    const lib = createRequire(import.meta.url)('cbor-x') as typeof import('cbor-x')
    codec = {
      encoder: new lib.Encoder({
        useRecords: false,
        variableMapSize: true,
        tagUint8Array: false,
        useTag259ForMaps: false,
        mapsAsObjects: true,
        pack: false,
        structuredClone: false,
        bundleStrings: false,
      } as ConstructorParameters<typeof Encoder>[0]),
      decoder: new lib.Decoder({ useRecords: false, mapsAsObjects: true } as ConstructorParameters<typeof Decoder>[0]),
    }
  }
  return codec
}

/** Self-described CBOR tag 55799 (RFC 8949 §3.4.6) as it prefixes every igord file: `d9 d9 f7`. */
export const FILE_MAGIC: Uint8Array = Uint8Array.of(0xd9, 0xd9, 0xf7)

/** Deepest nesting of arrays/maps {@link decode} accepts (igord's formats need 4). */
export const MAX_DEPTH = 16

const TWO32 = 2 ** 32
const TWO32N = 1n << 32n
const TWO64N = 1n << 64n
const keyCache = new Map<string, Uint8Array>()

function encodedKey (k: string | number): Uint8Array {
  if (typeof k === 'string') {
    let b = keyCache.get(k)
    if (b === undefined) {
      b = cborX().encoder.encode(k) as Uint8Array
      if (keyCache.size < 4096) keyCache.set(k, b)
    }
    return b
  }
  return cborX().encoder.encode(canon(k, 'map key')) as Uint8Array
}

function compareBytes (a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i]
  return a.length - b.length
}

/**
 * Returns a value cbor-x encodes canonically: objects and Maps become Maps sorted by encoded key
 * bytes, integers get their shortest representation.
 * @throws TypeError for floats, unsafe integers, integers outside (-2^64, 2^64), undefined, and any
 *   object that is not a plain object, Map, Array or Uint8Array (Date, Set, typed arrays, classes).
 */
function canon (v: unknown, path: string): unknown {
  switch (typeof v) {
    case 'string': case 'boolean': return v
    case 'number':
      if (!Number.isSafeInteger(v)) throw new TypeError(`cbor: ${path} is ${v}: only safe integers can be encoded (no floats in signed data)`)
      return (v >= TWO32 || v < -TWO32) ? BigInt(v) : v
    case 'bigint':
      if (v >= TWO64N || v <= -TWO64N) throw new TypeError(`cbor: ${path} is ${v}: outside the 64-bit CBOR integer range`)
      return (v >= TWO32N || v < -TWO32N) ? v : Number(v)
    case 'object': {
      if (v === null) return null
      if (v instanceof Uint8Array) {
        if (v.constructor !== Uint8Array && !Buffer.isBuffer(v)) throw new TypeError(`cbor: ${path} is a ${v.constructor.name}`)
        return v
      }
      if (Array.isArray(v)) {
        const out = new Array(v.length)
        for (let i = 0; i < v.length; i++) out[i] = canon(v[i], path)
        return out
      }
      let entries: [string | number, unknown][]
      if (v instanceof Map) entries = [...v.entries()]
      else {
        const proto = Object.getPrototypeOf(v)
        if (proto !== Object.prototype && proto !== null) throw new TypeError(`cbor: ${path} is a ${(v as object).constructor?.name ?? 'object'} (only plain objects, Maps, Arrays and Uint8Arrays)`)
        entries = Object.entries(v)
      }
      const keyed = entries.map(([k, x]) => {
        if (typeof k !== 'string' && typeof k !== 'number') throw new TypeError(`cbor: ${path} has a ${typeof k} map key`)
        return { k, x: canon(x, `${path}.${k}`), b: encodedKey(k) }
      })
      keyed.sort((p, q) => compareBytes(p.b, q.b))
      const m = new Map<unknown, unknown>()
      for (const e of keyed) {
        if (m.has(e.k)) throw new TypeError(`cbor: ${path} has the key ${e.k} twice`)
        m.set(typeof e.k === 'number' ? canon(e.k, 'map key') : e.k, e.x)
      }
      return m
    }
    default:
      throw new TypeError(`cbor: ${path} is ${typeof v}: cannot be encoded`)
  }
}

/**
 * Encodes `v` as canonical CBOR (RFC 8949 §4.2.1). Accepts plain objects, Maps (string or integer
 * keys), Arrays, Uint8Arrays (untagged byte strings), strings, booleans, null, safe-integer numbers
 * and BigInts in (-2^64, 2^64) (-2^64 itself is refused: cbor-x would write it as a bignum tag).
 * @returns fresh bytes (a Buffer view; do not use its `.buffer`).
 * @throws TypeError on floats, `undefined`, Dates, Sets, other typed arrays, class instances.
 */
export function encode (v: unknown): Uint8Array {
  return cborX().encoder.encode(canon(v, 'value')) as Uint8Array
}

/** `encode(v)` prefixed with the self-described CBOR tag 55799 (`d9 d9 f7`), the start of every igord file. */
export function encodeFile (v: unknown): Uint8Array {
  const body = encode(v)
  const out = new Uint8Array(3 + body.length)
  out.set(FILE_MAGIC, 0)
  out.set(body, 3)
  return out
}

/**
 * Writes the head of a CBOR data item — major type `major` (0–7) and argument `n`, a non-negative
 * safe integer, in its shortest form (RFC 8949 §3, §4.2.1) — into `b` at offset `p`, which must have
 * 9 bytes free. The one head writer of the hand-framed encoders (checkpoint/live.ts, entries.ts,
 * state.ts, hostcalls/eventlog.ts and {@link encodeFlatMap}).
 * @returns the offset just past the head.
 */
export function putHead (b: Uint8Array, p: number, major: number, n: number): number {
  const m = major << 5
  if (n < 24) { b[p] = m | n; return p + 1 }
  if (n < 0x100) { b[p] = m | 24; b[p + 1] = n; return p + 2 }
  if (n < 0x10000) { b[p] = m | 25; b[p + 1] = n >>> 8; b[p + 2] = n & 255; return p + 3 }
  const word = (at: number, w: number): void => { b[at] = w >>> 24; b[at + 1] = (w >>> 16) & 255; b[at + 2] = (w >>> 8) & 255; b[at + 3] = w & 255 }
  if (n < TWO32) { b[p] = m | 26; word(p + 1, n); return p + 5 }
  b[p] = m | 27; word(p + 1, Math.floor(n / TWO32)); word(p + 5, n % TWO32)
  return p + 9
}

/** Encoded text keys of {@link encodeFlatMap}, with each key set's canonical order. */
const flatOrder = new Map<string, { keys: string[]; heads: Uint8Array[] }>()

/**
 * {@link encode} of a plain object whose values are all strings, booleans, null, Uint8Arrays,
 * non-negative safe-integer numbers or BigInts in [0, 2^64) — a checkpoint header, encoded once per
 * checkpoint — framed by hand in one buffer (the key set's canonical order is computed once). Any
 * other value: {@link encode} itself. Same bytes either way (test/cbor.test.ts).
 * @throws TypeError as {@link encode}.
 */
export function encodeFlatMap (o: Record<string, unknown>): Uint8Array {
  const names = Object.keys(o)
  const id = names.join('\u0000')
  let order = flatOrder.get(id)
  if (order === undefined) {
    const heads = names.map((k) => encodedKey(k))
    const idx = names.map((_, i) => i).sort((a, b) => compareBytes(heads[a], heads[b]))
    for (let i = 1; i < idx.length; i++) if (compareBytes(heads[idx[i]], heads[idx[i - 1]]) === 0) return encode(o)
    order = { keys: idx.map((i) => names[i]), heads: idx.map((i) => heads[i]) }
    if (flatOrder.size < 64) flatOrder.set(id, order)
  }
  let size = 9
  for (let k = 0; k < order.keys.length; k++) {
    const v = o[order.keys[k]]
    size += order.heads[k].length + 9
    if (typeof v === 'string') size += 3 * v.length
    else if (v instanceof Uint8Array) { if (v.constructor !== Uint8Array && !Buffer.isBuffer(v)) return encode(o); size += v.length } else if (typeof v === 'number') { if (!Number.isSafeInteger(v) || v < 0) return encode(o) } else if (typeof v === 'bigint') { if (v < 0n || v >= TWO64N) return encode(o) } else if (v !== null && typeof v !== 'boolean') return encode(o)
  }
  const b = Buffer.allocUnsafe(size)
  let p = putHead(b, 0, 5, order.keys.length)
  for (let k = 0; k < order.keys.length; k++) {
    b.set(order.heads[k], p); p += order.heads[k].length
    const v = o[order.keys[k]]
    if (typeof v === 'string') p = putText(b, p, v)
    else if (v instanceof Uint8Array) p = putBytes(b, p, v)
    else if (typeof v === 'number' || typeof v === 'bigint') p = putInt(b, p, v)
    else b[p++] = v === null ? 0xf6 : v === true ? 0xf5 : 0xf4
  }
  return b.subarray(0, p)
}

/** Bytes of the head {@link putHead} writes for the argument `n` (a non-negative safe integer): 1, 2, 3, 5 or 9. */
export function headBytes (n: number): number {
  return n < 24 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n < TWO32 ? 5 : 9
}

/** Writes `s` as a CBOR text string (head, then UTF-8) into `b` at `p`, which must have room for it. @returns the offset just past it. */
export function putText (b: Buffer, p: number, s: string): number {
  p = putHead(b, p, 3, Buffer.byteLength(s))
  return p + b.write(s, p, 'utf8')
}

/** Writes `x` as a CBOR byte string into `b` at `p`, which must have room for it. @returns the offset just past it. */
export function putBytes (b: Uint8Array, p: number, x: Uint8Array): number {
  p = putHead(b, p, 2, x.length)
  b.set(x, p)
  return p + x.length
}

/**
 * Bytes of the integer `v` as {@link putInt} writes it (1, 2, 3, 5 or 9), or -1 when it is not one
 * {@link encode} accepts: a number that is not a safe integer, a BigInt outside (-2^64, 2^64).
 */
export function intBytes (v: number | bigint): number {
  if (typeof v === 'number') return Number.isSafeInteger(v) ? headBytes(v < 0 ? -1 - v : v) : -1
  const n = v < 0n ? -1n - v : v
  return n >= TWO64N ? -1 : n < TWO32N ? headBytes(Number(n)) : 9
}

/**
 * Writes the integer `v` (one {@link intBytes} accepts) into `b` at `p` in its shortest form: major
 * type 0, or 1 with argument -1 - v for a negative one (RFC 8949 §3.1), as {@link encode} does.
 * @returns the offset just past it.
 */
export function putInt (b: Buffer, p: number, v: number | bigint): number {
  if (typeof v === 'number') return v < 0 ? putHead(b, p, 1, -1 - v) : putHead(b, p, 0, v)
  const major = v < 0n ? 1 : 0
  const n = v < 0n ? -1n - v : v
  if (n < TWO32N) return putHead(b, p, major, Number(n))
  b[p] = (major << 5) | 27
  b.writeBigUInt64BE(n, p + 1)
  return p + 9
}

function truncated (what: string, need: number, at: number, have: number): CheckpointError {
  return new CheckpointError(`${what}: truncated (need ${need} bytes at offset ${at}, file has ${have})`)
}

/**
 * Walks one CBOR data item starting at `start` without recursion and checks it is well formed and
 * canonical in the subset igord uses: unsigned/negative integers in shortest form (negative ones above -2^64), byte strings,
 * UTF-8 text strings, arrays, maps with text keys in strictly increasing encoded-byte order,
 * false/true/null. Lengths are checked against the bytes that remain before anything else.
 * @param offsetBase added to offsets in messages (bytes before `bytes[0]` in the file).
 * @returns the offset just past the item.
 * @throws CheckpointError `<what>: truncated (need N bytes at offset X, file has Y)`, or naming the
 *   offset and the construct refused (tag, float, undefined, indefinite length, non-canonical
 *   integer, invalid UTF-8, map key order, nesting deeper than {@link MAX_DEPTH}).
 */
export function checkWellFormed (bytes: Uint8Array, start: number, what: string, offsetBase = 0): number {
  const end = bytes.length
  const have = end + offsetBase
  // per open array/map: items left, is map, start/end of the previous key (maps)
  const left: number[] = []; const isMap: boolean[] = []; const pks: number[] = []; const pke: number[] = []
  let depth = 0
  let p = start
  for (;;) {
    // position of this item inside its container
    let isKey = false
    if (depth > 0) {
      const d = depth - 1
      if (isMap[d]) isKey = (left[d] & 1) === 0
      left[d]--
    }
    const itemStart = p
    if (p >= end) throw truncated(what, 1, p + offsetBase, have)
    const ib = bytes[p]
    const major = ib >> 5
    const ai = ib & 31
    let val: number
    let hl: number
    if (ai < 24) { val = ai; hl = 1 } else if (ai === 24) {
      if (p + 2 > end) throw truncated(what, 2, p + offsetBase, have)
      val = bytes[p + 1]; hl = 2
      if (val < 24 && major !== 7) throw new CheckpointError(`${what}: non-canonical CBOR integer head at offset ${p + offsetBase}`)
    } else if (ai === 25) {
      if (p + 3 > end) throw truncated(what, 3, p + offsetBase, have)
      val = (bytes[p + 1] << 8) | bytes[p + 2]; hl = 3
      if (val < 0x100 && major !== 7) throw new CheckpointError(`${what}: non-canonical CBOR integer head at offset ${p + offsetBase}`)
    } else if (ai === 26) {
      if (p + 5 > end) throw truncated(what, 5, p + offsetBase, have)
      val = ((bytes[p + 1] << 24) >>> 0) + ((bytes[p + 2] << 16) | (bytes[p + 3] << 8) | bytes[p + 4]); hl = 5
      if (val < 0x10000 && major !== 7) throw new CheckpointError(`${what}: non-canonical CBOR integer head at offset ${p + offsetBase}`)
    } else if (ai === 27) {
      if (p + 9 > end) throw truncated(what, 9, p + offsetBase, have)
      const hi = ((bytes[p + 1] << 24) >>> 0) + ((bytes[p + 2] << 16) | (bytes[p + 3] << 8) | bytes[p + 4])
      const lo = ((bytes[p + 5] << 24) >>> 0) + ((bytes[p + 6] << 16) | (bytes[p + 7] << 8) | bytes[p + 8])
      val = hi * TWO32 + lo; hl = 9
      if (hi === 0 && major !== 7) throw new CheckpointError(`${what}: non-canonical CBOR integer head at offset ${p + offsetBase}`)
      // -2^64 is outside the encoder's range (cbor-x would re-encode it as a bignum tag)
      if (major === 1 && hi === 0xffffffff && lo === 0xffffffff) throw new CheckpointError(`${what}: integer -2^64 at offset ${p + offsetBase} is out of range`)
    } else if (ai === 31) {
      throw new CheckpointError(`${what}: indefinite-length CBOR item at offset ${p + offsetBase} is not allowed`)
    } else {
      throw new CheckpointError(`${what}: malformed CBOR (reserved additional info ${ai}) at offset ${p + offsetBase}`)
    }
    if (isKey && major !== 3) throw new CheckpointError(`${what}: map key at offset ${p + offsetBase} is not a text string`)
    p += hl
    switch (major) {
      case 0: case 1: break
      case 2: case 3:
        if (val > end - p) throw truncated(what, val, p + offsetBase, have)
        if (major === 3 && val > 0 && !isUtf8(bytes.subarray(p, p + val))) throw new CheckpointError(`${what}: invalid UTF-8 in text string at offset ${itemStart + offsetBase}`)
        p += val
        break
      case 4: case 5: {
        const items = major === 5 ? val * 2 : val
        if (items > end - p) throw truncated(what, items, p + offsetBase, have)
        if (items > 0) {
          if (depth >= MAX_DEPTH) throw new CheckpointError(`${what}: CBOR nested deeper than ${MAX_DEPTH} at offset ${itemStart + offsetBase}`)
          left[depth] = items; isMap[depth] = major === 5; pks[depth] = -1; pke[depth] = -1
          depth++
          continue // the container's items follow; key bookkeeping happens per item
        }
        break
      }
      case 6: throw new CheckpointError(`${what}: CBOR tag ${val} at offset ${itemStart + offsetBase} is not allowed`)
      case 7:
        if (ai === 20 || ai === 21 || ai === 22) break
        if (ai === 23) throw new CheckpointError(`${what}: CBOR undefined at offset ${itemStart + offsetBase} is not allowed`)
        if (ai >= 25 && ai <= 27) throw new CheckpointError(`${what}: floating-point value at offset ${itemStart + offsetBase} is not allowed`)
        throw new CheckpointError(`${what}: CBOR simple value at offset ${itemStart + offsetBase} is not allowed`)
    }
    if (isKey) {
      const d = depth - 1
      if (pks[d] >= 0) {
        // strictly increasing encoded bytes (RFC 8949 §4.2.1); equal = duplicate key
        let c = 0
        const la = pke[d] - pks[d]; const lb = p - itemStart; const n = Math.min(la, lb)
        for (let i = 0; i < n && c === 0; i++) c = bytes[pks[d] + i] - bytes[itemStart + i]
        if (c === 0) c = la - lb
        if (c >= 0) throw new CheckpointError(`${what}: map key at offset ${itemStart + offsetBase} is ${c === 0 ? 'a duplicate' : 'out of canonical order'}`)
      }
      pks[d] = itemStart; pke[d] = p
    }
    // close finished containers
    while (depth > 0 && left[depth - 1] === 0) depth--
    if (depth === 0) return p
  }
}

/**
 * Decodes one canonical CBOR item that must fill `bytes` exactly (see {@link checkWellFormed}).
 * Maps become plain objects, byte strings Buffers that are views into `bytes` (not copies),
 * 8-byte integers BigInts, smaller integers numbers.
 * @param what names the input in errors (a file name, "header of x.ckpt").
 * @throws CheckpointError naming `what`: empty, truncated, trailing bytes, or a refused construct.
 */
export function decode (bytes: Uint8Array, what: string, offsetBase = 0): unknown {
  if (bytes.length === 0) throw new CheckpointError(`${what}: empty`)
  const end = checkWellFormed(bytes, 0, what, offsetBase)
  if (end !== bytes.length) throw new CheckpointError(`${what}: ${bytes.length - end} trailing bytes after the CBOR item at offset ${end + offsetBase}`)
  try {
    return cborX().decoder.decode(bytes)
  } catch (e) {
    throw new CheckpointError(`${what}: cannot decode CBOR: ${(e as Error).message.split('\n')[0]}`)
  }
}

/**
 * Decodes an igord file: the tag 55799 prefix `d9 d9 f7` then one canonical CBOR item.
 * @throws CheckpointError `<what>: empty file`, `<what>: not an igord file (no d9 d9 f7 tag …)`,
 *   `<what>: truncated (…)`, trailing bytes, or a refused construct.
 */
export function decodeFile (bytes: Uint8Array, what: string): unknown {
  if (bytes.length === 0) throw new CheckpointError(`${what}: empty file`)
  if (bytes.length < 3 || bytes[0] !== 0xd9 || bytes[1] !== 0xd9 || bytes[2] !== 0xf7) {
    if (bytes.length < 3 && FILE_MAGIC.subarray(0, bytes.length).every((b, i) => b === bytes[i])) throw truncated(what, 3, 0, bytes.length)
    throw new CheckpointError(`${what}: not an igord file (does not start with the CBOR tag 55799 d9 d9 f7)`)
  }
  if (bytes.length === 3) throw truncated(what, 1, 3, 3)
  return decode(bytes.subarray(3), what, 3)
}

// ---- typed field access for decoded maps ---------------------------------------------------------

/** A decoded CBOR map (a plain object). */
export type CborMap = Record<string, unknown>

/**
 * Checks that `v` is a decoded CBOR map and that it has no keys outside `allowed`.
 * @throws CheckpointError `<what>: <label> is not a CBOR map` / `<what>: unknown field "<k>" in <label>`.
 */
export function asMap (v: unknown, what: string, label: string, allowed?: readonly string[]): CborMap {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) throw new CheckpointError(`${what}: ${label} is not a CBOR map`)
  if (allowed !== undefined) for (const k in v) if (!allowed.includes(k)) throw new CheckpointError(`${what}: unknown field "${k}" in ${label}`)
  return v as CborMap
}

/**
 * Reads an unsigned 64-bit integer field (number or BigInt in the CBOR) as a BigInt.
 * @throws CheckpointError `<what>: field "<key>" must be an unsigned integer …`.
 */
export function bigintField (m: CborMap, key: string, what: string): bigint {
  const v = m[key]
  if (typeof v === 'bigint' && v >= 0n) return v
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v)
  throw new CheckpointError(`${what}: field "${key}" must be an unsigned integer, got ${describe(v)}`)
}

/**
 * Reads an unsigned integer field that must fit a JS number (≤ 2^53 − 1).
 * @throws CheckpointError `<what>: field "<key>" must be an unsigned integer …`.
 */
export function numberField (m: CborMap, key: string, what: string, max = Number.MAX_SAFE_INTEGER): number {
  let v = m[key]
  if (typeof v === 'bigint' && v <= BigInt(Number.MAX_SAFE_INTEGER)) v = Number(v)
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max) return v
  throw new CheckpointError(`${what}: field "${key}" must be an unsigned integer ≤ ${max}, got ${describe(v)}`)
}

/**
 * Reads a byte-string field, optionally of an exact length (bytes).
 * @throws CheckpointError `<what>: field "<key>" must be a byte string …`.
 */
export function bytesField (m: CborMap, key: string, what: string, length?: number): Uint8Array {
  const v = m[key]
  if (!(v instanceof Uint8Array)) throw new CheckpointError(`${what}: field "${key}" must be a byte string, got ${describe(v)}`)
  if (length !== undefined && v.length !== length) throw new CheckpointError(`${what}: field "${key}" must be ${length} bytes, got ${v.length}`)
  return v
}

/**
 * Reads a text-string field.
 * @throws CheckpointError `<what>: field "<key>" must be a text string …`.
 */
export function textField (m: CborMap, key: string, what: string): string {
  const v = m[key]
  if (typeof v !== 'string') throw new CheckpointError(`${what}: field "${key}" must be a text string, got ${describe(v)}`)
  return v
}

/** A short description of a decoded value for error messages ("missing", "a text string", …). */
export function describe (v: unknown): string {
  if (v === undefined) return 'nothing (missing)'
  if (v === null) return 'null'
  if (v instanceof Uint8Array) return `a ${v.length}-byte byte string`
  if (Array.isArray(v)) return `an array of ${v.length}`
  if (typeof v === 'string') return 'a text string'
  if (typeof v === 'object') return 'a map'
  return `${typeof v} ${String(v)}`
}
