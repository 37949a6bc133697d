/**
 * The host side of an agent's inbox (runtime/mailbox.ts), in-process with the echo agent
 * (agents-as/build/echo.wasm): delivery numbers messages and spools them before it returns, refuses
 * a full inbox, a message over the limit and a badly signed top-up (DeliveryRefused, exit 11),
 * answers a known id as a duplicate; a tick that traps gives its messages back; recover() takes
 * spooled messages past the checkpoint and drop files after a crash; wait() wakes on a message, the
 * agent's timer (never before the time it asked for) or the interval.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { getEventListeners } from 'node:events'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { EXIT, StorageError } from '../checkpoint/errors.ts'
import { signTopUp } from '../checkpoint/fund.ts'
import { identityFromSeed } from '../checkpoint/identity.ts'
import { encodeMessage } from '../checkpoint/io.ts'
import type { HttpRequestRecord } from '../checkpoint/io.ts'
import { InboxSpool } from '../checkpoint/spool.ts'
import { parseManifest } from '../hostcalls/manifest.ts'
import { E_HTTP_IN_DOUBT } from '../hostcalls/http.ts'
import { Agent } from '../runtime/agent.ts'
import { loadHostIdentity } from '../runtime/host.ts'
import { liveInputs, simulatedInputs } from '../runtime/inputs.ts'
import { DeliveryRefused, Mailbox, messageIdFrom } from '../runtime/mailbox.ts'
import type { Incoming } from '../runtime/mailbox.ts'
import { writeCheckpoint } from '../runtime/runner.ts'
import { resumeAgent, startAgent } from '../runtime/session.ts'

const AGENTS = path.join(import.meta.dirname, '..', 'agents-as', 'build')
const ECHO = fs.readFileSync(path.join(AGENTS, 'echo.wasm'))
const ECHO_MANIFEST = JSON.parse(fs.readFileSync(path.join(AGENTS, 'echo.manifest.json'), 'utf8')) as Record<string, unknown>
const HOST = '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'

const made: string[] = []
const tmp = (): string => { const d = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-mailbox-')); made.push(d); return d }
test.after.each(() => { for (const d of made.splice(0)) { fs.chmodSync(d, 0o700); fs.rmSync(d, { recursive: true, force: true }) } })

let counter = 0
const freshId = (): Uint8Array => { const b = new Uint8Array(16); new DataView(b.buffer).setUint32(12, ++counter); return b }
const hex = (u: Uint8Array): string => Buffer.from(u).toString('hex')
const message = (body: string, id = freshId()): Incoming => ({ id, kind: 'message', from: HOST, time: 1_700_000_000_000_000_000n, body: new Uint8Array(Buffer.from(body)) })

/** The echo agent with `limits` in its manifest's resource_limits; its log lines go to `lines`. */
function echo (limits: Record<string, number> = {}, live = false): { agent: Agent; lines: string[]; manifestBytes: Uint8Array } {
  const lines: string[] = []
  const manifestBytes = new Uint8Array(Buffer.from(JSON.stringify({ ...ECHO_MANIFEST, resource_limits: limits })))
  const agent = Agent.birth({
    wasm: ECHO, manifest: parseManifest(manifestBytes, 'echo.manifest.json'), identity: identityFromSeed(new Uint8Array(32).fill(3)),
    budget: 1_000_000_000n, price: 1000n, inputs: live ? liveInputs() : simulatedInputs('mailbox'), emit: (l) => lines.push(l),
  })
  return { agent, lines, manifestBytes }
}

function box (agent: Agent, dir = tmp(), notes: string[] = []): Mailbox {
  return new Mailbox(agent, { dir, name: 'echo', host: HOST, note: (l) => notes.push(l) })
}

function refused (fn: () => unknown, re: RegExp): DeliveryRefused {
  try { fn() } catch (e) {
    assert.instance(e, DeliveryRefused, (e as Error).message)
    assert.is((e as DeliveryRefused).exitCode, EXIT.REFUSED)
    assert.is(EXIT.REFUSED, 11)
    assert.match((e as Error).message, re)
    return e as DeliveryRefused
  }
  return assert.unreachable(`expected DeliveryRefused matching ${re}`) as never
}

