/**
 * Unit tests of runtime/replay.ts (and the archive readers it uses): replaying archived lives
 * in-process — VALID for honest histories, across resumes and price changes, for WASI and identity
 * hostcalls; the first diverging tick and field for histories whose signatures and CIDs are all
 * valid but whose recorded inputs, fuel or memory do not match what re-execution produces.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import binaryen from 'binaryen'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { readArchivedBlob } from '../checkpoint/archive.ts'
import { CheckpointError } from '../checkpoint/errors.ts'
import { formatReport, verifyChain, verifyHistory } from '../checkpoint/history.ts'
import { readLive } from '../checkpoint/live.ts'
import { EventLog } from '../hostcalls/eventlog.ts'
import { formatReplay, preparedKey, Replayer, replayHistory, replaySegment, tickCost } from '../runtime/replay.ts'
import { forge } from './forge.ts'
import { runLoop } from '../runtime/runner.ts'
import type { LoopOptions } from '../runtime/runner.ts'
import { resumeAgent, startAgent } from '../runtime/session.ts'
import type { HostSettings } from '../runtime/session.ts'
import { dropBlob } from './blobs.ts'

const AGENTS = path.join(import.meta.dirname, '..', 'agents-as', 'build')
const built = (name: string) => ({
  wasm: fs.readFileSync(path.join(AGENTS, `${name}.wasm`)),
  manifest: fs.readFileSync(path.join(AGENTS, `${name}.manifest.json`)),
})

function watBytes (text: string): Uint8Array {
  const m = binaryen.parseText(text)
  try { return m.emitBinary() } finally { m.dispose() }
}

/**
 * Reads the WASI clock and random bytes, signs them with its own key, reads its wallet, writes a
 * line to stdout, and folds the random bytes into a sum in memory.
 */
const WASI_AGENT = watBytes(`(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $rand (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "igor" "agent_sign" (func $sign (param i32 i32 i32) (result i32)))
  (import "igor" "wallet_balance" (func $wallet (result i64)))
  (memory (export "memory") 1)
  (global $n (mut i32) (i32.const 0))
  (func (export "agent_tick") (result i32)
    (drop (call $clock (i32.const 0) (i64.const 1) (i32.const 0)))
    (drop (call $rand (i32.const 8) (i32.const 16)))
    (i64.store (i32.const 200) (i64.add (i64.load (i32.const 200)) (i64.load (i32.const 8))))
    (drop (call $sign (i32.const 0) (i32.const 24) (i32.const 300)))
    (i64.store (i32.const 400) (call $wallet))
    (i32.store (i32.const 500) (i32.const 510))
    (i32.store (i32.const 504) (i32.const 2))
    (i32.store16 (i32.const 510) (i32.const 0x0a78))
    (drop (call $write (i32.const 1) (i32.const 500) (i32.const 1) (i32.const 520)))
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    (i32.const 0)))`)
const WASI_MANIFEST = new TextEncoder().encode(JSON.stringify({ capabilities: ['wasi', 'identity', 'wallet'] }))

