/**
 * Top-ups (docs/FORMAT.md "Top-ups", issue-8 contract): a funder raises an agent's budget with an
 * inbox Message of kind `fund`, signed with the Ed25519 key inside its libp2p peer ID (the host
 * key of the data directory or node that took it, runtime/host.ts). The host applies it at the
 * start of a tick and records it as that tick's first events (`fund`, payload = the Message's
 * canonical CBOR bytes), so the budget increase is a recorded, signed input that `igord verify`
 * checks without re-executing anything.
 *
 * Signature = Ed25519 (RFC 8032) over {@link FUND_DOMAIN} ‖ canonical CBOR `{agent, amount, id}`.
 *
 * Peer IDs are decoded here without libp2p (checkpoint/ stays light): a libp2p Ed25519 peer ID is
 * base58btc (no multibase prefix) of the identity multihash (code 0x00, length 0x24) of the
 * protobuf `PublicKey { Type: Ed25519 (1), Data: 32 bytes }` = `08 01 12 20 <key>` (libp2p
 * peer-ids spec).
 *
 * This module owns only the `fund` kind; the general inbox Message belongs to checkpoint/io.ts.
 */
import { base58btc } from 'multiformats/bases/base58'
import { asMap, bigintField, bytesField, decode, describe, encode, numberField, textField } from './cbor.ts'
import { CheckpointError } from './errors.ts'
import { sign, verifySignature, type Identity } from './identity.ts'

/** Domain tag prefixed to the signed top-up: ASCII `igord/fund/v1` then one 0x00 byte. */
export const FUND_DOMAIN: Uint8Array = new Uint8Array([...Buffer.from('igord/fund/v1', 'ascii'), 0])

/** The event-log event kind (hostcall name) of an applied top-up. */
export const FUND_EVENT = 'fund'

/**
 * Most top-ups a host applies at the start of one tick; more wait for the next tick. Each is one
 * event of about 170 bytes, counted against the tick's limits (hostcalls/eventlog.ts).
 */
export const MAX_TOPUPS_PER_TICK = 16

/** Length of a top-up `id`, bytes. */
export const TOPUP_ID_BYTES = 16

const TWO64N = 1n << 64n

/**
 * An inbox Message of kind `fund` (the issue-8 Message map restricted to this kind).
 * `id` 16 bytes chosen by the funder (dedup key, signed); `seq` position in the agent's inbox
 * (0 until the host enqueues it); `from` the funder's peer ID `12D3KooW…`; `time` ns since the
 * Unix epoch (host clock when enqueued, not signed); `body` always empty; `amount` microcents
 * added to the budget (≥ 1, signed); `sig` 64-byte Ed25519 signature (see {@link fundMessage}).
 */
export interface TopUp {
  id: Uint8Array; seq: number; kind: 'fund'; from: string; time: bigint
  body: Uint8Array; amount: bigint; sig: Uint8Array
}

/** A funder: a host key and its peer ID (runtime/host.ts `HostIdentity`). */
export interface Funder { key: Identity; peerId: string }

const FIELDS = ['id', 'seq', 'kind', 'from', 'time', 'body', 'amount', 'sig'] as const

/**
 * The bytes a funder signs: {@link FUND_DOMAIN} ‖ canonical CBOR `{agent: agentDid, amount, id}`.
 * @param amount microcents, 0 < amount < 2^64
 * @param id 16 bytes
 * @throws CheckpointError for an amount out of range or an id that is not 16 bytes
 */
export function fundMessage (agentDid: string, amount: bigint, id: Uint8Array): Uint8Array {
  if (typeof amount !== 'bigint' || amount < 0n || amount >= TWO64N) throw new CheckpointError(`top-up: amount must be an unsigned 64-bit integer, got ${String(amount)}`)
  if (!(id instanceof Uint8Array) || id.length !== TOPUP_ID_BYTES) throw new CheckpointError(`top-up: id must be ${TOPUP_ID_BYTES} bytes, got ${describe(id)}`)
  const body = encode({ agent: agentDid, amount, id })
  const out = new Uint8Array(FUND_DOMAIN.length + body.length)
  out.set(FUND_DOMAIN, 0)
  out.set(body, FUND_DOMAIN.length)
  return out
}

/**
 * The libp2p peer ID (`12D3KooW…`) of a 32-byte Ed25519 public key (same as runtime/host.ts).
 * @throws CheckpointError when `publicKey` is not 32 bytes
 */
export function peerIdOfPublicKey (publicKey: Uint8Array): string {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) throw new CheckpointError(`peer ID: an Ed25519 public key must be 32 bytes, got ${describe(publicKey)}`)
  const mh = new Uint8Array(6 + 32)
  mh.set([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])
  mh.set(publicKey, 6)
  return base58btc.baseEncode(mh)
}

