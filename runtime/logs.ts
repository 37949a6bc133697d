/**
 * An agent's life read from its event log (`igord logs`, issue 8 spec "CLI"; docs/FORMAT.md
 * "Event-log segment", docs/ABI.md "Event log"): the chain of checkpoints genesis → latest is walked
 * along `prev` links, each checkpoint's segment is decoded, and every tick record becomes
 * {@link LogItem}s — one per thing worth a line (a log line, an inbox message, an HTTP request, a
 * top-up, a sleep, a trap, a checkpoint…). An item is the JSON form; {@link formatItem} is the text
 * form (`tick 12  log      hello world`).
 *
 * Pieces:
 * - {@link describeEvent} / {@link tickItems} / {@link checkpointItem}: pure, record → items;
 *   {@link formatEvent} / {@link formatTick}: the same as text lines; {@link itemJson}: one JSON line.
 * - {@link findLogSource}: which data directory, agent, history and live file an argument names.
 * - {@link AgentLog}: reads the history directory and the live file (again on {@link AgentLog.refresh},
 *   reading only what is new), picks the chain and yields the items of checkpoints not yet yielded,
 *   one segment in memory at a time — so `--follow` streams with bounded memory.
 *
 * The reader does not verify (no signatures of history entries, no state roots): `igord verify`
 * does that. It does check every segment blob against its CID, so what it shows is what the
 * signed headers name.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { decode } from '../checkpoint/cbor.ts'
import { decodeMessage as decodeIoMessage, decodeRequest as decodeIoRequest, decodeSendEvent } from '../checkpoint/io.ts'
import { CheckpointError, EXIT, IgordError, StorageError } from '../checkpoint/errors.ts'
import { cidOf } from '../checkpoint/hash.ts'
import { headerCid, type CheckpointHeader } from '../checkpoint/header.ts'
import { blobsDir, checkAgentName, historyDir, historyName, historyRoot, liveNames, livePath, nameOfLive } from '../checkpoint/layout.ts'
import { peekLive, type LivePeek } from '../checkpoint/peek.ts'
import { readBlobIn } from '../checkpoint/store.ts'
import { decodeEntry, readEntryAt } from '../checkpoint/entries.ts'
import { entryWhere, readHistoryFile } from '../checkpoint/segment.ts'
import { EventLog, type Event, type TickRecord } from '../hostcalls/eventlog.ts'
import { tickCost } from './cost.ts'

// ---- items ---------------------------------------------------------------------------------------

/**
 * One line of an agent's log, as JSON: `tick` (the tick it belongs to; a checkpoint's own tick for
 * `checkpoint`), `kind`, and the kind's fields. 64-bit values (ns times, fuel, microcents) are
 * decimal strings; ticks, sequence numbers, request ids and status codes are numbers. Kinds:
 *
 * | kind | fields | from |
 * |---|---|---|
 * | `log`, `stdout`, `stderr` | `text` | `log_emit`, `wasi.stdout`, `wasi.stderr` |
 * | `exit` | `code` | `wasi.proc_exit` |
 * | `migrate` | `target` | `migrate_request` |
 * | `inbox`, `inbox_peek` | `message` ({@link MessageView}) | `inbox` bytes, `inbox_peek` |
 * | `inbox_empty` | — | `inbox` int 0 |
 * | `sleep` | `at` (ns or null = until the next message), `until` (ISO) | `sleep_until` |
 * | `http_request` | `request` ({@link RequestView}), or `error`, `error_name` | `http_request` |
 * | `message_send` | `send` ({@link SendView}), or `error`, `error_name` | `message_send` |
 * | `fund` | `message`, `budget` (microcents after it, null when unknown) | `fund` |
 * | `clock`, `wasi_clock` | `ns` (`clock` also `time`, ISO) | `clock_now`, `wasi.clock_time_get` |
 * | `rand`, `wasi_random` | `bytes`, `hex` (first 32 bytes) | `rand_bytes`, `wasi.random_get` |
 * | `seed`, `sign` | `hex` | `env.seed`, `agent_sign` |
 * | `wallet` | `budget` (microcents) | `wallet_balance` |
 * | `did` | `did` | `agent_did` |
 * | `event` | `hostcall`, `type` (`bytes`/`int`/`text`), `bytes` or `value` | any other hostcall |
 * | `trap` | `trap`, `fuel` | a failed tick (rolled back) |
 * | `end` | `result` (null at birth), `fuel` | every tick that did not trap |
 * | `checkpoint` | `status`, `target`?, `reason`?, `fuel`, `budget`, `price`, `epoch`, `host`, `time`, `cid`, `agent` (genesis only), `changed` | each checkpoint |
 * | `gap` | `missing` (CID) | the chain's first checkpoint is not the genesis |
 * | `fork` | `after` (tick) | `--follow`: the chain changed under the reader |
 * | `done` | `status`, `target`? | `--follow`: the agent finished or was handed off |
 *
 * A known hostcall whose payload cannot be decoded gives its kind with `hostcall` and `error`.
 */
export interface LogItem { tick: number; kind: string; [field: string]: unknown }

