/**
 * Waiting for outbox room (issue 9): a `message_send` that finds the outbox full (E_TOO_MANY) sets
 * the I/O state's `blocked`, and the first of the agent's messages that leaves the outbox wakes it
 * — a `room` inbox message when its recipient's host took it (a recorded input, inbox_next kind 5),
 * its `bounce` when it came back. pong (agents-as) and cpong (agents-c) then sleep (waitForRoom /
 * igor_wait_for_room, IDLE) instead of ticking again and again (MORE) while the outbox is full,
 * and still answer every message, in order, once room is back; replay stays VALID.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { setImmediate as turn, setTimeout as sleep } from 'node:timers/promises'
import { encode } from '../checkpoint/cbor.ts'
import { CheckpointError } from '../checkpoint/errors.ts'
import type { Envelope, SendOutcome } from '../checkpoint/envelope.ts'
import { identityFromSeed } from '../checkpoint/identity.ts'
import { decodeIo, decodeMessage, emptyIo, encodeIo, encodeMessage, isEmptyIo } from '../checkpoint/io.ts'
import type { Message } from '../checkpoint/io.ts'
import { messageLayout } from '../hostcalls/igor.ts'
import { parseManifest } from '../hostcalls/manifest.ts'
import { replayHistory } from '../runtime/replay.ts'
import { runLoop } from '../runtime/runner.ts'
import { startAgent } from '../runtime/session.ts'

const ROOT = path.join(import.meta.dirname, '..')
const made: string[] = []
const tmp = (): string => { const d = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-room-')); made.push(d); return d }
test.after.each(() => { for (const d of made.splice(0)) fs.rmSync(d, { recursive: true, force: true }) })
const B = identityFromSeed(new Uint8Array(32).fill(8))

function throwsCk (fn: () => unknown, re: RegExp): void {
  try { fn() } catch (e) { assert.instance(e, CheckpointError); assert.match((e as Error).message, re); return }
  assert.unreachable(`expected CheckpointError ${re}`)
}

test('io blocked: absent unless set (older bytes unchanged), round-trips, anything but true is refused', () => {
  assert.is(Buffer.from(encodeIo(emptyIo())).toString('hex'), Buffer.from(encode({ v: 1, last: 0, open: 0, seen: [], sleep: null, nextReq: 1, pending: [], requests: [] })).toString('hex'))
  const s = { ...emptyIo(), blocked: true }
  assert.not.ok(isEmptyIo(s))
  const bytes = encodeIo(s)
  assert.is(decodeIo(bytes, 'io').blocked, true)
  assert.is(Buffer.from(encodeIo(decodeIo(bytes, 'io'))).toString('hex'), Buffer.from(bytes).toString('hex'))
  const bad = (v: unknown) => encode({ v: 1, last: 0, open: 0, seen: [], sleep: null, nextReq: 1, pending: [], requests: [], blocked: v })
  throwsCk(() => decodeIo(bad(false), 'io'), /^io: field "blocked" must be true when present, got /)
  throwsCk(() => decodeIo(bad(1), 'io'), /^io: field "blocked" must be true when present/)
})

test('manifest max_outbox_messages: 1 … 64, default 64', () => {
  const m = (limits: Record<string, unknown>) => parseManifest(new Uint8Array(Buffer.from(JSON.stringify({ capabilities: ['message'], resource_limits: limits }))), 'm.json')
  assert.is(m({}).inbox.maxOutbox, 64)
  assert.is(m({ max_outbox_messages: 1 }).inbox.maxOutbox, 1)
  for (const bad of [0, 65, 1.5, '2']) {
    try { m({ max_outbox_messages: bad }); assert.unreachable(`${String(bad)} accepted`) } catch (e) {
      assert.match((e as Error).message, /^m\.json: resource_limits\.max_outbox_messages must be an integer from 1 to 64, got /)
    }
  }
})

test('room messages: req required (a message number), no status; inbox_next kind 5 with req and from', () => {
  const room: Message = { id: new Uint8Array(16).fill(5), seq: 3, kind: 'room', from: B.did, time: 7n, body: new Uint8Array(0), req: 9 }
  const back = decodeMessage(encodeMessage(room), 'm')
  assert.equal([back.kind, back.req, back.from, back.status], ['room', 9, B.did, undefined])
  throwsCk(() => encodeMessage({ ...room, req: undefined }), /field "req" is required in a room message/)
  throwsCk(() => encodeMessage({ ...room, req: 0 }), /field "req" must be a message number/)
  throwsCk(() => encodeMessage({ ...room, status: -20 }), /field "status" is not allowed in a room message/)
  const l = messageLayout(room)
  const dv = new DataView(l.buffer, l.byteOffset, l.byteLength)
  assert.is(dv.getUint32(0, true), 5)
  assert.is(dv.getUint32(8, true), 9)
  assert.is(dv.getInt32(4, true), 0)
})

/**
 * Runs `agent` (pong or cpong) with `max_outbox_messages` 1 and a recipient host that takes a
 * message only when the test releases it; `n` pings from B arrive before the first tick.
 */
