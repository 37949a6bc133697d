/**
 * p2p/target.ts without a network or a tick pool: the rules an offer meets (`Target.policy`) and
 * the reservation of its name — one offer at a time per name, released only by the offer that
 * took it (a refused rival's failure must not), and an arrival is `arriving` by name and DID while
 * reserved.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { CheckpointHeader } from '../checkpoint/header.ts'
import { DEFAULT_NODE_CAPS, parseManifest } from '../hostcalls/manifest.ts'
import type { Manifest } from '../hostcalls/manifest.ts'
import { DEFAULT_TIMEOUTS } from '../p2p/migrate.ts'
import type { Offer } from '../p2p/migrate.ts'
import type { Peer } from '../p2p/peer.ts'
import { Target } from '../p2p/target.ts'
import type { TargetNode } from '../p2p/target.ts'

const manifest = (doc: object = {}): Manifest => parseManifest(new TextEncoder().encode(JSON.stringify({ capabilities: ['log'], ...doc })), 'test.manifest.json')

/** An offer as p2p/migrate.ts `decodeOffer` gives it, with only the fields the policy reads. */
function offer (name: string, agent: string, o: { manifest?: Manifest; pageCount?: number; epoch?: number; tick?: number; cid?: string } = {}): Offer {
  const parsed = { agent, tick: o.tick ?? 5, epoch: o.epoch ?? 0 } as unknown as CheckpointHeader
  return { id: `id-${name}-${agent}`, name, parsed, cid: o.cid ?? `cid-${agent}`, manifest: o.manifest ?? manifest(), pageCount: o.pageCount ?? 1, from: [] } as unknown as Offer
}

/** A Target over a fresh data directory; `hosted` maps names hosted here to their DIDs. */
function target (hosted: Map<string, string> = new Map(), closing = { now: false }) {
  const dir = mkdtempSync(join(tmpdir(), 'igord-target-'))
  const notes: string[] = []
  const unused = () => { throw new Error('not used by the policy') }
  const node: TargetNode = {
    dir, peerId: '12D3KooWtarget', peer: {} as Peer, timeouts: DEFAULT_TIMEOUTS,
    capabilities: new Set(['log', 'clock']), caps: DEFAULT_NODE_CAPS,
    closing: () => closing.now,
    hostedDid: (name) => hosted.get(name),
    pool: {} as TargetNode['pool'],
    settings: unused, emitter: unused, hasBlob: () => false, getBlob: unused, fault: () => {},
    note: (l) => notes.push(l), lock: unused, host: unused, arrived: unused,
  }
  return { t: new Target(node), dir, notes, done: () => rmSync(dir, { recursive: true, force: true }) }
}

test('refusals: shutting down, migration forbidden, capability not granted, memory over its own limit, name hosted here', () => {
  const closing = { now: true }
  const { t, done } = target(new Map([['taken', 'did:key:zOther'], ['back', 'did:key:zA']]), closing)
  try {
    assert.is(t.policy(offer('a', 'did:key:zA'), 'p'), 'this node is shutting down')
    closing.now = false
    assert.match(t.policy(offer('a', 'did:key:zA', { manifest: manifest({ migration_policy: { enabled: false } }) }), 'p')!, /forbids migration/)
    assert.is(t.policy(offer('a', 'did:key:zA', { manifest: manifest({ capabilities: ['log', 'rand'] }) }), 'p'), 'capability "rand" not offered by this node')
    assert.match(t.policy(offer('a', 'did:key:zA', { manifest: { ...manifest(), maxMemoryBytes: 65536 }, pageCount: 2 }), 'p')!, /memory exceeds its own manifest limit/)
    assert.is(t.policy(offer('taken', 'did:key:zA'), 'p'), 'an agent named taken already lives on this node')
    assert.is(t.policy(offer('back', 'did:key:zA'), 'p'), 'back already runs on this node')
    assert.not.ok(t.arriving('a'), 'no refused offer reserves its name')
  } finally { done() }
})

test('an accepted offer reserves its name until it fails; a rival is refused and its failure does not release the name', () => {
  const { t, notes, done } = target()
  try {
    const first = offer('a', 'did:key:zA')
    assert.is(t.policy(first, 'p1'), null)
    assert.ok(t.has('a') && t.arriving('a') && t.arriving('did:key:zA'), 'reserved by name and DID')
    const rival = offer('a', 'did:key:zB')
    assert.is(t.policy(rival, 'p2'), 'a migration of a is already in progress')
    t.failed(rival, 'p2', 'refused')
    assert.ok(t.has('a'), 'a refused rival does not release the name')
    t.failed(first, 'p1', 'the stream ended')
    assert.not.ok(t.has('a') || t.arriving('did:key:zA'), 'the offer that reserved it releases it')
    assert.is(t.policy(rival, 'p2'), null, 'the name is free again')
    assert.ok(notes.some((l) => l === 'inbound migration of a from p1: the stream ended'))
  } finally { done() }
})

test.run()
