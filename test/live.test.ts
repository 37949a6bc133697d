import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { encode, encodeFile } from '../checkpoint/cbor.ts'
import { CheckpointError, StorageError } from '../checkpoint/errors.ts'
import { cidOf, sha256 } from '../checkpoint/hash.ts'
import { encodeHeader, signHeader } from '../checkpoint/header.ts'
import { generateIdentity } from '../checkpoint/identity.ts'
import { checkLiveState, decodeLive, encodeDelta, encodeLive, readLive, type LiveCheckpoint } from '../checkpoint/live.ts'
import { PAGE_SIZE, stateRoot, type GlobalValue } from '../checkpoint/state.ts'

const id = generateIdentity()
const wasm = Buffer.from('\0asm\x01\0\0\0' + 'x'.repeat(3000))
const manifest = Buffer.from('{"capabilities":{}}')
const log = Buffer.from('event log segment')

function make (): Omit<LiveCheckpoint, 'parsed'> {
  const pages: [number, Uint8Array][] = [[0, Buffer.alloc(PAGE_SIZE, 1)], [5, Buffer.alloc(PAGE_SIZE, 7)]]
  const globals: GlobalValue[] = [{ index: 1, type: 'i32', bytes: Uint8Array.of(1, 2, 3, 4) }, { index: 9, type: 'f64', bytes: new Uint8Array(8).fill(0xff) }]
  const fuel = 123456789012n; const budget = 99n
  const state = stateRoot({ pages: 8, digests: pages.map(([i, p]) => [i, sha256(p)]), globals, fuel, budget })
  const header = encodeHeader({ v: 1, agent: id.did, code: cidOf(wasm), manifest: cidOf(manifest), tick: 42, epoch: 1, prev: cidOf(Buffer.from('prev')), state, log: cidOf(log), fuel, budget, price: 1000n, host: 'hostA', time: Date.now(), status: 'paused', reason: 'test' })
  return { header, sig: signHeader(id, header), wasm, manifest, pageCount: 8, pages, globals, log, seed: id.seed, io: null }
}
const bytesOf = (c: Omit<LiveCheckpoint, 'parsed'>) => Buffer.concat(encodeLive(c))
const hex = (u: Uint8Array) => Buffer.from(u).toString('hex')

test('round trip: decodeLive(encodeLive(c)) gives back every field', () => {
  const c = make()
  const d = decodeLive(bytesOf(c), 'a.ckpt')
  assert.is(d.parsed.tick, 42); assert.is(d.parsed.status, 'paused'); assert.is(d.parsed.reason, 'test')
  assert.is(hex(d.header), hex(c.header)); assert.is(hex(d.sig), hex(c.sig)); assert.is(hex(d.seed), hex(c.seed))
  assert.is(hex(d.wasm), hex(wasm)); assert.is(hex(d.manifest), hex(manifest)); assert.is(hex(d.log!), hex(log))
  assert.is(d.pageCount, 8)
  assert.equal(d.pages.map(([i, p]) => [i, hex(sha256(p))]), c.pages.map(([i, p]) => [i, hex(sha256(p))]))
  assert.equal(d.globals.map((g) => [g.index, g.type, hex(g.bytes)]), c.globals.map((g) => [g.index, g.type, hex(g.bytes)]))
  assert.equal(d.digests!.map(([i, x]) => [i, hex(x)]), c.pages.map(([i, p]) => [i, hex(sha256(p))]))
  const noLog = decodeLive(bytesOf({ ...c, log: null, header: encodeHeader({ ...d.parsed, log: null }), sig: signHeader(id, encodeHeader({ ...d.parsed, log: null })) }), 'b.ckpt')
  assert.is(noLog.log, null)
})

test('encodeLive is canonical CBOR and passes page bodies by reference', () => {
  const c = make()
  const chunks = encodeLive(c)
  const reference = encodeFile({ v: 1, header: c.header, sig: c.sig, wasm: c.wasm, manifest: c.manifest, pageCount: c.pageCount, pages: c.pages, globals: c.globals.map((g) => [g.index, g.type, g.bytes]), log: c.log, key: c.seed })
  assert.is(hex(Buffer.concat(chunks)), hex(reference))
  for (const [, p] of c.pages) assert.ok(chunks.includes(p), 'page body is a chunk of its own')
  assert.ok(chunks.includes(c.wasm))
})