const made: string[] = []
const tmp = () => { const d = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-replay-')); made.push(d); return d }
test.after.each(() => { for (const d of made.splice(0)) fs.rmSync(d, { recursive: true, force: true }) })

const settings = (dir: string, over: Partial<HostSettings> = {}): HostSettings => ({ dir, price: 1000n, simSeed: 'replay', emit: () => {}, ...over })
const loop = (ticks: number, over: Partial<LoopOptions> = {}): LoopOptions => ({ intervalMs: 0, maxTicks: ticks, checkpointEveryMs: 0, ...over })

/** Births `name` in `dir` and runs `ticks` ticks, checkpointing after each. */
async function life (dir: string, name: string, ticks: number, o: { wasm?: Uint8Array; manifest?: Uint8Array; over?: Partial<HostSettings>; loop?: Partial<LoopOptions> } = {}): Promise<string> {
  const b = o.wasm === undefined ? built(name) : { wasm: o.wasm, manifest: o.manifest! }
  const s = startAgent(settings(dir, o.over), { name, wasm: b.wasm, wasmFile: `${name}.wasm`, manifest: b.manifest, manifestFile: `${name}.manifest.json`, budget: 1_000_000_000n })
  await runLoop(s.agent, s.lineage, loop(ticks, o.loop))
  return s.ckptPath
}

/** Copies a live checkpoint into a new directory and runs `ticks` more there. */
async function resumeElsewhere (ckpt: string, ticks: number, over: Partial<HostSettings> = {}): Promise<string> {
  const dir = tmp()
  const to = path.join(dir, path.basename(ckpt))
  fs.copyFileSync(ckpt, to)
  const s = resumeAgent(settings(dir, over), to)
  await runLoop(s.agent, s.lineage, loop(ticks))
  return dir
}

test('an honest ledger life replays VALID: every tick re-executed, every checkpoint checked', async () => {
  const dir = tmp()
  await life(dir, 'ledger', 40)
  const r = replayHistory([dir])
  assert.ok(r.valid, formatReplay(r, formatReport))
  assert.is(r.ticks, 41)
  assert.equal(r.range, [0, 40])
  assert.is(r.checkpoints, 41)
  assert.is(r.divergence, null)
  assert.match(formatReplay(r, formatReport), /^VALID: replayed 41 ticks \(ticks 0–40\), 41 checkpoints checked, did:key:z6Mk/)
})

test('a life resumed on other hosts with other prices and live inputs replays VALID; --from starts mid-life', async () => {
  const a = tmp()
  const ckpt = await life(a, 'ledger', 20)
  const b = await resumeElsewhere(ckpt, 20, { price: 777n, simSeed: undefined })
  const c = await resumeElsewhere(path.join(b, 'ledger.ckpt'), 15, { price: 5_000_000n })
  const r = replayHistory([a, b, c])
  assert.ok(r.valid, formatReplay(r, formatReport))
  assert.equal(r.range, [0, 55])
  const mid = replayHistory([a, b, c], { from: 30 })
  assert.ok(mid.valid, formatReplay(mid, formatReport))
  assert.is(mid.from, 30)
  assert.equal(mid.range, [31, 55])
  assert.match(formatReplay(mid, formatReport), /ticks 31–55\) from the checkpoint at tick 30/)
})

test('WASI clock, random and stdout, agent_sign and wallet_balance records replay exactly', async () => {
  const dir = tmp()
  await life(dir, 'w', 12, { wasm: WASI_AGENT, manifest: WASI_MANIFEST, over: { simSeed: undefined } })
  const names = new Set(EventLog.decodeSegment(readArchivedBlob([path.join(dir, 'blobs')], verifyChain([dir]).links[3].entry.parsed.log!, 'log')).flatMap((t) => t.events.map((e) => e[0])))
  assert.equal([...names].sort(), ['agent_sign', 'wallet_balance', 'wasi.clock_time_get', 'wasi.random_get', 'wasi.stdout'])
  const r = replayHistory([dir])
  assert.ok(r.valid, formatReplay(r, formatReport))
  assert.equal(r.range, [0, 12])
})

