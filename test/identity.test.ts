import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as ed from '@noble/ed25519'
import { createHash, randomBytes } from 'node:crypto'
import { base58btc } from 'multiformats/bases/base58'
import { CheckpointError } from '../checkpoint/errors.ts'
import { didFromPublicKey, generateIdentity, identityFromSeed, publicKeyFromDid, sign, verifySignature } from '../checkpoint/identity.ts'

ed.hashes.sha512 = (m: Uint8Array) => createHash('sha512').update(m).digest()
const hex = (u: Uint8Array) => Buffer.from(u).toString('hex')
const unhex = (h: string) => Uint8Array.from(Buffer.from(h, 'hex'))

// RFC 8032 §7.1 TEST 1, TEST 2, TEST 3
const RFC8032 = [
  { sk: '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', pk: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a', msg: '', sig: 'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b' },
  { sk: '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb', pk: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c', msg: '72', sig: '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00' },
  { sk: 'c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7', pk: 'fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025', msg: 'af82', sig: '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a' },
]

test('RFC 8032 §7.1 TEST 1-3: public key and signature', () => {
  for (const v of RFC8032) {
    const id = identityFromSeed(unhex(v.sk))
    assert.is(hex(id.publicKey), v.pk)
    assert.is(hex(sign(id, unhex(v.msg))), v.sig)
    assert.ok(verifySignature(unhex(v.pk), unhex(v.msg), unhex(v.sig)))
  }
})

// W3C did:key test vectors (w3c-ccg/did-method-key test-vectors/ed25519-x25519.json)
test('W3C did:key vectors for seeds 00…00 and 00…01, and round trips', () => {
  const a = identityFromSeed(new Uint8Array(32))
  assert.is(a.did, 'did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp')
  const s = new Uint8Array(32); s[31] = 1
  const b = identityFromSeed(s)
  assert.is(b.did, 'did:key:z6MkjchhfUsD6mmvni8mCdXHw216Xrm9bQe2mBH1P5RDjVJG')
  for (const id of [a, b, generateIdentity()]) {
    assert.is(hex(publicKeyFromDid(id.did)), hex(id.publicKey))
    assert.is(didFromPublicKey(publicKeyFromDid(id.did)), id.did)
    assert.ok(id.did.startsWith('did:key:z6Mk'))
  }
})

test('@noble/ed25519 and node:crypto agree on random keys and messages', () => {
  for (let i = 0; i < 20; i++) {
    const seed = randomBytes(32); const msg = randomBytes(i * 13)
    const id = identityFromSeed(seed)
    assert.is(hex(ed.getPublicKey(seed)), hex(id.publicKey))
    const s1 = sign(id, msg); const s2 = ed.sign(msg, seed)
    assert.is(hex(s1), hex(s2))
    assert.ok(ed.verify(s1, msg, id.publicKey))
    assert.ok(verifySignature(id.publicKey, msg, s2))
  }
})

test('verifySignature rejects a changed message, signature or key', () => {
  const id = generateIdentity(); const other = generateIdentity()
  const msg = Buffer.from('checkpoint'); const sig = sign(id, msg)
  const bad = Uint8Array.from(sig); bad[10] ^= 1
  assert.not.ok(verifySignature(id.publicKey, Buffer.from('checkpoinT'), sig))
  assert.not.ok(verifySignature(id.publicKey, msg, bad))
  assert.not.ok(verifySignature(other.publicKey, msg, sig))
  assert.not.ok(verifySignature(id.publicKey, msg, sig.subarray(0, 63)))
})

test('publicKeyFromDid rejects malformed and non-Ed25519 DIDs with a clear error', () => {
  const cases: [string, RegExp][] = [
    ['did:web:example.com', /is not a did:key/],
    ['did:key:z0OIl', /invalid base58btc/],
    // secp256k1-pub multicodec 0xe7 (W3C did:key secp256k1 vector)
    ['did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme', /not an Ed25519 did:key \(multicodec 0xe7/],
    ['did:key:' + base58btc.encode(Uint8Array.from([0xed, 0x01, ...new Uint8Array(31)])), /key is 31 bytes, expected 32/],
  ]
  for (const [did, re] of cases) {
    assert.throws(() => publicKeyFromDid(did), (e: Error) => e instanceof CheckpointError && re.test(e.message))
  }
  assert.throws(() => identityFromSeed(new Uint8Array(31)), /32 bytes/)
})

test.run()
