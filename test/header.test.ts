import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { encode } from '../checkpoint/cbor.ts'
import { CheckpointError } from '../checkpoint/errors.ts'
import { cidOf } from '../checkpoint/hash.ts'
import { decodeHeader, encodeHeader, headerCid, SIGNATURE_DOMAIN, signHeader, verifyHeader, type CheckpointHeader } from '../checkpoint/header.ts'
import { generateIdentity, sign } from '../checkpoint/identity.ts'

const id = generateIdentity()
const C1 = cidOf(Buffer.from('wasm')); const C2 = cidOf(Buffer.from('manifest'))
function sample (): CheckpointHeader {
  return { v: 1, agent: id.did, code: C1, manifest: C2, tick: 7, epoch: 0, prev: cidOf(Buffer.from('p')), state: new Uint8Array(32).fill(3), log: null, fuel: 2n ** 40n, budget: 5n, price: 1000n, host: '12D3KooWhost', time: 1_700_000_000_123, status: 'running' }
}
function throwsCk (fn: () => unknown, re: RegExp): void {
  try { fn() } catch (e) { assert.instance(e, CheckpointError); assert.match((e as Error).message, re); return }
  assert.unreachable('expected CheckpointError ' + re)
}

test('encode/decode round trip keeps every field and its type', () => {
  const h = sample()
  const b = encodeHeader(h)
  const back = decodeHeader(b, 'a.ckpt')
  assert.equal({ ...back, state: [...back.state] }, { ...h, state: [...h.state] })
  assert.is(typeof back.fuel, 'bigint'); assert.is(typeof back.budget, 'bigint'); assert.is(back.price, 1000n); assert.is(typeof back.time, 'number')
  const ho = { ...sample(), status: 'handoff' as const, target: '12D3KooWnext', reason: 'migrate' }
  assert.is(decodeHeader(encodeHeader(ho), 'x').target, '12D3KooWnext')
  // canonical: same bytes whatever the field order
  const reversed = Object.fromEntries(Object.entries(h).reverse()) as unknown as CheckpointHeader
  assert.is(Buffer.from(encodeHeader(reversed)).toString('hex'), Buffer.from(b).toString('hex'))
})

test('decodeHeader names the field at fault', () => {
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ agent: undefined }, /a\.ckpt: field "agent" must be a text string, got nothing \(missing\)/],
    [{ agent: 'did:web:x' }, /field "agent" must be a did:key/],
    [{ agent: 'did:key:z0OIl' }, /a\.ckpt: field "agent": .*invalid base58btc/],
    [{ code: 'Qm123' }, /field "code" must be a CIDv1/],
    [{ manifest: null }, /field "manifest" must be a CIDv1/],
    [{ prev: 5 }, /field "prev" must be null or a CIDv1/],
    [{ tick: -1 }, /field "tick" must be an unsigned integer/],
    [{ epoch: 'zero' }, /field "epoch" must be an unsigned integer/],
    [{ state: new Uint8Array(31) }, /field "state" must be 32 bytes, got 31/],
    [{ log: new Uint8Array(3) }, /field "log" must be null or a CIDv1/],
    [{ fuel: -5 }, /field "fuel" must be an unsigned 64-bit integer/],
    [{ budget: 'lots' }, /field "budget" must be an unsigned 64-bit integer/],
    [{ price: undefined }, /field "price" must be an unsigned 64-bit integer, got nothing \(missing\)/],
    [{ price: -1 }, /field "price" must be an unsigned 64-bit integer/],
    [{ host: '' }, /field "host" must be 1\.\.256 characters/],
    [{ time: 'now' }, /field "time" must be an unsigned integer/],
    [{ status: 'sleeping' }, /field "status" must be one of running, paused, exhausted, finished, handoff/],
    [{ status: 'handoff' }, /field "target" must be a text string/],
    [{ target: 'x' }, /field "target" is only allowed when status is handoff/],
    [{ reason: 3 }, /field "reason" must be a text string/],
    [{ extra: 1 }, /unknown field "extra" in header/],
    [{ v: 2, extra: 1 }, /a\.ckpt: unsupported checkpoint format version 2 \(this igord reads 1\)/],
  ]
  for (const [patch, re] of bad) {
    const o: Record<string, unknown> = { ...sample(), ...patch }
    for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k]
    throwsCk(() => decodeHeader(encode(o), 'a.ckpt'), re)
  }
  throwsCk(() => decodeHeader(encode([1, 2]), 'a.ckpt'), /header is not a CBOR map/)
  throwsCk(() => decodeHeader(new Uint8Array([0xa1]), 'a.ckpt'), /truncated/)
  throwsCk(() => encodeHeader({ ...sample(), tick: 1.5 }), /field "tick"/)
})

test('signature covers the domain tag and the stored bytes', () => {
  const b = encodeHeader(sample())
  const sig = signHeader(id, b)
  assert.ok(verifyHeader(b, sig, id.did))
  assert.is(Buffer.from(SIGNATURE_DOMAIN).toString('latin1'), 'igord/checkpoint/v1\0')
  // a plain signature of the header bytes (no domain tag) does not verify
  assert.not.ok(verifyHeader(b, sign(id, b), id.did))
  assert.not.ok(verifyHeader(b, sig, generateIdentity().did))
  for (const pos of [0, 5, b.length - 1]) {
    const f = Uint8Array.from(b); f[pos] ^= 0x01
    assert.not.ok(verifyHeader(f, sig, id.did))
  }
  assert.is(headerCid(b), cidOf(b))
})

test.run()
