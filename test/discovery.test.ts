/**
 * The DHT key of an agent (p2p/dht.ts `didKey`, docs/PROTOCOL.md "Discovery"): CIDv1, raw codec,
 * sha2-256 of UTF-8 `/igor/agent/<did>`, checked byte by byte against node:crypto.
 */
import { createHash } from 'node:crypto'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { DID_KEY_PREFIX, didKey } from '../p2p/dht.ts'

const DID = 'did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK'

test('didKey: CIDv1 (0x01), raw (0x55), sha2-256 (0x12, 32 bytes) of "/igor/agent/<did>"', async () => {
  const cid = await didKey(DID)
  const digest = createHash('sha256').update(Buffer.from(DID_KEY_PREFIX + DID, 'utf8')).digest()
  assert.is(DID_KEY_PREFIX, '/igor/agent/')
  assert.equal([...cid.bytes], [0x01, 0x55, 0x12, 0x20, ...digest])
  assert.ok(cid.toString().startsWith('bafkrei'), cid.toString())
})

test('didKey: different DIDs, different keys; the same DID, the same key', async () => {
  const a = await didKey(DID)
  const b = await didKey(DID.slice(0, -1) + 'L')
  assert.is.not(a.toString(), b.toString())
  assert.is((await didKey(DID)).toString(), a.toString())
})

test.run()