/**
 * The 32-byte Ed25519 public key inside a libp2p peer ID (`12D3KooW…`: identity multihash of the
 * protobuf-encoded key). RSA/secp256k1 peer IDs and hashed (`Qm…`) ones are refused.
 * @throws CheckpointError `"<peer>" is not an Ed25519 peer ID: <why>`
 */
export function publicKeyFromPeerId (peerId: string): Uint8Array {
  const shown = JSON.stringify(String(peerId).slice(0, 80))
  const fail = (why: string): never => { throw new CheckpointError(`${shown} is not an Ed25519 peer ID: ${why}`) }
  if (typeof peerId !== 'string' || peerId.length === 0 || peerId.length > 100) return fail('expected 12D3KooW… (base58btc)')
  let b: Uint8Array
  try { b = base58btc.baseDecode(peerId) } catch { return fail('invalid base58btc') }
  if (b.length < 2 || b[0] !== 0x00) return fail(`multihash code 0x${(b[0] ?? 0).toString(16)} is not identity (0x00): a hashed key cannot be checked`)
  if (b[1] !== b.length - 2) return fail(`multihash length ${b[1]} does not match its ${b.length - 2} bytes`)
  if (b.length !== 38) return fail(`identity multihash of ${b.length - 2} bytes, an Ed25519 key has 36`)
  if (b[2] !== 0x08 || b[4] !== 0x12 || b[5] !== 0x20) return fail('the protobuf key is not {Type, Data: 32 bytes}')
  if (b[3] !== 0x01) return fail(`key type ${b[3]} is not Ed25519 (1)`)
  return Uint8Array.from(b.subarray(6))
}

/**
 * A signed top-up of `amount` microcents for `agentDid` by `funder` (a host key and its peer ID),
 * as an inbox Message of kind `fund` with `seq` 0 (the receiving host assigns it) and an empty body.
 * @param id 16 bytes, unique per top-up (random in the CLI)
 * @param timeNs ns since the Unix epoch
 * @throws CheckpointError when `funder.peerId` is not the peer ID of `funder.key`, amount is 0 or
 *   out of range, or id is not 16 bytes
 */
export function signTopUp (funder: Funder, agentDid: string, amount: bigint, id: Uint8Array, timeNs: bigint): TopUp {
  if (peerIdOfPublicKey(funder.key.publicKey) !== funder.peerId) throw new CheckpointError(`top-up: peer ID ${funder.peerId} is not the one of the funder's key`)
  if (typeof amount !== 'bigint' || amount <= 0n) throw new CheckpointError(`top-up: amount must be at least 1 microcent, got ${String(amount)}`)
  if (typeof timeNs !== 'bigint' || timeNs < 0n || timeNs >= TWO64N) throw new CheckpointError(`top-up: time must be an unsigned 64-bit integer (ns), got ${String(timeNs)}`)
  const sig = sign(funder.key, fundMessage(agentDid, amount, id))
  return { id: Uint8Array.from(id), seq: 0, kind: 'fund', from: funder.peerId, time: timeNs, body: new Uint8Array(0), amount, sig: Uint8Array.from(sig) }
}

/**
 * Checks a top-up for agent `agentDid`: kind `fund`, empty body, amount ≥ 1, a 16-byte id, `from`
 * an Ed25519 peer ID, and `sig` that key's signature over {@link fundMessage}. Never throws.
 * @returns null when it holds, else one line saying why (`bad signature: not signed by 12D3KooW…
 *   for did:key:…`, `amount is 0`, `from "…" is not an Ed25519 peer ID: …`)
 */
export function verifyTopUp (msg: TopUp, agentDid: string): string | null {
  if (msg.kind !== 'fund') return `kind is ${JSON.stringify(String(msg.kind).slice(0, 40))}, not fund`
  if (typeof msg.amount !== 'bigint' || msg.amount <= 0n || msg.amount >= TWO64N) return `amount is ${String(msg.amount)} (must be 1 to 2^64 − 1 microcents)`
  if (!(msg.id instanceof Uint8Array) || msg.id.length !== TOPUP_ID_BYTES) return `id is ${describe(msg.id)}, expected ${TOPUP_ID_BYTES} bytes`
  if (!(msg.body instanceof Uint8Array) || msg.body.length !== 0) return `body is ${describe(msg.body)}, must be empty`
  let pub: Uint8Array
  try { pub = publicKeyFromPeerId(msg.from) } catch (e) { return `from ${(e as Error).message}` }
  if (!(msg.sig instanceof Uint8Array) || msg.sig.length !== 64) return `bad signature: sig is ${describe(msg.sig)}, expected 64 bytes`
  if (!verifySignature(pub, fundMessage(agentDid, msg.amount, msg.id), msg.sig)) return `bad signature: not signed by ${msg.from} for ${agentDid}`
  return null
}

