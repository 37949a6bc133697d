/**
 * Agent messages (issue 9) below the network: the I/O state's outbox (canonical CBOR, hostile
 * input), the `bounce` inbox kind, the signed envelope (domain tag, canonical bytes, forgeries),
 * and the mailbox's sending with the ping agent (agents-as/build/ping.wasm): `message_send`
 * recorded, sent only after a checkpoint, one at a time per recipient in order, acknowledged
 * messages leaving the outbox, refusals coming back as bounces, and replay reproducing the events.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { encode } from '../checkpoint/cbor.ts'
import { CheckpointError } from '../checkpoint/errors.ts'
import { checkEnvelope, E_MSG_FULL, E_MSG_UNREACHABLE, envelopeMessage, isAgentDid, MSG_DOMAIN, signEnvelope } from '../checkpoint/envelope.ts'
import type { Envelope, SendOutcome } from '../checkpoint/envelope.ts'
import { generateIdentity, identityFromSeed } from '../checkpoint/identity.ts'
import { decodeIo, decodeMessage, decodeSendEvent, emptyIo, encodeIo, encodeMessage, isEmptyIo, outboundId } from '../checkpoint/io.ts'
import type { IoState, Message } from '../checkpoint/io.ts'
import { messageLayout } from '../hostcalls/igor.ts'
import { writeCheckpoint } from '../runtime/runner.ts'
import { startAgent } from '../runtime/session.ts'
import { replayHistory } from '../runtime/replay.ts'

const AGENTS = path.join(import.meta.dirname, '..', 'agents-as', 'build')
const made: string[] = []
const tmp = (): string => { const d = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-msg-')); made.push(d); return d }
test.after.each(() => { for (const d of made.splice(0)) fs.rmSync(d, { recursive: true, force: true }) })
const hex = (u: Uint8Array): string => Buffer.from(u).toString('hex')
const A = identityFromSeed(new Uint8Array(32).fill(7))
const B = identityFromSeed(new Uint8Array(32).fill(8))

function throwsCk (fn: () => unknown, re: RegExp): void {
  try { fn() } catch (e) { assert.instance(e, CheckpointError); assert.match((e as Error).message, re); return }
  assert.unreachable(`expected CheckpointError ${re}`)
}

test('io outbox: round-trips byte for byte; absent (old bytes unchanged) when nothing was ever sent', () => {
  const out = [1, 3].map((n) => ({ n, tick: 5, to: B.did, id: outboundId(A.did, n), body: new Uint8Array([n]) }))
  const s: IoState = { ...emptyIo(), outbox: out, nextMsg: 4 }
  const bytes = encodeIo(s)
  const back = decodeIo(bytes, 'io')
  assert.is(hex(encodeIo(back)), hex(bytes))
  assert.equal(back.outbox.map((o) => [o.n, o.tick, o.to, hex(o.id), hex(o.body)]), out.map((o) => [o.n, o.tick, o.to, hex(o.id), hex(o.body)]))
  assert.is(back.nextMsg, 4)
  assert.not.ok(isEmptyIo(s)); assert.not.ok(isEmptyIo({ ...emptyIo(), nextMsg: 2 }))
  // an I/O state of an agent that never sent encodes as before issue 9
  assert.is(hex(encodeIo(emptyIo())), hex(encode({ v: 1, last: 0, open: 0, seen: [], sleep: null, nextReq: 1, pending: [], requests: [] })))
  // ids are deterministic per (DID, number) and differ between numbers and agents
  assert.is(hex(outboundId(A.did, 1)), hex(outboundId(A.did, 1)))
  assert.is.not(hex(outboundId(A.did, 1)), hex(outboundId(A.did, 2)))
  assert.is.not(hex(outboundId(A.did, 1)), hex(outboundId(B.did, 1)))
})

test('io outbox: hostile input is refused naming the field', () => {
  const good = { n: 1, tick: 0, to: B.did, id: outboundId(A.did, 1), body: new Uint8Array(0) }
  const io = (outbox: unknown[], nextMsg: unknown = 2) => encode({ v: 1, last: 0, open: 0, seen: [], sleep: null, nextReq: 1, pending: [], requests: [], outbox, nextMsg })
  throwsCk(() => decodeIo(io([{ ...good, n: 2 }]), 'io'), /^io: outbox\[0\]: n 2 out of order or not below nextMsg 2/)
  throwsCk(() => decodeIo(io([good, good], 3), 'io'), /^io: outbox\[1\]: n 1 out of order/)
  throwsCk(() => decodeIo(io([{ ...good, to: '12D3KooWx' }]), 'io'), /^io: outbox\[0\]: field "to" must be a did:key/)
  throwsCk(() => decodeIo(io([{ ...good, id: new Uint8Array(3) }]), 'io'), /^io: outbox\[0\]: field "id" must be 16 bytes/)
  throwsCk(() => decodeIo(io([{ ...good, extra: 1 }]), 'io'), /unknown field "extra" in outbound message/)
  throwsCk(() => decodeIo(io([good], 0), 'io'), /field "nextMsg" must be 1\.\.2\^32/)
  throwsCk(() => decodeIo(encode({ v: 1, last: 0, open: 0, seen: [], sleep: null, nextReq: 1, pending: [], requests: [], outbox: [] }), 'io'), /"outbox" and "nextMsg" must be both present or both absent/)
})

test('bounce messages: req and status required, status negative; inbox_next kind 4 with status, req, from, reason', () => {
  const m: Message = { id: outboundId(A.did, 9), seq: 3, kind: 'bounce', from: B.did, time: 1n, body: new Uint8Array(Buffer.from('inbox full')), req: 2, status: E_MSG_FULL }
  assert.is(hex(encodeMessage(decodeMessage(encodeMessage(m)))), hex(encodeMessage(m)))
  throwsCk(() => encodeMessage({ ...m, status: 200 }), /field "status" must be a negative reason code/)
  throwsCk(() => encodeMessage({ ...m, req: undefined }), /field "req" is required in a bounce message/)
  throwsCk(() => encodeMessage({ ...m, headers: '' }), /field "headers" is not allowed in a bounce message/)
  const l = messageLayout(m); const dv = new DataView(l.buffer)
  assert.equal([dv.getUint32(0, true), dv.getInt32(4, true), dv.getUint32(8, true)], [4, E_MSG_FULL, 2])
})

test('envelope: signed over "igord/msg/v1\\0" ‖ canonical CBOR {from,to,id,body}; any change or a foreign key is refused', () => {
  assert.is(Buffer.from(MSG_DOMAIN).toString('latin1'), 'igord/msg/v1\0')
  const e = signEnvelope(A, { to: B.did, id: outboundId(A.did, 1), body: new Uint8Array([1, 2, 3]) })
  assert.is(e.from, A.did)
  assert.is(hex(envelopeMessage(e)), hex(MSG_DOMAIN) + hex(encode({ from: A.did, to: B.did, id: e.id, body: e.body })))
  assert.is(checkEnvelope(e), null)
  const bad = (x: Envelope, re: RegExp) => assert.match(String(checkEnvelope(x)), re)
  bad({ ...e, body: new Uint8Array([1, 2, 4]) }, /signature does not verify/)
  bad({ ...e, to: A.did }, /signature does not verify/)
  bad({ ...e, from: B.did }, /signature does not verify against the sender/)
  bad({ ...e, sig: signEnvelope(B, e).sig }, /signature does not verify/)
  bad({ ...e, to: 'did:key:zzz' }, /field "to"/)
  bad({ ...e, sig: new Uint8Array(10) }, /field "sig" must be a 64-byte/)
  assert.ok(isAgentDid(B.did)); assert.not.ok(isAgentDid('12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN')); assert.not.ok(isAgentDid(`${B.did}x`))
})

/** The ping agent born in a temp dir with a scripted router; `answer` decides each send's outcome. */
function ping (answer: (e: Envelope, k: number) => SendOutcome | Promise<SendOutcome>) {
  const dir = tmp()
  const lines: string[] = []
  const sent: Envelope[] = []
  const s = startAgent({ dir, price: 1000n, simSeed: 'msg', emit: (l) => lines.push(l), send: async (e) => { sent.push(e); return await answer(e, sent.length) } }, {
    name: 'ping', wasm: fs.readFileSync(path.join(AGENTS, 'ping.wasm')), wasmFile: 'ping.wasm', manifest: fs.readFileSync(path.join(AGENTS, 'ping.manifest.json')), manifestFile: 'ping.manifest.json', budget: 1_000_000_000n,
  })
  return { dir, s, lines, sent }
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 20))

