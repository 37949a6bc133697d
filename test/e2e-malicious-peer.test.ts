/**
 * A malicious peer against a real `igord node` child on 127.0.0.1 (test/evil-peer.ts: a real libp2p
 * stack speaking `/igor/migrate/1.0.0`): garbage bytes, frames claiming huge lengths, oversized
 * frames, a stream that never finishes, 100 concurrent offers, forged offers, a dishonest source's
 * handoffs (bad signature, another target, wrong prev, changed state), a replayed old offer. Each
 * is refused with a reason (the `refuse` frame and the node's log line); afterwards the node still
 * answers `igord ps`, still accepts a legitimate migration, and its peak RSS (VmHWM) stays under
 * {@link RSS_BOUND}.
 */
import { randomBytes } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { identityFromSeed } from '../checkpoint/identity.ts'
import type { LiveCheckpoint } from '../checkpoint/live.ts'
import type { Peer } from '../p2p/peer.ts'
import type { Channel } from '../p2p/wire.ts'
import * as evil from './evil-peer.ts'
import { agentWasm, cleanup, igord } from './helpers.ts'
import { nodeTracker, ps, startNode, until } from './node-helpers.ts'
import type { NodeProc } from './node-helpers.ts'

/** The node's peak resident memory after every attack below must stay under this: 800 MiB (libp2p and the tick pool's worker threads take ~300 MiB idle; at most 8 admitted offers hold one frame buffer each). */
const RSS_BOUND = 800 * 1024 * 1024

const { track, killAll } = nodeTracker()
let T: NodeProc // the node under attack
let X: Peer // the evil peer
let agent: LiveCheckpoint // an agent of the evil peer's own (it holds its key)
const others: Peer[] = []

test.before(async () => {
  T = track(await startNode({ args: ['--migrate-memory', '0'] })) // every offer spooled to disk (the stalled offer below)
  X = await evil.startEvil()
  agent = evil.ownAgent(3)
})
test.after(async () => {
  for (const p of [X, ...others]) { try { await p?.stop() } catch { /* stopped */ } }
  await killAll()
  cleanup()
})

/** Waits until the node under attack logged a line matching `re` (its stderr). */
async function logged (re: RegExp, what: string): Promise<void> {
  await until(() => re.test(T.live.stderr()), 30_000, `the node to log ${what}`)
}
const runsOnT = (name: string) => ps(T.dir).some((a) => a.name === name && a.status === 'running')
const spoolOf = (n: NodeProc) => { try { return readdirSync(join(n.dir, 'migrate', 'spool')) } catch { return [] } }

test('garbage bytes are refused as malformed frames', async () => {
  const ch = await evil.openMigrate(X, T.addr)
  evil.sendRawBytes(ch, Uint8Array.from([0x10, ...new Uint8Array(16).fill(0xff)]))
  assert.match(await evil.refusal(ch), /^offer: malformed frame from \S+: /)
  ch.abort()
  // seeded pseudo-random garbage: refused whatever its first bytes claim
  let x = 0x2545f491
  const junk = Uint8Array.from({ length: 65536 }, () => { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; return x & 255 })
  const ch2 = await evil.openMigrate(X, T.addr)
  evil.sendRawBytes(ch2, junk)
  assert.match(await evil.refusal(ch2), /^offer: (malformed|\S+ sent a (frame of \d+ bytes; the limit|malformed length prefix))/)
  ch2.abort()
  await logged(/inbound migration from \S+: offer: malformed frame/, 'the malformed frame')
})

test('a frame claiming a huge length is refused on its prefix, before any body is read', async () => {
  const ch = await evil.openMigrate(X, T.addr)
  evil.sendRawBytes(ch, evil.varint(2 ** 40))
  assert.match(await evil.refusal(ch), /^offer: \S+ sent a frame of 1099511627776 bytes; the limit of this step is 16777216 bytes$/)
  ch.abort()
  const ch2 = await evil.openMigrate(X, T.addr)
  evil.sendRawBytes(ch2, new Uint8Array(9).fill(0xff))
  assert.match(await evil.refusal(ch2), /^offer: \S+ sent a malformed length prefix/)
  ch2.abort()
})

