import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { bigintField, checkWellFormed, decode, decodeFile, encode, encodeFile, encodeFlatMap, numberField } from '../checkpoint/cbor.ts'
import { CheckpointError } from '../checkpoint/errors.ts'

const hex = (u: Uint8Array) => Buffer.from(u).toString('hex')
const unhex = (h: string) => Uint8Array.from(Buffer.from(h, 'hex'))
function throwsCk (fn: () => unknown, re: RegExp): void {
  try { fn() } catch (e) {
    assert.instance(e, CheckpointError)
    assert.match((e as Error).message, re)
    return
  }
  assert.unreachable('expected a CheckpointError matching ' + re)
}

test('map keys are sorted by encoded bytes whatever the insertion order (RFC 8949 §4.2.1)', () => {
  const a = encode({ b: 1, a: new Uint8Array([9]) })
  assert.is(hex(a), 'a26161410961620' + '1')
  assert.is(hex(encode({ a: new Uint8Array([9]), b: 1 })), hex(a))
  assert.is(hex(encode(new Map<string, unknown>([['b', 1], ['a', new Uint8Array([9])]]))), hex(a))
  // shorter keys first, then bytewise; JS would put "10" and "9" first
  assert.is(hex(encode({ aa: 1, b: 2, 10: 3, 9: 4 })), hex(encode({ 9: 4, b: 2, 10: 3, aa: 1 })))
  assert.is(hex(encode({ aa: 1, b: 2, 10: 3, 9: 4 })), 'a4' + '6139' + '04' + '6162' + '02' + '623130' + '03' + '626161' + '01')
  // nested objects too
  assert.is(hex(encode({ x: { z: 1, y: 2 } })), hex(encode({ x: { y: 2, z: 1 } })))
})

test('integers take their shortest form; |n| >= 2^32 is a 64-bit integer, never a float', () => {
  assert.is(hex(encode(2 ** 40)), '1b0000010000000000')
  assert.is(hex(encode(2n ** 40n)), '1b0000010000000000')
  assert.is(hex(encode(5n)), '05')
  assert.is(hex(encode(2 ** 32 - 1)), '1affffffff')
  assert.is(hex(encode(2 ** 32)), '1b0000000100000000')
  assert.is(hex(encode(-(2 ** 32))), '3affffffff')
  assert.is(hex(encode(-(2 ** 32) - 1)), '3b0000000100000000')
  assert.is(hex(encode(2n ** 64n - 1n)), '1bffffffffffffffff')
  assert.is(hex(encode(1700000000000)), '1b0000018bcfe56800')
  assert.throws(() => encode(2n ** 64n), /64-bit/)
  // -2^64 fits CBOR's major type 1, but cbor-x writes it as a bignum tag: refused both ways (found by test/fuzz.test.ts)
  assert.is(hex(encode(-(2n ** 64n) + 1n)), '3bfffffffffffffffe')
  assert.throws(() => encode(-(2n ** 64n)), /64-bit/)
  assert.throws(() => decode(unhex('3bffffffffffffffff'), 't'), /-2\^64 at offset 0 is out of range/)
  assert.throws(() => encode(Number.MAX_SAFE_INTEGER + 1), /safe integers/)
})

test('8-byte integers decode as BigInt, smaller ones as numbers; field helpers accept both', () => {
  assert.is(decode(unhex('1b0000010000000000'), 't'), 2n ** 40n)
  assert.is(decode(unhex('1affffffff'), 't'), 2 ** 32 - 1)
  const m = decode(encode({ f: 2n ** 63n, s: 7 }), 't') as Record<string, unknown>
  assert.is(bigintField(m, 'f', 't'), 2n ** 63n)
  assert.is(bigintField(m, 's', 't'), 7n)
  assert.is(numberField(m, 's', 't'), 7)
  throwsCk(() => numberField(m, 'f', 'x.cbor'), /x\.cbor: field "f" must be an unsigned integer/)
  throwsCk(() => bigintField(m, 'nope', 'x.cbor'), /x\.cbor: field "nope" .*missing/)
})

test('floats, undefined, Date, Set, typed arrays and class instances are refused', () => {
  assert.throws(() => encode(1.5), /no floats/)
  assert.throws(() => encode({ a: NaN }), /no floats/)
  assert.throws(() => encode({ a: undefined }), /undefined/)
  assert.throws(() => encode(new Date()), /Date/)
  assert.throws(() => encode(new Set([1])), /Set/)
  assert.throws(() => encode(new Float64Array(1)), /Float64Array/)
  class K { x = 1 }
  assert.throws(() => encode(new K()), /K/)
})

