/**
 * The inbox's wire format (checkpoint/io.ts): Message, HttpRequestRecord and IoState encode to
 * canonical CBOR and decode back byte for byte; decoding treats its input as hostile and every
 * refusal is a CheckpointError naming the field; the limits (id length, `from` length, seen ids,
 * status range, …) hold on both sides.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { encode } from '../checkpoint/cbor.ts'
import { CheckpointError } from '../checkpoint/errors.ts'
import {
  checkMessage, cloneIo, decodeIo, decodeMessage, decodeRequest, emptyIo, encodeIo, encodeMessage, encodeRequest,
  idHex, isEmptyIo, MAX_FROM_BYTES, MAX_SEEN, MESSAGE_ID_BYTES,
} from '../checkpoint/io.ts'
import type { HttpRequestRecord, IoState, Message } from '../checkpoint/io.ts'

const hex = (u: Uint8Array): string => Buffer.from(u).toString('hex')
const ID = new Uint8Array(16).map((_, i) => i + 1)
const idN = (n: number): Uint8Array => { const b = new Uint8Array(16); new DataView(b.buffer).setUint32(12, n); return b }
const T = 1_700_000_000_000_000_000n
const text = (s: string): Uint8Array => new Uint8Array(Buffer.from(s))

function throwsCk (fn: () => unknown, re: RegExp, what = ''): void {
  try { fn() } catch (e) {
    assert.instance(e, CheckpointError, `${what}: ${(e as Error).message}`)
    assert.match((e as Error).message, re, what)
    return
  }
  assert.unreachable(`${what}: expected a CheckpointError matching ${re}`)
}

/** One message of each kind, every field of its kind set. */
const SAMPLES: Message[] = [
  { id: idN(1), seq: 1, kind: 'message', from: '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN', time: T, body: text('hello') },
  { id: idN(2), seq: 2, kind: 'http', from: 'http', time: T + 1n, body: text('{"value":42}'), req: 1, status: 200, headers: 'content-type: application/json\r\n' },
  { id: idN(3), seq: 3, kind: 'http', from: 'http', time: T + 2n, body: new Uint8Array(0), req: 0xffffffff, status: -14, headers: '' },
  { id: idN(4), seq: 4, kind: 'timer', from: 'timer', time: T + 3n, body: new Uint8Array(0), at: T + 2n },
  { id: idN(5), seq: 5, kind: 'fund', from: '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN', time: (1n << 64n) - 1n, body: new Uint8Array(0), amount: (1n << 64n) - 1n, sig: new Uint8Array(64).fill(7) },
  { id: idN(6), seq: 0, kind: 'message', from: 'did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK', time: 0n, body: new Uint8Array(70_000).fill(0x61) },
]

const REQUEST: HttpRequestRecord = { id: 7, tick: 12, method: 'POST', url: 'http://127.0.0.1:8080/x?y=1', headers: 'Content-Type: text/plain\r\n', body: text('hi'), key: 'did:key:z6Mk/12/7' }

test('encodeMessage/decodeMessage round-trip every kind byte for byte', () => {
  for (const m of SAMPLES) {
    const bytes = encodeMessage(m)
    const back = decodeMessage(bytes, 'm')
    assert.is(hex(encodeMessage(back)), hex(bytes), `${m.kind} #${m.seq}`)
    assert.is(back.kind, m.kind); assert.is(back.seq, m.seq); assert.is(back.from, m.from); assert.is(back.time, m.time)
    assert.is(hex(back.id), hex(m.id)); assert.is(hex(back.body), hex(m.body))
    for (const f of ['req', 'status', 'headers', 'amount', 'at'] as const) assert.is(back[f], m[f], `${m.kind}.${f}`)
    assert.is(back.sig === undefined ? undefined : hex(back.sig), m.sig === undefined ? undefined : hex(m.sig))
  }
})

