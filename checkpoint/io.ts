/**
 * An agent's I/O state (docs/FORMAT.md "I/O state", docs/ABI.md "Inbox"): the inbox messages it has
 * not consumed yet, the HTTP requests it issued whose outcome has not arrived, and how it asked to
 * sleep. It is part of every checkpoint: the header's `io` field names the CID of its canonical CBOR
 * (absent when the state is empty), the live `.ckpt` embeds the bytes, and migration carries them —
 * so the inbox and pending requests travel with the agent.
 *
 * Everything that enters an agent from the world arrives as a {@link Message} in one inbox: messages
 * from people and agents, HTTP outcomes, timer wake-ups and top-ups. The host numbers them (`seq`)
 * when it takes them; the agent consumes them with `inbox_next` (top-ups are applied by the host at
 * the start of a tick), and each consumed message is recorded in the event log, so replay needs no
 * network.
 *
 * Encodings are canonical CBOR (RFC 8949 §4.2.1, checkpoint/cbor.ts); decoding treats its input as
 * hostile and names the field at fault.
 */
import { createHash } from 'node:crypto'
import { asMap, decode, describe, encode } from './cbor.ts'
import type { CborMap } from './cbor.ts'
import { CheckpointError } from './errors.ts'

/** Version of the I/O state layout, its `v` field. */
export const IO_VERSION = 1

/**
 * Kinds of inbox message. `bounce` (issue 9): a message this agent sent (`message_send`) that
 * could not be delivered comes back with the reason. `room`: the outbox has room again — after a
 * `message_send` found it full ({@link IoState.blocked}), the first of its messages the
 * recipient's host took wakes the agent with this.
 */
export type MessageKind = 'message' | 'http' | 'timer' | 'fund' | 'bounce' | 'room'

/** Every {@link MessageKind}. */
export const MESSAGE_KINDS: readonly MessageKind[] = ['message', 'http', 'timer', 'fund', 'bounce', 'room']

/** Length of a message id, bytes (chosen by the sender; the dedup key). */
export const MESSAGE_ID_BYTES = 16

/** Consumed message ids an agent remembers for dedup ({@link IoState.seen}). */
export const MAX_SEEN = 1024

/** Longest `from` text, bytes. */
export const MAX_FROM_BYTES = 256

/**
 * One inbox entry (docs/FORMAT.md "Message"). Fields besides the first six belong to one kind:
 * `req`, `status`, `headers` to `http`; `amount`, `sig` to `fund`; `at` to `timer`; `req`,
 * `status` to `bounce` (then `req` is the message number `message_send` returned, `status` the
 * negative reason code, `from` the recipient DID and `body` the reason as UTF-8 text); `req` to
 * `room` (the number of the message whose delivery made room, `from` its recipient DID, `body`
 * empty).
 */
export interface Message {
  /** Sender-chosen unique id, 16 bytes: a message with an id the agent has seen is a duplicate. */
  id: Uint8Array
  /** Position in the agent's inbox, ≥ 1, assigned by the host that took it; 0 before that. */
  seq: number
  kind: MessageKind
  /** Sender: a peer ID (`12D3KooW…`, a node operator), a `did:key:…`, `http` or `timer`. */
  from: string
  /** When the host took it, ns since the Unix epoch. */
  time: bigint
  /** The message bytes; an HTTP response body; empty for `timer` and `fund`. */
  body: Uint8Array
  /** `http`: the request id `http_request` returned; `bounce`, `room`: the message number `message_send` returned. */
  req?: number
  /** `http`: HTTP status (100–599) or a negative outcome code (docs/ABI.md "HTTP outcome codes"); `bounce`: the reason code (docs/ABI.md "Messages"). */
  status?: number
  /** `http`: response headers, `name: value\r\n` lines with lower-case names. */
  headers?: string
  /** `fund`: microcents added to the budget. */
  amount?: bigint
  /** `fund`: Ed25519 signature of the funder (checkpoint/fund.ts). */
  sig?: Uint8Array
  /** `timer`: the wake time the agent asked for, ns since the Unix epoch. */
  at?: bigint
}

