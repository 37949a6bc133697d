import { test } from 'uvu'
import * as assert from 'uvu/assert'
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

test.run()