test('a message encodes with its keys in canonical order (shorter first, then bytewise)', () => {
  const m: Message = { id: ID, seq: 1, kind: 'message', from: 'x', time: 5n, body: text('hi') }
  const want = 'a6' + '626964' + '50' + hex(ID) + '63736571' + '01' + '64626f6479' + '426869' + '6466726f6d' + '6178' +
    '646b696e64' + '676d657373616765' + '6474696d65' + '05'
  assert.is(hex(encodeMessage(m)), want)
  // every optional key in its place: at, id, req, seq, sig, body, from, kind, time, amount, status, headers
  const keys = (b: Uint8Array): string[] => Object.keys(decodeMessage(b, 'm'))
  assert.equal(keys(encodeMessage(SAMPLES[1])).sort(), ['body', 'from', 'headers', 'id', 'kind', 'req', 'seq', 'status', 'time'])
  const http = hex(encodeMessage(SAMPLES[1]))
  const order = ['id', 'req', 'seq', 'body', 'from', 'kind', 'time', 'status', 'headers'].map((k) => http.indexOf(hex(encode(k))))
  assert.equal(order, [...order].sort((a, b) => a - b), 'http keys in canonical order')
  const fund = hex(encodeMessage(SAMPLES[4]))
  const forder = ['id', 'seq', 'sig', 'body', 'from', 'kind', 'time', 'amount'].map((k) => fund.indexOf(hex(encode(k))))
  assert.equal(forder, [...forder].sort((a, b) => a - b), 'fund keys in canonical order')
  // the same map with keys out of order, or with a non-shortest integer, is refused
  const swapped = 'a6' + '63736571' + '01' + '626964' + '50' + hex(ID) + want.slice(2 + 6 + 2 + 32 + 8 + 2)
  throwsCk(() => decodeMessage(Buffer.from(swapped, 'hex'), 'swapped'), /swapped: .*(order|canonical)/i, 'keys out of order')
  const longSeq = want.replace('6373657101', '637365711801')
  throwsCk(() => decodeMessage(Buffer.from(longSeq, 'hex'), 'long'), /long: /, 'non-shortest seq')
  throwsCk(() => decodeMessage(Buffer.from(want + '00', 'hex'), 'trail'), /trail: 1 trailing bytes/, 'trailing byte')
  throwsCk(() => decodeMessage(new Uint8Array(0), 'empty'), /empty: empty/)
})

test('checkMessage/encodeMessage: every bad field is named', () => {
  const base = SAMPLES[0]
  const cases: [Partial<Record<keyof Message, unknown>>, string, RegExp?][] = [
    [{ id: new Uint8Array(15) }, 'id', /must be 16 bytes, got a 15-byte byte string/],
    [{ id: new Uint8Array(17) }, 'id'],
    [{ id: 'x'.repeat(16) }, 'id'],
    [{ seq: -1 }, 'seq'],
    [{ seq: 1.5 }, 'seq'],
    [{ kind: 'email' }, 'kind', /must be one of message, http, timer, fund/],
    [{ from: '' }, 'from'],
    [{ from: 'é'.repeat(129) }, 'from', /1\.\.256 bytes/],
    [{ from: 7 }, 'from'],
    [{ time: -1n }, 'time'],
    [{ time: 1n << 64n }, 'time'],
    [{ time: 5 }, 'time'],
    [{ body: 'hi' }, 'body'],
    [{ req: 1 }, 'req', /is not allowed in a message message/],
    [{ at: 1n }, 'at', /not allowed/],
    [{ sig: new Uint8Array(64) }, 'sig', /not allowed/],
  ]
  for (const [patch, field, re] of cases) {
    const m = { ...base, ...patch } as Message
    throwsCk(() => encodeMessage(m), new RegExp(`^message: field "${field}" ${re === undefined ? '' : `.*${re.source}`}`), `${field} ${String(Object.values(patch)[0])}`)
    throwsCk(() => checkMessage(m, 'm1'), new RegExp(`^m1: field "${field}"`), field)
  }
  const http = SAMPLES[1]
  const httpCases: [Partial<Record<keyof Message, unknown>>, string][] = [
    [{ req: 0 }, 'req'], [{ req: 2 ** 32 }, 'req'], [{ req: undefined }, 'req'],
    [{ status: 600 }, 'status'], [{ status: -(2 ** 31) - 1 }, 'status'], [{ status: undefined }, 'status'], [{ status: 200.5 }, 'status'],
    [{ headers: undefined }, 'headers'], [{ headers: 3 }, 'headers'],
  ]
  for (const [patch, field] of httpCases) throwsCk(() => checkMessage({ ...http, ...patch } as Message, 'h'), new RegExp(`^h: field "${field}"`), `http ${field}`)
  assert.not.throws(() => checkMessage({ ...http, status: -(2 ** 31) }, 'h'))
  const fund = SAMPLES[4]
  for (const [patch, field] of [[{ amount: 0n }, 'amount'], [{ amount: 1n << 64n }, 'amount'], [{ amount: 5 }, 'amount'], [{ sig: new Uint8Array(63) }, 'sig'], [{ sig: undefined }, 'sig']] as [Partial<Message>, string][]) {
    throwsCk(() => checkMessage({ ...fund, ...patch } as Message, 'f'), new RegExp(`^f: field "${field}"`), `fund ${field}`)
  }
  for (const [patch, field] of [[{ at: -1n }, 'at'], [{ at: 1n << 64n }, 'at'], [{ at: undefined }, 'at'], [{ at: 3 }, 'at']] as [Partial<Message>, string][]) {
    throwsCk(() => checkMessage({ ...SAMPLES[3], ...patch } as Message, 't'), new RegExp(`^t: field "${field}"`), `timer ${field}`)
  }
})