/** An HTTP request an agent issued (docs/ABI.md "http"), as recorded and kept until its outcome arrives. */
export interface HttpRequestRecord {
  /** Per-agent request id, from 1. */
  id: number
  /** The tick that issued it. */
  tick: number
  /** Upper-case method token. */
  method: string
  /** Absolute http(s) URL. */
  url: string
  /** Request headers as the agent gave them, `Name: value\r\n` lines. */
  headers: string
  body: Uint8Array
  /** The `Idempotency-Key` header value sent with it: `<did>/<tick>/<id>`. */
  key: string
}

/**
 * A message an agent sent (`message_send`, docs/ABI.md "Messages") and its host has not seen
 * acknowledged yet: kept in the I/O state (so it travels with the agent and survives a crash) and
 * sent after the checkpoint of the tick that asked, again until the recipient's host answers.
 */
export interface OutboundMessage {
  /** Per-agent message number, from 1 (what `message_send` returned). */
  n: number
  /** The tick that sent it. */
  tick: number
  /** The recipient's `did:key:…`. */
  to: string
  /** Message id (the recipient's dedup key): {@link outboundId}. */
  id: Uint8Array
  body: Uint8Array
}

/**
 * Most messages an agent may have sent and not seen acknowledged (`message_send` returns E_TOO_MANY
 * beyond): the default and the maximum of the manifest's `resource_limits.max_outbox_messages`.
 */
export const MAX_OUTBOX = 64

/** Longest recipient DID `message_send` takes, bytes. */
export const MAX_DID_BYTES = 128

/**
 * The id of message number `n` of agent `did`: the first 16 bytes of SHA-256 of ASCII
 * `<did>/msg/<n>` — deterministic (replay reproduces it) and unique over the agent's life.
 */
export function outboundId (did: string, n: number): Uint8Array {
  return new Uint8Array(createHash('sha256').update(`${did}/msg/${n}`).digest().subarray(0, MESSAGE_ID_BYTES))
}

/** What an agent asked about its next tick (`sleep_until`): null = the default interval. */
export type Sleep = bigint | null

/** The I/O state carried by a checkpoint. */
export interface IoState {
  /** Highest `seq` assigned so far (0: none). */
  last: number
  /** Messages not consumed yet, ascending `seq`. */
  pending: Message[]
  /** Ids of the last ≤ {@link MAX_SEEN} consumed messages, oldest first. */
  seen: Uint8Array[]
  /** Requests issued whose outcome has not been taken into the inbox yet, ascending id. */
  requests: HttpRequestRecord[]
  /** The id the next request gets (≥ 1). */
  nextReq: number
  /**
   * Requests whose outcome the agent has not read yet (issued minus `http` messages consumed):
   * what `max_pending` limits. Counted from what the agent did, so replay reaches the same number.
   */
  open: number
  /** The last tick's `sleep_until`: null none (default pace), 0n only an inbox message wakes it, else ns. */
  sleep: Sleep
  /** Messages sent and not acknowledged yet (nor bounced), ascending `n`. */
  outbox: OutboundMessage[]
  /** The number the next sent message gets (≥ 1). */
  nextMsg: number
  /**
   * A committed tick's `message_send` found the outbox full (E_TOO_MANY) and no message has left
   * the outbox since: the next one that leaves it wakes the agent — a `room` inbox message when
   * its recipient's host took it, its `bounce` when it came back. Set from what the agent did (so
   * replay reaches it too), cleared by the host when it takes that message.
   */
  blocked: boolean
}

/** A fresh, empty I/O state. */
export function emptyIo (): IoState {
  return { last: 0, pending: [], seen: [], requests: [], nextReq: 1, open: 0, sleep: null, outbox: [], nextMsg: 1, blocked: false }
}

/** True when the state holds nothing worth recording (the header then has no `io` field). */
export function isEmptyIo (s: IoState): boolean {
  return s.last === 0 && s.pending.length === 0 && s.seen.length === 0 && s.requests.length === 0 && s.nextReq === 1 && s.open === 0 && s.sleep === null && s.outbox.length === 0 && s.nextMsg === 1 && !s.blocked
}

/** A deep copy (the runtime keeps one to roll a failed tick back). */
export function cloneIo (s: IoState): IoState {
  return { last: s.last, pending: [...s.pending], seen: [...s.seen], requests: [...s.requests], nextReq: s.nextReq, open: s.open, sleep: s.sleep, outbox: [...s.outbox], nextMsg: s.nextMsg, blocked: s.blocked }
}

