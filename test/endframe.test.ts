/**
 * The migration `end` frame (p2p/endframe.ts, docs/PROTOCOL.md "`end` frame"): entries the replay
 * base's I/O state shares with the offered checkpoint's (pending inbox messages, outbox messages,
 * HTTP requests) travel with their body once — `baseIo` leaves it out, `baseShared` lists it — and
 * the target rebuilds the base's exact bytes (its CID checked); hostile `baseShared` values are
 * refused naming the entry; and `end` always fits one frame: over the bound the offer goes without
 * the base, and an agent whose own log and I/O state are over it is refused before anything is sent.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { decode, encode } from '../checkpoint/cbor.ts'
import { verifyHistory } from '../checkpoint/history.ts'
import { identityFromSeed } from '../checkpoint/identity.ts'
import { cidOf } from '../checkpoint/hash.ts'
import { emptyIo, encodeIo } from '../checkpoint/io.ts'
import type { HttpRequestRecord, IoState, Message, OutboundMessage } from '../checkpoint/io.ts'
import { planEnd, restoreBaseIo, shareBaseIo, sharedOf } from '../p2p/endframe.ts'
import { NetworkError, RequestError } from '../p2p/errors.ts'
import { IgordNode } from '../p2p/node.ts'
import { MAX_FRAME } from '../p2p/wire.ts'
import { agentWasm, cleanup, tempDir } from './helpers.ts'

test.after(cleanup)

const DID = 'did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK'
const id = (k: number): Uint8Array => { const b = new Uint8Array(16); new DataView(b.buffer).setUint32(12, k); return b }
/** A body of `n` bytes made of `tag` repeated: easy to count in a frame. */
const body = (tag: string, n: number): Uint8Array => new Uint8Array(Buffer.alloc(n, tag))
const msg = (seq: number, b: Uint8Array): Message => ({ id: id(seq), seq, kind: 'message', from: DID, time: BigInt(seq), body: b })
const out = (n: number, b: Uint8Array): OutboundMessage => ({ n, tick: n, to: DID, id: id(1000 + n), body: b })
const req = (rid: number, b: Uint8Array): HttpRequestRecord => ({ id: rid, tick: 1, method: 'POST', url: 'http://127.0.0.1/x', headers: '', body: b, key: `${DID}/1/${rid}` })
/** How often `needle` occurs in `hay`, not overlapping. */
function count (hay: Uint8Array, needle: Uint8Array): number {
  let k = 0
  for (let at = Buffer.from(hay).indexOf(needle); at >= 0; at = Buffer.from(hay).indexOf(needle, at + needle.length)) k++
  return k
}

/** P (the base) and C (offered): C consumed message 1, kept 2 and 3, took 4; outbox 1 acked, 2 kept, 3 new; request 1 kept. */
function states (): { p: IoState; c: IoState } {
  const p: IoState = { ...emptyIo(), last: 3, pending: [msg(1, body('a', 5000)), msg(2, body('b', 5000)), msg(3, body('c', 5000))], requests: [req(1, body('r', 3000))], nextReq: 2, open: 1, outbox: [out(1, body('o', 4000)), out(2, body('p', 4000))], nextMsg: 3 }
  const c: IoState = { ...emptyIo(), last: 4, pending: [msg(2, body('b', 5000)), msg(3, body('c', 5000)), msg(4, body('d', 5000))], seen: [id(1)], requests: [req(1, body('r', 3000))], nextReq: 2, open: 1, outbox: [out(2, body('p', 4000)), out(3, body('q', 4000))], nextMsg: 4, blocked: true }
  return { p, c }
}