/** Kinds shown only with `--verbose`: inputs that are noise when reading a life. */
export const NOISE_KINDS: ReadonlySet<string> = new Set(['clock', 'wasi_clock', 'rand', 'wasi_random', 'seed', 'wallet', 'did', 'sign', 'inbox_empty', 'end'])

/**
 * True when `item` is shown only with `--verbose`: a {@link NOISE_KINDS} kind, except an `end`
 * whose result is not 0 (idle), 1 (more) or null (birth) — finishing is always shown.
 */
export function isNoise (item: LogItem): boolean {
  if (item.kind === 'end') return item.result === 0 || item.result === 1 || item.result === null
  return NOISE_KINDS.has(item.kind)
}

/**
 * An inbox message (issue 8 spec "Message") as shown: `id` and `sig` hex, `time`/`at`/`amount`
 * decimal strings (ns, microcents), `body` when it is valid UTF-8, else `body_b64`; `bytes` the
 * body's length. Fields the message does not have are left out.
 */
export interface MessageView {
  seq: number | string | null; kind: string; from: string; time: string | null; id: string | null; bytes: number
  body?: string; body_b64?: string; req?: number | string; status?: number | string; status_name?: string
  headers?: string; amount?: string; sig?: string; at?: string
}

/** An HTTP request record (issue 8 spec "HTTP request record") as shown; body as in {@link MessageView}. */
export interface RequestView {
  id: number | string | null; tick: number | string | null; method: string; url: string; headers: string
  bytes: number; body?: string; body_b64?: string; key: string
}

/** HTTP outcome codes (Message.status when negative, issue 8 spec). */
export const HTTP_OUTCOMES: Readonly<Record<number, string>> = { [-10]: 'E_HTTP_TIMEOUT', [-11]: 'E_HTTP_CONNECT', [-12]: 'E_HTTP_TOO_LARGE', [-13]: 'E_HTTP_REDIRECT', [-14]: 'E_HTTP_IN_DOUBT' }

/** Error codes `message_send` may return (recorded as an int payload, docs/ABI.md "Messages"). */
export const SEND_CALL_ERRORS: Readonly<Record<number, string>> = { [-2]: 'E_TOO_LONG', [-3]: 'E_BAD_TARGET', [-4]: 'E_BOUNDS', [-7]: 'E_TOO_MANY' }

/** Codes of a `bounce` inbox message (checkpoint/envelope.ts): why a message came back undelivered. */
export const BOUNCE_CODES: Readonly<Record<number, string>> = { [-20]: 'E_MSG_UNKNOWN', [-21]: 'E_MSG_FULL', [-22]: 'E_MSG_REFUSED', [-23]: 'E_MSG_UNREACHABLE' }

/**
 * A message an agent asked to send (`message_send` event `{to, id, body}`) as shown: `id` hex,
 * `bytes` the body's length, the body as `body` (UTF-8) or `body_b64`.
 */
export interface SendView { to: string; id: string; bytes: number; body?: string; body_b64?: string }

/** Error codes `http_request` may return (recorded as an int payload, issue 8 spec). */
export const HTTP_CALL_ERRORS: Readonly<Record<number, string>> = { [-2]: 'E_TOO_LONG', [-3]: 'E_BAD_ARG', [-4]: 'E_BOUNDS', [-5]: 'E_NOT_ALLOWED', [-6]: 'E_BAD_REQUEST', [-7]: 'E_TOO_MANY' }

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** The bytes as text when they are valid UTF-8, else null. */
function asText (b: Uint8Array): string | null {
  try { return utf8.decode(b) } catch { return null }
}

/** `{ body }` when valid UTF-8, else `{ body_b64 }`. */
function bodyOf (b: Uint8Array): { body: string } | { body_b64: string } {
  const t = asText(b)
  return t === null ? { body_b64: Buffer.from(b).toString('base64') } : { body: t }
}

/** An integer that fits a JS number as a number, a larger one as a decimal string, anything else null. */
function smallInt (v: unknown): number | string | null {
  if (typeof v === 'number' && Number.isSafeInteger(v)) return v
  if (typeof v === 'bigint') return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString()
  return null
}

/** An integer as a decimal string (64-bit values), anything else null. */
function bigText (v: unknown): string | null {
  if (typeof v === 'bigint') return v.toString()
  if (typeof v === 'number' && Number.isSafeInteger(v)) return String(v)
  return null
}

const hex = (b: Uint8Array, max = Infinity): string => Buffer.from(b.subarray(0, Math.min(b.length, max))).toString('hex')

/** The decoded CBOR map in `bytes`, or throws a one-line reason. */
function cborMap (bytes: Uint8Array, what: string): Record<string, unknown> {
  const v = decode(bytes, what)
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) throw new Error(`${what} is not a CBOR map`)
  return v as Record<string, unknown>
}

/**
 * An inbox message's canonical CBOR (checkpoint/io.ts `decodeMessage`, which checks every field)
 * as shown by `igord logs`.
 * @throws CheckpointError (one line naming the field) when the bytes are not a valid message
 */