async function blockedPong (file: string, manifestFile: string, n: number): Promise<void> {
  const dir = tmp()
  const lines: string[] = []
  const waiting: { env: Envelope; answer: (o: SendOutcome) => void }[] = []
  const delivered: string[] = []
  const manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8')) as Record<string, unknown>
  const manifestBytes = new Uint8Array(Buffer.from(JSON.stringify({ ...manifest, resource_limits: { max_outbox_messages: 1 } })))
  assert.is(parseManifest(manifestBytes, 'm').inbox.maxOutbox, 1)
  const name = path.basename(file, '.wasm')
  const s = startAgent({
    dir, price: 1000n, simSeed: 'room', emit: (l) => lines.push(l),
    send: (env) => new Promise<SendOutcome>((resolve) => { waiting.push({ env, answer: resolve }) }),
  }, { name, wasm: fs.readFileSync(file), wasmFile: path.basename(file), manifest: manifestBytes, manifestFile: 'manifest.json', budget: 1_000_000_000n })
  for (let k = 1; k <= n; k++) {
    s.mailbox.deliver({ id: new Uint8Array(16).fill(k), kind: 'message', from: B.did, time: BigInt(k), body: new Uint8Array(Buffer.from(`ping ${k}`)) })
  }
  let ticks = 0
  const results: (number | null)[] = []
  const stop = new AbortController()
  const loop = runLoop(s.agent, s.lineage, { intervalMs: 60_000, mailbox: s.mailbox, signal: stop.signal, onTick: (r) => { ticks++; results.push(r.result) } })
  /** Waits (bounded) until `cond` holds, giving the loop event-loop turns and some wall time. */
  const until = async (cond: () => boolean, what: string): Promise<void> => {
    for (let k = 0; k < 2000 && !cond(); k++) { await turn(); if (k % 20 === 19) await sleep(5) }
    assert.ok(cond(), `${name}: timed out waiting for ${what} (ticks ${ticks}, results ${results.join(',')})\n${lines.join('\n')}`)
  }
  try {
    for (let k = 1; k <= n; k++) {
      await until(() => waiting.length === 1, `answer ${k} on its way`)
      const w = waiting[0]
      assert.is(Buffer.from(w.env.body).toString(), `pong ${k}`)
      if (k < n) {
        // blocked: answer k is on its way, answer k+1 found the outbox full and is held
        await until(() => s.agent.io.blocked, `${name} blocked behind answer ${k}`)
        const at = ticks
        // while nothing leaves the outbox the agent sleeps: give a spinning agent (MORE) every
        // chance to tick — many event-loop turns and some wall time — and count its ticks
        for (let j = 0; j < 200; j++) { await turn(); if (j % 40 === 39) await sleep(10) }
        assert.ok(ticks - at <= 1, `${name} ticked ${ticks - at} times while its outbox was full (last results ${results.slice(at).slice(-20).join(',')})`)
        assert.is(results.at(-1), 0, 'its last tick returned IDLE')
      }
      waiting.shift()
      delivered.push(Buffer.from(w.env.body).toString())
      w.answer({ ok: true, duplicate: false })
    }
    await until(() => s.agent.io.outbox.length === 0 && waiting.length === 0, 'the outbox to empty')
    assert.equal(delivered, Array.from({ length: n }, (_, i) => `pong ${i + 1}`))
    assert.not.ok(s.agent.io.blocked)
    // one tick to read the first n pings, then one per room message, plus at most a few: no spinning
    assert.ok(ticks <= n + 3, `${name}: ${ticks} ticks for ${n} answers through an outbox of 1`)
  } finally {
    stop.abort()
    await loop
    s.mailbox.close()
  }
  // the room messages were read as inputs: replay from the recorded events is VALID
  const v = replayHistory([dir])
  assert.ok(v.valid, JSON.stringify({ d: v.divergence, e: v.error }))
}

test('pong with max_outbox_messages 1 and a slow recipient sleeps while blocked, then answers all 6 in order', async () => {
  await blockedPong(path.join(ROOT, 'agents-as', 'build', 'pong.wasm'), path.join(ROOT, 'agents-as', 'build', 'pong.manifest.json'), 6)
})

test('cpong (C) likewise', async () => {
  await blockedPong(path.join(ROOT, 'agents-c', 'build', 'cpong.wasm'), path.join(ROOT, 'agents-c', 'build', 'cpong.manifest.json'), 6)
})

test('a bounce also wakes a blocked agent (and clears blocked); no room message follows it', async () => {
  const dir = tmp()
  const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'agents-as', 'build', 'pong.manifest.json'), 'utf8')) as Record<string, unknown>
  const manifestBytes = new Uint8Array(Buffer.from(JSON.stringify({ ...manifest, resource_limits: { max_outbox_messages: 1 } })))
  let sends = 0
  const s = startAgent({ dir, price: 1000n, simSeed: 'room-b', emit: () => {}, send: async () => ++sends === 1 ? { ok: false, retry: false, code: -22, reason: 'refused' } : { ok: true, duplicate: false } },
    { name: 'pong', wasm: fs.readFileSync(path.join(ROOT, 'agents-as', 'build', 'pong.wasm')), wasmFile: 'pong.wasm', manifest: manifestBytes, manifestFile: 'm', budget: 1_000_000_000n })
  for (let k = 1; k <= 2; k++) s.mailbox.deliver({ id: new Uint8Array(16).fill(k), kind: 'message', from: B.did, time: 1n, body: new Uint8Array(Buffer.from(`ping ${k}`)) })
  s.agent.runTick()
  assert.ok(s.agent.io.blocked)
  s.mailbox.afterCheckpoint()
  for (let k = 0; k < 200 && s.agent.io.blocked; k++) await turn()
  assert.not.ok(s.agent.io.blocked)
  assert.equal(s.agent.io.pending.map((m) => [m.kind, m.req]), [['bounce', 1]])
  s.mailbox.close()
})

test.run()