/** The CBOR map of a message (optional fields only when set). */
function messageMap (m: Message): CborMap {
  const o: CborMap = { id: m.id, seq: m.seq, kind: m.kind, from: m.from, time: m.time, body: m.body }
  for (const k of ['req', 'status', 'headers', 'amount', 'sig', 'at'] as const) if (m[k] !== undefined) o[k] = m[k]
  return o
}

/** Canonical CBOR bytes of one message (the payload of the `inbox` and `fund` events, a spool file). */
export function encodeMessage (m: Message): Uint8Array {
  checkMessage(m, 'message')
  return encode(messageMap(m))
}

const MESSAGE_FIELDS = ['id', 'seq', 'kind', 'from', 'time', 'body', 'req', 'status', 'headers', 'amount', 'sig', 'at']
const KIND_FIELDS: Record<MessageKind, readonly string[]> = { message: [], http: ['req', 'status', 'headers'], timer: ['at'], fund: ['amount', 'sig'], bounce: ['req', 'status'], room: ['req'] }

function int (v: unknown): bigint | null {
  if (typeof v === 'bigint') return v
  if (typeof v === 'number' && Number.isSafeInteger(v)) return BigInt(v)
  return null
}

/**
 * Checks a message's fields (types, ranges, the fields of its kind and no others).
 * @throws CheckpointError `<what>: field "<name>" …`
 */
export function checkMessage (m: Message, what: string): Message {
  const fail = (f: string, msg: string): never => { throw new CheckpointError(`${what}: field "${f}" ${msg}`) }
  if (!(m.id instanceof Uint8Array) || m.id.length !== MESSAGE_ID_BYTES) fail('id', `must be ${MESSAGE_ID_BYTES} bytes, got ${describe(m.id)}`)
  if (!Number.isSafeInteger(m.seq) || m.seq < 0) fail('seq', `must be a non-negative integer, got ${describe(m.seq)}`)
  if (!MESSAGE_KINDS.includes(m.kind)) fail('kind', `must be one of ${MESSAGE_KINDS.join(', ')}, got ${describe(m.kind)}`)
  if (typeof m.from !== 'string' || m.from.length === 0 || Buffer.byteLength(m.from) > MAX_FROM_BYTES) fail('from', `must be 1..${MAX_FROM_BYTES} bytes of text, got ${describe(m.from)}`)
  if (typeof m.time !== 'bigint' || m.time < 0n || m.time >= 1n << 64n) fail('time', `must be an unsigned 64-bit integer (ns), got ${describe(m.time)}`)
  if (!(m.body instanceof Uint8Array)) fail('body', `must be bytes, got ${describe(m.body)}`)
  const own = KIND_FIELDS[m.kind]
  for (const f of ['req', 'status', 'headers', 'amount', 'sig', 'at'] as const) {
    const has = m[f] !== undefined
    if (has !== own.includes(f)) fail(f, has ? `is not allowed in a ${m.kind} message` : `is required in a ${m.kind} message`)
  }
  if (m.kind === 'http') {
    if (!Number.isSafeInteger(m.req) || (m.req as number) < 1 || (m.req as number) > 0xffffffff) fail('req', `must be a request id 1..2^32-1, got ${describe(m.req)}`)
    if (!Number.isSafeInteger(m.status) || (m.status as number) < -(2 ** 31) || (m.status as number) > 599) fail('status', `must be an HTTP status or a negative outcome code, got ${describe(m.status)}`)
    if (typeof m.headers !== 'string') fail('headers', `must be text, got ${describe(m.headers)}`)
  }
  if (m.kind === 'bounce' || m.kind === 'room') {
    if (!Number.isSafeInteger(m.req) || (m.req as number) < 1 || (m.req as number) > 0xffffffff) fail('req', `must be a message number 1..2^32-1, got ${describe(m.req)}`)
  }
  if (m.kind === 'bounce' && (!Number.isSafeInteger(m.status) || (m.status as number) >= 0 || (m.status as number) < -(2 ** 31))) fail('status', `must be a negative reason code, got ${describe(m.status)}`)
  if (m.kind === 'fund') {
    if (typeof m.amount !== 'bigint' || m.amount <= 0n || m.amount >= 1n << 64n) fail('amount', `must be a positive 64-bit integer (microcents), got ${describe(m.amount)}`)
    if (!(m.sig instanceof Uint8Array) || m.sig.length !== 64) fail('sig', `must be a 64-byte Ed25519 signature, got ${describe(m.sig)}`)
  }
  if (m.kind === 'timer' && (typeof m.at !== 'bigint' || m.at < 0n || m.at >= 1n << 64n)) fail('at', `must be an unsigned 64-bit integer (ns), got ${describe(m.at)}`)
  return m
}