export function decodeMessage (bytes: Uint8Array): MessageView {
  const m = decodeIoMessage(bytes, 'message')
  const v: MessageView = { seq: m.seq, kind: m.kind, from: m.from, time: m.time.toString(), id: hex(m.id), bytes: m.body.length, ...bodyOf(m.body) }
  if (m.req !== undefined) v.req = m.req
  if (m.status !== undefined) {
    v.status = m.status
    const names = m.kind === 'bounce' ? BOUNCE_CODES : HTTP_OUTCOMES
    if (names[m.status] !== undefined) v.status_name = names[m.status]
  }
  if (m.headers !== undefined) v.headers = m.headers
  if (m.amount !== undefined) v.amount = m.amount.toString()
  if (m.sig !== undefined) v.sig = hex(m.sig)
  if (m.at !== undefined) v.at = m.at.toString()
  return v
}

/**
 * An HTTP request record's canonical CBOR (checkpoint/io.ts `decodeRequest`) as shown by `igord logs`.
 * @throws CheckpointError (one line naming the field) when the bytes are not a valid record
 */
export function decodeRequest (bytes: Uint8Array): RequestView {
  const r = decodeIoRequest(bytes, 'request record')
  return { id: r.id, tick: r.tick, method: r.method, url: r.url, headers: r.headers, bytes: r.body.length, ...bodyOf(r.body), key: r.key }
}

/** ISO time of `ns` since the Unix epoch (ms precision), or null when out of Date's range. */
export function isoOfNs (ns: bigint): string | null {
  const ms = ns / 1_000_000n
  if (ms < -8_640_000_000_000_000n || ms > 8_640_000_000_000_000n) return null
  return new Date(Number(ms)).toISOString()
}

/**
 * The item of one recorded event (see {@link LogItem} for the kinds). Never throws: a payload that
 * cannot be decoded gives an item with `error`.
 * @param tick the tick the event belongs to
 */
export function describeEvent (tick: number, event: Event): LogItem {
  const [name, p] = event
  const bad = (kind: string, error: string): LogItem => ({ tick, kind, hostcall: name, error })
  const generic = (): LogItem => {
    if (p instanceof Uint8Array) return { tick, kind: 'event', hostcall: name, type: 'bytes', bytes: p.length }
    if (typeof p === 'string') return { tick, kind: 'event', hostcall: name, type: 'text', bytes: Buffer.byteLength(p), text: p }
    return { tick, kind: 'event', hostcall: name, type: 'int', value: p.toString() }
  }
  const text = (kind: string, field: string): LogItem => typeof p === 'string' ? { tick, kind, [field]: p } : generic()
  switch (name) {
    case 'log_emit': return text('log', 'text')
    case 'wasi.stdout': return text('stdout', 'text')
    case 'wasi.stderr': return text('stderr', 'text')
    case 'migrate_request': return text('migrate', 'target')
    case 'agent_did': return text('did', 'did')
    case 'wasi.proc_exit': return typeof p === 'bigint' ? { tick, kind: 'exit', code: smallInt(p) } : generic()
    case 'clock_now': return typeof p === 'bigint' ? { tick, kind: 'clock', ns: p.toString(), time: isoOfNs(p) } : generic()
    case 'wasi.clock_time_get': return typeof p === 'bigint' ? { tick, kind: 'wasi_clock', ns: p.toString() } : generic()
    case 'wallet_balance': return typeof p === 'bigint' ? { tick, kind: 'wallet', budget: p.toString() } : generic()
    case 'rand_bytes': return p instanceof Uint8Array ? { tick, kind: 'rand', bytes: p.length, hex: hex(p, 32) } : generic()
    case 'wasi.random_get': return p instanceof Uint8Array ? { tick, kind: 'wasi_random', bytes: p.length, hex: hex(p, 32) } : generic()
    case 'env.seed': return p instanceof Uint8Array ? { tick, kind: 'seed', hex: hex(p) } : generic()
    case 'agent_sign': return p instanceof Uint8Array ? { tick, kind: 'sign', hex: hex(p) } : generic()
    case 'sleep_until': {
      if (typeof p !== 'bigint') return generic()
      return { tick, kind: 'sleep', at: p === 0n ? null : p.toString(), until: p === 0n ? null : isoOfNs(p) }
    }
    case 'inbox':
    case 'inbox_peek':
    case 'fund': {
      if (name === 'inbox' && p === 0n) return { tick, kind: 'inbox_empty' }
      if (!(p instanceof Uint8Array)) return generic()
      try {
        const message = decodeMessage(p)
        return name === 'fund' ? { tick, kind: 'fund', message, budget: null } : { tick, kind: name, message }
      } catch (e) { return bad(name, (e as Error).message) }
    }
    case 'http_request': {
      if (typeof p === 'bigint') {
        const code = smallInt(p)
        return { tick, kind: 'http_request', error: code, error_name: typeof code === 'number' ? HTTP_CALL_ERRORS[code] ?? null : null }
      }
      if (!(p instanceof Uint8Array)) return generic()
      try { return { tick, kind: 'http_request', request: decodeRequest(p) } } catch (e) { return bad('http_request', (e as Error).message) }
    }
    case 'message_send': {
      if (typeof p === 'bigint') {
        const code = smallInt(p)
        return { tick, kind: 'message_send', error: code, error_name: typeof code === 'number' ? SEND_CALL_ERRORS[code] ?? null : null }
      }
      if (!(p instanceof Uint8Array)) return generic()
      try {
        const e = decodeSendEvent(p)
        const send: SendView = { to: e.to, id: hex(e.id), bytes: e.body.length, ...bodyOf(e.body) }
        return { tick, kind: 'message_send', send }
      } catch (e) { return bad('message_send', (e as Error).message) }
    }
    default: return generic()
  }
}