test('oversized frames: a 20 MiB offer, and a blob frame over 64 MiB after accept, are refused', async () => {
  const ch = await evil.openMigrate(X, T.addr)
  const big = evil.frameBytes({ t: 'offer', pad: new Uint8Array(20 * 1024 * 1024) })
  const sending = ch.sendRaw(big, 'offer', 60_000).catch(() => {})
  assert.match(await evil.refusal(ch), /^offer: \S+ sent a frame of \d{8} bytes; the limit of this step is 16777216 bytes$/)
  await sending
  ch.abort()
  const ch2 = await evil.openMigrate(X, T.addr)
  await ch2.send(evil.offerFrame(agent, 'oversized'), 'offer', 30_000)
  assert.is((await ch2.recv('offer', 30_000, ['accept'])).t, 'accept')
  evil.sendRawBytes(ch2, evil.varint(70 * 1024 * 1024))
  assert.match(await evil.refusal(ch2), /^transfer: \S+ sent a frame of 73400320 bytes; the limit of this step is 67174400 bytes$/)
  ch2.abort()
  await logged(/inbound migration of oversized from \S+: transfer: \S+ sent a frame of 73400320 bytes/, 'the oversized blob frame')
})

test('forged offers: a bad signature, another DID, a key that is not the agent\'s', async () => {
  const badSig = evil.offerFrame(agent, 'forged-sig')
  badSig.sig = Uint8Array.from(agent.sig, (b, i) => i === 0 ? b ^ 1 : b)
  const ch = await evil.openMigrate(X, T.addr)
  await ch.send(badSig, 'offer', 30_000)
  assert.match(await evil.refusal(ch), new RegExp(`^the checkpoint's signature does not verify for ${agent.parsed.agent}$`))
  ch.abort()
  const other = identityFromSeed(randomBytes(32)).did
  const ch2 = await evil.openMigrate(X, T.addr)
  await ch2.send(evil.offerFrame(evil.resigned(agent, (h) => { h.agent = other }), 'forged-did'), 'offer', 30_000)
  assert.match(await evil.refusal(ch2), new RegExp(`^the checkpoint's signature does not verify for ${other}$`))
  ch2.abort()
  const r = await evil.migrateScripted(X, T.addr, agent, 'forged-key', (t) => evil.handoffOf(agent, t), randomBytes(32))
  assert.is(r.offer.t, 'accept')
  assert.is(r.pending?.t, 'refuse')
  assert.is(r.pending?.reason, 'verify: the secret key does not belong to the offered agent')
  for (const n of ['forged-sig', 'forged-did', 'forged-key']) assert.not.ok(runsOnT(n))
  await logged(/inbound migration of forged-key from \S+: verify: the secret key does not belong/, 'the wrong key')
})

test('a stream that never finishes: spooled to disk (0700/0600), refused after the frame timeout, spool and name released', async () => {
  const ch = await evil.openMigrate(X, T.addr)
  await ch.send(evil.offerFrame(agent, 'stalled'), 'offer', 30_000)
  const accept = await ch.recv('offer', 30_000, ['accept'])
  const blobs = evil.blobsOf(agent)
  const want = (accept.want as string[]).map((c) => blobs.get(c)!)
  assert.ok(want.length >= 2, 'the wasm and pages are asked for')
  await ch.send({ t: 'blobs', b: want }, 'transfer', 30_000)
  evil.sendRawBytes(ch, Uint8Array.from([...evil.varint(1000), 1, 2, 3])) // half a frame, then silence
  // the received blobs are on disk, not in memory: one folder 0700 per offer holding one file 0600,
  // the blobs asked for appended in arrival order
  const bytes = want.reduce((n, b) => n + b.length, 0)
  const blobsFile = () => join(T.dir, 'migrate', 'spool', spoolOf(T)[0], 'blobs')
  await until(() => spoolOf(T).length === 1 && existsSync(blobsFile()) && statSync(blobsFile()).size === bytes, 20_000, 'the spool')
  const sp = join(T.dir, 'migrate', 'spool', spoolOf(T)[0])
  assert.is(statSync(sp).mode & 0o777, 0o700)
  assert.is(statSync(join(T.dir, 'migrate', 'spool')).mode & 0o777, 0o700)
  assert.equal(readdirSync(sp), ['blobs'])
  assert.is(statSync(blobsFile()).mode & 0o777, 0o600)
  assert.ok(Buffer.compare(readFileSync(blobsFile()), Buffer.concat(want)) === 0, 'the spool holds exactly the blobs sent')
  const t0 = Date.now()
  assert.match(await evil.refusal(ch, 60_000), /^transfer: no answer from \S+: timed out after 10000 ms$/)
  assert.ok(Date.now() - t0 >= 5000, 'refused by the frame timeout, not before')
  ch.abort()
  await until(() => spoolOf(T).length === 0, 20_000, 'the spool to be deleted')
  // the name is free again: a new offer of it is accepted
  const ch2 = await evil.openMigrate(X, T.addr)
  await ch2.send(evil.offerFrame(agent, 'stalled'), 'offer', 30_000)
  assert.is((await ch2.recv('offer', 30_000, ['accept', 'refuse'])).t, 'accept')
  ch2.abort()
  await until(() => spoolOf(T).length === 0, 20_000, 'the second spool to be deleted')
})