test('deliver numbers messages from io.last + 1, spools each before it returns, and the agent reads them in order', () => {
  const { agent, lines } = echo()
  const mb = box(agent)
  for (let k = 1; k <= 3; k++) {
    const m = message(`hello ${k}`)
    const r = mb.deliver(m)
    assert.equal(r, { seq: k, duplicate: false })
    // durable before deliver returned: the spool file holds exactly the numbered message
    const file = path.join(mb.spool.dir, `${String(k).padStart(12, '0')}.cbor`)
    assert.is(hex(fs.readFileSync(file)), hex(encodeMessage({ ...m, seq: k })))
    assert.is(agent.io.last, k)
  }
  assert.equal(agent.io.pending.map((m) => m.seq), [1, 2, 3])
  const r = agent.runTick()!
  assert.is(r.trap, null)
  assert.equal(lines, [1, 2, 3].map((k) => `echo #${k} from ${HOST}: hello ${k} (${k} so far)`))
  assert.equal(agent.io.pending, [])
  assert.is(agent.io.seen.length, 3)
  assert.is(agent.io.sleep, 0n, 'echo waits for the next message')
  // the seq goes on after consumption: strictly increasing over the agent's life
  assert.equal(mb.deliver(message('four')), { seq: 4, duplicate: false })
})

test('a message that cannot be stored is not taken (StorageError, io unchanged)', () => {
  const { agent } = echo()
  const dir = tmp()
  const mb = box(agent, dir)
  fs.mkdirSync(path.join(dir, 'inbox'), { recursive: true })
  fs.writeFileSync(path.join(dir, 'inbox', 'echo'), 'a file where the spool directory goes')
  const before = agent.io
  assert.throws(() => mb.deliver(message('x')), (e: Error) => e instanceof StorageError && /inbox\/echo: cannot create directory/.test(e.message))
  assert.is(agent.io, before)
  assert.is(agent.io.last, 0)
})

test('a full inbox refuses messages and top-ups (exit 11) but never HTTP outcomes or timer wake-ups', () => {
  const { agent } = echo({ max_inbox_messages: 2 })
  const mb = box(agent)
  mb.deliver(message('a')); mb.deliver(message('b'))
  const e = refused(() => mb.deliver(message('c')), /^inbox of echo is full \(2 messages waiting\)$/)
  assert.is(e.name, 'DeliveryRefused')
  assert.is(agent.io.last, 2, 'nothing numbered')
  assert.is(fs.readdirSync(mb.spool.dir).length, 2, 'nothing spooled')
  // a timer wake-up and an HTTP outcome still get in
  assert.equal(mb.deliver({ id: freshId(), kind: 'timer', from: 'timer', time: 1n, body: new Uint8Array(0), at: 1n }), { seq: 3, duplicate: false })
  agent.io = { ...agent.io, requests: [{ id: 1, tick: 0, method: 'GET', url: 'http://127.0.0.1/', headers: '', body: new Uint8Array(0), key: 'k' }], nextReq: 2, open: 1 }
  assert.equal(mb.deliver({ id: freshId(), kind: 'http', from: 'http', time: 1n, body: new Uint8Array(0), req: 1, status: 200, headers: '' }), { seq: 4, duplicate: false })
  assert.equal(agent.io.requests, [], 'the outcome answers its request')
  // once the agent has read its inbox there is room again
  assert.is(agent.runTick()!.trap, null)
  assert.equal(mb.deliver(message('c')), { seq: 5, duplicate: false })
})

test('a message over max_message_bytes is refused naming the size and the limit; at the limit it is taken', () => {
  const { agent } = echo({ max_message_bytes: 10 })
  const mb = box(agent)
  refused(() => mb.deliver(message('x'.repeat(11))), /^message to echo is 11 bytes, over its max_message_bytes 10$/)
  assert.is(agent.io.last, 0)
  assert.equal(mb.deliver(message('x'.repeat(10))), { seq: 1, duplicate: false })
  // the default limit is 64 KiB
  const d = box(echo().agent)
  refused(() => d.deliver(message('y'.repeat(65_537))), /65537 bytes, over its max_message_bytes 65536/)
  assert.equal(d.deliver(message('y'.repeat(65_536))), { seq: 1, duplicate: false })
})

