/**
 * `igord logs` and `igord inspect` for agent-to-agent messages (issue 9): a `message_send` event
 * (what the agent asked to send, or the error code the call returned) and a `bounce` inbox message
 * as text and JSON, from hand-built CBOR payloads; the outbox count on `inspect`'s inbox line.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { encode } from '../checkpoint/cbor.ts'
import { formatInspect } from '../checkpoint/inspect.ts'
import type { InspectView } from '../checkpoint/inspect.ts'
import { describeEvent, formatEvent, itemJson } from '../runtime/logs.ts'

const DID = 'did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK'
const DID_SHORT = 'did:key:z6MkhaXg…2doK'
const ID = new Uint8Array(16).fill(0xab)
const T = 1_764_410_400_000_000_000n
const text = (s: string) => new TextEncoder().encode(s)
const send = (body: Uint8Array) => encode({ to: DID, id: ID, body })

test('message_send: recipient, id, size and a preview; the full DID and id with --full', () => {
  assert.is(formatEvent(4, ['message_send', send(text('ping 1'))]), `tick 4  send →   to ${DID_SHORT} id abababab… 6 bytes "ping 1"`)
  assert.is(formatEvent(4, ['message_send', send(text('ping 1'))], { full: true }), `tick 4  send →   to ${DID} id ${'ab'.repeat(16)} 6 bytes "ping 1"`)
  // binary: a size only; controls escaped in a text preview; long bodies cut
  assert.is(formatEvent(4, ['message_send', send(Uint8Array.of(0xff, 0))]), `tick 4  send →   to ${DID_SHORT} id abababab… 2 bytes`)
  assert.is(formatEvent(4, ['message_send', send(text('a\nb'))]), `tick 4  send →   to ${DID_SHORT} id abababab… 3 bytes "a\\nb"`)
  assert.is(formatEvent(4, ['message_send', send(text('x'.repeat(100)))]), `tick 4  send →   to ${DID_SHORT} id abababab… 100 bytes "${'x'.repeat(80)}"…`)
})

test('message_send: a refused call names its code; an undecodable payload says so', () => {
  assert.is(formatEvent(5, ['message_send', -7n]), 'tick 5  send →   refused: E_TOO_MANY (-7)')
  assert.is(formatEvent(5, ['message_send', -3n]), 'tick 5  send →   refused: E_BAD_TARGET (-3)')
  assert.is(formatEvent(5, ['message_send', -99n]), 'tick 5  send →   refused: error (-99)')
  const bad = formatEvent(5, ['message_send', encode({ to: DID, id: new Uint8Array(3), body: new Uint8Array(0) })])!
  assert.match(bad, /^tick 5  send →   \(message_send: cannot decode: .*"id" must be 16 bytes\)$/)
})

test('a bounce: which message came back, to whom, the code by name and the reason', () => {
  const b = encode({ id: ID, seq: 9, kind: 'bounce', from: DID, time: T, body: text(`no host of ${DID} found within 10 s`), req: 3, status: -20 })
  assert.is(formatEvent(7, ['inbox', b]), `tick 7  inbox    #9 bounce: message #3 to ${DID_SHORT} came back, E_MSG_UNKNOWN (-20): "no host of ${DID} found within 10 s"`)
  const full = encode({ id: ID, seq: 10, kind: 'bounce', from: DID, time: T, body: text('inbox of pong is full (256 messages waiting)'), req: 4, status: -21 })
  assert.is(formatEvent(7, ['inbox', full]), `tick 7  inbox    #10 bounce: message #4 to ${DID_SHORT} came back, E_MSG_FULL (-21): "inbox of pong is full (256 messages waiting)"`)
  const odd = encode({ id: ID, seq: 11, kind: 'bounce', from: DID, time: T, body: new Uint8Array(0), req: 5, status: -50 })
  assert.is(formatEvent(7, ['inbox', odd]), `tick 7  inbox    #11 bounce: message #5 to ${DID_SHORT} came back, code (-50)`)
  // an HTTP outcome's negative status keeps its HTTP name
  const http = encode({ id: ID, seq: 12, kind: 'http', from: 'http', time: T, body: new Uint8Array(0), req: 1, status: -20, headers: '' })
  assert.is((describeEvent(7, ['inbox', http]).message as { status_name?: string }).status_name, undefined)
})

test('JSON form of message_send and bounce', () => {
  assert.equal(JSON.parse(itemJson(describeEvent(4, ['message_send', send(text('ping 1'))]))),
    { tick: 4, kind: 'message_send', send: { to: DID, id: 'ab'.repeat(16), bytes: 6, body: 'ping 1' } })
  assert.equal(JSON.parse(itemJson(describeEvent(4, ['message_send', send(Uint8Array.of(0xff))]))),
    { tick: 4, kind: 'message_send', send: { to: DID, id: 'ab'.repeat(16), bytes: 1, body_b64: '/w==' } })
  assert.equal(JSON.parse(itemJson(describeEvent(5, ['message_send', -7n]))), { tick: 5, kind: 'message_send', error: -7, error_name: 'E_TOO_MANY' })
  const b = encode({ id: ID, seq: 9, kind: 'bounce', from: DID, time: T, body: text('gone'), req: 3, status: -23 })
  const m = JSON.parse(itemJson(describeEvent(7, ['inbox', b]))).message as Record<string, unknown>
  assert.is(m.kind, 'bounce'); assert.is(m.req, 3); assert.is(m.status, -23); assert.is(m.status_name, 'E_MSG_UNREACHABLE'); assert.is(m.body, 'gone')
})

test('inspect: the inbox line counts the outbox and says when the agent waits for room in it', () => {
  const v: InspectView = {
    file: 'x.ckpt', did: DID, tick: 3, epoch: 0, status: 'running', reason: null, target: null, fuel: '1', budget: '2', price: '3',
    code: 'c', manifest: 'm', prev: null, stateRoot: '00', pageCount: 1, nonZeroPages: 1, memoryBytes: 65536, globals: 0, host: 'h',
    time: '2025-11-29T10:00:00.000Z', log: null, logBytes: 0, fileBytes: 100,
    inbox: { waiting: 2, requests: 0, outbox: 3, lastSeq: 5, sleep: 'message', blocked: false },
  }
  const line = (w: InspectView) => formatInspect(w).split('\n').find((l) => l.startsWith('inbox'))
  assert.is(line(v), 'inbox      2 waiting, 0 HTTP requests without outcome, 3 in the outbox (sent, not yet acknowledged), last message #5; sleeping until a message')
  assert.is(line({ ...v, inbox: { ...v.inbox, blocked: true } }), 'inbox      2 waiting, 0 HTTP requests without outcome, 3 in the outbox (sent, not yet acknowledged), last message #5; sleeping until a message; its outbox was full: waiting for room')
})

test.run()
