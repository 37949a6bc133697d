/**
 * Unit tests of hibernation (runtime/agent.ts `hibernate`/`wake`, runtime/runner.ts `hibernate`):
 * an agent hibernated and woken before every tick lives the same life as one that never was —
 * same logs, state roots, fuel and budget at every checkpoint, and `verify --replay` VALID — a wake
 * refuses a checkpoint of another state, and the loop hibernates only waits that outlast the threshold.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { readLive } from '../checkpoint/live.ts'
import type { HibernatedState } from '../runtime/agent.ts'
import { runLoop, writeCheckpoint } from '../runtime/runner.ts'
import { startAgent } from '../runtime/session.ts'
import type { Session } from '../runtime/session.ts'
import { agentWasm, igord } from './helpers.ts'

let dir = ''
test.before.each(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-hibernate-')) })
test.after.each(() => { fs.rmSync(dir, { recursive: true, force: true }) })

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')

/** Births agent `name` from agents-as/build (simulated inputs: the same seed gives the same clock); its log lines go to `lines`. */
function born (name: string, agent: string, lines: string[]): Session {
  const wasmFile = agentWasm(agent)
  return startAgent({ dir, price: 1000n, simSeed: 'hibernate', emit: (l) => lines.push(l) }, {
    name, wasm: fs.readFileSync(wasmFile), wasmFile, manifest: fs.readFileSync(wasmFile.replace(/\.wasm$/, '.manifest.json')), manifestFile: `${agent}.manifest.json`, budget: 10_000_000_000n,
  })
}

/** The state of `s` as its live checkpoint file holds it (what a node wakes an agent from). */
const fromLive = (s: Session) => (): HibernatedState => {
  const l = readLive(s.ckptPath)
  return { pageCount: l.pageCount, pages: l.pages, globals: l.globals, ...(l.digests === undefined ? {} : { digests: l.digests }) }
}

for (const agent of ['heartbeat', 'ledger']) {
  test(`${agent}: hibernated and woken before every tick, the same logs, state roots, fuel and budget as never hibernated; verify --replay VALID`, () => {
    const linesA: string[] = []
    const linesB: string[] = []
    const a = born('a', agent, linesA)
    const b = born('b', agent, linesB)
    const TICKS = 25
    for (let t = 1; t <= TICKS; t++) {
      a.agent.hibernate(fromLive(a))
      assert.ok(a.agent.hibernated, `tick ${t}: hibernated`)
      const ra = a.agent.runTick()
      assert.not.ok(a.agent.hibernated, `tick ${t}: woken by the tick`)
      const rb = b.agent.runTick()
      assert.equal([ra?.result, ra?.trap, ra?.fuel, ra?.changedPages], [rb?.result, rb?.trap, rb?.fuel, rb?.changedPages], `tick ${t}`)
      const ha = writeCheckpoint(a.agent, a.lineage, 'running').header
      const hb = writeCheckpoint(b.agent, b.lineage, 'running').header
      assert.equal([ha.tick, hex(ha.state), ha.fuel, ha.budget], [hb.tick, hex(hb.state), hb.fuel, hb.budget], `checkpoint at tick ${t}`)
    }
    assert.ok(linesA.length >= TICKS, `${agent} logged ${linesA.length} lines`)
    assert.equal(linesA, linesB)
    // a checkpoint of a hibernating agent wakes it first (same state: no change, same root)
    a.agent.hibernate(fromLive(a))
    const again = writeCheckpoint(a.agent, a.lineage, 'running').header
    assert.not.ok(a.agent.hibernated)
    assert.is(hex(again.state), hex(writeCheckpoint(b.agent, b.lineage, 'running').header.state))
    const r = igord(['verify', '--replay', path.join(dir, 'history', 'a')])
    assert.is(r.code, 0, r.stdout + r.stderr)
    assert.match(r.stdout, new RegExp(`^VALID: replayed ${TICKS + 1} ticks`))
  })
}

test('a wake refuses a checkpoint of another state and the agent stays hibernated; the right one then wakes it', () => {
  const lines: string[] = []
  const a = born('a', 'heartbeat', lines)
  a.agent.runTick()
  const root = hex(writeCheckpoint(a.agent, a.lineage, 'running').header.state)
  let calls = 0
  a.agent.hibernate(() => {
    const s = fromLive(a)()
    if (++calls > 1) return s
    const [i, page] = s.pages[0]
    const bad = new Uint8Array(page)
    bad[100] ^= 1
    return { ...s, pages: [[i, bad], ...s.pages.slice(1)], digests: undefined }
  })
  assert.throws(() => a.agent.runTick(), /heartbeat\.wasm: cannot wake from its checkpoint: page \d+ differs \(SHA-256\)/)
  assert.ok(a.agent.hibernated)
  assert.is(a.agent.tick, 1)
  a.agent.wake()
  assert.not.ok(a.agent.hibernated)
  assert.is(hex(writeCheckpoint(a.agent, a.lineage, 'running').header.state), root, 'the same state as before it hibernated')
})

test('hibernate refuses an agent whose memory changed since its last checkpoint', () => {
  const a = born('a', 'heartbeat', [])
  a.agent.runTick()
  assert.throws(() => a.agent.hibernate(fromLive(a)), /PageImage\.dropPages: 1 pages changed since the last checkpoint/)
  assert.not.ok(a.agent.hibernated)
})

test('runLoop hibernates an agent whose wait outlasts the threshold, never one whose next tick comes sooner', async () => {
  const a = born('a', 'heartbeat', [])
  let slept = 0
  const hibernate = (s: Session) => ({ afterMs: 50, hibernate: () => { slept++; s.agent.hibernate(fromLive(s)) } })
  const end = await runLoop(a.agent, a.lineage, { intervalMs: 400, maxTicks: 3, mailbox: a.mailbox, hibernate: hibernate(a) })
  assert.is(end.ticks, 3)
  assert.is(slept, 2, 'hibernated in each of the two waits between three ticks')
  const b = born('b', 'heartbeat', [])
  const end2 = await runLoop(b.agent, b.lineage, { intervalMs: 20, maxTicks: 5, mailbox: b.mailbox, hibernate: { ...hibernate(b), afterMs: 60_000 } })
  assert.is(end2.ticks, 5)
  assert.is(slept, 2, 'an interval shorter than the threshold arms no hibernation')
  const r = igord(['verify', '--replay', path.join(dir, 'history', 'a')])
  assert.is(r.code, 0, r.stdout + r.stderr)
})

test.run()
