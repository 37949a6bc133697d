/**
 * Top-ups (checkpoint/fund.ts): signing and checking `fund` Messages, peer ID decoding against
 * libp2p, the runtime applying them at the start of a tick (runtime/agent.ts), and `igord verify`
 * accepting a budget increase only when the event log records signed top-ups that explain it
 * (checkpoint/history.ts), with and without replay (runtime/replay.ts).
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import binaryen from 'binaryen'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { generateKeyPair, generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { encode } from '../checkpoint/cbor.ts'
import { CheckpointError } from '../checkpoint/errors.ts'
import { decodeTopUp, encodeTopUp, FUND_DOMAIN, fundMessage, publicKeyFromPeerId, signTopUp, topUpsOfSegment, verifyTopUp } from '../checkpoint/fund.ts'
import type { TopUp } from '../checkpoint/fund.ts'
import { archivedState, readArchivedBlob } from '../checkpoint/archive.ts'
import { formatReport, nextPageTable, verifyChain, verifyHistory } from '../checkpoint/history.ts'
import type { PageTable } from '../checkpoint/history.ts'
import { EventLog } from '../hostcalls/eventlog.ts'
import { identityFromSeed } from '../checkpoint/identity.ts'
import { parseManifest } from '../hostcalls/manifest.ts'
import { Agent } from '../runtime/agent.ts'
import { loadHostIdentity, peerIdFromPublicKey } from '../runtime/host.ts'
import type { HostIdentity } from '../runtime/host.ts'
import { simulatedInputs } from '../runtime/inputs.ts'
import { formatReplay, replayHistory, replaySegment } from '../runtime/replay.ts'
import { writeCheckpoint } from '../runtime/runner.ts'
import { startAgent } from '../runtime/session.ts'
import type { Session } from '../runtime/session.ts'
import { forge } from './forge.ts'

const AGENTS = path.join(import.meta.dirname, '..', 'agents-as', 'build')
const HEARTBEAT = fs.readFileSync(path.join(AGENTS, 'heartbeat.wasm'))
const HEARTBEAT_MANIFEST = fs.readFileSync(path.join(AGENTS, 'heartbeat.manifest.json'))

/** Stores what `wallet_balance` returns at 64 and counts its ticks at 72: replay compares the balance it saw. */
const WALLET_AGENT = (() => {
  const m = binaryen.parseText(`(module
  (import "igor" "wallet_balance" (func $wallet (result i64)))
  (memory (export "memory") 1)
  (func (export "agent_tick") (result i32)
    (i64.store (i32.const 64) (call $wallet))
    (i32.store (i32.const 72) (i32.add (i32.load (i32.const 72)) (i32.const 1)))
    (i32.const 0)))`)
  try { return m.emitBinary() } finally { m.dispose() }
})()
const WALLET_MANIFEST = new TextEncoder().encode(JSON.stringify({ capabilities: ['wallet'] }))