/** A message from its decoded CBOR map. @throws CheckpointError naming `what` and the field */
function messageFrom (v: unknown, what: string): Message {
  const m = asMap(v, what, 'message', MESSAGE_FIELDS)
  const n = (f: string): number | undefined => {
    if (m[f] === undefined) return undefined
    const x = int(m[f])
    if (x === null || x > BigInt(Number.MAX_SAFE_INTEGER) || x < -BigInt(Number.MAX_SAFE_INTEGER)) throw new CheckpointError(`${what}: field "${f}" must be an integer, got ${describe(m[f])}`)
    return Number(x)
  }
  const b = (f: string): bigint | undefined => m[f] === undefined ? undefined : (int(m[f]) ?? undefined)
  const msg: Message = {
    id: m.id as Uint8Array,
    seq: n('seq') as number,
    kind: m.kind as MessageKind,
    from: m.from as string,
    time: b('time') as bigint,
    body: m.body as Uint8Array,
  }
  if (m.req !== undefined) msg.req = n('req')
  if (m.status !== undefined) msg.status = n('status')
  if (m.headers !== undefined) msg.headers = m.headers as string
  if (m.amount !== undefined) msg.amount = b('amount') ?? (m.amount as bigint)
  if (m.sig !== undefined) msg.sig = m.sig as Uint8Array
  if (m.at !== undefined) msg.at = b('at') ?? (m.at as bigint)
  if (msg.time === undefined && m.time !== undefined) msg.time = m.time as bigint
  return checkMessage(msg, what)
}

/**
 * Decodes one message's canonical CBOR bytes.
 * @throws CheckpointError naming `what` and the field at fault
 */
export function decodeMessage (bytes: Uint8Array, what = 'message'): Message {
  return messageFrom(decode(bytes, what), what)
}

function requestMap (r: HttpRequestRecord): CborMap {
  return { id: r.id, tick: r.tick, method: r.method, url: r.url, headers: r.headers, body: r.body, key: r.key }
}

/** Canonical CBOR bytes of a request record (the payload of the `http_request` event). */
export function encodeRequest (r: HttpRequestRecord): Uint8Array {
  return encode(requestMap(r))
}

function requestFrom (v: unknown, what: string): HttpRequestRecord {
  const m = asMap(v, what, 'request', ['id', 'tick', 'method', 'url', 'headers', 'body', 'key'])
  const fail = (f: string, msg: string): never => { throw new CheckpointError(`${what}: field "${f}" ${msg}`) }
  const id = int(m.id); const tick = int(m.tick)
  if (id === null || id < 1n || id > 0xffffffffn) fail('id', `must be a request id 1..2^32-1, got ${describe(m.id)}`)
  if (tick === null || tick < 0n || tick > BigInt(Number.MAX_SAFE_INTEGER)) fail('tick', `must be a tick number, got ${describe(m.tick)}`)
  for (const f of ['method', 'url', 'headers', 'key']) if (typeof m[f] !== 'string') fail(f, `must be text, got ${describe(m[f])}`)
  if (!(m.body instanceof Uint8Array)) fail('body', `must be bytes, got ${describe(m.body)}`)
  return { id: Number(id), tick: Number(tick), method: m.method as string, url: m.url as string, headers: m.headers as string, body: m.body as Uint8Array, key: m.key as string }
}

/**
 * Decodes a request record's canonical CBOR bytes.
 * @throws CheckpointError naming `what` and the field at fault
 */
export function decodeRequest (bytes: Uint8Array, what = 'request'): HttpRequestRecord {
  return requestFrom(decode(bytes, what), what)
}