test('shared bodies travel once: baseIo leaves them out, baseShared lists them, the target rebuilds P\'s exact bytes', () => {
  const { p, c } = states()
  const pb = encodeIo(p); const cb = encodeIo(c)
  const s = shareBaseIo(pb, cb)
  assert.equal(s.shared, { pending: [2, 3], outbox: [2], requests: [1] })
  assert.ok(pb.length - s.baseIo.length >= 5000 + 5000 + 4000 + 3000, `saved ${pb.length - s.baseIo.length} bytes`)
  const plan = planEnd('pong', { seed: new Uint8Array(32), log: new Uint8Array([1, 2, 3]), io: cb }, pb)
  assert.ok(plan.withBase)
  assert.is(plan.savedBytes, pb.length - s.baseIo.length)
  // every body in one frame exactly once: shared ones (b, c, p, r) and P's own (a, o)
  for (const [tag, n] of [['a', 5000], ['b', 5000], ['c', 5000], ['d', 5000], ['o', 4000], ['p', 4000], ['q', 4000], ['r', 3000]] as const) {
    assert.is(count(plan.frame, body(tag, n)), 1, `body ${tag}`)
  }
  const f = decode(plan.frame, 'end') as Record<string, unknown>
  assert.equal(Object.keys(f).sort(), ['baseIo', 'baseShared', 'io', 'key', 'log', 't'])
  const back = restoreBaseIo(f.baseIo as Uint8Array, sharedOf(f.baseShared), f.io as Uint8Array, cidOf(pb))
  assert.is(Buffer.from(encodeIo(back)).toString('hex'), Buffer.from(pb).toString('hex'))
  // nothing shared (C has no io, or nothing in common): P's blob goes as is, without baseShared
  assert.equal(shareBaseIo(pb, null), { baseIo: pb, shared: null })
  const lone = encodeIo({ ...emptyIo(), last: 9, pending: [msg(9, body('z', 10))] })
  assert.equal(shareBaseIo(pb, lone).shared, null)
  assert.is(restoreBaseIo(pb, null, lone, cidOf(pb)).last, 3)
})