test('100 concurrent offers from one peer: 2 proceed, 98 are refused with the per-peer limit; 10 from 5 peers: 8 proceed', async () => {
  // each stream sends its offer as soon as it is open (an admitted offer then waits 10 s for blobs)
  const chans: Channel[] = []
  const answers = await Promise.all(Array.from({ length: 100 }, async (_, i) => {
    const ch = await evil.openMigrate(X, T.addr)
    chans.push(ch)
    await ch.send(evil.offerFrame(agent, `flood-${i}`), 'offer', 30_000).catch(() => {})
    return await ch.recv('answer', 60_000, ['accept', 'refuse'])
  }))
  const seen = JSON.stringify(Object.entries(Object.groupBy(answers, (f) => `${f.t} ${String(f.reason ?? '')}`)).map(([k, v]) => [k, v!.length]))
  assert.is(answers.filter((f) => f.t === 'accept').length, 2, `${seen}\n${T.live.stderr().slice(-2000)}`)
  const refused = answers.filter((f) => f.t === 'refuse')
  assert.is(refused.length, 98)
  for (const f of refused) assert.is(f.reason, 'too many concurrent offers from this peer (limit 2)')
  for (const ch of chans) ch.abort()
  await until(() => (T.live.stderr().match(/inbound migration of flood-\d+ from \S+: transfer: /g) ?? []).length === 2, 30_000, 'the 2 admitted offers to end')
  // many peers: the node-wide limit
  for (let k = 0; k < 5; k++) others.push(await evil.startEvil())
  const chans2: Channel[] = []
  const answers2 = await Promise.all(others.flatMap((p) => [0, 1].map(async (k) => {
    const ch = await evil.openMigrate(p, T.addr)
    chans2.push(ch)
    await ch.send(evil.offerFrame(agent, `swarm-${others.indexOf(p)}-${k}`), 'offer', 30_000).catch(() => {})
    return await ch.recv('answer', 60_000, ['accept', 'refuse'])
  })))
  assert.is(answers2.filter((f) => f.t === 'accept').length, 8)
  const refused2 = answers2.filter((f) => f.t === 'refuse')
  assert.is(refused2.length, 2)
  for (const f of refused2) assert.is(f.reason, 'too many concurrent offers on this node (limit 8)')
  for (const ch of chans2) ch.abort()
  await until(() => (T.live.stderr().match(/inbound migration of swarm-[\d-]+ from \S+: transfer: /g) ?? []).length === 8, 30_000, 'the 8 admitted offers to end')
  assert.equal(ps(T.dir).filter((a) => /^(flood|swarm)-/.test(a.name)), [])
})

// ── a dishonest source: the offer and transfer are honest, the handoff is not ──────────────────
// Each of these fails when the matching check of p2p/authority.ts checkHandoff is disabled (the
// target then installs and starts the agent and answers `started`).