test('message_send: recorded as {to,id,body}; nothing leaves before the checkpoint; handed over in order; acks empty the outbox; replay VALID', async () => {
  const { dir, s, sent } = ping(() => ({ ok: true, duplicate: false }))
  s.mailbox.deliver({ id: outboundId(B.did, 99), kind: 'message', from: '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN', time: 1n, body: new Uint8Array(Buffer.from(`${B.did} 3`)) })
  s.agent.runTick()
  assert.equal(s.agent.io.outbox.map((o) => o.n), [1, 2, 3])
  assert.is(s.agent.newMessages.length, 3)
  const events = s.agent.log.pending.at(-1)!.events.filter(([k]) => k === 'message_send')
  assert.equal(events.map(([, p]) => { const d = decodeSendEvent(p as Uint8Array); return [d.to, hex(d.id), Buffer.from(d.body).toString()] }), [1, 2, 3].map((n) => [B.did, hex(outboundId(s.agent.spec.identity.did, n)), `ping ${n}`]))
  await settle()
  assert.is(sent.length, 0, 'nothing sent before the checkpoint')
  writeCheckpoint(s.agent, s.lineage, 'running')
  s.mailbox.afterCheckpoint()
  for (let k = 0; k < 20 && s.agent.io.outbox.length > 0; k++) await settle()
  assert.equal(sent.map((e) => Buffer.from(e.body).toString()), ['ping 1', 'ping 2', 'ping 3'])
  assert.ok(sent.every((e) => checkEnvelope(e) === null && e.from === s.agent.spec.identity.did))
  assert.is(s.agent.io.outbox.length, 0)
  writeCheckpoint(s.agent, s.lineage, 'running')
  const v = replayHistory([dir])
  assert.ok(v.valid, JSON.stringify({ d: v.divergence, e: v.error }))
  assert.ok(v.ticks >= 2)
})

