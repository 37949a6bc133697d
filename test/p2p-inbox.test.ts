/**
 * Inbox forwarding (p2p/inbox.ts, `/igor/inbox/1.0.0`) and the inbox across a migration, with
 * in-process nodes (p2p/node.ts) on 127.0.0.1: a node forwards a message for an agent that left to
 * its new host (by name or DID; a retry with the same id is a duplicate there; a top-up too), also
 * after a restart; a forwarded message is never forwarded again; the host refuses frames for agents
 * it does not host, kinds that cannot be forwarded and a `from` that is not the forwarding peer. A
 * message taken in after the loop's final checkpoint travels in the offered checkpoint, and so does
 * an inbox of 1.5 MiB. A target's replay of an HTTP agent's last ticks starts from the replay
 * base's I/O state (request counters). Inbox streams are bounded per peer and by frame size.
 */
import { createServer } from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { signTopUp } from '../checkpoint/fund.ts'
import { encodeMessage } from '../checkpoint/io.ts'
import { verifyHistory } from '../checkpoint/history.ts'
import { replayHistory } from '../runtime/replay.ts'
import { INBOX_PROTOCOL } from '../p2p/inbox.ts'
import { IgordNode } from '../p2p/node.ts'
import type { NodeOptions } from '../p2p/node.ts'
import type { Peer } from '../p2p/peer.ts'
import { Channel } from '../p2p/wire.ts'
import { newMessageId, nowNs } from '../runtime/mailbox.ts'
import type { Incoming } from '../runtime/mailbox.ts'
import * as evil from './evil-peer.ts'
import { agentWasm, cleanup, tempDir } from './helpers.ts'
import { until } from './node-helpers.ts'

test.after(cleanup)

interface TestNode { node: IgordNode; lines: string[]; notes: string[] }

async function start (dir = tempDir('igord-inbox-'), extra: Partial<NodeOptions> = {}): Promise<TestNode> {
  const lines: string[] = []
  const notes: string[] = []
  const node = await IgordNode.start({
    dir, listen: ['/ip4/127.0.0.1/tcp/0'], capabilities: ['clock', 'log', 'inbox', 'timer', 'http', 'wallet'], price: 1000n, intervalMs: 5,
    note: (l) => notes.push(l), emit: (name, l) => lines.push(`${name}: ${l}`), ...extra,
  })
  return { node, lines, notes }
}

function msg (from: string, text: string, id = newMessageId()): Incoming {
  return { id, kind: 'message', from, time: nowNs(), body: new Uint8Array(Buffer.from(text)) }
}

