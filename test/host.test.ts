/**
 * Unit tests of runtime/host.ts: libp2p peer IDs of Ed25519 keys and the persistent host key.
 *
 * Known vectors: the libp2p HTTP Peer ID Auth spec walkthrough (libp2p/specs http/peer-id-auth.md),
 * as asserted by go-libp2p's TestWalkthroughInSpec: the Ed25519 key whose libp2p private-key protobuf
 * is 080112407e0830…fce27e (seed 7e0830617c…0fee7d, public key 1ed1e8fa…fce27e) has peer ID
 * 12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq, and the all-zero seed (public key
 * 3b6a27bc…59da29) has 12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN. The first public key is
 * also the Ed25519 example of the libp2p peer-ids spec's test vectors.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { base58btc } from 'multiformats/bases/base58'
import { StorageError } from '../checkpoint/errors.ts'
import { identityFromSeed } from '../checkpoint/identity.ts'
import { HOST_KEY_FILE, loadHostIdentity, peerIdFromPublicKey } from '../runtime/host.ts'

const fromHex = (h: string) => Uint8Array.from(Buffer.from(h, 'hex'))

let dir = ''
test.before.each(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-host-')) })
test.after.each(() => { fs.rmSync(dir, { recursive: true, force: true }) })

test('peerIdFromPublicKey matches known libp2p peer IDs', () => {
  const pub = fromHex('1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e')
  assert.is(peerIdFromPublicKey(pub), '12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq')
  const zero = identityFromSeed(new Uint8Array(32))
  assert.is(Buffer.from(zero.publicKey).toString('hex'), '3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29')
  assert.is(peerIdFromPublicKey(zero.publicKey), '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN')
  const seeded = identityFromSeed(fromHex('7e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d'))
  assert.is(peerIdFromPublicKey(seeded.publicKey), '12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq')
})

test('a peer ID decodes to the identity multihash of the protobuf PublicKey{Ed25519, key}', () => {
  const pub = identityFromSeed(new Uint8Array(32).fill(7)).publicKey
  const id = peerIdFromPublicKey(pub)
  assert.match(id, /^12D3KooW/)
  const mh = base58btc.baseDecode(id)
  assert.is(Buffer.from(mh.subarray(0, 6)).toString('hex'), '002408011220')
  assert.equal(Buffer.from(mh.subarray(6)), Buffer.from(pub))
})

test('loadHostIdentity creates host.key (32 bytes, mode 0600) on first use and reuses it', () => {
  const data = path.join(dir, 'not', 'yet')
  const a = loadHostIdentity(data)
  const file = path.join(data, HOST_KEY_FILE)
  assert.is(HOST_KEY_FILE, 'host.key')
  const st = fs.statSync(file)
  assert.is(st.mode & 0o777, 0o600)
  assert.is(st.size, 32)
  const seed = fs.readFileSync(file)
  assert.is(a.peerId, peerIdFromPublicKey(identityFromSeed(seed).publicKey))
  assert.is(Buffer.from(a.key.seed).toString('hex'), seed.toString('hex'))
  const b = loadHostIdentity(data)
  assert.is(b.peerId, a.peerId)
  assert.equal(fs.readFileSync(file), seed, 'the key is not rewritten')
  // another directory gets another key
  assert.is.not(loadHostIdentity(path.join(dir, 'other')).peerId, a.peerId)
})

test('loadHostIdentity reads an existing key', () => {
  fs.writeFileSync(path.join(dir, HOST_KEY_FILE), new Uint8Array(32), { mode: 0o600 })
  assert.is(loadHostIdentity(dir).peerId, '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN')
})

test('a host.key that is not 32 bytes is a StorageError naming the file', () => {
  const file = path.join(dir, HOST_KEY_FILE)
  for (const n of [31, 0, 64]) {
    fs.writeFileSync(file, new Uint8Array(n))
    assert.throws(() => loadHostIdentity(dir), (e: unknown) => e instanceof StorageError && e.message.includes(file) && e.message.includes(`found ${n}`))
  }
})

test('a data directory that cannot be created is a StorageError', () => {
  const blocker = path.join(dir, 'file')
  fs.writeFileSync(blocker, 'x')
  assert.throws(() => loadHostIdentity(path.join(blocker, 'sub')), (e: unknown) => e instanceof StorageError && e.message.includes('host.key'))
})

test.run()