test('decodeMessage: hostile maps are refused naming the field', () => {
  const map = (patch: Record<string, unknown>, drop: string[] = []): Uint8Array => {
    const o: Record<string, unknown> = { id: ID, seq: 1, kind: 'message', from: 'x', time: 5, body: text('hi'), ...patch }
    for (const d of drop) delete o[d]
    return encode(o)
  }
  throwsCk(() => decodeMessage(map({}, ['id']), 'f.cbor'), /^f\.cbor: field "id"/)
  throwsCk(() => decodeMessage(map({}, ['seq']), 'f.cbor'), /^f\.cbor: field "seq"/)
  throwsCk(() => decodeMessage(map({}, ['time']), 'f.cbor'), /^f\.cbor: field "time"/)
  throwsCk(() => decodeMessage(map({}, ['body']), 'f.cbor'), /^f\.cbor: field "body"/)
  throwsCk(() => decodeMessage(map({ seq: 'one' }), 'f.cbor'), /^f\.cbor: field "seq" must be an integer/)
  throwsCk(() => decodeMessage(map({ seq: -3 }), 'f.cbor'), /^f\.cbor: field "seq"/)
  throwsCk(() => decodeMessage(map({ time: 'now' }), 'f.cbor'), /^f\.cbor: field "time"/)
  throwsCk(() => decodeMessage(map({ time: -5 }), 'f.cbor'), /^f\.cbor: field "time"/)
  throwsCk(() => decodeMessage(map({ kind: 'http' }), 'f.cbor'), /^f\.cbor: field "req" is required in a http message/)
  throwsCk(() => decodeMessage(map({ status: 200 }), 'f.cbor'), /^f\.cbor: field "status" is not allowed/)
  throwsCk(() => decodeMessage(map({ req: 'x', kind: 'http', status: 1, headers: '' }), 'f.cbor'), /^f\.cbor: field "req"/)
  throwsCk(() => decodeMessage(map({ kind: 'timer', at: 'soon' }), 'f.cbor'), /^f\.cbor: field "at"/)
  throwsCk(() => decodeMessage(map({ kind: 'fund', amount: 'lots', sig: new Uint8Array(64) }), 'f.cbor'), /^f\.cbor: field "amount"/)
  throwsCk(() => decodeMessage(map({ extra: 1 }), 'f.cbor'), /^f\.cbor: unknown field "extra" in message/)
  throwsCk(() => decodeMessage(encode([1, 2]), 'f.cbor'), /^f\.cbor: message is not a CBOR map/)
  throwsCk(() => decodeMessage(encode('hi'), 'f.cbor'), /^f\.cbor: message is not a CBOR map/)
})

