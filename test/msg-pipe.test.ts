// test-timeout: 600
/**
 * Pipelined agent messages, `/igor/msg/1.1.0` (p2p/msg.ts `MsgStream`, `answerMsg`): several
 * messages on one stream, written ahead of their answers.
 * - in process, two libp2p peers on 127.0.0.1 and the host side with stub hooks: every message of
 *   a burst is answered, in push order, on one stream; a message refused with `retry` makes the
 *   host refuse the rest of the stream unseen (none delivered behind it); a final refusal does not;
 *   a 1.0.0 sender (one message a stream) is still answered;
 * - end to end through the real CLI: ping sends 150 messages unpaced (window 64, so dozens are on
 *   their way at once) to pong on another node, whose node is killed with SIGKILL mid-stream and
 *   restarted: every message is delivered exactly once, in order.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { E_MSG_REFUSED, signEnvelope } from '../checkpoint/envelope.ts'
import type { Envelope, SendOutcome } from '../checkpoint/envelope.ts'
import { generateIdentity } from '../checkpoint/identity.ts'
import { DEFAULT_TIMEOUTS } from '../p2p/migrate.ts'
import { answerMsg, MSG_LINGER_MS, MSG_PROTOCOL, MSG_PROTOCOL_V1, MSG_STREAM_BUFFER, MsgStream, sendEnvelope } from '../p2p/msg.ts'
import type { MsgHooks } from '../p2p/msg.ts'
import { parseMultiaddr, startPeer } from '../p2p/peer.ts'
import type { Peer } from '../p2p/peer.ts'
import { Channel, PeerSlots } from '../p2p/wire.ts'
import { newMessageId } from '../runtime/mailbox.ts'
import { agentWasm, cleanup, igord } from './helpers.ts'
import { committedLog, nodeTracker, ps, startNode, stopNode, until } from './node-helpers.ts'
import type { NodeProc } from './node-helpers.ts'

const { track, killAll } = nodeTracker()
test.after.each(killAll)
test.after(cleanup)

const seed = () => new Uint8Array(32).map(() => Math.floor(Math.random() * 256))

/** A host peer answering `/igor/msg/1.1.0` and `/1.0.0` with `hooks`, and a sender peer; `streams` counts the streams the host answered. */
async function pair (hooks: MsgHooks): Promise<{ host: Peer; sender: Peer; addr: string; streams: () => number; stop: () => Promise<void> }> {
  const host = await startPeer(seed(), ['/ip4/127.0.0.1/tcp/0'])
  const sender = await startPeer(seed(), ['/ip4/127.0.0.1/tcp/0'])
  let streams = 0
  const gate = new PeerSlots(16, 128, 'message streams')
  await host.handle([MSG_PROTOCOL, MSG_PROTOCOL_V1], (stream, conn) => {
    streams++
    void answerMsg(new Channel(stream, conn.remotePeer.toString(), MSG_STREAM_BUFFER), hooks, 10_000, gate)
  })
  const addr = `${host.getMultiaddrs()[0].toString()}`
  return { host, sender, addr, streams: () => streams, stop: async () => { await sender.stop(); await host.stop() } }
}

/** `n` envelopes from one agent to another, bodies `m 1` … `m n`. */
function burst (n: number): Envelope[] {
  const a = generateIdentity(); const b = generateIdentity()
  return Array.from({ length: n }, (_, i) => signEnvelope(a, { to: b.did, id: newMessageId(), body: new Uint8Array(Buffer.from(`m ${i + 1}`)) }))
}

const text = (e: Envelope) => Buffer.from(e.body).toString()

test('a burst on one stream: every message answered in push order, delivered in order, one stream', async () => {
  const seen: string[] = []
  const p = await pair({ senderCheck: async () => null, deliver: async (env) => { seen.push(text(env)); await new Promise((r) => setTimeout(r, Math.random() * 3)); return { ok: true, duplicate: false } } })
  try {
    const envs = burst(100)
    const s = new MsgStream(p.sender, p.host.peerId.toString(), [parseMultiaddr(p.addr, 'test')], DEFAULT_TIMEOUTS)
    const order: string[] = []
    const outs = await Promise.all(envs.map((e) => s.push(e).then((o) => { order.push(text(e)); return o })))
    assert.ok(outs.every((o) => o.ok), JSON.stringify(outs.find((o) => !o.ok)))
    assert.equal(seen, envs.map(text), 'delivered in order')
    assert.equal(order, envs.map(text), 'answered in order')
    assert.is(p.streams(), 1, 'one stream')
    assert.not.ok(s.done, 'it lingers for more')
    const more = burst(3)
    assert.ok((await Promise.all(more.map((e) => s.push(e)))).every((o) => o.ok))
    assert.is(p.streams(), 1, 'a message during the linger goes on the same stream')
    await new Promise((r) => setTimeout(r, MSG_LINGER_MS + 300))
    assert.ok(s.done, 'the stream ended once every message was answered and none came for the linger time')
    assert.throws(() => s.push(envs[0]), /ended/)
  } finally { await p.stop() }
})