test('an id the agent has (pending or consumed) is a duplicate: not numbered or stored again', () => {
  const { agent, lines } = echo()
  const mb = box(agent)
  const id = messageIdFrom('00112233445566778899aabbccddeeff')
  assert.equal(mb.deliver(message('once', id)), { seq: 1, duplicate: false })
  assert.equal(mb.deliver(message('twice', id)), { seq: 0, duplicate: true })
  assert.is(agent.io.pending.length, 1)
  agent.runTick()
  assert.equal(mb.deliver(message('thrice', id)), { seq: 0, duplicate: true }, 'consumed ids are remembered')
  assert.is(agent.io.last, 1)
  agent.runTick()
  assert.equal(lines, [`echo #1 from ${HOST}: once (1 so far)`])
  assert.throws(() => messageIdFrom('0011'), (e: Error) => e instanceof DeliveryRefused && /32 hex digits/.test(e.message))
})

test('a tick that traps after reading its messages gives them back (rolled back), in order', () => {
  // echo logs each message: a 300-byte one crosses max_log_bytes_per_tick 200, after inbox_next took it
  const { agent, lines } = echo({ max_log_bytes_per_tick: 200 })
  const mb = box(agent)
  mb.deliver(message('short')); mb.deliver(message('L'.repeat(300)))
  const before = agent.io
  const r = agent.runTick()!
  assert.match(r.trap!, /tick limit: .* > max_log_bytes_per_tick 200/)
  assert.is(agent.io, before, 'the committed inbox is untouched')
  assert.equal(agent.io.pending.map((m) => m.seq), [1, 2])
  assert.equal(agent.io.seen, [])
  // the failed tick's inbox events are recorded (replay re-runs the trap from them)
  const rec = agent.log.pending[agent.log.pending.length - 1]
  assert.equal(rec.events.filter((e) => e[0] === 'inbox').length, 2)
  assert.is(lines.length, 1, 'the first line was emitted before the trap')
  // the big message is over the limit for good: with it out of the way both are consumed
  agent.io = { ...agent.io, pending: agent.io.pending.slice(0, 1) }
  assert.is(agent.runTick()!.trap, null)
  assert.equal(agent.io.pending, [])
})

test('top-ups: a bad signature is refused (exit 11); a good one is taken and applied by the host at the next tick', () => {
  const { agent, lines } = echo()
  const dir = tmp()
  const mb = box(agent, dir)
  const funder = loadHostIdentity(tmp())
  const did = agent.spec.identity.did
  const other = identityFromSeed(new Uint8Array(32).fill(4)).did
  refused(() => mb.deliver(signTopUp(funder, other, 5n, freshId(), 1n)), /^top-up for echo refused: bad signature/)
  const good = signTopUp(funder, did, 5n, freshId(), 1n)
  refused(() => mb.deliver({ ...good, amount: 6n }), /^top-up for echo refused: bad signature/)
  refused(() => mb.deliver({ ...good, from: loadHostIdentity(tmp()).peerId }), /bad signature/)
  assert.is(agent.io.last, 0)
  assert.equal(mb.deliver(good), { seq: 1, duplicate: false })
  assert.equal(mb.deliver(good), { seq: 0, duplicate: true })
  const budget = agent.budget
  const r = agent.runTick()!
  assert.is(agent.budget, budget + 5n - r.cost)
  assert.equal(agent.io.pending, [])
  assert.equal(lines, [], 'the agent never sees a top-up')
})

