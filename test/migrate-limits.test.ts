/**
 * p2p/migrate.ts target limits with an in-process node (p2p/node.ts) and the malicious peer of
 * test/evil-peer.ts, with small limits so that each bound is reached quickly: the whole-offer
 * deadline (a stalled offer is refused by it, not by the frame timeout), empty `blobs` frames, the
 * spool-space reservation, the in-memory receive budget (beyond it, offers are spooled to disk), and
 * the memory an offer's replay base announces, blobs not asked for among pages hashed beside the
 * stream. Each refusal carries its
 * reason, and the offer's reservations (name, slot, spool) are released.
 */
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { headerCid } from '../checkpoint/header.ts'
import type { LiveCheckpoint } from '../checkpoint/live.ts'
import { cidOf } from '../checkpoint/hash.ts'
import { PAGE_SIZE } from '../checkpoint/state.ts'
import { IgordNode } from '../p2p/node.ts'
import { MAX_WASM_BYTES } from '../p2p/migrate.ts'
import { blobsFrameParts } from '../p2p/wire.ts'
import type { TargetLimits, Timeouts } from '../p2p/migrate.ts'
import type { Peer } from '../p2p/peer.ts'
import * as evil from './evil-peer.ts'
import { cleanup, tempDir } from './helpers.ts'

let X: Peer
let agent: LiveCheckpoint
test.before(async () => { X = await evil.startEvil(); agent = evil.ownAgent(3) })
test.after(async () => { try { await X.stop() } catch { /* stopped */ } cleanup() })

async function target (timeouts: Partial<Timeouts>, limits: Partial<TargetLimits> = {}, notes: string[] = []): Promise<IgordNode> {
  return await IgordNode.start({ dir: tempDir('igord-lim-'), listen: ['/ip4/127.0.0.1/tcp/0'], capabilities: ['clock', 'log'], price: 1000n, intervalMs: 5, timeouts, targetLimits: limits, note: (l) => notes.push(l), emit: () => {} })
}
const spool = (n: IgordNode) => { try { return readdirSync(join(n.dir, 'migrate', 'spool')) } catch { return [] } }

test('a stalled offer is refused by the whole-offer deadline (frame timeout 60 s, offer 2 s); its name and spool are released', async () => {
  const notes: string[] = []
  const T = await target({ frameMs: 60_000, stepMs: 60_000, offerMs: 2000 }, {}, notes)
  try {
    const ch = await evil.openMigrate(X, T.addrs[0])
    await ch.send(evil.offerFrame(agent, 'slow'), 'offer', 10_000)
    assert.is((await ch.recv('offer', 10_000, ['accept'])).t, 'accept')
    const t0 = Date.now()
    assert.is(await evil.refusal(ch, 30_000), 'transfer: the offer is still unfinished after 2000 ms (the limit of one offer)')
    assert.ok(Date.now() - t0 < 30_000)
    ch.abort()
    assert.equal(spool(T), [])
    assert.ok(notes.some((l) => /inbound migration of slow from \S+: transfer: the offer is still unfinished/.test(l)), notes.join('\n'))
    // name released: the same name is accepted again; an empty blobs frame is refused
    const ch2 = await evil.openMigrate(X, T.addrs[0])
    await ch2.send(evil.offerFrame(agent, 'slow'), 'offer', 10_000)
    assert.is((await ch2.recv('offer', 10_000, ['accept', 'refuse'])).t, 'accept')
    await ch2.send({ t: 'blobs', b: [] }, 'transfer', 10_000)
    assert.is(await evil.refusal(ch2), 'transfer: field "b" must be a non-empty array of byte strings')
    ch2.abort()
  } finally { await T.shutdown() }
})