test('limits: id is 16 bytes, from at most 256 bytes, a 2^53-1 seq still fits', () => {
  assert.is(MESSAGE_ID_BYTES, 16); assert.is(MAX_FROM_BYTES, 256); assert.is(MAX_SEEN, 1024)
  const m = { ...SAMPLES[0], from: 'a'.repeat(256), seq: Number.MAX_SAFE_INTEGER }
  assert.is(decodeMessage(encodeMessage(m), 'm').seq, Number.MAX_SAFE_INTEGER)
  throwsCk(() => encodeMessage({ ...m, from: 'a'.repeat(257) }), /field "from"/)
  // a seq past 2^53 in the CBOR (valid CBOR, not a safe integer) is refused naming the field
  throwsCk(() => decodeMessage(encode({ id: ID, seq: 1n << 60n, kind: 'message', from: 'x', time: 1, body: new Uint8Array(0) }), 'big'), /^big: field "seq" must be an integer/)
  assert.is(idHex(ID), '0102030405060708090a0b0c0d0e0f10')
})

test('encodeRequest/decodeRequest round-trip byte for byte; bad fields are named', () => {
  const bytes = encodeRequest(REQUEST)
  const back = decodeRequest(bytes, 'r')
  assert.is(hex(encodeRequest(back)), hex(bytes))
  assert.equal({ ...back, body: hex(back.body) }, { ...REQUEST, body: hex(REQUEST.body) })
  const bad = (patch: Record<string, unknown>): Uint8Array => encode({ ...REQUEST, ...patch })
  throwsCk(() => decodeRequest(bad({ id: 0 }), 'r'), /^r: field "id" must be a request id/)
  throwsCk(() => decodeRequest(bad({ id: 2 ** 32 }), 'r'), /^r: field "id"/)
  throwsCk(() => decodeRequest(bad({ tick: -1 }), 'r'), /^r: field "tick"/)
  throwsCk(() => decodeRequest(bad({ tick: 'x' }), 'r'), /^r: field "tick"/)
  for (const f of ['method', 'url', 'headers', 'key']) throwsCk(() => decodeRequest(bad({ [f]: 1 }), 'r'), new RegExp(`^r: field "${f}" must be text`))
  throwsCk(() => decodeRequest(bad({ body: 'hi' }), 'r'), /^r: field "body" must be bytes/)
  throwsCk(() => decodeRequest(bad({ extra: true }), 'r'), /^r: unknown field "extra" in request/)
})

/** A state with something in every field. */
function fullIo (): IoState {
  return {
    last: 9,
    pending: SAMPLES.slice(0, 5).map((m, i) => ({ ...m, seq: i + 5 })),
    seen: [idN(100), idN(101)],
    requests: [{ ...REQUEST, id: 2 }, { ...REQUEST, id: 7, method: 'GET', body: new Uint8Array(0) }],
    nextReq: 8,
    open: 3,
    sleep: T + 2_000_000_000n,
    outbox: [],
    nextMsg: 1,
    blocked: false,
  }
}

test('encodeIo/decodeIo round-trip byte for byte (empty, full, sleep null / 0 / ns)', () => {
  for (const s of [emptyIo(), fullIo(), { ...fullIo(), sleep: 0n }, { ...fullIo(), sleep: null }, { ...emptyIo(), seen: Array.from({ length: MAX_SEEN }, (_, i) => idN(i)) }]) {
    const bytes = encodeIo(s)
    const back = decodeIo(bytes, 'io')
    assert.is(hex(encodeIo(back)), hex(bytes))
    assert.is(back.last, s.last); assert.is(back.nextReq, s.nextReq); assert.is(back.open, s.open); assert.is(back.sleep, s.sleep)
    assert.is(back.pending.length, s.pending.length); assert.is(back.seen.length, s.seen.length); assert.is(back.requests.length, s.requests.length)
  }
  // the v field and the canonical key order: v is first in no particular way, the keys sort by length
  const keys = Object.keys(decodeIo(encodeIo(emptyIo()), 'io'))
  assert.equal(keys.sort(), ['blocked', 'last', 'nextMsg', 'nextReq', 'open', 'outbox', 'pending', 'requests', 'seen', 'sleep'])
  assert.is(hex(encodeIo(emptyIo())), hex(encode({ v: 1, last: 0, open: 0, seen: [], sleep: null, nextReq: 1, pending: [], requests: [] })))
  assert.ok(isEmptyIo(emptyIo()))
  for (const patch of [{ last: 1 }, { nextReq: 2 }, { open: 1 }, { sleep: 0n }, { seen: [ID] }]) assert.not.ok(isEmptyIo({ ...emptyIo(), ...patch }), JSON.stringify(Object.keys(patch)))
})