test('recover after a crash: spool files past the checkpoint, then drop files, are taken back in order', () => {
  const dir = tmp()
  const lines: string[] = []
  const s = startAgent({ dir, price: 1000n, simSeed: 'recover', emit: (l) => lines.push(l) }, { name: 'echo', wasm: ECHO, wasmFile: 'echo.wasm', manifest: new Uint8Array(Buffer.from(JSON.stringify(ECHO_MANIFEST))), manifestFile: 'echo.manifest.json', budget: 1_000_000_000n })
  s.mailbox.deliver(message('one'))
  writeCheckpoint(s.agent, s.lineage, 'running')
  s.mailbox.afterCheckpoint()
  assert.equal(fs.readdirSync(s.mailbox.spool.dir), [], 'pruned: the checkpoint holds message 1')
  s.mailbox.deliver(message('two'))
  s.mailbox.deliver(message('three'))
  // `igord send --dir` while the process runs leaves a drop file; then the process dies
  const spool = new InboxSpool(dir, 'echo')
  spool.putDrop({ ...message('four'), seq: 0 })
  // a spool file at or below the checkpoint's `last` (pruning interrupted) is not taken twice
  spool.put({ ...message('one again'), seq: 1 })
  const r = resumeAgent({ dir, price: 1000n, simSeed: 'recover', emit: (l) => lines.push(l) }, s.ckptPath)
  assert.equal(r.agent.io.pending.map((m) => [m.seq, Buffer.from(m.body).toString()]), [[1, 'one'], [2, 'two'], [3, 'three'], [4, 'four']])
  assert.is(r.agent.io.last, 4)
  assert.equal(spool.drops(), [], 'the drop file is numbered and removed')
  assert.equal(spool.list(3).map((m) => m.seq), [4], 'and spooled as #4')
  r.agent.runTick()
  assert.equal(lines.map((l) => l.replace(/ from \S+:/, ':')), ['echo #1: one (1 so far)', 'echo #2: two (2 so far)', 'echo #3: three (3 so far)', 'echo #4: four (4 so far)'])
})

test('recover stops at a gap in the spool; drops refused while full stay, a refused top-up drop is set aside', () => {
  const { agent } = echo({ max_inbox_messages: 2 })
  const dir = tmp()
  const notes: string[] = []
  const mb = box(agent, dir, notes)
  mb.spool.put({ ...message('1'), seq: 1 })
  mb.spool.put({ ...message('3'), seq: 3 })
  const bad = signTopUp(loadHostIdentity(tmp()), identityFromSeed(new Uint8Array(32).fill(9)).did, 5n, freshId(), 1n)
  mb.spool.putDrop({ ...bad, seq: 0, time: 1n })
  mb.spool.putDrop({ ...message('d1'), seq: 0, time: 2n })
  mb.spool.putDrop({ ...message('d2'), seq: 0, time: 3n })
  mb.recover(HOST)
  assert.equal(agent.io.pending.map((m) => Buffer.from(m.body).toString()), ['1', 'd1'], 'seq 3 after a gap is not taken; d2 does not fit')
  assert.equal(mb.spool.drops().map((d) => Buffer.from(d.msg.body).toString()), ['d2'])
  const aside = path.join(mb.spool.dir, `.bad-in-${hex(bad.id)}.cbor`)
  assert.ok(fs.existsSync(aside), 'the badly signed top-up is kept, set aside')
  assert.match(notes.join('\n'), /echo: drop file .* refused: top-up for echo refused: bad signature.*; set aside as .*\.bad-in-/)
  // room again: the next ingest takes d2
  agent.runTick()
  assert.is(mb.ingestDrops(), 1)
  assert.equal(agent.io.pending.map((m) => Buffer.from(m.body).toString()), ['d2'])
})

test('recover settles unsafe requests a crash left without outcome: in doubt with a mark or another host, else sent again', () => {
  const { agent } = echo()
  const mb = box(agent)
  const req = (id: number, method: string): HttpRequestRecord => ({ id, tick: 1, method, url: 'http://127.0.0.1:9/', headers: '', body: new Uint8Array(0), key: `k/${id}` })
  agent.io = { ...agent.io, requests: [req(1, 'POST'), req(2, 'POST'), req(3, 'GET')], nextReq: 4, open: 3 }
  mb.journal.markSent(1)
  mb.recover(HOST)
  assert.equal(agent.io.requests.map((r) => r.id), [2, 3], 'POST #1 had a mark: in doubt; POST #2 never left; GET #3 goes again')
  assert.equal(agent.io.pending.map((m) => [m.kind, m.req, m.status]), [['http', 1, E_HTTP_IN_DOUBT]])
  // a checkpoint written by another host: any unsafe request may have left
  const o = echo()
  const mb2 = box(o.agent)
  o.agent.io = { ...o.agent.io, requests: [req(2, 'POST'), req(3, 'GET')], nextReq: 4, open: 2 }
  mb2.recover('12D3KooWSomeoneElse')
  assert.equal(o.agent.io.requests.map((r) => r.id), [3])
  assert.equal(o.agent.io.pending.map((m) => [m.req, m.status]), [[2, E_HTTP_IN_DOUBT]])
})