test('frames that arrive while earlier ones are taken are taken together (deliverMany), in order; a retry in a batch holds the rest', async () => {
  const seen: string[] = []
  const batches: number[] = []
  let refuseAt: string | null = null
  const p = await pair({
    senderCheck: async () => null,
    deliver: async (env) => { seen.push(text(env)); batches.push(1); await new Promise((r) => setTimeout(r, 15)); return { ok: true, duplicate: false } },
    deliverMany: async (envs) => {
      batches.push(envs.length)
      const out: SendOutcome[] = []
      for (const e of envs) {
        if (text(e) === refuseAt) { out.push({ ok: false, retry: true, code: E_MSG_REFUSED, reason: 'not now' }); break }
        seen.push(text(e)); out.push({ ok: true, duplicate: false })
      }
      await new Promise((r) => setTimeout(r, 15))
      while (out.length < envs.length) out.push({ ok: false, retry: true, code: E_MSG_REFUSED, reason: 'behind' })
      return out
    },
  })
  try {
    const envs = burst(60)
    const s = new MsgStream(p.sender, p.host.peerId.toString(), [parseMultiaddr(p.addr, 'test')], DEFAULT_TIMEOUTS)
    const outs = await Promise.all(envs.map((e) => s.push(e)))
    assert.ok(outs.every((o) => o.ok))
    assert.equal(seen, envs.map(text), 'taken in order')
    assert.ok(batches.some((n) => n > 1), `some taken together: ${batches.join(',')}`)
    assert.is(batches.reduce((a, b) => a + b, 0), 60)

    seen.length = 0
    const envs2 = burst(40)
    refuseAt = 'm 20'
    const s2 = new MsgStream(p.sender, p.host.peerId.toString(), [parseMultiaddr(p.addr, 'test')], DEFAULT_TIMEOUTS)
    const outs2 = await Promise.all(envs2.map((e) => s2.push(e)))
    assert.equal(seen, envs2.slice(0, 19).map(text), 'nothing from m 20 on was taken')
    assert.ok(outs2.slice(0, 19).every((o) => o.ok))
    assert.ok(outs2.slice(19).every((o) => !o.ok && o.retry))
  } finally { await p.stop() }
})

test('a message refused with retry: the host refuses the rest of the stream unseen; a final refusal stops nothing', async () => {
  const seen: string[] = []
  let mode: 'retry' | 'final' = 'retry'
  const p = await pair({
    senderCheck: async () => null,
    deliver: async (env): Promise<SendOutcome> => {
      seen.push(text(env))
      if (text(env) === 'm 3') return { ok: false, retry: mode === 'retry', code: E_MSG_REFUSED, reason: 'not now' }
      return { ok: true, duplicate: false }
    },
  })
  try {
    const envs = burst(40)
    const s = new MsgStream(p.sender, p.host.peerId.toString(), [parseMultiaddr(p.addr, 'test')], DEFAULT_TIMEOUTS)
    const outs = await Promise.all(envs.map((e) => s.push(e)))
    assert.equal(outs.slice(0, 2).map((o) => o.ok), [true, true])
    assert.ok(outs.slice(2).every((o) => !o.ok && o.retry), 'm 3 and everything behind it: retry')
    assert.equal(seen, ['m 1', 'm 2', 'm 3'], 'nothing behind m 3 reached the inbox')
    assert.match((outs[3] as { reason: string }).reason, /earlier message/)
    assert.ok(s.done, 'a stream with a message refused with retry takes no more')

    mode = 'final'
    seen.length = 0
    const envs2 = burst(10)
    const s2 = new MsgStream(p.sender, p.host.peerId.toString(), [parseMultiaddr(p.addr, 'test')], DEFAULT_TIMEOUTS)
    const outs2 = await Promise.all(envs2.map((e) => s2.push(e)))
    assert.equal(outs2.map((o) => o.ok), [true, true, false, true, true, true, true, true, true, true])
    assert.is((outs2[2] as { retry: boolean }).retry, false)
    assert.equal(seen, envs2.map(text), 'the rest delivered, in order')
  } finally { await p.stop() }
})

test('a forged message in a burst is refused for good, the others are taken; a 1.0.0-style single send is answered', async () => {
  const seen: string[] = []
  const p = await pair({ senderCheck: async () => null, deliver: async (env) => { seen.push(text(env)); return { ok: true, duplicate: false } } })
  try {
    const envs = burst(5)
    envs[1] = { ...envs[1], sig: new Uint8Array(64) }
    const s = new MsgStream(p.sender, p.host.peerId.toString(), [parseMultiaddr(p.addr, 'test')], DEFAULT_TIMEOUTS)
    const outs = await Promise.all(envs.map((e) => s.push(e)))
    assert.equal(outs.map((o) => o.ok), [true, false, true, true, true])
    assert.match((outs[1] as { reason: string }).reason, /forged or malformed message/)
    assert.equal(seen, ['m 1', 'm 3', 'm 4', 'm 5'])
    const one = await sendEnvelope(p.sender, p.host.peerId.toString(), [parseMultiaddr(p.addr, 'test')], burst(1)[0], DEFAULT_TIMEOUTS)
    assert.equal(one, { ok: true, duplicate: false })
  } finally { await p.stop() }
})