test('cloneIo copies the arrays (the runtime rolls a failed tick back to the original)', () => {
  const s = fullIo()
  const c = cloneIo(s)
  c.pending.pop(); c.seen.push(ID); c.requests.shift(); c.nextReq++; c.sleep = null
  assert.is(s.pending.length, 5); assert.is(s.seen.length, 2); assert.is(s.requests.length, 2); assert.is(s.nextReq, 8); assert.is(s.sleep, T + 2_000_000_000n)
})

test('decodeIo: every inconsistency is refused naming the field', () => {
  const raw = (patch: Record<string, unknown>, drop: string[] = []): Uint8Array => {
    const s = fullIo()
    const o: Record<string, unknown> = {
      v: 1, last: s.last, pending: s.pending.map((m) => decodeMessageMap(m)), seen: s.seen,
      requests: s.requests.map((r) => ({ ...r })), nextReq: s.nextReq, open: s.open, sleep: s.sleep, ...patch,
    }
    for (const d of drop) delete o[d]
    return encode(o)
  }
  assert.not.throws(() => decodeIo(raw({}), 'io'))
  const cases: [Uint8Array, RegExp][] = [
    [raw({ v: 2 }), /^io: field "v": unknown io state version number 2/],
    [raw({}, ['v']), /^io: field "v"/],
    [raw({ last: -1 }), /^io: field "last"/],
    [raw({}, ['last']), /^io: field "last"/],
    [raw({ nextReq: 0 }), /^io: field "nextReq"/],
    [raw({ nextReq: 2 ** 32 + 1 }), /^io: field "nextReq"/],
    [raw({ pending: {} }), /^io: field "pending" must be an array/],
    [raw({ seen: 'x' }), /^io: field "seen" must be an array/],
    [raw({ requests: 1 }), /^io: field "requests" must be an array/],
    [raw({ last: 8 }), /^io: pending\[4\]: seq 9 out of order or above last 8/],
    [raw({ pending: [decodeMessageMap({ ...SAMPLES[0], seq: 3 }), decodeMessageMap({ ...SAMPLES[0], seq: 2 })] }), /^io: pending\[1\]: seq 2 out of order/],
    [raw({ pending: [decodeMessageMap({ ...SAMPLES[0], seq: 0 })] }), /^io: pending\[0\]: seq 0/],
    [raw({ pending: [{ ...decodeMessageMap(SAMPLES[0]), from: '' }] }), /^io: pending\[0\]: field "from"/],
    [raw({ seen: Array.from({ length: MAX_SEEN + 1 }, (_, i) => idN(i)) }), /^io: field "seen" holds 1025 ids \(at most 1024\)/],
    [raw({ seen: [ID, new Uint8Array(15)] }), /^io: seen\[1\] must be 16 bytes/],
    [raw({ requests: [{ ...REQUEST, id: 7 }, { ...REQUEST, id: 2 }] }), /^io: requests\[1\]: id 2 out of order/],
    [raw({ nextReq: 7 }), /^io: requests\[1\]: id 7 out of order or not below nextReq 7/],
    [raw({ requests: [{ ...REQUEST, url: 5 }] }), /^io: requests\[0\]: field "url"/],
    [raw({ open: 8 }), /^io: field "open" must be 0\.\.nextReq-1/],
    [raw({}, ['open']), /^io: field "open"/],
    [raw({ sleep: -1 }), /^io: field "sleep"/],
    [raw({ sleep: 'later' }), /^io: field "sleep"/],
    [raw({}, ['sleep']), /^io: field "sleep"/],
    [raw({ extra: 1 }), /^io: unknown field "extra" in io state/],
  ]
  for (const [bytes, re] of cases) throwsCk(() => decodeIo(bytes, 'io'), re, re.source)
})

/** A message as the plain CBOR map its encoding holds (for building hostile states). */
function decodeMessageMap (m: Message): Record<string, unknown> {
  const o: Record<string, unknown> = { id: m.id, seq: m.seq, kind: m.kind, from: m.from, time: m.time, body: m.body }
  for (const k of ['req', 'status', 'headers', 'amount', 'sig', 'at'] as const) if (m[k] !== undefined) o[k] = m[k]
  return o
}

test.run()
