/**
 * Agent-to-agent messages by DID across nodes (issue 9), end to end through the real CLI (`igord
 * node` processes on 127.0.0.1), with the ping and pong agents (agents-as/build/ping.wasm, pong.wasm):
 * - ping on A sends numbered messages to pong's DID; pong (on B, then moved to C mid-stream)
 *   answers each: every message arrives exactly once, in order, on both sides; the histories of
 *   both agents replay VALID;
 * - a message to a DID nobody hosts comes back to ping as a bounce with the reason;
 * - a forged message (a bad signature; a valid signature of a sender DID the sending peer does not
 *   host) is refused by the recipient's node and never reaches the agent.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { generateIdentity } from '../checkpoint/identity.ts'
import { signEnvelope, E_MSG_REFUSED } from '../checkpoint/envelope.ts'
import { outboundId } from '../checkpoint/io.ts'
import { sendEnvelope } from '../p2p/msg.ts'
import { DEFAULT_TIMEOUTS } from '../p2p/migrate.ts'
import { parseMultiaddr, startPeer } from '../p2p/peer.ts'
import { agentWasm, cleanup, igord } from './helpers.ts'
import { nodeTracker, ps, startNode, stopNode, until } from './node-helpers.ts'

const { track, killAll } = nodeTracker()
test.after.each(killAll)
test.after(cleanup)

/** `[text, n, from]` of every `<who> got "<text>" from <did> (<n> so far)` line of agent `who` in `out`. */
function got (out: string, who: 'ping' | 'pong'): [string, number, string][] {
  return [...out.matchAll(new RegExp(`^\\[${who}\\] ${who} got "(.*)" from (\\S+) \\((\\d+) so far\\)$`, 'gm'))].map((m) => [m[1], Number(m[3]), m[2]])
}

/** Each distinct text once, in the order first seen (a tick re-run after a crash could print a line again). */
function texts (lines: [string, number, string][]): string[] { return lines.map(([t]) => t) }

test('ping (A) ↔ pong (B, moved to C mid-stream): each message exactly once, in order; both histories replay VALID', async () => {
  const a = track(await startNode())
  const b = track(await startNode({ args: ['--bootstrap', a.addr] }))
  const c = track(await startNode({ args: ['--bootstrap', a.addr, '--bootstrap', b.addr] }))
  for (const [n, agent] of [[a, 'ping'], [b, 'pong']] as const) {
    const r = igord(['run', agentWasm(agent), '--node', n.dir])
    assert.is(r.code, 0, r.stderr)
  }
  const pongDid = ps(b.dir).find((x) => x.name === 'pong')!.did
  const pingDid = ps(a.dir).find((x) => x.name === 'ping')!.did
  const N = 40
  // at most one message per 250 ms (window 8): messages go out pipelined faster than pong can be
  // migrated, and the migration must happen mid-stream
  const s = igord(['send', 'ping', `${pongDid} ${N} 8 250`, '--node', a.dir])
  assert.is(s.code, 0, s.stderr)
  await until(() => got(b.live.stdout(), 'pong').length >= 5, 30_000, 'pong got 5 messages')
  const m = igord(['migrate', 'pong', '--to', c.addr, '--node', b.dir, '--json'])
  assert.is(m.code, 0, m.stderr)
  await until(() => got(a.live.stdout(), 'ping').length >= N, 60_000, `ping got ${N} answers`)
  const endA = await stopNode(a); const endB = await stopNode(b); const endC = await stopNode(c)
  for (const e of [endA, endB, endC]) assert.is(e.code, 0, e.stderr)
  const pong = [...got(endB.stdout, 'pong'), ...got(endC.stdout, 'pong')]
  const ping = got(endA.stdout, 'ping')
  const want = (w: string) => Array.from({ length: N }, (_, i) => `${w} ${i + 1}`)
  assert.equal(texts(pong), want('ping'), 'pong got each ping once, in order')
  assert.equal(pong.map(([, n]) => n), Array.from({ length: N }, (_, i) => i + 1), 'pong counted each once, the count going on at C')
  assert.ok(pong.every(([, , from]) => from === pingDid), 'from is ping\'s DID')
  assert.equal(texts(ping), want('pong'), 'ping got each answer once, in order')
  assert.ok(ping.every(([, , from]) => from === pongDid))
  assert.ok(got(endC.stdout, 'pong').length > 0, 'pong answered from C too')
  const va = igord(['verify', a.dir, '--replay'])
  assert.is(va.code, 0, va.stdout + va.stderr)
  assert.match(va.stdout, /VALID/)
  const vb = igord(['verify', b.dir, c.dir, '--replay'])
  assert.is(vb.code, 0, vb.stdout + vb.stderr)
  assert.match(vb.stdout, /VALID/)
})