const made: string[] = []
const tmp = () => { const d = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-fund-')); made.push(d); return d }
test.after.each(() => { for (const d of made.splice(0)) fs.rmSync(d, { recursive: true, force: true }) })

const SEED = new Uint8Array(32).map((_, i) => i + 1)
const funderOf = (seed: Uint8Array): HostIdentity => { const key = identityFromSeed(seed); return { key, peerId: peerIdFromPublicKey(key.publicKey) } }
const AGENT_DID = identityFromSeed(new Uint8Array(32).fill(7)).did
const ID = new Uint8Array(16).map((_, i) => 0xa0 + i)
const T0 = 1_700_000_000_000_000_000n
let idCounter = 0
const freshId = () => { const b = new Uint8Array(16); new DataView(b.buffer).setUint32(12, ++idCounter); return b }

test('fundMessage is the domain then canonical CBOR {agent, amount, id} (keys in canonical order)', () => {
  assert.equal(Buffer.from(FUND_DOMAIN).toString('hex'), Buffer.from('igord/fund/v1\0').toString('hex'))
  const m = fundMessage(AGENT_DID, 5_000_000n, ID)
  const body = Buffer.concat([
    Buffer.from([0xa3, 0x62]), Buffer.from('id'), Buffer.from([0x50]), ID,
    Buffer.from([0x65]), Buffer.from('agent'), Buffer.from([0x78, AGENT_DID.length]), Buffer.from(AGENT_DID),
    Buffer.from([0x66]), Buffer.from('amount'), Buffer.from([0x1a, 0x00, 0x4c, 0x4b, 0x40]),
  ])
  assert.equal(Buffer.from(m).toString('hex'), Buffer.concat([FUND_DOMAIN, body]).toString('hex'))
  assert.equal(Buffer.from(m.subarray(FUND_DOMAIN.length)).toString('hex'), Buffer.from(encode({ amount: 5_000_000n, id: ID, agent: AGENT_DID })).toString('hex'))
  assert.throws(() => fundMessage(AGENT_DID, 1n, new Uint8Array(15)), (e: Error) => e instanceof CheckpointError && /16 bytes/.test(e.message))
  assert.throws(() => fundMessage(AGENT_DID, 1n << 64n, ID), /unsigned 64-bit/)
})

test('signTopUp vector: the signature is the one libp2p makes with the same Ed25519 key; it verifies', async () => {
  const funder = funderOf(SEED)
  const t = signTopUp(funder, AGENT_DID, 5_000_000n, ID, T0)
  assert.is(t.kind, 'fund'); assert.is(t.seq, 0); assert.is(t.from, funder.peerId); assert.is(t.body.length, 0)
  assert.is(t.amount, 5_000_000n); assert.is(t.time, T0)
  assert.is(verifyTopUp(t, AGENT_DID), null)
  // the same key through libp2p: same peer ID, and (Ed25519 is deterministic) the same signature
  const lk = await generateKeyPairFromSeed('Ed25519', SEED)
  assert.is(peerIdFromPrivateKey(lk).toString(), funder.peerId)
  const libSig = await lk.sign(fundMessage(AGENT_DID, 5_000_000n, ID))
  assert.equal(Buffer.from(libSig).toString('hex'), Buffer.from(t.sig).toString('hex'))
  // a top-up made entirely with libp2p verifies too
  const k2 = await generateKeyPair('Ed25519')
  const id2 = freshId()
  const byLib: TopUp = { id: id2, seq: 3, kind: 'fund', from: peerIdFromPrivateKey(k2).toString(), time: T0, body: new Uint8Array(0), amount: 9n, sig: await k2.sign(fundMessage(AGENT_DID, 9n, id2)) }
  assert.is(verifyTopUp(byLib, AGENT_DID), null)
  // encode/decode round trip, byte for byte
  const bytes = encodeTopUp(t)
  const back = decodeTopUp(bytes, 'x')
  assert.equal(Buffer.from(encodeTopUp(back)).toString('hex'), Buffer.from(bytes).toString('hex'))
  assert.equal({ ...back, id: [...back.id], sig: [...back.sig], body: [...back.body] }, { ...t, id: [...t.id], sig: [...t.sig], body: [...t.body] })
  assert.throws(() => signTopUp({ key: funder.key, peerId: funderOf(new Uint8Array(32).fill(9)).peerId }, AGENT_DID, 1n, ID, T0), /is not the one of the funder's key/)
  assert.throws(() => signTopUp(funder, AGENT_DID, 0n, ID, T0), /at least 1 microcent/)
})

test('publicKeyFromPeerId agrees with libp2p and refuses non-Ed25519 and hashed peer IDs', async () => {
  for (let k = 0; k < 5; k++) {
    const key = await generateKeyPair('Ed25519')
    const pid = peerIdFromPrivateKey(key)
    assert.equal([...publicKeyFromPeerId(pid.toString())], [...key.publicKey.raw])
    assert.equal([...publicKeyFromPeerId(pid.toString())], [...peerIdFromString(pid.toString()).publicKey!.raw])
    assert.is(peerIdFromPublicKey(publicKeyFromPeerId(pid.toString())), pid.toString())
  }
  const secp = peerIdFromPrivateKey(await generateKeyPair('secp256k1')).toString()
  assert.throws(() => publicKeyFromPeerId(secp), (e: Error) => e instanceof CheckpointError && /is not an Ed25519 peer ID/.test(e.message))
  assert.throws(() => publicKeyFromPeerId('QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N'), /not identity \(0x00\)/)
  assert.throws(() => publicKeyFromPeerId('12D3KooW0OIl'), /invalid base58btc/)
  const good = peerIdFromPublicKey(new Uint8Array(32).fill(1))
  assert.throws(() => publicKeyFromPeerId(good.slice(0, -2)), /not an Ed25519 peer ID/)
  assert.throws(() => publicKeyFromPeerId('did:key:z6Mk'), /not an Ed25519 peer ID/)
})

test('forged top-ups are rejected: another key, a changed amount, agent, id, from; amount 0', () => {
  const funder = funderOf(SEED)
  const other = funderOf(new Uint8Array(32).fill(9))
  const t = signTopUp(funder, AGENT_DID, 5_000_000n, ID, T0)
  assert.match(verifyTopUp({ ...t, from: other.peerId }, AGENT_DID)!, /^bad signature: not signed by 12D3KooW/)
  assert.match(verifyTopUp({ ...signTopUp(other, AGENT_DID, 5_000_000n, ID, T0), from: funder.peerId }, AGENT_DID)!, /^bad signature/)
  assert.match(verifyTopUp({ ...t, amount: 50_000_000n }, AGENT_DID)!, /^bad signature/)
  assert.match(verifyTopUp(t, identityFromSeed(new Uint8Array(32).fill(8)).did)!, /^bad signature/)
  assert.match(verifyTopUp({ ...t, id: freshId() }, AGENT_DID)!, /^bad signature/)
  const flipped = Uint8Array.from(t.sig); flipped[10] ^= 1
  assert.match(verifyTopUp({ ...t, sig: flipped }, AGENT_DID)!, /^bad signature/)
  assert.match(verifyTopUp({ ...t, amount: 0n }, AGENT_DID)!, /^amount is 0/)
  assert.match(verifyTopUp({ ...t, body: Uint8Array.of(1) }, AGENT_DID)!, /body .* must be empty/)
  assert.match(verifyTopUp({ ...t, from: AGENT_DID }, AGENT_DID)!, /^from .* is not an Ed25519 peer ID/)
  // time and seq are not signed (the receiving host sets them)
  assert.is(verifyTopUp({ ...t, seq: 12, time: T0 + 5n }, AGENT_DID), null)
  // decoding refuses other kinds and unknown fields
  assert.throws(() => decodeTopUp(encode({ ...t, kind: 'message' }), 'm'), /m: kind is "message", not fund/)
  assert.throws(() => decodeTopUp(encode({ ...t, extra: 1 }), 'm'), /unknown field "extra"/)
})

/** A heartbeat agent (in-process) with `budget` microcents at price 1000. */
function heartbeat (budget: bigint): Agent {
  return Agent.birth({ wasm: HEARTBEAT, manifest: parseManifest(HEARTBEAT_MANIFEST, 'heartbeat.manifest.json'), identity: identityFromSeed(new Uint8Array(32).fill(7)), budget, price: 1000n, inputs: simulatedInputs('fund'), emit: () => {} })
}

test('Agent.runTick: an exhausted agent runs again with a top-up, recorded as the first event of the tick', () => {
  const a = heartbeat(40n)
  let r = a.runTick()
  for (let k = 0; k < 1000 && r !== null; k++) r = a.runTick()
  assert.is(r, null, 'the heartbeat exhausts 40 microcents')
  assert.is(a.budget, 0n)
  const tick = a.tick
  const t = signTopUp(funderOf(SEED), a.spec.identity.did, 1000n, freshId(), T0)
  const r2 = a.runTick([t])!
  assert.ok(r2 !== null && r2.trap === null, 'the topped-up agent runs')
  assert.is(r2.tick, tick + 1)
  assert.is(a.budget, 1000n - r2.cost)
  const rec = a.log.pending[a.log.pending.length - 1]
  assert.is(rec.tick, tick + 1)
  assert.is(rec.events[0][0], 'fund')
  assert.equal(Buffer.from(rec.events[0][1] as Uint8Array).toString('hex'), Buffer.from(encodeTopUp(t)).toString('hex'))
  assert.ok(rec.events.slice(1).every((e) => e[0] !== 'fund'))
  // refused up front (no tick begun): a top-up of 0, too many at once
  assert.throws(() => a.runTick([{ ...t, amount: 0n }]), /top-up of 0/)
  assert.throws(() => a.runTick(Array.from({ length: 17 }, () => t)), /exceed what one tick takes/)
  assert.is(a.tick, tick + 1)
  assert.is(a.log.openTick, null)
})

interface Life { dir: string; s: Session; funder: HostIdentity }

/**
 * A wallet agent's life in a data directory: born with 10 microcents at price 1000 (so each tick
 * costs a few), run to exhaustion with a checkpoint per tick, then `fund(life)` gives the top-ups
 * of the next tick; it runs `after` ticks more, checkpointing each.
 */
function life (fund: (l: Life) => TopUp[], after = 4, o: { raise?: bigint } = {}): Life {
  const dir = tmp()
  const s = startAgent({ dir, price: 1000n, simSeed: 'fund', emit: () => {} }, { name: 'w', wasm: WALLET_AGENT, wasmFile: 'w.wasm', manifest: WALLET_MANIFEST, manifestFile: 'w.manifest.json', budget: 10n })
  const l: Life = { dir, s, funder: loadHostIdentity(tmp()) }
  for (let k = 0; k < 1000 && s.agent.runTick() !== null; k++) writeCheckpoint(s.agent, s.lineage, 'running')
  assert.is(s.agent.budget, 0n)
  for (let k = 0; k < after; k++) {
    if (k === 0 && o.raise !== undefined) s.agent.budget += o.raise // a host that raises the budget on its own
    const r = s.agent.runTick(k === 0 ? fund(l) : [])
    assert.ok(r !== null && r.trap === null, `tick after the top-up ran (${k})`)
    writeCheckpoint(s.agent, s.lineage, 'running')
  }
  return l
}

const topUp = (l: Life, amount: bigint, id = freshId()) => signTopUp(l.funder, l.s.agent.spec.identity.did, amount, id, T0)

test('a history with a real top-up verifies VALID and lists the funder; verify --replay is VALID', () => {
  const l = life((l) => [topUp(l, 3_000_000n), topUp(l, 2_000_000n)])
  const r = verifyHistory([l.dir])
  assert.ok(r.valid, formatReport(r))
  assert.equal(r.topUps, [{ from: l.funder.peerId, count: 2, amount: 5_000_000n }])
  assert.match(formatReport(r), new RegExp(`\n  top-ups: 2 \\(\\+5 units from ${l.funder.peerId}\\)`))
  const rr = replayHistory([l.dir])
  assert.ok(rr.valid, formatReplay(rr, formatReport))
  assert.is(rr.range![1], l.s.agent.tick)
})

test('a budget raised in a signed header without a fund event is INVALID (the budget fault)', () => {
  const l = life(() => [], 3, { raise: 5_000_000n })
  const r = verifyHistory([l.dir])
  assert.not.ok(r.valid)
  const f = r.faults.find((x) => /budget increased/.test(x.fault))
  assert.ok(f, formatReport(r))
  assert.match(f!.fault, /^budget increased from 0 to \d+ but the event log records top-ups of only 0$/)
  assert.match(formatReport(r), /^INVALID: 1 fault\n/)
})

test('the same history with its fund events cut from the re-signed log is INVALID; more than the top-ups explain is too', () => {
  const l = life((l) => [topUp(l, 1_000_000n)])
  const tick = l.s.agent.tick - 3
  forge(l.dir, 'w', tick, (recs) => { recs[0].events = recs[0].events.filter((e) => e[0] !== 'fund') })
  const r = verifyHistory([l.dir])
  assert.not.ok(r.valid)
  assert.equal(r.faults.map((f) => [f.tick, f.fault.replace(/\d+ but/, 'B but')]), [[tick, 'budget increased from 0 to B but the event log records top-ups of only 0']])
  // a host that adds its own money on top of a real top-up
  const m = life((l) => [topUp(l, 1_000_000n)], 2, { raise: 7n })
  const r2 = verifyHistory([m.dir])
  assert.not.ok(r2.valid)
  assert.match(formatReport(r2), /budget increased from 0 to \d+ but the event log records top-ups of only 1000000/)
})

test('a top-up signed by a key that does not match `from` is INVALID, also with replay', () => {
  const l = life((l) => {
    const t = topUp(l, 2_000_000n)
    return [{ ...t, from: loadHostIdentity(tmp()).peerId }]
  })
  const r = verifyHistory([l.dir])
  assert.not.ok(r.valid)
  const tick = l.s.agent.tick - 3
  const text = formatReport(r)
  assert.match(text, new RegExp(`tick ${tick}: top-up at tick ${tick}: bad signature: not signed by 12D3KooW\\S+ for did:key:`))
  assert.match(text, new RegExp(`tick ${tick}: budget increased from 0 to \\d+ but the event log records top-ups of only 0`))
  assert.equal(r.topUps, [])
  assert.not.ok(replayHistory([l.dir]).valid)
})

test('one signed top-up applied twice is INVALID (the second names the tick of the first)', () => {
  const dup = freshId()
  const l = life((l) => [topUp(l, 1_000_000n, dup)], 3)
  // the host applies the same signed message again at a later tick
  const t = signTopUp(l.funder, l.s.agent.spec.identity.did, 1_000_000n, dup, T0)
  const first = l.s.agent.tick - 2
  l.s.agent.runTick([t])
  writeCheckpoint(l.s.agent, l.s.lineage, 'running')
  const r = verifyHistory([l.dir])
  assert.not.ok(r.valid)
  assert.match(formatReport(r), new RegExp(`top-up at tick ${l.s.agent.tick}: top-up ${Buffer.from(dup).toString('hex')} was already applied at tick ${first}`))
})

test('replaying one segment (what a migration target does) checks its top-ups: a forged one diverges at its event', () => {
  const l = life((l) => [topUp(l, 2_000_000n)])
  const chain = verifyChain([l.dir])
  assert.ok(chain.report.valid, formatReport(chain.report))
  const k = chain.links.findIndex((x) => x.entry.parsed.tick === l.s.agent.tick - 3)
  let table: PageTable = []
  for (let j = 0; j < k; j++) table = nextPageTable(chain.links[j].entry, j === 0 ? null : table, false).table!
  const before = chain.links[k - 1].entry
  const g = chain.links[0].entry.parsed
  const start = { header: before.parsed, wasm: readArchivedBlob(chain.blobDirs, g.code, 'code'), manifest: readArchivedBlob(chain.blobDirs, g.manifest, 'manifest'), ...archivedState(chain.blobDirs, table, before) }
  const next = chain.links[k].entry.parsed
  const records = () => EventLog.decodeSegment(readArchivedBlob(chain.blobDirs, next.log!, 'log'))
  assert.is(replaySegment(start, records(), next).divergence, null)
  // the same segment with the top-up re-signed by a key that is not `from`'s
  const recs = records()
  const honest = decodeTopUp(recs[0].events[0][1] as Uint8Array, 'x')
  const forged = signTopUp(loadHostIdentity(tmp()), l.s.agent.spec.identity.did, honest.amount, honest.id, honest.time)
  recs[0].events[0][1] = encodeTopUp({ ...forged, from: honest.from, seq: honest.seq })
  const d = replaySegment(start, recs, next).divergence
  assert.ok(d !== null)
  assert.is(d!.field, 'event 0 (fund)')
  assert.match(d!.message, /^event 0 \(fund\): bad signature: not signed by 12D3KooW/)
  // without its top-up, the exhausted agent could not have run the tick
  const cut = records(); cut[0].events.shift()
  assert.is(replaySegment(start, cut, next).divergence!.field, 'budget')
})

test('topUpsOfSegment: no decode without a fund event; a fund event after an agent event is a fault', () => {
  assert.equal(topUpsOfSegment(Buffer.from('not cbor at all'), 's'), [])
  const t = signTopUp(funderOf(SEED), AGENT_DID, 5n, ID, T0)
  const seg = encode({ v: 1, ticks: [{ tick: 4, events: [['fund', encodeTopUp(t)], ['clock_now', 1n], ['fund', encodeTopUp(t)]], fuel: 1n, result: 0, trap: null }] })
  const found = topUpsOfSegment(seg, 's')
  assert.is(found.length, 2)
  assert.is(found[0].fault, null); assert.is(found[0].tick, 4); assert.is(found[0].topUp!.amount, 5n)
  assert.match(found[1].fault!, /event 2 \(fund\) follows an event of the agent's/)
  assert.throws(() => topUpsOfSegment(Buffer.concat([Buffer.from([0x64]), Buffer.from('fund')]), 's'), /s: segment is not a CBOR map/)
})

test.run()