/**
 * Running budget while a segment is read: `budget` (microcents) before the next tick, null when
 * unknown (birth); `price` of the checkpoint whose segment it is (microcents per million fuel).
 * Each tick adds its `fund` amounts and is then charged `min(budget, ceil(fuel × price / 10^6))`,
 * as the runtime and replay do.
 */
export interface BudgetTrack { budget: bigint | null; price: bigint }

/**
 * The items of one tick record: its events in order, then `trap` (a failed tick) or `end`. A
 * `fund` item gets the budget after it when `track` knows the budget; `track` is advanced past
 * the tick.
 */
export function tickItems (rec: TickRecord, track?: BudgetTrack): LogItem[] {
  const items = rec.events.map((e) => {
    const it = describeEvent(rec.tick, e)
    if (it.kind === 'fund' && track !== undefined && track.budget !== null) {
      const amount = (it.message as MessageView).amount
      if (amount !== undefined) { track.budget += BigInt(amount); it.budget = track.budget.toString() }
    }
    return it
  })
  if (track !== undefined && track.budget !== null) track.budget -= tickCost(rec.fuel, track.price, track.budget)
  items.push(rec.trap !== null
    ? { tick: rec.tick, kind: 'trap', trap: rec.trap, fuel: rec.fuel.toString() }
    : { tick: rec.tick, kind: 'end', result: rec.result, fuel: rec.fuel.toString() })
  return items
}

/**
 * The item of a checkpoint. `changed` (text shows epoch and host then) is true at the genesis,
 * when `prev` is null or unknown, and when the epoch or host differs from `prev`'s.
 * @param prev the previous checkpoint's header in the chain, null when none or unknown
 */
export function checkpointItem (h: CheckpointHeader, cid: string, prev: CheckpointHeader | null): LogItem {
  return {
    tick: h.tick,
    kind: 'checkpoint',
    status: h.status,
    ...(h.target === undefined ? {} : { target: h.target }),
    ...(h.reason === undefined ? {} : { reason: h.reason }),
    fuel: h.fuel.toString(),
    budget: h.budget.toString(),
    price: h.price.toString(),
    epoch: h.epoch,
    host: h.host,
    time: new Date(h.time).toISOString(),
    cid,
    ...(h.prev === null ? { agent: h.agent } : {}),
    changed: prev === null || prev.epoch !== h.epoch || prev.host !== h.host,
  }
}

// ---- text ----------------------------------------------------------------------------------------

/** How {@link formatItem} renders: `budget` formats microcents (the CLI passes cmd/units.ts); `full` shows whole peer IDs and DIDs. */
export interface TextOptions { budget?: (microcents: bigint) => string; full?: boolean }

const defaultBudget = (mc: bigint): string => `${mc} microcents`

/** Characters escaped in previews and log text beyond C0 controls: DEL, C1 controls, zero-width and bidi controls, line/paragraph separators. */
const UNSAFE = /[\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]/g
const uEscape = (c: string): string => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0')

/**
 * One line of text as written by an agent, made safe for a terminal line: C0 controls other than
 * tab become `\n`, `\r`, `\u001b`…, and so do DEL, C1, zero-width and bidi controls.
 */
export function escapeLine (s: string): string {
  return s.replace(/[\u0000-\u0008\u000a-\u001f]/g, (c) => c === '\n' ? '\\n' : c === '\r' ? '\\r' : uEscape(c)).replace(UNSAFE, uEscape)
}

/**
 * A quoted preview of text: at most `max` characters (code points; `…` after the closing quote
 * when cut), JSON-style escapes for quotes, backslashes and controls, and the escapes of
 * {@link escapeLine}.
 */
export function quote (s: string, max = 80): string {
  const cps = s.length > max ? [...s] : null
  const cut = cps !== null && cps.length > max
  const t = cut ? cps.slice(0, max).join('') : s
  return JSON.stringify(t).replace(UNSAFE, uEscape) + (cut ? '…' : '')
}

/** A long peer ID or DID shortened to its first 16 and last 4 characters (unless `full`). */
function short (id: string, full?: boolean): string {
  return full || id.length <= 24 ? id : `${id.slice(0, 16)}…${id.slice(-4)}`
}

/** `N bytes` plus a quoted preview when the body is text. */
function bodyText (v: { bytes: number; body?: string }): string {
  return `${v.bytes} byte${v.bytes === 1 ? '' : 's'}${v.body !== undefined && v.bytes > 0 ? ' ' + quote(v.body) : ''}`
}