test('wait: a message wakes an agent waiting for one; the interval passes; abort ends it', async () => {
  const { agent } = echo()
  const mb = box(agent)
  agent.runTick() // echo asks sleep_until(0)
  assert.is(agent.io.sleep, 0n)
  const ac = new AbortController()
  const guard = setTimeout(() => ac.abort(), 30_000)
  const w = mb.wait(10, ac.signal) // no timer: the interval does not apply
  setTimeout(() => mb.deliver(message('wake')), 100)
  assert.is(await w, 'message')
  // a message delivered between ticks wakes the next wait at once
  mb.deliver(message('early'))
  assert.is(await mb.wait(60_000, ac.signal), 'message')
  // an agent that did not ask to sleep waits the interval
  agent.io = { ...agent.io, sleep: null }
  assert.is(await mb.wait(20, ac.signal), 'interval')
  // every wait on the loop's signal shares one abort listener, and close() removes it
  assert.is(getEventListeners(ac.signal, 'abort').length, 1)
  const w2 = mb.wait(60_000, ac.signal)
  ac.abort()
  assert.is(await w2, 'abort')
  assert.is(await mb.wait(60_000, ac.signal), 'abort', 'a wait on an aborted signal ends at once')
  const other = new AbortController()
  assert.is(await mb.wait(20, other.signal), 'interval')
  assert.is(getEventListeners(other.signal, 'abort').length, 1)
  mb.close()
  assert.is(getEventListeners(other.signal, 'abort').length, 0)
  clearTimeout(guard)
})

test('wait: the timer delivers a `timer` message carrying `at`, never before that time; pollMs takes drop files', async () => {
  const { agent } = echo({}, true)
  const mb = box(agent)
  const guard = AbortSignal.timeout(30_000)
  for (const ms of [1, 2, 3, 5, 7, 11, 13, 17, 30, 2, 4, 6]) {
    const at = agent.spec.inputs.now() + BigInt(ms) * 1_000_000n + 923_456n // not a whole millisecond
    agent.io = { ...agent.io, sleep: at }
    assert.is(await mb.wait(60_000, guard), 'timer')
    const t = agent.io.pending[agent.io.pending.length - 1]
    assert.is(t.kind, 'timer'); assert.is(t.from, 'timer'); assert.is(t.at, at)
    assert.ok(t.time >= at, `woke ${Number(at - t.time) / 1e6} ms before ${at}`)
    assert.ok(agent.spec.inputs.now() >= at)
  }
  // a time already past wakes at once
  agent.io = { ...agent.io, sleep: agent.spec.inputs.now() - 5n }
  assert.is(await mb.wait(60_000, guard), 'timer')
  // a drop file left while it waits is taken by the poll and wakes it
  agent.io = { ...agent.io, sleep: 0n }
  const w = mb.wait(60_000, guard, 20)
  mb.spool.putDrop({ ...message('dropped'), seq: 0 })
  assert.is(await w, 'message')
  assert.is(Buffer.from(agent.io.pending[agent.io.pending.length - 1].body).toString(), 'dropped')
  assert.equal(mb.spool.drops(), [])
})

test('afterCheckpoint prunes the spool up to the checkpoint and the journal to pending requests', () => {
  const { agent } = echo()
  const mb = box(agent)
  mb.deliver(message('a')); mb.deliver(message('b'))
  mb.journal.markSent(5)
  mb.afterCheckpoint()
  assert.equal(fs.readdirSync(mb.spool.dir), [])
  assert.not.ok(mb.journal.wasSent(5))
})

test.run()