/** The echo lines `echo #<seq> from <from>: <text> (<n> so far)` among `lines`, as [text, n]. */
function echoed (lines: string[]): [string, number][] {
  return lines.flatMap((l) => { const m = /echo #\d+ from \S+: (.*) \((\d+) so far\)$/.exec(l); return m === null ? [] : [[m[1], Number(m[2])] as [string, number]] })
}

test('a message for an agent that left is forwarded to its new host (name, DID, same id = duplicate, top-up); after a restart too', async () => {
  const A = await start(); const B = await start()
  let A2: TestNode | null = null
  try {
    await A.node.run({ wasm: agentWasm('echo'), budget: 100_000_000n, intervalMs: 5 })
    const did = A.node.didOf('echo')
    assert.is((await A.node.deliver('echo', msg(A.node.peerId, 'one'))).seq, 1)
    await until(() => echoed(A.lines).length === 1, 20_000, 'echo on A')
    const r = await A.node.migrate('echo', [B.node.addrs[0]])
    assert.is(r.to, B.node.peerId)
    const id = newMessageId()
    const f = await A.node.deliver('echo', msg(A.node.peerId, 'two', id))
    assert.equal({ name: f.name, did: f.did, seq: f.seq, duplicate: f.duplicate, forwarded: f.forwarded }, { name: 'echo', did, seq: 2, duplicate: false, forwarded: B.node.peerId })
    const again = await A.node.deliver('echo', msg(A.node.peerId, 'two', id))
    assert.is(again.duplicate, true, 'the same id forwarded again is a duplicate at the new host')
    assert.is(again.seq, 0)
    assert.is((await A.node.deliver(did, msg(A.node.peerId, 'three'))).seq, 3, 'by DID')
    await until(() => echoed(B.lines).length === 2, 20_000, 'echo on B')
    assert.equal(echoed(B.lines), [['two', 2], ['three', 3]])
    // a top-up signed by A's operator, forwarded: B's mailbox verifies it and the budget rises
    const before = BigInt(B.node.list()[0].budget)
    const fund = await A.node.deliver('echo', signTopUp(A.node.host, A.node.didOf('echo'), 5000n, newMessageId(), nowNs()))
    assert.is(fund.forwarded, B.node.peerId)
    assert.ok(BigInt(fund.budget) >= before + 5000n - 100_000n, `budget ${fund.budget} after the top-up`)
    // A restarts: it still knows where echo went (handoff checkpoint + migrations.log)
    await A.node.shutdown()
    A2 = await start(A.node.dir)
    const g = await A2.node.deliver('echo', msg(A2.node.peerId, 'four'))
    assert.is(g.forwarded, B.node.peerId)
    assert.is(g.seq, 5, 'seq 4 was the top-up')
    await until(() => echoed(B.lines).length === 3, 20_000, 'echo on B after A restarted')
    assert.equal(echoed(B.lines)[2], ['four', 4])
  } finally { await A.node.shutdown(); await A2?.node.shutdown(); await B.node.shutdown() }
})

test('a forwarded message is not forwarded again: A → B → C (moved on before its first tick at B), A forwards to B, B refuses naming C', async () => {
  const [A, B, C] = await Promise.all([start(), start(), start()])
  try {
    await A.node.run({ wasm: agentWasm('echo'), budget: 100_000_000n, intervalMs: 5 })
    await A.node.migrate('echo', [B.node.addrs[0]])
    await B.node.migrate('echo', [C.node.addrs[0]])
    const e = await A.node.deliver('echo', msg(A.node.peerId, 'lost?')).then(() => null, (x: Error) => x)
    assert.ok(e !== null, 'refused')
    assert.is(e!.name, 'DeliveryRefused')
    assert.match(e!.message, new RegExp(`^${B.node.peerId} refused the forwarded message: did:key:\\S+ moved to ${C.node.peerId} and is no longer here \\(a forwarded message is not forwarded again\\)$`))
    // B itself forwards what is sent to it directly
    assert.is((await B.node.deliver('echo', msg(B.node.peerId, 'via B'))).forwarded, C.node.peerId)
    await until(() => echoed(C.lines).length === 1, 20_000, 'echo on C')
  } finally { await Promise.all([A, B, C].map((n) => n.node.shutdown())) }
  // B moved echo on before its first tick there: it offered a checkpoint at the handoff's tick
  // that follows the handoff (not A's checkpoint, which the handoff to C could not follow)
  const rep = verifyHistory([A.node.dir, B.node.dir, C.node.dir])
  assert.ok(rep.valid, JSON.stringify(rep.faults.slice(0, 3)))
  assert.is(rep.handoffs.length, 2)
})

test('the host refuses: an agent it does not host, a kind that cannot be forwarded, a from that is not the forwarding peer', async () => {
  const B = await start()
  const X: Peer = await evil.startEvil()
  try {
    await B.node.run({ wasm: agentWasm('echo'), budget: 100_000_000n, intervalMs: 5 })
    const ask = async (frame: Record<string, unknown>): Promise<Record<string, unknown>> => {
      const stream = await X.dialProtocol(multiaddr(B.node.addrs[0]), INBOX_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
      const ch = new Channel(stream, B.node.peerId)
      await ch.send(frame as { t: string }, 'msg', 10_000)
      const a = await ch.recv('msg', 10_000, ['ok', 'refuse'])
      ch.abort()
      return a
    }
    const me = X.peerId.toString()
    const m = (o: Partial<Incoming> = {}) => encodeMessage({ ...msg(me, 'hi'), seq: 0, ...o })
    assert.equal(await ask({ t: 'msg', agent: 'nobody', m: m() }), { t: 'refuse', reason: 'no agent named nobody on this node', exit: 11 })
    const bad = await ask({ t: 'msg', agent: 'echo', m: m({ kind: 'timer', from: 'timer', at: 1n }) })
    assert.equal(bad, { t: 'refuse', reason: 'msg: field "m": kind timer cannot be forwarded (only message and fund)', exit: 9 })
    const forged = await ask({ t: 'msg', agent: 'echo', m: m({ from: B.node.peerId }) })
    assert.is(forged.t, 'refuse')
    assert.match(String(forged.reason), /from must be the forwarding peer/)
    const seq1 = await ask({ t: 'msg', agent: 'echo', m: encodeMessage({ ...msg(me, 'x'), seq: 1 }) })
    assert.match(String(seq1.reason), /seq must be 0/)
    const ok = await ask({ t: 'msg', agent: 'echo', m: m() })
    assert.equal(ok, { t: 'ok', seq: 1, duplicate: false, budget: ok.budget })
    await until(() => echoed(B.lines).length === 1, 20_000, 'echo on B')
  } finally { await X.stop(); await B.node.shutdown() }
})

test('bounds: a stream over the per-peer limit is refused at once; a msg frame over 1 MiB + 64 KiB is refused on its length prefix', async () => {
  const B = await start(undefined, { inboxLimits: { maxPerPeer: 1 }, timeouts: { stepMs: 60_000 } })
  const X: Peer = await evil.startEvil()
  try {
    const open = async () => new Channel(await X.dialProtocol(multiaddr(B.node.addrs[0]), INBOX_PROTOCOL, { signal: AbortSignal.timeout(10_000) }), B.node.peerId)
    const first = await open() // admitted; the host waits for its msg frame
    first.stream.send(new Uint8Array([100])) // a length prefix without its frame: the host waits for it
    // (the first stream reaches the host asynchronously: until it does, a second one is admitted and refused for its empty message)
    let refused: Record<string, unknown> | null = null
    for (let k = 0; k < 50 && refused === null; k++) {
      const second = await open()
      await second.send({ t: 'msg', agent: 'echo', m: new Uint8Array(0) }, 'msg', 10_000)
      const a = await second.recv('msg', 10_000, ['refuse'])
      second.abort()
      if (String(a.reason).startsWith('too many')) refused = a
      else await new Promise((resolve) => setTimeout(resolve, 100))
    }
    assert.equal(refused, { t: 'refuse', reason: 'too many concurrent inbox streams from this peer (limit 1)', exit: 9 })
    first.abort()
    // once the first stream ended, a new one is admitted; a frame announcing 2 MiB is refused before its body
    let big: Record<string, unknown> | null = null
    for (let k = 0; k < 50 && big === null; k++) {
      const ch = await open()
      ch.stream.send(new Uint8Array([0x80, 0x80, 0x80, 0x01])) // a length prefix: varint 2^21 = 2 MiB
      const a = await ch.recv('msg', 10_000, ['refuse'])
      ch.abort()
      if (!String(a.reason).startsWith('too many')) big = a
      else await new Promise((resolve) => setTimeout(resolve, 50))
    }
    assert.equal(big, { t: 'refuse', reason: `msg: ${X.peerId.toString()} sent a frame of 2097152 bytes; the limit of this step is ${1024 * 1024 + 64 * 1024} bytes`, exit: 9 })
  } finally { await X.stop(); await B.node.shutdown() }
})

test('a message taken in after the loop\'s final checkpoint travels in the offered checkpoint (delivered once, at the target)', async () => {
  let late: Incoming | null = null
  const A = await start(undefined, {
    faults: {
      async beforeOffer (session) {
        late = msg(A.node.peerId, 'late')
        await session.deliver(late) // straight into the stopped agent's mailbox, after its loop's last checkpoint
      },
    },
  })
  const B = await start()
  try {
    await A.node.run({ wasm: agentWasm('echo'), budget: 100_000_000n, intervalMs: 5 })
    await A.node.deliver('echo', msg(A.node.peerId, 'early'))
    await until(() => echoed(A.lines).length === 1, 20_000, 'echo on A')
    await A.node.migrate('echo', [B.node.addrs[0]])
    await until(() => echoed(B.lines).length === 1, 20_000, 'the late message on B')
    assert.equal(echoed(B.lines), [['late', 2]])
    assert.equal(echoed(A.lines), [['early', 1]])
    // sending it again (same id) reaches B as a duplicate
    assert.is((await A.node.deliver('echo', late!)).duplicate, true)
  } finally { await A.node.shutdown(); await B.node.shutdown() }
  const rep = verifyHistory([A.node.dir, B.node.dir])
  assert.ok(rep.valid, JSON.stringify(rep.faults.slice(0, 3)))
})

test('messages sent while the agent migrates are delivered exactly once, at the source before or at the target after', async () => {
  const A = await start(); const B = await start()
  const sent: string[] = []
  try {
    await A.node.run({ wasm: agentWasm('echo'), budget: 100_000_000n, intervalMs: 5 })
    let stop = false
    const sender = (async () => {
      for (let k = 0; !stop && k < 400; k++) {
        const text = `m${k}`
        const r = await A.node.deliver('echo', msg(A.node.peerId, text))
        assert.is(r.duplicate, false)
        sent.push(text)
        await new Promise((resolve) => setTimeout(resolve, 2))
      }
    })()
    await until(() => sent.length >= 5, 20_000, 'sends before the migration')
    const r = await A.node.migrate('echo', [B.node.addrs[0]])
    assert.is(r.to, B.node.peerId)
    const n = sent.length
    await until(() => sent.length >= n + 5, 20_000, 'sends after the migration')
    stop = true
    await sender
    await until(() => echoed(A.lines).length + echoed(B.lines).length === sent.length, 30_000, 'every message echoed')
    const all = [...echoed(A.lines), ...echoed(B.lines)]
    assert.equal(all.map(([t]) => t), sent, 'each once, in order')
    assert.equal(all.map(([, k]) => k), sent.map((_, i) => i + 1), 'the count goes on at the target')
    assert.ok(echoed(B.lines).length >= 5)
  } finally { await A.node.shutdown(); await B.node.shutdown() }
  const rep = verifyHistory([A.node.dir, B.node.dir])
  assert.ok(rep.valid, JSON.stringify(rep.faults.slice(0, 3)))
})

test('a large inbox travels: 1.5 MiB of messages the agent has not read move with it (the end frame is read under the largest bound)', async () => {
  const A = await start(); const B = await start()
  try {
    // heartbeat, granted an inbox it never reads
    const manifest = join(tempDir('igord-inbox-m-'), 'heartbeat.manifest.json')
    writeFileSync(manifest, JSON.stringify({ capabilities: { clock: { version: 1 }, log: { version: 1 }, inbox: { version: 1 } } }))
    await A.node.run({ wasm: agentWasm('heartbeat'), manifest, budget: 100_000_000n, intervalMs: 5 })
    const big = 'x'.repeat(60 * 1024)
    for (let k = 0; k < 25; k++) assert.is((await A.node.deliver('heartbeat', msg(A.node.peerId, big))).seq, k + 1)
    const r = await A.node.migrate('heartbeat', [B.node.addrs[0]])
    assert.ok(r.bytesSent > 25 * 60 * 1024)
    const again = await B.node.deliver('heartbeat', msg(B.node.peerId, 'next'))
    assert.is(again.seq, 26, 'numbering goes on at the target: the 25 messages came with the agent')
    const back = await B.node.migrate('heartbeat', [A.node.addrs[0]]) // a later visit: the wasm is not sent again
    assert.is(back.to, A.node.peerId)
  } finally { await A.node.shutdown(); await B.node.shutdown() }
})

test('a POST in flight at a migration: the source answers it E_HTTP_IN_DOUBT before its final checkpoint, the target never sends it, the merged life replays VALID from the archived I/O states', async () => {
  let posts = 0
  const held: ServerResponse[] = []
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume()
    req.on('end', () => {
      posts++
      if (posts === 1) { res.writeHead(201); res.end('ok') } else held.push(res) // later ones wait: in flight at the migration
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`
  const A = await start(); const B = await start()
  try {
    await A.node.run({ wasm: agentWasm('poster'), budget: 100_000_000n, intervalMs: 5 })
    await A.node.deliver('poster', msg(A.node.peerId, url))
    await until(() => A.lines.some((l) => /request 1 status 201/.test(l)), 20_000, 'the first outcome')
    await A.node.deliver('poster', msg(A.node.peerId, url))
    await until(() => posts === 2, 20_000, 'the second request sent (its tick is checkpointed)')
    const r = await A.node.migrate('poster', [B.node.addrs[0]])
    assert.is(r.to, B.node.peerId)
    await until(() => B.lines.some((l) => /request 2 error E_HTTP_IN_DOUBT/.test(l)), 20_000, 'the second request in doubt at the target')
    await A.node.deliver('poster', msg(A.node.peerId, url)).then(() => {}, () => {}) // forwarded to B: a third request, sent by B
    await until(() => posts === 3, 20_000, 'the third request sent by the target')
    assert.is(posts, 3, 'request 2 was never sent again')
  } finally {
    for (const res of held) res.destroy()
    server.close()
    await A.node.shutdown(); await B.node.shutdown()
  }
  const rep = replayHistory([A.node.dir, B.node.dir])
  assert.ok(rep.valid, rep.error ?? JSON.stringify(rep.divergence))
})

test.run()
