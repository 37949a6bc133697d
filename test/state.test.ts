import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { encode } from '../checkpoint/cbor.ts'
import { CheckpointError } from '../checkpoint/errors.ts'
import { sha256 } from '../checkpoint/hash.ts'
import { isZeroPage, PAGE_SIZE, stateRoot, StateRootCache, stateRootOfTable, type GlobalValue } from '../checkpoint/state.ts'

const hex = (u: Uint8Array) => Buffer.from(u).toString('hex')
const d = (n: number) => sha256(Uint8Array.of(n))
const g = (index: number, type: GlobalValue['type'], bytes: number[]): GlobalValue => ({ index, type, bytes: Uint8Array.from(bytes) })

/** The definition in DESIGN §7, through the generic canonical encoder. */
function reference (pages: number, digests: [number, Uint8Array][], globals: GlobalValue[], fuel: bigint, budget: bigint): string {
  return hex(sha256(encode({ pages, digests, globals: globals.map((x) => [x.index, x.type, x.bytes]), fuel, budget })))
}

test('stateRoot = SHA-256 of canonical CBOR {pages, digests, globals, fuel, budget}', () => {
  const cases: [number, [number, Uint8Array][], GlobalValue[], bigint, bigint][] = [
    [0, [], [], 0n, 0n],
    [1, [[0, d(1)]], [g(0, 'i32', [1, 0, 0, 0])], 5n, 1_000_000n],
    [1024, [[0, d(1)], [23, d(2)], [300, d(3)], [1023, d(4)]], [g(2, 'i64', [1, 2, 3, 4, 5, 6, 7, 8]), g(70000, 'v128', new Array(16).fill(9)), g(5, 'f64', [0, 0, 0, 0, 0, 0, 0xf8, 0x7f])], 2n ** 40n, 2n ** 64n - 1n],
    [65536, [[65535, d(5)]], [g(1, 'f32', [0, 0, 0xc0, 0x7f])], 4294967295n, 4294967296n],
  ]
  for (const [pages, digests, globals, fuel, budget] of cases) {
    assert.is(hex(stateRoot({ pages, digests, globals, fuel, budget })), reference(pages, digests, [...globals].sort((a, b) => a.index - b.index), fuel, budget))
    const table: (Uint8Array | undefined)[] = []
    for (const [i, x] of digests) table[i] = x
    assert.is(hex(stateRootOfTable(pages, table, globals, fuel, budget)), hex(stateRoot({ pages, digests, globals, fuel, budget })))
  }
})

test('input order of digests and globals does not matter; every component does', () => {
  const base = { pages: 4, digests: [[0, d(1)], [2, d(2)]] as [number, Uint8Array][], globals: [g(0, 'i32', [1, 0, 0, 0]), g(1, 'i32', [2, 0, 0, 0])], fuel: 10n, budget: 20n }
  const r = hex(stateRoot(base))
  assert.is(hex(stateRoot({ ...base, digests: [...base.digests].reverse(), globals: [...base.globals].reverse() })), r)
  assert.is.not(hex(stateRoot({ ...base, pages: 5 })), r)
  assert.is.not(hex(stateRoot({ ...base, fuel: 11n })), r)
  assert.is.not(hex(stateRoot({ ...base, budget: 19n })), r)
  assert.is.not(hex(stateRoot({ ...base, digests: [[0, d(1)], [3, d(2)]] })), r)
  // NaN payloads survive: two different NaN bit patterns give two roots
  const nan1 = stateRoot({ ...base, globals: [g(0, 'f32', [0, 0, 0xc0, 0x7f])] })
  const nan2 = stateRoot({ ...base, globals: [g(0, 'f32', [1, 0, 0xc0, 0x7f])] })
  assert.is.not(hex(nan1), hex(nan2))
})

test('bad state is refused', () => {
  const ok = { pages: 2, digests: [[0, d(1)]] as [number, Uint8Array][], globals: [] as GlobalValue[], fuel: 0n, budget: 0n }
  const bad: [Partial<typeof ok>, RegExp][] = [
    [{ digests: [[2, d(1)]] }, /page 2 is outside memory of 2 pages/],
    [{ digests: [[1, d(1)], [1, d(2)]] }, /page 1 appears twice/],
    [{ digests: [[0, new Uint8Array(31)]] }, /31 bytes, expected 32/],
    [{ globals: [g(0, 'i64', [1, 2, 3, 4])] }, /global 0 \(i64\) must be 8 bytes/],
    [{ globals: [{ index: 0, type: 'i128' as 'i32', bytes: new Uint8Array(4) }] }, /unknown type/],
    [{ fuel: -1n }, /fuel -1 is not an unsigned 64-bit/],
    [{ budget: 2n ** 64n }, /budget .* is not an unsigned 64-bit/],
    [{ pages: 65537 }, /page count 65537 out of range/],
  ]
  for (const [patch, re] of bad) assert.throws(() => stateRoot({ ...ok, ...patch }), (e: Error) => e instanceof CheckpointError && re.test(e.message))
})

test('StateRootCache gives stateRoot over successive checkpoints: digests changed, pages added and dropped, sizes, errors', () => {
  const cache = new StateRootCache()
  const gl = [g(0, 'i32', [1, 0, 0, 0])]
  let digests: [number, Uint8Array][] = []
  for (let i = 0; i < 300; i += 3) digests.push([i, d(i)])
  const check = (pages: number, fuel: bigint) => assert.is(hex(cache.root({ pages, digests, globals: gl, fuel, budget: 7n })), reference(pages, digests, gl, fuel, 7n))
  check(300, 1n)
  check(300, 2n ** 40n) // same rows, another prefix length
  digests = digests.map(([i, x]): [number, Uint8Array] => [i, i % 9 === 0 ? d(i + 1000) : x]) // some rows changed (new arrays)
  check(300, 3n)
  digests = [...digests.slice(0, 10), [31, d(31)] as [number, Uint8Array], ...digests.slice(10)].sort((a, b) => a[0] - b[0]) // a page added
  check(300, 4n)
  digests = digests.filter(([i]) => i !== 31 && i !== 0) // pages dropped
  check(300, 5n)
  digests = [...digests].reverse() // input order does not matter
  assert.is(hex(cache.root({ pages: 300, digests, globals: gl, fuel: 6n, budget: 7n })), reference(300, [...digests].reverse(), gl, 6n, 7n))
  digests = []
  check(0, 0n)
  // errors drop the cache; the next call is exact again
  const rows: [number, Uint8Array][] = [[0, d(1)], [5, d(2)]]
  cache.root({ pages: 6, digests: rows, globals: gl, fuel: 1n, budget: 1n })
  assert.throws(() => cache.root({ pages: 5, digests: rows, globals: gl, fuel: 1n, budget: 1n }), /page 5 is outside memory of 5 pages/)
  assert.throws(() => cache.root({ pages: 6, digests: [[0, d(1)], [5, new Uint8Array(31)]], globals: gl, fuel: 1n, budget: 1n }), /digest of page 5 is 31 bytes/)
  assert.is(hex(cache.root({ pages: 6, digests: rows, globals: gl, fuel: 1n, budget: 1n })), reference(6, rows, gl, 1n, 1n))
})

test('isZeroPage', () => {
  const p = new Uint8Array(PAGE_SIZE)
  assert.ok(isZeroPage(p))
  p[PAGE_SIZE - 1] = 1
  assert.not.ok(isZeroPage(p))
})

test.run()
