import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { randomBytes } from 'node:crypto'
import { base32 } from 'multiformats/bases/base32'
import { CheckpointError } from '../checkpoint/errors.ts'
import { cidOf, cidOfDigest, digestOfCid, isCid, sha256 } from '../checkpoint/hash.ts'

const hex = (u: Uint8Array) => Buffer.from(u).toString('hex')

test('sha256 matches FIPS 180-4 "abc"', () => {
  assert.is(hex(sha256(Buffer.from('abc'))), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
})

test('CIDv1 raw sha2-256 base32 of "hello world" is the published value', () => {
  assert.is(cidOf(Buffer.from('hello world')), 'bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e')
})

test('digestOfCid inverts cidOfDigest', () => {
  const d = sha256(Buffer.from('x'))
  const c = cidOfDigest(d)
  assert.ok(isCid(c))
  assert.is(hex(digestOfCid(c)), hex(d))
})

test('digestOfCid refuses what is not a CIDv1 raw sha2-256', () => {
  for (const bad of ['', 'bafyreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e', 'QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG', 'bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5']) {
    assert.throws(() => digestOfCid(bad, 'field "code"'), (e: Error) => e instanceof CheckpointError && /field "code": .* is not a CIDv1 raw sha2-256/.test(e.message))
  }
})

test('isCid accepts exactly the canonical strings cidOf produces', () => {
  for (let i = 0; i < 200; i++) assert.ok(isCid(cidOf(Buffer.from(String(i)))))
  const c = cidOf(Buffer.from('x'))
  // same length and alphabet, but non-zero padding bits or a different multihash length byte
  assert.not.ok(isCid(c.slice(0, 58) + 'b'))
  assert.not.ok(isCid(c.slice(0, 7) + 't' + c.slice(8)))
  assert.not.ok(isCid(c.toUpperCase()))
})

test('cidOfDigest and digestOfCid agree with multiformats base32 on random digests', () => {
  for (let i = 0; i < 500; i++) {
    const d = randomBytes(32)
    const ref = base32.encode(Buffer.concat([Buffer.from([0x01, 0x55, 0x12, 0x20]), d]))
    assert.is(cidOfDigest(d), ref)
    assert.is(hex(digestOfCid(ref)), hex(d))
  }
})

test('digestOfCid throws exactly when isCid refuses (every one-character change of a CID)', () => {
  const c = cidOf(Buffer.from('y'))
  const chars = 'abcdefghijklmnopqrstuvwxyz234567ABZ0189=-é'
  let refused = 0
  for (let i = 0; i < c.length; i++) {
    for (const ch of chars) {
      const s = c.slice(0, i) + ch + c.slice(i + 1)
      let threw = false
      try { digestOfCid(s) } catch (e) { threw = e instanceof CheckpointError }
      assert.is(threw, !isCid(s), s)
      if (threw) refused++
    }
  }
  assert.ok(refused > 500, String(refused))
  for (const s of [c + 'a', c.slice(1), 'b' + c.slice(2), c.slice(0, 58)]) assert.throws(() => digestOfCid(s), (e: Error) => e instanceof CheckpointError)
})

test.run()