/**
 * Canonical CBOR bytes of a top-up: the issue-8 Message map with keys id, seq, kind, from, time,
 * body, amount, sig (the payload of a `fund` event).
 * @throws CheckpointError when a field has the wrong type (see {@link decodeTopUp})
 */
export function encodeTopUp (t: TopUp): Uint8Array {
  const o: Record<string, unknown> = {}
  for (const f of FIELDS) o[f] = t[f]
  const bytes = encode(o)
  decodeTopUp(bytes, 'top-up') // field checks: what is written must read back
  return bytes
}

/**
 * Decodes a top-up from canonical CBOR (a `fund` event payload or inbox entry). Byte fields are
 * copies, so `bytes` may be a transient buffer.
 * @param what names the input in errors (`top-up at tick 7`)
 * @throws CheckpointError `<what>: field "<name>" …` / `<what>: kind is "…", not fund` / an unknown field
 */
export function decodeTopUp (bytes: Uint8Array, what: string): TopUp {
  const m = asMap(decode(bytes, what), what, 'top-up', FIELDS)
  const kind = textField(m, 'kind', what)
  if (kind !== 'fund') throw new CheckpointError(`${what}: kind is ${JSON.stringify(kind.slice(0, 40))}, not fund`)
  const from = textField(m, 'from', what)
  if (from.length === 0 || from.length > 256) throw new CheckpointError(`${what}: field "from" must be 1..256 characters, got ${from.length}`)
  const amount = bigintField(m, 'amount', what)
  const time = bigintField(m, 'time', what)
  return {
    id: Uint8Array.from(bytesField(m, 'id', what, TOPUP_ID_BYTES)),
    seq: numberField(m, 'seq', what),
    kind: 'fund',
    from,
    time,
    body: Uint8Array.from(bytesField(m, 'body', what)),
    amount,
    sig: Uint8Array.from(bytesField(m, 'sig', what, 64)),
  }
}

/** CBOR text string "fund" (0x64 'f' 'u' 'n' 'd'): every segment holding a `fund` event contains these bytes. */
const FUND_MARK = Uint8Array.of(0x64, 0x66, 0x75, 0x6e, 0x64)

/**
 * One `fund` event of a segment, as {@link topUpsOfSegment} found it: its tick and position in the
 * tick's events, and the top-up, or `fault` when it is not one that could have been applied
 * (undecodable, not among the tick's first events) — a signature is not checked here.
 */
export interface RecordedTopUp { tick: number; event: number; topUp: TopUp | null; fault: string | null }

/**
 * The `fund` events of an event-log segment (hostcalls/eventlog.ts layout
 * `{v: 1, ticks: [{tick, events: [[name, payload]…], …}…]}`). Only the structure on the way to
 * them is read: validating the rest of the segment is replay's job. A segment whose bytes do not
 * contain the CBOR text `fund` holds none and is not decoded at all.
 * @param what names the segment in errors
 * @returns the top-ups in order (a fault for one that is undecodable, or that follows a non-fund
 *   event of its tick: fund events are the first events of a tick)
 * @throws CheckpointError `<what>: …` when a segment that may hold top-ups does not decode
 */
export function topUpsOfSegment (bytes: Uint8Array, what: string): RecordedTopUp[] {
  if (Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).indexOf(FUND_MARK) < 0) return []
  const doc = asMap(decode(bytes, what), what, 'segment')
  const ticks = doc.ticks
  if (!Array.isArray(ticks)) throw new CheckpointError(`${what}: field "ticks" must be an array, got ${describe(ticks)}`)
  const out: RecordedTopUp[] = []
  ticks.forEach((t, i) => {
    const r = asMap(t, what, `ticks[${i}]`)
    const tick = numberField(r, 'tick', `${what}: ticks[${i}]`)
    const events = r.events
    if (!Array.isArray(events)) throw new CheckpointError(`${what}: ticks[${i}].events must be an array, got ${describe(events)}`)
    let leading = true
    events.forEach((e, k) => {
      if (!Array.isArray(e) || e.length !== 2) throw new CheckpointError(`${what}: ticks[${i}].events[${k}] is not [hostcall, payload]`)
      if (e[0] !== FUND_EVENT) { leading = false; return }
      const p = e[1]
      let topUp: TopUp | null = null
      let fault: string | null = null
      if (!(p instanceof Uint8Array)) fault = `event ${k} (fund) payload is ${describe(p)}, not a CBOR Message`
      else {
        try { topUp = decodeTopUp(p, 'payload') } catch (err) { fault = `event ${k} (fund): ${(err as Error).message}` }
      }
      if (fault === null && !leading) fault = `event ${k} (fund) follows an event of the agent's (top-ups are the first events of a tick)`
      out.push({ tick, event: k, topUp, fault })
    })
  })
  return out
}