test('each kind of damage gives its own clear CheckpointError naming the file', () => {
  const c = make()
  const good = bytesOf(c)
  const messages = new Map<string, string>()
  const expect = (label: string, bytes: Uint8Array, re: RegExp) => {
    try { decodeLive(bytes, 'agent.ckpt'); assert.unreachable(label + ' decoded') } catch (e) {
      assert.instance(e, CheckpointError, label)
      const m = (e as Error).message
      assert.match(m, /^agent\.ckpt: /, label)
      assert.match(m, re, label)
      assert.not.ok(m.includes('\n'), 'one line')
      messages.set(label, m)
    }
  }
  expect('empty', new Uint8Array(0), /empty file/)
  expect('truncated', good.subarray(0, good.length - 1000), /truncated \(need \d+ bytes at offset \d+, file has \d+\)/)
  expect('random bytes', Uint8Array.from({ length: 5000 }, (_, i) => (i * 7919 + 13) & 255), /not an igord file/)
  const v2 = Buffer.concat(encodeLive(c)); v2[v2.indexOf(Buffer.from('6176', 'hex')) + 2] = 2 // "v": 1 → 2
  expect('wrong version', v2, /unsupported checkpoint format version 2 \(this igord reads 1\)/)
  const sigAt = good.indexOf(c.sig)
  const badSig = Buffer.from(good); badSig[sigAt + 3] ^= 1
  expect('flipped signature', badSig, /signature does not verify/)
  const pageAt = good.indexOf(Buffer.alloc(64, 7))
  const badPage = Buffer.from(good); badPage[pageAt + 100] ^= 1
  expect('flipped page', badPage, /state root does not match/)
  const badWasm = Buffer.from(good); badWasm[good.indexOf(Buffer.from('xxxxxxxx')) + 3] ^= 1
  expect('flipped wasm', badWasm, /embedded wasm does not match/)
  const badManifest = Buffer.from(good); badManifest[good.indexOf(manifest) + 2] ^= 1
  expect('flipped manifest', badManifest, /embedded manifest does not match/)
  const otherKey = bytesOf({ ...c, seed: generateIdentity().seed })
  expect('foreign key', otherKey, /secret key does not belong to/)
  expect('short page', encodeFile({ v: 1, header: c.header, sig: c.sig, wasm, manifest, pageCount: 8, pages: [[0, new Uint8Array(100)]], globals: [], log, key: c.seed }), /page 0 is 100 bytes, expected 65536/)
  expect('page order', encodeFile({ v: 1, header: c.header, sig: c.sig, wasm, manifest, pageCount: 8, pages: [[5, c.pages[1][1]], [0, c.pages[0][1]]], globals: [], log, key: c.seed }), /page 0 out of order/)
  expect('pageCount bound', encodeFile({ v: 1, header: c.header, sig: c.sig, wasm, manifest, pageCount: 65537, pages: [], globals: [], log, key: c.seed }), /field "pageCount" must be an unsigned integer ≤ 65536/)
  expect('not a map', encodeFile([1, 2, 3]), /live checkpoint is not a CBOR map/)
  expect('bad header', encodeFile({ v: 1, header: encode({ v: 1 }), sig: c.sig, wasm, manifest, pageCount: 8, pages: [], globals: [], log, key: c.seed }), /field "agent"/)
  assert.is(new Set(messages.values()).size, messages.size, 'messages are distinct')
})