function statusText (s: number | string | undefined, name: string | undefined): string {
  if (name !== undefined) return name
  return s === undefined ? '?' : String(s)
}

/** A message (inbox, inbox_peek, fund) in one line: `#3 message from 12D3KooW… 5 bytes "hi"`. */
function messageText (m: MessageView, o: TextOptions): string {
  const seq = `#${m.seq ?? '?'}`
  const units = o.budget ?? defaultBudget
  switch (m.kind) {
    case 'message': return `${seq} message from ${short(m.from, o.full)} ${bodyText(m)}`
    case 'http': return `${seq} http #${m.req ?? '?'} ← ${statusText(m.status, m.status_name)}${typeof m.status === 'number' && m.status >= 0 ? ` (${bodyText(m)})` : ''}`
    case 'timer': return `${seq} timer${m.at === undefined ? '' : ` (asked for ${isoOfNs(BigInt(m.at)) ?? `${m.at} ns`})`}`
    case 'fund': return `${seq} fund +${m.amount === undefined ? '?' : units(BigInt(m.amount))} from ${short(m.from, o.full)}`
    case 'bounce': return `${seq} bounce: message #${m.req ?? '?'} to ${short(m.from, o.full)} came back, ${m.status_name ?? 'code'} (${m.status ?? '?'})${m.body !== undefined && m.bytes > 0 ? ': ' + quote(m.body, 200) : ''}`
    case 'room': return `${seq} room: message #${m.req ?? '?'} to ${short(m.from, o.full)} was delivered, the outbox has room`
    default: return `${seq} ${escapeLine(m.kind)} from ${short(m.from, o.full)} ${bodyText(m)}`
  }
}

/** `did:key:z6Mk…/13/1`: the DID part of an Idempotency-Key shortened. */
function keyText (key: string, full?: boolean): string {
  const i = key.indexOf('/')
  return i < 0 ? short(key, full) : short(key.slice(0, i), full) + key.slice(i)
}

const RESULTS: Readonly<Record<number, string>> = { 0: 'idle', 1: 'more', 2: 'finished' }

/** The label column and the rest of an item's line. */
function labelAndText (it: LogItem, o: TextOptions): [string, string] {
  const units = o.budget ?? defaultBudget
  if (typeof it.error === 'string') return [it.kind === 'http_request' ? 'http →' : it.kind === 'message_send' ? 'send →' : it.kind, `(${String(it.hostcall)}: cannot decode: ${escapeLine(it.error)})`]
  switch (it.kind) {
    case 'log': case 'stdout': case 'stderr': return [it.kind, escapeLine(it.text as string)]
    case 'exit': return ['exit', `proc_exit(${String(it.code)})`]
    case 'migrate': return ['migrate', `asks to move to ${escapeLine(it.target as string)}`]
    case 'inbox': return ['inbox', messageText(it.message as MessageView, o)]
    case 'inbox_peek': return ['inbox', `${messageText(it.message as MessageView, o)} (did not fit the agent's buffer: left in the inbox)`]
    case 'inbox_empty': return ['inbox', 'empty']
    case 'sleep': return ['sleep', it.at === null ? 'until next message' : `until ${(it.until as string | null) ?? `${String(it.at)} ns`}`]
    case 'http_request': {
      if (it.request === undefined) return ['http →', `refused: ${(it.error_name as string | null) ?? 'error'} (${String(it.error)})`]
      const r = it.request as RequestView
      return ['http →', `#${r.id ?? '?'} ${escapeLine(r.method)} ${escapeLine(r.url)} (${r.bytes} byte${r.bytes === 1 ? '' : 's'}) key ${escapeLine(keyText(r.key, o.full))}`]
    }
    case 'message_send': {
      if (it.send === undefined) return ['send →', `refused: ${(it.error_name as string | null) ?? 'error'} (${String(it.error)})`]
      const m = it.send as SendView
      return ['send →', `to ${escapeLine(short(m.to, o.full))} id ${o.full ? m.id : m.id.slice(0, 8) + '…'} ${bodyText(m)}`]
    }
    case 'fund': {
      const m = it.message as MessageView
      const b = typeof it.budget === 'string' ? `  budget ${units(BigInt(it.budget))}` : ''
      return ['fund', `+${m.amount === undefined ? '?' : units(BigInt(m.amount))} from ${short(m.from, o.full)} (#${m.seq ?? '?'})${b}`]
    }
    case 'clock': return ['clock', `${(it.time as string | null) ?? '?'} (${String(it.ns)} ns)`]
    case 'wasi_clock': return ['clock', `${String(it.ns)} ns (wasi)`]
    case 'rand': case 'wasi_random': return [it.kind === 'rand' ? 'rand' : 'random', `${String(it.bytes)} bytes ${String(it.hex)}${(it.bytes as number) > 32 ? '…' : ''}`]
    case 'seed': return ['seed', String(it.hex)]
    case 'sign': return ['sign', `${String(it.hex).slice(0, 32)}…`]
    case 'wallet': return ['wallet', units(BigInt(it.budget as string))]
    case 'did': return ['did', String(it.did)]
    case 'event': {
      const detail = it.type === 'int' ? String(it.value) : it.type === 'text' ? `${String(it.bytes)} bytes ${quote(it.text as string)}` : `${String(it.bytes)} bytes`
      return ['event', `${escapeLine(String(it.hostcall))} ${detail}`]
    }
    case 'trap': return ['trap', `${escapeLine(it.trap as string)}  (fuel ${String(it.fuel)}; the tick was rolled back)`]
    case 'end': {
      const r = it.result as number | null
      return ['end', `${r === null ? 'birth' : RESULTS[r] ?? `result ${r}`}  fuel ${String(it.fuel)}`]
    }
    case 'checkpoint': {
      const parts = [`${String(it.status)}${it.target === undefined ? '' : ` → ${String(it.target)}`}`]
      if (it.reason !== undefined) parts[0] += ` (${escapeLine(String(it.reason))})`
      parts.push(`budget ${units(BigInt(it.budget as string))}`, `fuel ${String(it.fuel)}`)
      if (it.changed === true) parts.push(`epoch ${String(it.epoch)} host ${short(String(it.host), o.full)}`)
      if (it.agent !== undefined) parts.push(`agent ${String(it.agent)}`)
      return ['checkpoint', parts.join('  ')]
    }
    case 'gap': return ['gap', `earlier history is not here (the previous checkpoint ${String(it.missing)} is missing)`]
    case 'fork': return ['fork', `the chain changed: continuing after the checkpoint at tick ${String(it.after)} (another checkpoint follows it)`]
    case 'done': return ['done', it.status === 'handoff' ? `handed off to ${String(it.target)}: its log continues on that host` : 'the agent finished: nothing more will follow']
    default: return [it.kind, '']
  }
}

