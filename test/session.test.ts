/**
 * Unit tests of runtime/session.ts: starting an agent (genesis checkpoint, no overwrite) and
 * resuming one from its live checkpoint (identity, counters, refusals, lineage).
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import binaryen from 'binaryen'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { CheckpointError, StorageError } from '../checkpoint/errors.ts'
import { headerCid } from '../checkpoint/header.ts'
import { readLive } from '../checkpoint/live.ts'
import { loadHostIdentity } from '../runtime/host.ts'
import { runLoop, writeCheckpoint } from '../runtime/runner.ts'
import { defaultResumeDir, livePath, resumeAgent, startAgent } from '../runtime/session.ts'
import type { HostSettings } from '../runtime/session.ts'
import { entriesIn } from './hist.ts'

function watBytes (text: string): Uint8Array {
  const m = binaryen.parseText(text)
  try { return m.emitBinary() } finally { m.dispose() }
}

/** Counts committed ticks in mem[0] (agent_init sets mem[4] = 42); returns 2 at tick `finishAt`. */
function counter (finishAt = -1): Uint8Array {
  return watBytes(`(module
    (memory (export "memory") 1 2)
    (global $g (mut i64) (i64.const 0))
    (func (export "agent_init") (i32.store (i32.const 4) (i32.const 42)))
    (func (export "agent_tick") (result i32)
      (global.set $g (i64.add (global.get $g) (i64.const 10)))
      (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
      (if (i32.eq (i32.load (i32.const 0)) (i32.const ${finishAt})) (then (return (i32.const 2))))
      (i32.const 0)))`)
}
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')
/** A comparable view of pages or globals (Buffer and Uint8Array compare alike). */
const view = (xs: ([number, Uint8Array] | { index: number; type: string; bytes: Uint8Array })[]) =>
  xs.map((x) => Array.isArray(x) ? [x[0], hex(x[1])] : [x.index, x.type, hex(x.bytes)])
const MANIFEST = new TextEncoder().encode(JSON.stringify({ capabilities: ['log'] }))