test('a message to a DID nobody hosts comes back to the sender as a bounce with the reason', async () => {
  const a = track(await startNode({ args: ['--msg-lookup', '500ms'] }))
  const r = igord(['run', agentWasm('ping'), '--node', a.dir])
  assert.is(r.code, 0, r.stderr)
  const nobody = generateIdentity().did
  assert.is(igord(['send', 'ping', `${nobody} 2`, '--node', a.dir]).code, 0)
  await until(() => (a.live.stdout().match(/^\[ping\] ping bounce/gm) ?? []).length >= 2, 30_000, 'two bounces')
  const end = await stopNode(a)
  assert.is(end.code, 0, end.stderr)
  const bounces = [...end.stdout.matchAll(/^\[ping\] ping bounce #(\d+) \((-?\d+)\): (.*)$/gm)].map((x) => [Number(x[1]), Number(x[2]), x[3]])
  assert.equal(bounces.map(([n, code]) => [n, code]), [[1, -20], [2, -20]])
  assert.match(String(bounces[0][2]), new RegExp(`^no host of ${nobody} found within 0.5 s$`))
  const v = igord(['verify', a.dir, '--replay'])
  assert.is(v.code, 0, v.stdout + v.stderr)
})

test('forged messages are refused: a bad signature, and a sender DID the sending peer does not host', async () => {
  // the igord children are unref'd: a ref'd timer keeps this file alive for the whole test (a run
  // on a loaded machine once ended here with uvu's "Exiting early before testing is finished")
  const alive = setInterval(() => {}, 1000)
  try { await forgedRefused() } finally { clearInterval(alive) }
})

async function forgedRefused (): Promise<void> {
  const b = track(await startNode())
  assert.is(igord(['run', agentWasm('pong'), '--node', b.dir]).code, 0)
  const pongDid = ps(b.dir).find((x) => x.name === 'pong')!.did
  const forger = await startPeer(generateIdentity().seed, ['/ip4/127.0.0.1/tcp/0'])
  try {
    const someone = generateIdentity()
    const good = signEnvelope(someone, { to: pongDid, id: outboundId(someone.did, 1), body: new Uint8Array(Buffer.from('ping 1')) })
    const bad = { ...good, sig: Uint8Array.from(good.sig, (x, i) => i === 0 ? x ^ 1 : x) }
    const addr = [parseMultiaddr(b.addr, 'b')]
    const r1 = await sendEnvelope(forger, b.peer, addr, bad, DEFAULT_TIMEOUTS)
    assert.equal(r1.ok, false)
    if (!r1.ok) {
      assert.is(r1.retry, false); assert.is(r1.code, E_MSG_REFUSED)
      assert.match(r1.reason, /forged or malformed message: the signature does not verify against the sender did:key:/)
    }
    // validly signed by `someone`'s key, but the forger's peer does not host `someone`
    const r2 = await sendEnvelope(forger, b.peer, addr, good, DEFAULT_TIMEOUTS)
    assert.equal(r2.ok, false)
    if (!r2.ok) assert.match(r2.reason, new RegExp(`the sender ${someone.did} is not hosted by the sending peer ${forger.peerId.toString()}`))
  } finally { await forger.stop() }
  const end = await stopNode(b)
  assert.is(end.code, 0, end.stderr)
  assert.equal(got(end.stdout, 'pong'), [], 'pong never got a forged message')
}

test.run()