test('spool space: an offer needing more than the node\'s free spool is refused before accept', async () => {
  const T = await target({}, { maxSpoolBytes: 1024 * 1024, maxMemoryBytes: 0 })
  try {
    const ch = await evil.openMigrate(X, T.addrs[0])
    await ch.send(evil.offerFrame(agent, 'big'), 'offer', 10_000)
    assert.match(await evil.refusal(ch), /^not enough spool space: the offer needs up to \d+ bytes, 1048576 of the node's 1048576 are free$/)
    ch.abort()
  } finally { await T.shutdown() }
})

test('in-memory receive within the node budget: an offer that fits is held in memory (no spool), a concurrent one over the budget is spooled to disk; the budget is released when an offer ends', async () => {
  const notes: string[] = []
  const need = MAX_WASM_BYTES + new Set(agent.pages.map(([, p]) => cidOf(p))).size * PAGE_SIZE // the wasm and every page are asked for
  const T = await target({}, { maxMemoryBytes: need }, notes)
  try {
    const blobs = evil.blobsOf(agent)
    const stall = async (name: string) => {
      const ch = await evil.openMigrate(X, T.addrs[0])
      await ch.send(evil.offerFrame(agent, name), 'offer', 10_000)
      const accept = await ch.recv('offer', 10_000, ['accept'])
      await ch.send({ t: 'blobs', b: (accept.want as string[]).map((c) => blobs.get(c)!) }, 'transfer', 10_000)
      return ch
    }
    const m1 = await stall('mem1') // fits the budget: in memory
    assert.equal(spool(T), [], 'the first offer is not spooled')
    const m2 = await stall('mem2') // the budget is taken: spooled to disk
    assert.is(spool(T).length, 1, 'the second offer is spooled')
    m1.abort()
    for (let i = 0; i < 400 && !notes.some((l) => /inbound migration of mem1 from/.test(l)); i++) await new Promise((r) => setTimeout(r, 25))
    assert.ok(notes.some((l) => /inbound migration of mem1 from/.test(l)), 'the first offer ended')
    const m3 = await stall('mem3') // the budget was released: in memory again
    assert.is(spool(T).length, 1, 'only the second offer is spooled')
    m2.abort(); m3.abort()
  } finally { await T.shutdown() }
})

test('announced memory: a replay base larger than the manifest allows is refused before accept', async () => {
  const T = await target({})
  try {
    // P (the base) and C (offered, prev = P), both validly signed with the agent's key
    const P = evil.resigned(agent, (h) => { h.tick = h.tick - 1 })
    const C = evil.resigned(agent, (h) => { h.prev = headerCid(P.header) })
    const f = evil.offerFrame(C, 'inflated')
    f.base = { header: P.header, sig: P.sig, pageCount: 60_000, pages: [], globals: [] }
    const ch = await evil.openMigrate(X, T.addrs[0])
    await ch.send(f, 'offer', 10_000)
    assert.is(await evil.refusal(ch), 'the offer\'s replay base announces 60000 pages of memory; the agent\'s manifest allows 1024')
    ch.abort()
  } finally { await T.shutdown() }
})

test('in memory, pages are hashed beside the stream: a page not asked for, or one sent twice in later frames, is refused at once (not by the 60 s frame timeout) and nothing is left in the spool', async () => {
  const T = await target({ frameMs: 60_000, stepMs: 60_000 })
  try {
    const blobs = evil.blobsOf(agent)
    for (const twice of [false, true]) {
      const ch = await evil.openMigrate(X, T.addrs[0])
      await ch.send(evil.offerFrame(agent, twice ? 'dup' : 'stranger'), 'offer', 10_000)
      const want = (await ch.recv('offer', 10_000, ['accept'])).want as string[]
      const pages = want.map((c) => blobs.get(c)!).filter((b) => b.length === PAGE_SIZE)
      assert.ok(pages.length >= 1, 'the test agent has a page to send')
      const t0 = Date.now()
      if (twice) {
        await ch.sendParts(blobsFrameParts([pages[0]]), 'transfer', 10_000) // canonical: received in place and hashed in the hash thread
        await ch.sendParts(blobsFrameParts([pages[0]]), 'transfer', 10_000)
      } else await ch.sendParts(blobsFrameParts([pages[0], new Uint8Array(PAGE_SIZE).fill(9)]), 'transfer', 10_000)
      assert.is(await evil.refusal(ch, 30_000), 'transfer: received a blob that was not asked for (or twice)')
      assert.ok(Date.now() - t0 < 30_000)
      ch.abort()
    }
    assert.equal(spool(T), [])
  } finally { await T.shutdown() }
})

test.run()