async function dishonest (name: string, handoff: (target: string) => evil.Signed, reason: RegExp): Promise<void> {
  const r = await evil.migrateScripted(X, T.addr, agent, name, handoff)
  assert.is(r.offer.t, 'accept')
  assert.is(r.pending?.t, 'pending')
  assert.is(r.started?.t, 'refuse', `the target must refuse the handoff, got ${r.started?.t}`)
  assert.match(String(r.started?.reason), reason)
  await logged(new RegExp(`inbound migration of ${name} from \\S+: handoff: `), `the refused handoff of ${name}`)
  assert.not.ok(runsOnT(name), 'the target does not run the agent')
}

test('dishonest source: a handoff with a bad signature is refused', async () => {
  await dishonest('dishonest-sig', (t) => { const h = evil.handoffOf(agent, t); h.sig = Uint8Array.from(h.sig, (b, i) => i === 5 ? b ^ 0x20 : b); return h }, /^handoff: handoff signature does not verify$/)
})

test('dishonest source: a handoff naming another target is refused', async () => {
  await dishonest('dishonest-target', () => evil.handoffOf(agent, X.peerId.toString()), /^handoff: handoff names \S+, not this node$/)
})

test('dishonest source: a handoff of another checkpoint (wrong prev, e.g. a replayed older one) is refused', async () => {
  // a twin of the offered checkpoint (same state, other time): its handoff differs only in `prev`
  const twin = evil.resigned(agent, (h) => { h.time = h.time + 1 })
  await dishonest('dishonest-prev', (t) => evil.handoffOf(twin, t), /^handoff: handoff does not follow the offered checkpoint bafkrei\w+$/)
})

test('dishonest source: a handoff that changes the state root is refused', async () => {
  await dishonest('dishonest-state', (t) => evil.handoffOf(agent, t, (h) => { h.state = Uint8Array.from(h.state, (b, i) => i === 0 ? b ^ 1 : b) }), /^handoff: handoff changes the offered state$/)
})

test('a replayed old offer: refused while the agent runs here, and as stale after it moved on', async () => {
  const r = await evil.migrateScripted(X, T.addr, agent, 'replayed', (t) => evil.handoffOf(agent, t))
  assert.is(r.started?.t, 'started', 'an honest migration by the same peer is accepted')
  await until(() => runsOnT('replayed'), 20_000, 'the agent to run on the target')
  const again = await evil.migrateScripted(X, T.addr, agent, 'replayed', (t) => evil.handoffOf(agent, t))
  assert.is(again.offer.t, 'refuse')
  assert.is(again.offer.reason, 'replayed already runs on this node')
  const B = track(await startNode())
  const m = igord(['migrate', 'replayed', '--to', B.addr, '--node', T.dir], 60_000)
  assert.is(m.code, 0, m.stderr)
  const stale = await evil.migrateScripted(X, T.addr, agent, 'replayed', (t) => evil.handoffOf(agent, t))
  assert.is(stale.offer.t, 'refuse')
  assert.is(stale.offer.reason, `stale offer: epoch ${agent.parsed.epoch} is not after the epoch ${agent.parsed.epoch + 1} this node handed off`)
})

test('after all that: the node answers ps, accepts a legitimate migration, and its peak RSS stayed bounded', async () => {
  const B = track(await startNode())
  const r = igord(['run', agentWasm('heartbeat'), '--node', B.dir, '--interval', '20ms'])
  assert.is(r.code, 0, r.stderr)
  await until(() => (ps(B.dir).find((a) => a.name === 'heartbeat')?.tick ?? 0) >= 2, 20_000, 'ticks on B')
  const m = igord(['migrate', 'heartbeat', '--to', T.addr, '--node', B.dir, '--json'], 60_000)
  assert.is(m.code, 0, m.stderr)
  await until(() => runsOnT('heartbeat'), 20_000, 'heartbeat to run on the attacked node')
  assert.is(T.live.child.exitCode, null, 'the node is still up')
  const mem = evil.memoryOf(T.live.child.pid!)
  process.stderr.write(`attacked node: VmRSS ${(mem.rss / 2 ** 20).toFixed(0)} MiB, VmHWM ${(mem.hwm / 2 ** 20).toFixed(0)} MiB (bound ${RSS_BOUND / 2 ** 20} MiB)\n`)
  assert.ok(mem.hwm < RSS_BOUND, `peak RSS ${mem.hwm} bytes ≥ ${RSS_BOUND}`)
  assert.equal(spoolOf(T), [], 'no spool left behind')
})

test.run()