test('an unreachable host: every message of the stream comes back retry', async () => {
  const p = await pair({ senderCheck: async () => null, deliver: async () => ({ ok: true, duplicate: false }) })
  const addr = p.addr
  const id = p.host.peerId.toString()
  await p.host.stop()
  try {
    const s = new MsgStream(p.sender, id, [parseMultiaddr(addr, 'test')], { ...DEFAULT_TIMEOUTS, dialMs: 2000 })
    const outs = await Promise.all(burst(5).map((e) => s.push(e)))
    assert.ok(outs.every((o) => !o.ok && o.retry), JSON.stringify(outs))
  } finally { await p.sender.stop() }
})

/** `[text, n]` of every `<who> got "<text>" from <did> (<n> so far)` line in the committed history of agent `who` in data directory `dir`. */
function durable (dir: string, who: 'ping' | 'pong'): [string, number][] {
  const re = new RegExp(`^${who} got "(.*)" from \\S+ \\((\\d+) so far\\)$`)
  return committedLog(dir, who).map((t) => re.exec(t)).filter((m) => m !== null).map((m) => [m[1], Number(m[2])])
}

/** `[text, n]` of every `[<who>] <who> got "<text>" from <did> (<n> so far)` line a node printed. */
function got (out: string, who: 'ping' | 'pong'): [string, number][] {
  return [...out.matchAll(new RegExp(`^\\[${who}\\] ${who} got "(.*)" from \\S+ \\((\\d+) so far\\)$`, 'gm'))].map((m) => [m[1], Number(m[2])])
}

test('kill -9 of the recipient\'s node while dozens of pipelined messages are on their way, restart: each delivered exactly once, in order', async () => {
  const a = track(await startNode())
  const b = track(await startNode({ args: ['--bootstrap', a.addr] }))
  for (const [n, agent] of [[a, 'ping'], [b, 'pong']] as [NodeProc, string][]) {
    const r = igord(['run', agentWasm(agent), '--node', n.dir])
    assert.is(r.code, 0, r.stderr)
  }
  const pongDid = ps(b.dir).find((x) => x.name === 'pong')!.did
  const N = 150
  const s = igord(['send', 'ping', `${pongDid} ${N}`, '--node', a.dir]) // window 64, no pause
  assert.is(s.code, 0, s.stderr)
  await until(() => new Set(got(b.live.stdout(), 'pong').map(([t]) => t)).size >= 20, 120_000, 'pong to have got 20 messages')
  b.live.child.kill('SIGKILL')
  const dead = await b.live.done()
  const b2 = track(await startNode({ dir: b.dir, args: ['--listen', b.addr.split('/p2p/')[0], '--bootstrap', a.addr] }))
  await until(() => new Set(got(a.live.stdout(), 'ping').map(([t]) => t)).size >= N, 240_000, `ping to have got ${N} answers`)
  const endA = await stopNode(a); const endB = await stopNode(b2)
  for (const e of [endA, endB]) assert.is(e.code, 0, e.stderr)
  // The proof is each agent's durable log (`igord logs`: the committed ticks of its history). The
  // nodes' stdout is only a view: a tick re-run after the kill may print a line again (always with
  // the same count), and lines still on their way from a tick thread to the main thread when the
  // node is killed are lost although their ticks were committed (seen in CI: pong's ticks for
  // "ping 22"…"ping 32" were committed and answered, and never printed).
  const once = (lines: [string, number][]) => {
    const seen = new Map<string, Set<number>>()
    for (const [t, k] of lines) seen.set(t, (seen.get(t) ?? new Set()).add(k))
    return [...seen.entries()].map(([t, ks]) => [t, [...ks]])
  }
  const want = (w: string) => Array.from({ length: N }, (_, i) => [`${w} ${i + 1}`, i + 1])
  process.stdout.write(`  (pong had logged ${new Set(got(dead.stdout, 'pong').map(([t]) => t)).size} messages when its node was killed)\n`)
  assert.equal(durable(b.dir, 'pong'), want('ping'), 'pong\'s history: each ping exactly once, in order')
  assert.equal(durable(a.dir, 'ping'), want('pong'), 'ping\'s history: each answer exactly once, in order')
  const printed = once([...got(dead.stdout, 'pong'), ...got(endB.stdout, 'pong')])
  assert.ok(printed.every(([t, ks]) => ks.length === 1 && (ks as number[])[0] === Number((t as string).split(' ')[1])), 'no ping printed twice with different counts')
  assert.equal(once(got(endA.stdout, 'ping')), want('pong').map(([t, k]) => [t, [k]]), 'ping printed each answer exactly once, in order')
  assert.ok(got(endB.stdout, 'pong').length > 0, 'the stream went on after the restart')
})

test.run()