/**
 * Canonical CBOR bytes of an I/O state:
 * `{v: 1, last, pending: [message…], seen: [bytes16…], requests: [request…], nextReq, open, sleep: uint|null}`,
 * plus `outbox: [outbound…], nextMsg` once a message was sent and `blocked: true` while set (both
 * absent otherwise, so older states keep their bytes).
 */
export function encodeIo (s: IoState): Uint8Array {
  return encode({
    v: IO_VERSION,
    last: s.last,
    pending: s.pending.map((m) => messageMap(checkMessage(m, 'io pending message'))),
    seen: s.seen,
    requests: s.requests.map(requestMap),
    nextReq: s.nextReq,
    open: s.open,
    sleep: s.sleep,
    ...(s.outbox.length === 0 && s.nextMsg === 1 ? {} : { outbox: s.outbox.map(outboundMap), nextMsg: s.nextMsg }),
    ...(s.blocked ? { blocked: true } : {}),
  })
}

function outboundMap (o: OutboundMessage): CborMap {
  return { n: o.n, tick: o.tick, to: o.to, id: o.id, body: o.body }
}

function outboundFrom (v: unknown, what: string): OutboundMessage {
  const m = asMap(v, what, 'outbound message', ['n', 'tick', 'to', 'id', 'body'])
  const fail = (f: string, msg: string): never => { throw new CheckpointError(`${what}: field "${f}" ${msg}`) }
  const n = int(m.n); const tick = int(m.tick)
  if (n === null || n < 1n || n > 0xffffffffn) fail('n', `must be a message number 1..2^32-1, got ${describe(m.n)}`)
  if (tick === null || tick < 0n || tick > BigInt(Number.MAX_SAFE_INTEGER)) fail('tick', `must be a tick number, got ${describe(m.tick)}`)
  if (typeof m.to !== 'string' || !m.to.startsWith('did:key:') || Buffer.byteLength(m.to) > MAX_DID_BYTES) fail('to', `must be a did:key of at most ${MAX_DID_BYTES} bytes, got ${describe(m.to)}`)
  if (!(m.id instanceof Uint8Array) || m.id.length !== MESSAGE_ID_BYTES) fail('id', `must be ${MESSAGE_ID_BYTES} bytes, got ${describe(m.id)}`)
  if (!(m.body instanceof Uint8Array)) fail('body', `must be bytes, got ${describe(m.body)}`)
  return { n: Number(n), tick: Number(tick), to: m.to as string, id: m.id as Uint8Array, body: m.body as Uint8Array }
}

/**
 * Decodes and validates an I/O state: pending messages ascending by `seq`, each ≤ `last`; request
 * ids ascending and below `nextReq`; at most {@link MAX_SEEN} seen ids of 16 bytes.
 * @throws CheckpointError naming `what` and the field at fault
 */