/**
 * The text line of an item: `tick <n>  <label padded to 8> <text>`, e.g.
 * `tick 13  inbox    #3 message from 12D3KooWAbCdEfGh…wxyz 2 bytes "hi"`.
 */
export function formatItem (item: LogItem, o: TextOptions = {}): string {
  const [label, text] = labelAndText(item, o)
  return `tick ${item.tick}  ${label.padEnd(8)} ${text}`.trimEnd()
}

/**
 * The text line of one recorded event, or null when it is shown only with `verbose`
 * (see {@link isNoise}).
 */
export function formatEvent (tick: number, event: Event, o: TextOptions & { verbose?: boolean } = {}): string | null {
  const it = describeEvent(tick, event)
  return !o.verbose && isNoise(it) ? null : formatItem(it, o)
}

/** The text lines of one tick record (see {@link tickItems}), without the noise unless `verbose`. */
export function formatTick (rec: TickRecord, o: TextOptions & { verbose?: boolean } = {}, track?: BudgetTrack): string[] {
  return tickItems(rec, track).filter((it) => o.verbose || !isNoise(it)).map((it) => formatItem(it, o))
}

/** One JSON line of an item (bigints, should any remain, as decimal strings). */
export function itemJson (item: LogItem): string {
  return JSON.stringify(item, (_k, v: unknown) => typeof v === 'bigint' ? v.toString() : v)
}

// ---- where the log is ----------------------------------------------------------------------------

/**
 * Where one agent's log lives: the data directory, the agent name, its history directory, the
 * blob store, and the live checkpoint file (which may not exist).
 */
export interface LogSource { dir: string; name: string; history: string; blobs: string; live: string }

/** Usage error (exit 2): the argument names no agent. */
function noAgent (message: string): IgordError { return new IgordError(message, EXIT.USAGE) }

const isDir = (p: string): boolean => { try { return fs.statSync(p).isDirectory() } catch { return false } }
const holdsEntries = (d: string): boolean => { try { return fs.readdirSync(d).some((n) => historyName(n) !== null) } catch { return false } }

/** The agents of a data directory: those with a history directory or a live file, sorted. */
export function agentsIn (dir: string): string[] {
  let hist: string[] = []
  try { hist = fs.readdirSync(historyRoot(dir)).filter((n) => isDir(path.join(historyRoot(dir), n))) } catch { /* none */ }
  return [...new Set([...hist, ...liveNames(dir)])].sort()
}

/**
 * Resolves `igord logs <arg>` (see docs): `x.ckpt` (the live file; history from its directory, or
 * from `dir` when given), an agent name in data directory `dir` (default `checkpoints`, as
 * `igord run`), a `history/<name>` directory, or a data directory holding one agent.
 * @throws IgordError exit 2: a missing directory, a bad name, no such agent (naming those there),
 *   a data directory holding several agents
 */