test('deferState: all but the pages checked at decode; checkLiveState checks them against the state root', () => {
  const c = make()
  const good = bytesOf(c)
  const l = decodeLive(good, 'agent.ckpt', { deferState: true })
  assert.is(l.unchecked, true); assert.is(l.digests, undefined)
  checkLiveState(l, 'agent.ckpt')
  assert.is(l.unchecked, undefined)
  assert.equal(l.digests!.map(([i, d]) => [i, hex(d)]), c.pages.map(([i, p]) => [i, hex(sha256(p))]))
  // with the caller's digests (what a resume hashed while copying)
  const l2 = decodeLive(good, 'agent.ckpt', { deferState: true })
  const ds = c.pages.map(([i, p]): [number, Uint8Array] => [i, sha256(p)])
  checkLiveState(l2, 'agent.ckpt', ds)
  assert.is(l2.digests, ds)
  assert.throws(() => checkLiveState(decodeLive(good, 'agent.ckpt', { deferState: true }), 'agent.ckpt', ds.slice(1)), /not those of the pages/)
  // a flipped page passes the decode and fails the check; everything else still fails the decode
  const badPage = Buffer.from(good); badPage[good.indexOf(Buffer.alloc(64, 7)) + 100] ^= 1
  const lb = decodeLive(badPage, 'agent.ckpt', { deferState: true })
  assert.throws(() => checkLiveState(lb, 'agent.ckpt'), (e: Error) => e instanceof CheckpointError && /^agent\.ckpt: state root does not match/.test(e.message))
  const badSig = Buffer.from(good); badSig[good.indexOf(c.sig) + 3] ^= 1
  assert.throws(() => decodeLive(badSig, 'agent.ckpt', { deferState: true }), /signature does not verify/)
  // a checked checkpoint: a no-op
  const lc = decodeLive(good, 'agent.ckpt')
  const before = lc.digests
  checkLiveState(lc, 'agent.ckpt', [])
  assert.is(lc.digests, before)
})

test('deferState is ignored for a file with records ending in a zero byte: a record zeroed inside a page falls back to the one before', () => {
  // a memory of 256 pages: every item ends with pageCount's last byte, 0x00
  const fuel = 5n; const budget = 6n
  const headerOf = (tick: number, pages: [number, Uint8Array][]) => encodeHeader({ v: 1, agent: id.did, code: cidOf(wasm), manifest: cidOf(manifest), tick, epoch: 1, prev: null, state: stateRoot({ pages: 256, digests: pages.map(([i, p]) => [i, sha256(p)]), globals: [], fuel, budget }), log: null, fuel, budget, price: 1000n, host: 'hostA', time: 1, status: 'running' })
  const p0 = Buffer.alloc(PAGE_SIZE, 1); const p5 = Buffer.alloc(PAGE_SIZE, 8)
  const h42 = headerOf(42, [[0, p0]])
  const whole = Buffer.concat(encodeLive({ header: h42, sig: signHeader(id, h42), wasm, manifest, pageCount: 256, pages: [[0, p0]], globals: [], log: null, seed: id.seed }))
  const h43 = headerOf(43, [[0, p0], [5, p5]])
  const ok = Buffer.concat([whole, ...encodeDelta({ header: h43, sig: signHeader(id, h43), pageCount: 256, pages: [[5, p5]], globals: [], log: null, io: null })])
  assert.is(ok[ok.length - 1], 0)
  const l43 = decodeLive(ok, 'agent.ckpt', { deferState: true })
  assert.is(l43.parsed.tick, 43); assert.is(l43.unchecked, undefined, 'checked whole here'); assert.ok(l43.digests !== undefined)
  const zeroed = Buffer.from(ok)
  const at = zeroed.lastIndexOf(Buffer.alloc(1024, 8))
  zeroed.fill(0, at - 4096, at) // inside page 5's body: still well-formed, only the state root tells
  const l = decodeLive(zeroed, 'agent.ckpt', { deferState: true })
  assert.is(l.parsed.tick, 42, 'the checkpoint before the zeroed record')
  assert.ok(l.digests !== undefined)
  // without records, a file ending in 0x00 is deferred as any other
  assert.is(decodeLive(whole, 'agent.ckpt', { deferState: true }).unchecked, true)
})

test('readLive reports an unreadable file as StorageError', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-live-'))
  try {
    assert.throws(() => readLive(path.join(dir, 'missing.ckpt')), (e: Error) => e instanceof StorageError && /missing\.ckpt: cannot read: ENOENT/.test(e.message))
    const f = path.join(dir, 'a.ckpt'); fs.writeFileSync(f, bytesOf(make()))
    assert.is(readLive(f).parsed.tick, 42)
  } finally { fs.rmSync(dir, { recursive: true, force: true }) }
})

test.run()