test('the outbox is handed over at once, in order, only the oldest to a recipient marked first; when they come back retry the oldest is tried again first, the later ones behind it', async () => {
  const calls: [string, boolean][] = []
  let attempt = 0
  const dir = tmp()
  const s = startAgent({
    dir, price: 1000n, simSeed: 'msg', emit: () => {},
    send: async (e, first) => {
      calls.push([Buffer.from(e.body).toString(), first === true])
      attempt++
      // the first three (ping 1 and the two behind it) come back retry, as a router's lane answers them
      return attempt <= 3 ? { ok: false, retry: true, code: -20, reason: 'not now' } : { ok: true, duplicate: false }
    },
  }, { name: 'ping', wasm: fs.readFileSync(path.join(AGENTS, 'ping.wasm')), wasmFile: 'ping.wasm', manifest: fs.readFileSync(path.join(AGENTS, 'ping.manifest.json')), manifestFile: 'ping.manifest.json', budget: 1_000_000_000n })
  s.mailbox.deliver({ id: outboundId(B.did, 97), kind: 'message', from: '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN', time: 1n, body: new Uint8Array(Buffer.from(`${B.did} 3`)) })
  s.agent.runTick()
  writeCheckpoint(s.agent, s.lineage, 'running')
  s.mailbox.afterCheckpoint()
  await settle()
  assert.equal(calls, [['ping 1', true], ['ping 2', false], ['ping 3', false]], 'all three at once, in order')
  s.mailbox.sendPending() // a checkpoint meanwhile: nothing goes out while the oldest waits for its retry
  await settle()
  assert.is(calls.length, 3)
  for (let k = 0; k < 100 && s.agent.io.outbox.length > 0; k++) await settle()
  s.mailbox.close()
  assert.equal(calls.slice(3), [['ping 1', true], ['ping 2', false], ['ping 3', false]], 'the oldest again, then the ones behind it')
  assert.is(s.agent.io.outbox.length, 0)
  assert.ok(s.agent.io.pending.every((m) => m.kind !== 'bounce'))
})

test('a refusal comes back as a bounce (the outbox entry gone); a host that stays unreachable bounces after the retry time', async () => {
  const { s, sent } = ping((_e, k) => k === 1 ? { ok: false, retry: false, code: E_MSG_FULL, reason: `inbox of pong is full (256 messages waiting)` } : { ok: false, retry: true, code: -20, reason: 'dial: refused' })
  ;(s.mailbox.opts as { retryForMs?: number }).retryForMs = 300
  s.mailbox.deliver({ id: outboundId(B.did, 98), kind: 'message', from: '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN', time: 1n, body: new Uint8Array(Buffer.from(`${B.did} 2`)) })
  s.agent.runTick()
  writeCheckpoint(s.agent, s.lineage, 'running')
  s.mailbox.afterCheckpoint()
  for (let k = 0; k < 200 && s.agent.io.outbox.length > 0; k++) await settle()
  s.mailbox.close()
  assert.is(s.agent.io.outbox.length, 0)
  const bounces = s.agent.io.pending.filter((m) => m.kind === 'bounce')
  assert.equal(bounces.map((m) => [m.req, m.status, m.from]), [[1, E_MSG_FULL, B.did], [2, E_MSG_UNREACHABLE, B.did]])
  assert.match(Buffer.from(bounces[0].body).toString(), /inbox of pong is full/)
  assert.match(Buffer.from(bounces[1].body).toString(), /^not delivered within 0 s: dial: refused$/)
  assert.ok(sent.length >= 3, `message 2 was retried (${sent.length} sends)`)
  // the bounce is a recorded input: the agent logs it
  s.agent.runTick()
  assert.ok(s.agent.io.pending.every((m) => m.kind !== 'bounce'))
})

test.run()