export function findLogSource (arg: string, dir?: string): LogSource {
  const source = (d: string, name: string, live?: string): LogSource => ({ dir: d, name, history: historyDir(d, name), blobs: blobsDir(d), live: live ?? livePath(d, name) })
  const check = (s: LogSource, what: string): LogSource => {
    if (!isDir(s.dir)) throw noAgent(`${s.dir}: no such data directory`)
    if (!fs.existsSync(s.live) && !isDir(s.history)) {
      const there = agentsIn(s.dir)
      throw noAgent(`${what}: no agent '${s.name}' in ${s.dir} (${there.length === 0 ? 'it holds no agent' : `agents there: ${there.join(', ')}`})`)
    }
    return s
  }
  if (arg.endsWith('.ckpt')) {
    const name = checkAgentName(nameOfLive(arg), arg)
    if (dir === undefined && !fs.existsSync(arg)) throw noAgent(`${arg}: no such file`)
    return check(source(dir ?? path.dirname(arg), name, arg), arg)
  }
  if (dir !== undefined) return check(source(dir, checkAgentName(arg, 'igord logs')), arg)
  if (isDir(arg)) {
    const abs = path.resolve(arg)
    if (holdsEntries(abs) || path.basename(path.dirname(abs)) === 'history') {
      return check(source(path.dirname(path.dirname(abs)), checkAgentName(path.basename(abs), arg)), arg)
    }
    const agents = agentsIn(abs)
    if (agents.length === 1) return check(source(abs, agents[0]), arg)
    if (agents.length > 1) throw noAgent(`${arg}: holds several agents (${agents.join(', ')}): name one, e.g. igord logs ${agents[0]} --dir ${arg}`)
    throw noAgent(`${arg}: no agent history here (give an agent name with --dir, a history/<name> directory or a .ckpt file)`)
  }
  return check(source('checkpoints', checkAgentName(arg, 'igord logs')), arg)
}

// ---- the reader ----------------------------------------------------------------------------------

/**
 * One checkpoint known to the reader, kept small (the header is read again when shown): where its
 * entry is (`file` and, in a segment, the frame's offset `at`), or `file` null for the live file's.
 */
interface Link { cid: string; prev: string | null; tick: number; file: string | null; at: number | null }

/** Options of {@link AgentLog.items}. */
export interface ItemOptions {
  /** Yield nothing before this tick (default 0). */
  from?: number
  /**
   * Mark the first checkpoint item yielded `changed` (so the first line shows epoch and host; default
   * true). False keeps `changed` as {@link checkpointItem} computes it, the same whatever the reader
   * yielded before (the HTTP API's log stream, whose resumed events must equal the first ones).
   */
  markFirst?: boolean
}

/**
 * The log of one agent ({@link LogSource}). {@link AgentLog.refresh} (re)reads what is new in
 * the history directory and the live file; {@link AgentLog.items} yields the items of the
 * checkpoints of the current chain not yet yielded, oldest first.
 *
 * The chain: the one ending at the live checkpoint when there is one, else the one ending at the
 * newest checkpoint (highest tick) — so when the history forks, the branch the live file continues
 * wins. It runs back along `prev` to the genesis, or to the first checkpoint whose `prev` is not
 * here (then a `gap` item comes first). Memory: a few hundred bytes per checkpoint and the one
 * segment being read.
 */
export class AgentLog {
  readonly source: LogSource
  #links = new Map<string, Link>()
  /** history file name → bytes read so far (a segment grows: the next read starts where this one ended) */
  #files = new Map<string, number>()
  #live: { cid: string; peek: LivePeek } | null = null
  #liveStat = ''
  #done = new Set<string>()
  #last: { cid: string; header: CheckpointHeader | null } | null = null
  #shownAny = false

  constructor (source: LogSource) { this.source = source }

