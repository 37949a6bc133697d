/**
 * Agent-to-agent messages on the wire (issue 9, docs/ABI.md "Messages", docs/PROTOCOL.md
 * "/igor/msg/1.0.0"): a message an agent sent with `message_send` travels as an envelope
 * `{from, to, id, body, sig}`, signed by the sending agent's key (its host holds it).
 *
 * Signature = Ed25519 (RFC 8032) by the key inside `from` (a W3C did:key) over
 * {@link MSG_DOMAIN} ‖ canonical CBOR `{body, from, id, to}` (keys in canonical order). The domain
 * tag keeps such a signature from being taken for any other the agent makes (`agent_sign`,
 * checkpoint headers, top-ups).
 *
 * The recipient's host checks the signature and then takes the message into the recipient's inbox
 * as a Message of kind `message` with `from` = the sender's DID (checkpoint/io.ts owns that
 * format); the signature is not kept in the inbox: it was checked by the host that took the message.
 */
import { encode } from './cbor.ts'
import { CheckpointError } from './errors.ts'
import { publicKeyFromDid, sign, verifySignature } from './identity.ts'
import type { Identity } from './identity.ts'
import { MAX_DID_BYTES, MESSAGE_ID_BYTES } from './io.ts'

/** Domain tag prefixed to a signed agent message: ASCII `igord/msg/v1` then one 0x00 byte. */
export const MSG_DOMAIN: Uint8Array = new Uint8Array([...Buffer.from('igord/msg/v1', 'ascii'), 0])

/** A signed agent-to-agent message: sender and recipient DIDs, 16-byte id, body, 64-byte signature. */
export interface Envelope { from: string; to: string; id: Uint8Array; body: Uint8Array; sig: Uint8Array }

/**
 * The bytes a sending agent signs: {@link MSG_DOMAIN} ‖ canonical CBOR `{from, to, id, body}`.
 * @throws CheckpointError for an id that is not 16 bytes
 */
export function envelopeMessage (e: Omit<Envelope, 'sig'>): Uint8Array {
  if (!(e.id instanceof Uint8Array) || e.id.length !== MESSAGE_ID_BYTES) throw new CheckpointError(`message: id must be ${MESSAGE_ID_BYTES} bytes`)
  const body = encode({ from: e.from, to: e.to, id: e.id, body: e.body })
  const out = new Uint8Array(MSG_DOMAIN.length + body.length)
  out.set(MSG_DOMAIN, 0)
  out.set(body, MSG_DOMAIN.length)
  return out
}

/**
 * Signs a message as agent `identity` (whose DID becomes `from`).
 * @throws CheckpointError for an id that is not 16 bytes
 */
export function signEnvelope (identity: Identity, m: { to: string; id: Uint8Array; body: Uint8Array }): Envelope {
  const unsigned = { from: identity.did, to: m.to, id: m.id, body: m.body }
  return { ...unsigned, sig: sign(identity, envelopeMessage(unsigned)) }
}

/**
 * Why an envelope is not a valid signed message, or null when it is: DIDs that are not Ed25519
 * did:keys (or longer than {@link MAX_DID_BYTES}), an id that is not 16 bytes, a signature that
 * does not verify against `from`'s key. Never throws.
 */
export function checkEnvelope (e: Envelope): string | null {
  for (const f of ['from', 'to'] as const) {
    if (typeof e[f] !== 'string' || Buffer.byteLength(e[f]) > MAX_DID_BYTES) return `field "${f}" must be a did:key of at most ${MAX_DID_BYTES} bytes`
    try { publicKeyFromDid(e[f]) } catch (x) { return `field "${f}": ${(x as Error).message}` }
  }
  if (!(e.id instanceof Uint8Array) || e.id.length !== MESSAGE_ID_BYTES) return `field "id" must be ${MESSAGE_ID_BYTES} bytes`
  if (!(e.body instanceof Uint8Array)) return 'field "body" must be bytes'
  if (!(e.sig instanceof Uint8Array) || e.sig.length !== 64) return 'field "sig" must be a 64-byte Ed25519 signature'
  if (!verifySignature(publicKeyFromDid(e.from), envelopeMessage(e), e.sig)) return `the signature does not verify against the sender ${e.from}`
  return null
}

/** True when `did` is a well-formed Ed25519 did:key of at most {@link MAX_DID_BYTES} bytes (what `message_send` accepts as a recipient). */
export function isAgentDid (did: string): boolean {
  if (Buffer.byteLength(did) > MAX_DID_BYTES) return false
  try { publicKeyFromDid(did); return true } catch { return false }
}

/** Bounce reason (inbox `bounce` message `status`): no host of the recipient DID was found within the lookup timeout. */
export const E_MSG_UNKNOWN = -20
/** Bounce reason: the recipient's inbox is full. */
export const E_MSG_FULL = -21
/** Bounce reason: the recipient's host refused the message (the recipient reads no messages, the body is over its limit, …). */
export const E_MSG_REFUSED = -22
/** Bounce reason: the recipient's host was found but the message could not be delivered within the retry time. */
export const E_MSG_UNREACHABLE = -23

/**
 * How sending a message went (p2p/node.ts `route`, runtime/mailbox.ts): delivered (`duplicate`:
 * the recipient already had it), or not — for good (`retry` false: it bounces with `code`, one of
 * the E_MSG_* codes) or for now (`retry` true: sent again later).
 */
export type SendOutcome = { ok: true; duplicate: boolean } | { ok: false; retry: boolean; code: number; reason: string }