test('encodeFlatMap gives encode\'s bytes for flat maps, and falls back to it for anything else', () => {
  const cases: Record<string, unknown>[] = [
    {},
    { v: 1, agent: 'did:key:z6Mk', code: 'bafkrei', tick: 0, prev: null, state: new Uint8Array(32).fill(1), fuel: 0n, budget: 2n ** 64n - 1n, price: 2n ** 32n, time: 2 ** 32, host: 'hôst €', status: 'running' },
    { a: 23, bb: 24, c: 255, dd: 256, e: 65535, ff: 65536, g: 2 ** 32 - 1, hh: 2 ** 53 - 1, i: true, jj: false, k: Buffer.alloc(24, 9), ll: new Uint8Array(300), m: 'x'.repeat(23), nn: 'y'.repeat(24), o: 'z'.repeat(70000) },
    { zz: 1, a: 2, bbb: 3, b: 4 }, // insertion order does not matter
    { neg: -1, x: 1 }, { n: [1, 2] }, { m: { a: 1 } }, { big: -5n }, // the generic encoder
  ]
  for (const o of cases) assert.is(hex(encodeFlatMap(o)), hex(encode(o)))
  assert.throws(() => encodeFlatMap({ u: undefined }), TypeError)
  assert.throws(() => encodeFlatMap({ f: 1.5 }), TypeError)
})

test('round trip and re-encoding reproduces the bytes', () => {
  const v = { header: new Uint8Array([1, 2, 3]), list: [[0, 'bafk'], [1, null]], ok: true, big: 2n ** 50n, neg: -3 }
  const b = encode(v)
  const d = decode(b, 't') as Record<string, unknown>
  assert.equal(hex(encode(d)), hex(b))
  assert.equal([...(d.header as Uint8Array)], [1, 2, 3])
  assert.is(d.big, 2n ** 50n)
})

test('decodeFile requires the self-described tag 55799 and the exact length', () => {
  const f = encodeFile({ a: 1 })
  assert.is(hex(f.subarray(0, 3)), 'd9d9f7')
  assert.equal(decodeFile(f, 'f.cbor'), { a: 1 })
  throwsCk(() => decodeFile(new Uint8Array(0), 'f.cbor'), /^f\.cbor: empty file$/)
  throwsCk(() => decodeFile(encode({ a: 1 }), 'f.cbor'), /f\.cbor: not an igord file/)
  throwsCk(() => decodeFile(f.subarray(0, f.length - 1), 'f.cbor'), /f\.cbor: truncated \(need 1 bytes at offset 6, file has 6\)/)
  throwsCk(() => decodeFile(f.subarray(0, 2), 'f.cbor'), /truncated/)
  throwsCk(() => decodeFile(Uint8Array.from([...f, 0]), 'f.cbor'), /1 trailing bytes/)
})

test('hostile input: lengths are checked before anything is allocated', () => {
  // byte string claiming 2^64-1 bytes; array claiming 4 billion items; map claiming 1000 pairs
  throwsCk(() => decode(unhex('5bffffffffffffffff00'), 'h'), /h: truncated/)
  throwsCk(() => decode(unhex('9affffffff00'), 'h'), /h: truncated/)
  throwsCk(() => decode(unhex('b903e8'), 'h'), /h: truncated/)
  // deep nesting is refused without recursion
  throwsCk(() => decode(new Uint8Array(100000).fill(0x81), 'h'), /nested deeper/)
})

test('decoder refuses tags, floats, undefined, indefinite lengths and non-canonical input', () => {
  throwsCk(() => decode(unhex('d81b826465766169006178'), 'h'), /CBOR tag 27/) // tag 27 would call a global by name in cbor-x
  throwsCk(() => decode(unhex('a16161f93e00'), 'h'), /floating-point/)
  throwsCk(() => decode(unhex('f7'), 'h'), /undefined/)
  throwsCk(() => decode(unhex('9f01ff'), 'h'), /indefinite-length/)
  throwsCk(() => decode(unhex('1805'), 'h'), /non-canonical CBOR integer/)
  throwsCk(() => decode(unhex('a2616201616101'), 'h'), /out of canonical order/)
  throwsCk(() => decode(unhex('a2616101616102'), 'h'), /duplicate/)
  throwsCk(() => decode(unhex('a10101'), 'h'), /not a text string/)
  throwsCk(() => decode(unhex('62c328'), 'h'), /invalid UTF-8/)
  assert.is(checkWellFormed(unhex('8201a1616102'), 0, 'h'), 6)
})

test.run()