  /** The newest checkpoint yielded so far (its header), or null. */
  get last (): CheckpointHeader | null { return this.#last?.header ?? null }

  /**
   * Reads history entries not read before and the live file when it changed (size, time or
   * inode). An entry file that disappears meanwhile is skipped.
   * @throws CheckpointError naming the entry or live file when one is corrupt; StorageError when
   *   the history directory cannot be listed (other than not existing)
   */
  refresh (): void {
    // the live file first: a writer writes checkpoint N's live file before its history entry, and
    // N-1's entry before N's live file, so a listing taken after reading live N holds N's prev (the
    // other order can miss both N-1 and N and cut the chain there)
    let st: fs.Stats | null = null
    try { st = fs.statSync(this.source.live, { bigint: false }) } catch { st = null }
    const key = st === null ? '' : `${st.ino}:${st.size}:${st.mtimeMs}`
    if (key !== this.#liveStat) {
      this.#liveStat = key
      if (st === null) this.#live = null
      else {
        try {
          const peek = peekLive(this.source.live)
          const cid = headerCid(peek.header)
          this.#live = { cid, peek }
          if (!this.#links.has(cid)) this.#links.set(cid, { cid, prev: peek.parsed.prev, tick: peek.parsed.tick, file: null, at: null })
        } catch (e) {
          // replaced between stat and open: read it next time
          if (e instanceof StorageError && !fs.existsSync(this.source.live)) { this.#liveStat = ''; this.#live = null } else throw e
        }
      }
    }
    let names: string[] = []
    try { names = fs.readdirSync(this.source.history) } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new StorageError(`${this.source.history}: cannot read: ${(e as NodeJS.ErrnoException).code ?? e}`)
    }
    for (const n of names.sort()) {
      const kind = historyName(n)?.kind
      const from = this.#files.get(n)
      if (kind === undefined || (from !== undefined && kind === 'entry')) continue
      const file = path.join(this.source.history, n)
      let r: ReturnType<typeof readHistoryFile>
      try { r = readHistoryFile(file, from ?? 0) } catch (e) {
        if (!fs.existsSync(file)) continue
        throw e
      }
      if (r.problems.length > 0) throw new CheckpointError(r.problems[0])
      // a segment's torn tail is a frame being appended (or a power cut's, cut at the next resume): read again next time
      this.#files.set(n, r.end)
      for (const s of r.entries) {
        const e = decodeEntry(s.bytes, entryWhere(s))
        const cid = headerCid(e.headerBytes)
        if (!this.#links.has(cid) || this.#links.get(cid)!.file === null) this.#links.set(cid, { cid, prev: e.parsed.prev, tick: e.parsed.tick, file, at: s.at })
      }
    }
  }

  /** The checkpoint the chain ends at (see the class doc), or null when none is known. */
  #tip (): Link | null {
    if (this.#live !== null) return this.#links.get(this.#live.cid) ?? null
    let best: Link | null = null
    for (const l of this.#links.values()) if (best === null || l.tick > best.tick || (l.tick === best.tick && l.cid > best.cid)) best = l
    return best
  }

  /** True when at least one checkpoint of the agent is known. */
  get empty (): boolean { return this.#links.size === 0 }

  /** The header of a link: read from its entry file, or the live file's. */
  #header (l: Link): CheckpointHeader {
    if (l.file === null) return this.#live!.peek.parsed
    return decodeEntry(readEntryAt(l.file, l.at), entryWhere({ file: l.file, at: l.at })).parsed
  }

  /** The segment of checkpoint `h` (its blob, or the live file's when it is that checkpoint). */
  #segment (l: Link, h: CheckpointHeader): TickRecord[] {
    if (h.log === null) return []
    const live = this.#live
    if (l.file === null && live !== null && live.cid === l.cid && live.peek.log !== null) {
      return EventLog.decodeSegment(live.peek.log, `${this.source.live}: event log`)
    }
    const blob = path.join(this.source.blobs, h.log)
    const bytes = readBlobIn(this.source.blobs, h.log)
    if (bytes === null) {
      if (live !== null && live.cid === l.cid && live.peek.log !== null) return EventLog.decodeSegment(live.peek.log, `${this.source.live}: event log`)
      throw new CheckpointError(`${blob}: cannot read the event log of the checkpoint at tick ${h.tick}: ENOENT`)
    }
    if (cidOf(bytes) !== h.log) throw new CheckpointError(`${blob}: the event log of the checkpoint at tick ${h.tick} is corrupt (its bytes do not match its CID)`)
    return EventLog.decodeSegment(bytes, blob)
  }

  /**
   * Yields the items of every checkpoint of the current chain not yet yielded, oldest first: per
   * checkpoint its ticks' items (ticks ≥ `from`), then its `checkpoint` item (when its tick ≥
   * `from`). Call {@link AgentLog.refresh} first. Reads one segment at a time.
   * @throws CheckpointError naming the blob or entry file when a segment or entry is missing or corrupt
   */
  * items (opts: ItemOptions = {}): Generator<LogItem> {
    const from = opts.from ?? 0
    const chain: Link[] = []
    for (let l = this.#tip(); l !== null && !this.#done.has(l.cid); l = l.prev === null ? null : this.#links.get(l.prev) ?? null) chain.push(l)
    chain.reverse()
    if (chain.length === 0) return
    const first = chain[0]
    let prevHeader: CheckpointHeader | null = null
    if (first.prev !== null && this.#done.has(first.prev)) {
      if (this.#last !== null && this.#last.cid !== first.prev) {
        const at = this.#links.get(first.prev)!
        yield { tick: at.tick, kind: 'fork', after: at.tick }
      }
      prevHeader = this.#last !== null && this.#last.cid === first.prev && this.#last.header !== null ? this.#last.header : this.#header(this.#links.get(first.prev)!)
    }
    for (let k = 0; k < chain.length; k++) {
      const l = chain[k]
      if (l.tick < from) {
        // skipped whole; its header is needed only as the previous one of the first shown, or
        // as the newest (`last`: --follow stops after a finished or handed-off agent)
        const needed = k + 1 === chain.length || chain[k + 1].tick >= from
        prevHeader = needed ? this.#header(l) : null
        this.#done.add(l.cid)
        this.#last = { cid: l.cid, header: prevHeader }
        continue
      }
      const h = this.#header(l)
      const records = this.#segment(l, h)
      if (k === 0 && l.prev !== null && !this.#links.has(l.prev)) {
        yield { tick: records[0]?.tick ?? l.tick, kind: 'gap', missing: l.prev }
      }
      const track: BudgetTrack = { budget: prevHeader === null ? null : prevHeader.budget, price: h.price }
      for (const rec of records) {
        const items = tickItems(rec, track)
        if (rec.tick >= from) yield * items
      }
      const it = checkpointItem(h, l.cid, prevHeader)
      if (!this.#shownAny && opts.markFirst !== false) it.changed = true
      this.#shownAny = true
      yield it
      this.#done.add(l.cid)
      this.#last = { cid: l.cid, header: h }
      prevHeader = h
    }
  }
}