test('a forged random input (valid signatures and CIDs) diverges at its tick, naming the event', async () => {
  const dir = tmp()
  await life(dir, 'ledger', 30)
  forge(dir, 'ledger', 17, (recs) => {
    const ev = recs[0].events.find((e) => e[0] === 'rand_bytes')!
    const bytes = ev[1] as Uint8Array
    bytes[0] ^= 0xff
  })
  assert.ok(verifyHistory([dir]).valid, 'plain verify cannot see the forgery')
  const r = replayHistory([dir])
  assert.not.ok(r.valid)
  assert.is(r.divergence?.tick, 17)
  assert.is(r.divergence?.field, 'event 2 (log_emit)')
  assert.match(r.divergence!.message, /^event 2 \(log_emit\) differs: "ledger: entries 17/)
  assert.is(r.ticks, 18) // birth and ticks 1–17, the last one diverging
  assert.match(formatReplay(r, formatReport), /^INVALID: replay diverges at tick 17 \(event 2 \(log_emit\)\): /)
})

test('forged fuel, trap and result are each named; a forged clock on heartbeat shows in its log line', async () => {
  const dir = tmp()
  await life(dir, 'ledger', 12)
  forge(dir, 'ledger', 9, (recs) => { recs[0].fuel += 6n })
  let r = replayHistory([dir])
  assert.is(r.divergence?.tick, 9)
  assert.is(r.divergence?.field, 'fuel')
  assert.match(r.divergence!.message, /^fuel (\d+) ≠ recorded (\d+)$/)
  const [, got, rec] = /^fuel (\d+) ≠ recorded (\d+)$/.exec(r.divergence!.message)!
  assert.is(BigInt(rec) - BigInt(got), 6n)

  forge(dir, 'ledger', 5, (recs) => { recs[0].result = 1 })
  r = replayHistory([dir])
  assert.equal([r.divergence?.tick, r.divergence?.field, r.divergence?.message], [5, 'result', 'result 0 ≠ recorded 1'])

  forge(dir, 'ledger', 3, (recs) => { recs[0].trap = 'unreachable'; recs[0].result = null })
  r = replayHistory([dir])
  assert.equal([r.divergence?.tick, r.divergence?.field], [3, 'trap'])

  const hb = tmp()
  await life(hb, 'heartbeat', 10)
  forge(hb, 'heartbeat', 6, (recs) => {
    const ev = recs[0].events.find((e) => e[0] === 'clock_now')!
    ev[1] = (ev[1] as bigint) + 3_000_000_000n
  })
  r = replayHistory([hb])
  assert.is(r.divergence?.tick, 6)
  assert.is(r.divergence?.field, 'event 1 (log_emit)')
  assert.match(r.divergence!.message, /"tick 6, age 9 s" ≠ recorded "tick 6, age 6 s"/)
})

test('a recorded input the agent never asks for, or one of the wrong kind, is named by position', async () => {
  const dir = tmp()
  await life(dir, 'ledger', 8)
  forge(dir, 'ledger', 4, (recs) => { recs[0].events.splice(1, 0, ['clock_now', 5n]) })
  const r = replayHistory([dir])
  assert.is(r.divergence?.tick, 4)
  assert.is(r.divergence?.field, 'event 1 (clock_now)')
  assert.match(r.divergence!.message, /event 1: the agent asked for 4 random bytes, but the log records clock_now 5 here/)
})

test('a host that perturbs memory between ticks is caught at the next checkpoint: state root, page named', async () => {
  const dir = tmp()
  const b = built('ledger')
  const s = startAgent(settings(dir), { name: 'ledger', wasm: b.wasm, wasmFile: 'ledger.wasm', manifest: b.manifest, manifestFile: 'ledger.manifest.json', budget: 1_000_000_000n })
  const memory = () => (s.agent as unknown as { memory: WebAssembly.Memory }).memory
  let page = -1
  await runLoop(s.agent, s.lineage, loop(25, {
    onTick: (t) => {
      if (t.tick !== 11) return
      const m = new Uint8Array(memory().buffer)
      m[m.length - 1] ^= 0x5a // the last byte of memory: the agent never reads it
      page = m.length / 65536 - 1
    },
  }))
  assert.ok(verifyHistory([dir]).valid)
  const r = replayHistory([dir])
  assert.not.ok(r.valid)
  assert.is(r.divergence?.tick, 12)
  assert.is(r.divergence?.field, 'state root')
  assert.match(r.divergence!.message, new RegExp(`state root differs \\(page ${page} differs\\)`))
})

test('Replayer.restore + runSegment replays one segment from a live checkpoint (the migration-target use)', async () => {
  const dir = tmp()
  const ckpt = await life(dir, 'ledger', 10)
  const live = readLive(ckpt)
  const s = resumeAgent(settings(dir), ckpt)
  await runLoop(s.agent, s.lineage, loop(60, { checkpointEveryMs: 3_600_000, intervalMs: 0 }))
  // ledger returns 1 ("more") at tick 50, so with a long checkpoint interval tick 50 lands in the
  // segment of the checkpoint at tick 51
  const chain = verifyChain([dir])
  const link = chain.links.find((l) => l.entry.parsed.tick === 51)!
  const records = EventLog.decodeSegment(readArchivedBlob(chain.blobDirs, link.entry.parsed.log!, 'log'))
  assert.equal(records.map((t) => t.tick), [50, 51])
  const rp = Replayer.restore({ header: live.parsed, wasm: live.wasm, manifest: live.manifest, pageCount: live.pageCount, pages: live.pages, globals: live.globals })
  for (const l of chain.links.filter((x) => x.entry.parsed.tick > 10)) {
    const recs = EventLog.decodeSegment(readArchivedBlob(chain.blobDirs, l.entry.parsed.log!, 'log'))
    assert.is(rp.runSegment(recs, l.entry.parsed), null)
  }
  assert.is(rp.agent.tick, 70)
  assert.is(rp.ticks, 60)
  // a segment that skips a tick is named as a log problem
  const rp2 = Replayer.restore({ header: live.parsed, wasm: live.wasm, manifest: live.manifest, pageCount: live.pageCount, pages: live.pages, globals: live.globals })
  const d = rp2.runSegment([{ ...records[0], tick: 12 }], link.entry.parsed)
  assert.equal([d?.tick, d?.field], [11, 'log'])
})

test('a replay prepared before its pages arrive (Replayer.prepare) replays exactly as one restored the usual way; one prepared for another start is not used', async () => {
  const dir = tmp()
  const ckpt = await life(dir, 'ledger', 10)
  const live = readLive(ckpt)
  const s = resumeAgent(settings(dir), ckpt)
  await runLoop(s.agent, s.lineage, loop(5, { intervalMs: 0 }))
  const chain = verifyChain([dir])
  const link = chain.links.find((l) => l.entry.parsed.tick === 11)!
  const records = EventLog.decodeSegment(readArchivedBlob(chain.blobDirs, link.entry.parsed.log!, 'log'))
  const start = { header: live.parsed, wasm: live.wasm, manifest: live.manifest, pageCount: live.pageCount, pages: live.pages, globals: live.globals }
  const indices = live.pages.map(([i]) => i)
  const prepared = Replayer.prepare(start, indices)!
  assert.ok(prepared !== null && prepared.key === preparedKey(start))
  assert.is(prepared.agent.pageCount, 0, 'nothing restored yet: the image is empty until the pages come')
  const r = Replayer.restore(start, prepared)
  assert.is(r.agent, prepared.agent, 'restored into the prepared agent')
  assert.is(r.runSegment(records, link.entry.parsed), null)
  assert.is(r.agent.tick, 11)
  // the same through replaySegment, against one restored the usual way
  assert.equal(replaySegment(start, records, link.entry.parsed, Replayer.prepare(start, indices)), replaySegment(start, records, link.entry.parsed))
  // a forged result still diverges when prepared
  const forged = [{ ...records[0], result: records[0].result === 0 ? 1 : 0 }]
  const d = replaySegment(start, forged, link.entry.parsed, Replayer.prepare(start, indices))
  assert.equal([d.divergence?.tick, d.divergence?.field], [11, 'result'])
  // prepared for another checkpoint (another tick): ignored, the start is restored the usual way
  const other = Replayer.prepare({ ...start, header: { ...live.parsed, tick: live.parsed.tick + 1 } }, indices)!
  const r2 = Replayer.restore(start, other)
  assert.is.not(r2.agent, other.agent)
  assert.is(r2.runSegment(records, link.entry.parsed), null)
})

test('the budget replays at each checkpoint\'s price: cost = min(budget, ceil(fuel × price / 10^6))', async () => {
  assert.is(tickCost(1n, 1n, 100n), 1n)
  assert.is(tickCost(1_000_000n, 1000n, 100n), 100n)
  assert.is(tickCost(999_999n, 1n, 100n), 1n)
  assert.is(tickCost(0n, 1000n, 100n), 0n)
  const a = tmp()
  const ckpt = await life(a, 'heartbeat', 5)
  const b = await resumeElsewhere(ckpt, 5, { price: 123_456n })
  const chain = verifyChain([a, b])
  assert.equal(chain.links.map((l) => l.entry.parsed.price), [1000n, 1000n, 1000n, 1000n, 1000n, 1000n, 123_456n, 123_456n, 123_456n, 123_456n, 123_456n])
  assert.ok(replayHistory([a, b]).valid)
})

test('an archive missing a log blob cannot be replayed: one clear line, not a crash', async () => {
  const dir = tmp()
  await life(dir, 'heartbeat', 4)
  const log = verifyChain([dir]).links[2].entry.parsed.log!
  dropBlob(dir, log)
  const r = replayHistory([dir])
  assert.not.ok(r.valid)
  assert.match(formatReplay(r, formatReport), /^INVALID: 1 fault/) // plain verify already fails
  assert.throws(() => readArchivedBlob([path.join(dir, 'blobs')], log, 'event log of tick 2'), (e: unknown) => e instanceof CheckpointError && /event log of tick 2: blob bafk\w+ is missing/.test((e as Error).message))
})

test.run()