test('hostile baseShared or bodies are refused naming the entry; a changed body fails the CID check', () => {
  const { p, c } = states()
  const pb = encodeIo(p); const cb = encodeIo(c)
  const s = shareBaseIo(pb, cb)
  const want = cidOf(pb)
  const refused = (fn: () => unknown, re: RegExp): void => {
    try { fn() } catch (e) { assert.instance(e, NetworkError); assert.match((e as Error).message, re); return }
    assert.unreachable(`expected NetworkError ${re}`)
  }
  refused(() => restoreBaseIo(s.baseIo, { ...s.shared!, pending: [2, 3, 7] }, cb, want), /^verify: "baseShared" lists pending message 7, which the replay base's I\/O state does not hold/)
  refused(() => restoreBaseIo(s.baseIo, { ...s.shared!, outbox: [1, 2] }, cb, want), /^verify: "baseShared" lists outbox message 1, whose body was sent/)
  refused(() => restoreBaseIo(s.baseIo, s.shared, encodeIo({ ...c, pending: c.pending.slice(1) }), want), /^verify: "baseShared" lists pending message 2, which the offered checkpoint's I\/O state does not hold/)
  refused(() => restoreBaseIo(s.baseIo, s.shared, encodeIo({ ...c, outbox: [{ ...c.outbox[0], body: body('x', 4000) }, c.outbox[1]] }), want), /^verify: "baseIo" with the bodies "baseShared" names does not match the replay base's io CID/)
  refused(() => restoreBaseIo(s.baseIo, s.shared, null, want), /^verify: "baseShared" names bodies of an I\/O state the offered checkpoint does not have/)
  refused(() => restoreBaseIo(s.baseIo, null, cb, want), /^verify: "baseIo" does not match the replay base's io CID/)
  refused(() => sharedOf([1]), /^end: field "baseShared" must be a map/)
  refused(() => sharedOf({ pending: [3, 2] }), /^end: field "baseShared" \.pending must hold ascending integers ≥ 1/)
  refused(() => sharedOf({ pending: [0] }), /ascending integers ≥ 1/)
  refused(() => sharedOf({ extra: [] }), /^end: field "baseShared" has an unknown key "extra"/)
  assert.equal(sharedOf({ outbox: [1n, 5] }), { pending: [], outbox: [1, 5], requests: [] })
})

test('end always fits one frame: over the bound the base is left out; an agent whose own log and io are over it cannot move (before anything is sent)', () => {
  // the bound a target reads `end` under is the one planEnd keeps by default
  assert.is(MAX_FRAME, 64 * 1024 * 1024 + 64 * 1024)
  const { p, c } = states()
  const pb = encodeIo(p); const cb = encodeIo(c)
  const live = { seed: new Uint8Array(32), log: body('l', 20_000), io: cb }
  const whole = planEnd('pong', live, pb)
  assert.ok(whole.withBase)
  // a bound that holds C's part but not P's unshared rest: the offer goes without the base
  const own = encode({ t: 'end', key: live.seed, log: live.log, io: cb }).length
  assert.is(own, planEnd('pong', live, undefined).frame.length)
  const noBase = planEnd('pong', live, pb, own + 100)
  assert.not.ok(noBase.withBase)
  assert.is(noBase.frame.length, own)
  assert.ok(noBase.frame.length <= own + 100)
  // the worst case for these sizes: nothing shared (every body of P differs from C's) — with the
  // bound at exactly whole-without-sharing, it still fits; one byte less, and the base is left out
  const disjoint = encodeIo({ ...p, pending: p.pending.map((m) => ({ ...m, seq: m.seq, id: id(500 + m.seq) })) })
  const worst = planEnd('pong', live, disjoint)
  assert.ok(worst.withBase)
  assert.is(planEnd('pong', live, disjoint, worst.frame.length).withBase, true)
  assert.is(planEnd('pong', live, disjoint, worst.frame.length - 1).withBase, false)
  // over the bound even alone: refused, exit 2, naming the sizes
  try {
    planEnd('pong', live, pb, own - 1)
    assert.unreachable('expected RequestError')
  } catch (e) {
    assert.instance(e, RequestError)
    assert.match((e as Error).message, new RegExp(`^pong cannot move now: its end frame would be ${own} bytes \\(event log 20000, I/O state ${cb.length}\\), over the largest frame ${own - 1}; it can once fewer messages wait in its inbox and outbox$`))
  }
  // whatever the sizes, a planned frame is within its bound
  for (const max of [own, own + 1, own + 5000, whole.frame.length - 1, whole.frame.length, MAX_FRAME]) {
    const plan = planEnd('pong', live, pb, max)
    assert.ok(plan.frame.length <= max, `max ${max}: ${plan.frame.length}`)
  }
})

test('a blocked pong moves between two nodes: the pending pings and the outbox message its replay base shares travel once; replay and history VALID', async () => {
  // pong's answers go to a DID nobody hosts, found by no lookup within the test (msgLookupMs 60 s):
  // with max_outbox_messages 1 its outbox stays full, the pings behind the held answer stay pending
  const mk = (lines: string[]) => IgordNode.start({ dir: tempDir('igord-end-'), listen: ['/ip4/127.0.0.1/tcp/0'], capabilities: ['inbox', 'timer', 'log', 'message'], price: 1000n, intervalMs: 5, msgLookupMs: 60_000, note: () => {}, emit: (_n, l) => lines.push(l) })
  const linesA: string[] = []
  const [a, b] = await Promise.all([mk(linesA), mk([])])
  const ghost = identityFromSeed(new Uint8Array(32).fill(9)).did
  const dir = tempDir('igord-end-agent-')
  const manifest = join(dir, 'pong.manifest.json')
  writeFileSync(manifest, JSON.stringify({ capabilities: ['inbox', 'timer', 'log', 'message'], resource_limits: { max_outbox_messages: 1 } }))
  const tickOf = () => a.list().find((x) => x.name === 'pong')?.tick ?? 0
  const until = async (cond: () => boolean, what: string) => {
    for (let k = 0; k < 600 && !cond(); k++) await new Promise((resolve) => setTimeout(resolve, 50))
    assert.ok(cond(), `timed out waiting for ${what}: tick ${tickOf()}\n${linesA.join('\n')}`)
  }
  const ping = (k: number) => a.deliver('pong', { id: id(k), kind: 'message', from: ghost, time: BigInt(k), body: new Uint8Array(Buffer.from(`ping ${k}`)) })
  try {
    await a.run({ wasm: agentWasm('pong'), manifest, budget: 100_000_000n, intervalMs: 5 })
    for (let k = 1; k <= 4; k++) await ping(k)
    // one tick answers ping 1, holds the answer to ping 2 (outbox full) and leaves 3 and 4 pending
    await until(() => linesA.some((l) => l.includes('got "ping 2"')), 'pong to block behind its first answer')
    const t = tickOf()
    await ping(5) // wakes it: the held answer still finds the outbox full; 3, 4, 5 stay pending
    await until(() => tickOf() > t, 'the tick ping 5 woke')
    await new Promise((resolve) => setTimeout(resolve, 200)) // its checkpoint
    const r = await a.migrate('pong', [b.addrs[0]])
    assert.ok(r.replayedTicks >= 1, `the target replayed from the base (${r.replayedTicks})`)
    assert.ok(r.sharedBytes > 0 && r.baseIoBytes > 0, `bodies shared by the base and the offered I/O state travel once (shared ${r.sharedBytes}, baseIo ${r.baseIoBytes})`)
    assert.is(b.list().find((x) => x.name === 'pong')?.status, 'running')
  } finally { await a.shutdown(); await b.shutdown() }
  const rep = verifyHistory([a.dir, b.dir])
  assert.ok(rep.valid, JSON.stringify(rep.faults.slice(0, 3)))
})

test.run()