export function decodeIo (bytes: Uint8Array, what = 'io state'): IoState {
  const m = asMap(decode(bytes, what), what, 'io state', ['v', 'last', 'pending', 'seen', 'requests', 'nextReq', 'open', 'sleep', 'outbox', 'nextMsg', 'blocked'])
  const fail = (msg: string): never => { throw new CheckpointError(`${what}: ${msg}`) }
  if (m.v !== IO_VERSION) fail(`field "v": unknown io state version ${describe(m.v)} (this igord reads ${IO_VERSION})`)
  const last = int(m.last); const nextReq = int(m.nextReq)
  if (last === null || last < 0n || last > BigInt(Number.MAX_SAFE_INTEGER)) fail(`field "last" must be a sequence number, got ${describe(m.last)}`)
  if (nextReq === null || nextReq < 1n || nextReq > 0x100000000n) fail(`field "nextReq" must be 1..2^32, got ${describe(m.nextReq)}`)
  if (!Array.isArray(m.pending)) fail('field "pending" must be an array')
  if (!Array.isArray(m.seen)) fail('field "seen" must be an array')
  if (!Array.isArray(m.requests)) fail('field "requests" must be an array')
  const pending = (m.pending as unknown[]).map((p, i) => messageFrom(p, `${what}: pending[${i}]`))
  for (let i = 0; i < pending.length; i++) {
    const s = pending[i].seq
    if (s < 1 || s > Number(last) || (i > 0 && s <= pending[i - 1].seq)) fail(`pending[${i}]: seq ${s} out of order or above last ${last}`)
  }
  const seen = m.seen as unknown[]
  if (seen.length > MAX_SEEN) fail(`field "seen" holds ${seen.length} ids (at most ${MAX_SEEN})`)
  seen.forEach((x, i) => { if (!(x instanceof Uint8Array) || x.length !== MESSAGE_ID_BYTES) fail(`seen[${i}] must be ${MESSAGE_ID_BYTES} bytes`) })
  const requests = (m.requests as unknown[]).map((r, i) => requestFrom(r, `${what}: requests[${i}]`))
  for (let i = 0; i < requests.length; i++) {
    if (requests[i].id >= Number(nextReq) || (i > 0 && requests[i].id <= requests[i - 1].id)) fail(`requests[${i}]: id ${requests[i].id} out of order or not below nextReq ${nextReq}`)
  }
  const open = int(m.open)
  if (open === null || open < 0n || open >= nextReq!) fail(`field "open" must be 0..nextReq-1, got ${describe(m.open)}`)
  let sleep: Sleep = null
  if (m.sleep !== null) {
    const s = int(m.sleep)
    if (s === null || s < 0n || s >= 1n << 64n) fail(`field "sleep" must be null or ns, got ${describe(m.sleep)}`)
    sleep = s
  }
  // outbox and nextMsg (issue 9) are both absent when no message was ever sent
  if ((m.outbox === undefined) !== (m.nextMsg === undefined)) fail('fields "outbox" and "nextMsg" must be both present or both absent')
  let outbox: OutboundMessage[] = []
  let nextMsg = 1
  if (m.outbox !== undefined) {
    const nm = int(m.nextMsg)
    if (nm === null || nm < 1n || nm > 0x100000000n) fail(`field "nextMsg" must be 1..2^32, got ${describe(m.nextMsg)}`)
    nextMsg = Number(nm)
    if (!Array.isArray(m.outbox)) fail('field "outbox" must be an array')
    outbox = (m.outbox as unknown[]).map((o, i) => outboundFrom(o, `${what}: outbox[${i}]`))
    for (let i = 0; i < outbox.length; i++) {
      if (outbox[i].n >= nextMsg || (i > 0 && outbox[i].n <= outbox[i - 1].n)) fail(`outbox[${i}]: n ${outbox[i].n} out of order or not below nextMsg ${nextMsg}`)
    }
  }
  // blocked: present only while set (true)
  if (m.blocked !== undefined && m.blocked !== true) fail(`field "blocked" must be true when present, got ${describe(m.blocked)}`)
  return { last: Number(last), pending, seen: seen as Uint8Array[], requests, nextReq: Number(nextReq), open: Number(open), sleep, outbox, nextMsg, blocked: m.blocked === true }
}

/**
 * Canonical CBOR of a `message_send` event payload: `{to: text, id: bytes(16), body: bytes}` —
 * what the agent asked to send (docs/ABI.md "Messages").
 */
export function encodeSendEvent (o: OutboundMessage): Uint8Array {
  return encode({ to: o.to, id: o.id, body: o.body })
}

/**
 * Decodes a `message_send` event payload.
 * @throws CheckpointError naming `what` and the field at fault
 */
export function decodeSendEvent (bytes: Uint8Array, what = 'message_send'): { to: string; id: Uint8Array; body: Uint8Array } {
  const m = asMap(decode(bytes, what), what, 'message_send', ['to', 'id', 'body'])
  if (typeof m.to !== 'string') throw new CheckpointError(`${what}: field "to" must be text, got ${describe(m.to)}`)
  if (!(m.id instanceof Uint8Array) || m.id.length !== MESSAGE_ID_BYTES) throw new CheckpointError(`${what}: field "id" must be ${MESSAGE_ID_BYTES} bytes`)
  if (!(m.body instanceof Uint8Array)) throw new CheckpointError(`${what}: field "body" must be bytes`)
  return { to: m.to, id: m.id, body: m.body }
}

/** Hex of a message id (file names, log lines). */
export function idHex (id: Uint8Array): string {
  return Buffer.from(id).toString('hex')
}