let dir = ''
test.before.each(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-session-')) })
test.after.each(() => { fs.rmSync(dir, { recursive: true, force: true }) })

const settings = (over: Partial<HostSettings> = {}): HostSettings => ({ dir, price: 1000n, simSeed: 'session', emit: () => {}, ...over })
const start = (name = 'a', wasm = counter(), budget = 5_000_000n) =>
  startAgent(settings(), { name, wasm, wasmFile: `${name}.wasm`, manifest: MANIFEST, manifestFile: `${name}.manifest.json`, budget })

test('startAgent writes a genesis checkpoint: tick 0, prev null, epoch 0, signed by a new DID', () => {
  const s = start()
  assert.is(s.ckptPath, livePath(dir, 'a'))
  assert.is(s.ckptPath, path.resolve(dir, 'a.ckpt'))
  const c = readLive(s.ckptPath)
  assert.is(c.parsed.tick, 0)
  assert.is(c.parsed.prev, null)
  assert.is(c.parsed.epoch, 0)
  assert.is(c.parsed.status, 'running')
  assert.is(c.parsed.agent, s.agent.spec.identity.did)
  assert.match(c.parsed.agent, /^did:key:z6Mk/)
  assert.is(c.parsed.host, loadHostIdentity(dir).peerId)
  assert.is(c.parsed.fuel, s.agent.fuel)
  assert.ok(c.parsed.fuel > 0n, 'agent_init burned fuel')
  assert.is(c.parsed.budget, s.agent.budget)
  assert.is(c.parsed.budget, 5_000_000n - (s.agent.fuel * 1000n + 999_999n) / 1_000_000n)
  assert.is(hex(c.manifest), hex(MANIFEST))
  assert.is(new DataView(c.pages[0][1].buffer, c.pages[0][1].byteOffset).getInt32(4, true), 42)
  assert.is(s.lineage.prev, headerCid(c.header))
  assert.is(s.lineage.lastTick, 0)
  assert.match(fs.readdirSync(path.join(dir, 'history', 'a')).join(' '), new RegExp(`^000000000000-${headerCid(c.header)}-[0-9a-f]{8}\\.hist$`))
  assert.equal(entriesIn(path.join(dir, 'history', 'a')).map((e) => [e.tick, e.cid]), [[0, headerCid(c.header)]])
})

test('startAgent refuses to overwrite an existing <name>.ckpt', () => {
  const s = start()
  const before = fs.readFileSync(s.ckptPath)
  assert.throws(() => start(), (e: unknown) => e instanceof StorageError && e.message.includes('a.ckpt') && /already exists/.test(e.message))
  assert.equal(fs.readFileSync(s.ckptPath), before)
  // another name in the same directory is fine
  start('b')
})

test('resumeAgent restores DID, tick, fuel, budget, epoch and memory', async () => {
  const s = start()
  await runLoop(s.agent, s.lineage, { intervalMs: 0, maxTicks: 3 })
  const r = resumeAgent(settings(), s.ckptPath)
  assert.is(r.name, 'a')
  assert.is(r.agent.spec.identity.did, s.agent.spec.identity.did)
  assert.is(hex(r.lineage.identity.seed), hex(s.lineage.identity.seed))
  assert.is(r.agent.tick, 3)
  assert.is(r.agent.fuel, s.agent.fuel)
  assert.is(r.agent.budget, s.agent.budget)
  assert.is(r.lineage.epoch, 0)
  assert.is(r.lineage.lastTick, 3)
  assert.is(r.lineage.prev, s.lineage.prev)
  const a = s.agent.checkpointState(); const b = r.agent.checkpointState()
  assert.equal(view(b.pages), view(a.pages))
  assert.equal(view(b.globals), view(a.globals))
  assert.is(hex(b.globals[0].bytes), '1e00000000000000', 'global $g = 3 ticks × 10')
  // both continue identically
  assert.equal(r.agent.runTick(), s.agent.runTick())
  assert.equal(view(r.agent.checkpointState().globals), view(s.agent.checkpointState().globals))
  assert.is(defaultResumeDir(s.ckptPath), path.resolve(dir))
})

test("a resumed agent's next checkpoint links to the resumed one", async () => {
  const s = start()
  await runLoop(s.agent, s.lineage, { intervalMs: 0, maxTicks: 2 })
  const resumedCid = s.lineage.prev!
  const r = resumeAgent(settings(), s.ckptPath)
  assert.is(headerCid(r.live.header), resumedCid)
  const rec: string[] = []
  const end = await runLoop(r.agent, r.lineage, { intervalMs: 0, maxTicks: 1, onCheckpoint: (h, c) => { rec.push(c); assert.is(h.prev, resumedCid) } })
  assert.is(end.ticks, 1)
  assert.is(rec.length, 1)
  const c = readLive(s.ckptPath)
  assert.is(c.parsed.tick, 3)
  assert.is(c.parsed.prev, resumedCid)
  assert.is(c.parsed.agent, s.agent.spec.identity.did)
})

test('resumeAgent into another directory archives the resumed checkpoint there first', async () => {
  const s = start()
  await runLoop(s.agent, s.lineage, { intervalMs: 0, maxTicks: 1 })
  const other = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-session-other-'))
  try {
    const copy = path.join(other, 'a.ckpt')
    fs.copyFileSync(s.ckptPath, copy)
    const r = resumeAgent(settings({ dir: other }), copy)
    const hist = path.join(other, 'history', 'a')
    // every checkpoint the copied file holds is archived there (its whole checkpoint at tick 0, its delta record at tick 1: docs/FORMAT.md "Recovery"), in one segment named after the first
    const es = entriesIn(hist)
    assert.equal(es.map((e) => e.tick), [0, 1])
    assert.is(es[1].cid, s.lineage.prev)
    assert.match(fs.readdirSync(hist).join(' '), new RegExp(`^000000000000-${es[0].cid}-[0-9a-f]{8}\\.hist$`))
    const { header } = (r.agent.runTick(), writeCheckpoint(r.agent, r.lineage, 'running'))
    assert.is(header.prev, s.lineage.prev)
    assert.is(header.host, loadHostIdentity(other).peerId)
    assert.is.not(header.host, loadHostIdentity(dir).peerId)
  } finally {
    fs.rmSync(other, { recursive: true, force: true })
  }
})

test('resumeAgent refuses a finished agent with CheckpointError', async () => {
  const s = start('a', counter(2))
  const end = await runLoop(s.agent, s.lineage, { intervalMs: 0 })
  assert.is(end.status, 'finished')
  assert.throws(() => resumeAgent(settings(), s.ckptPath), (e: unknown) => e instanceof CheckpointError && /finished/.test(e.message) && e.message.includes('a.ckpt'))
})

test('resumeAgent refuses a handoff checkpoint with CheckpointError naming the target', () => {
  const s = start()
  s.agent.runTick()
  const target = '12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq'
  writeCheckpoint(s.agent, s.lineage, 'handoff', { target })
  assert.throws(() => resumeAgent(settings(), s.ckptPath), (e: unknown) => e instanceof CheckpointError && /handed off/.test(e.message) && e.message.includes(target))
})

test('resumeAgent accepts an exhausted checkpoint; the agent keeps budget 0 and does not tick', async () => {
  const s = start('a', counter(), 3n)
  const end = await runLoop(s.agent, s.lineage, { intervalMs: 0 })
  assert.is(end.status, 'exhausted')
  const r = resumeAgent(settings(), s.ckptPath)
  assert.is(r.agent.budget, 0n)
  assert.is(r.agent.runTick(), null)
})

test('resumeAgent checks the pages it copies against the signed state root: a flipped page byte is refused, nothing archived', () => {
  const s = start()
  s.agent.runTick(); writeCheckpoint(s.agent, s.lineage, 'running')
  const good = fs.readFileSync(s.ckptPath)
  const at = good.lastIndexOf(Buffer.from([1, 0, 0, 0, 42, 0, 0, 0])) // mem[0] = 1, mem[4] = 42: page 0 of the last record
  assert.ok(at > 0)
  const bad = Buffer.from(good); bad[at] ^= 1
  fs.writeFileSync(s.ckptPath, bad)
  const entries = fs.readdirSync(path.join(dir, 'history', 'a')).length
  assert.throws(() => resumeAgent(settings(), s.ckptPath), (e: Error) => e instanceof CheckpointError && /a\.ckpt: state root does not match the signed header/.test(e.message))
  assert.is(fs.readdirSync(path.join(dir, 'history', 'a')).length, entries)
  fs.writeFileSync(s.ckptPath, good)
  const r = resumeAgent(settings(), s.ckptPath)
  assert.ok(r.live.digests !== undefined && r.live.unchecked === undefined, 'the resumed checkpoint is checked and has its digests')
  assert.is(r.agent.runTick()?.trap, null)
})

test.run()
