/**
 * The checkpoint header (DESIGN §7, docs/FORMAT.md): a canonical CBOR map that is signed as stored,
 * identified by the CID of its bytes, and links to its predecessor by that CID.
 *
 * Signature = Ed25519 (RFC 8032) by the agent's key over {@link SIGNATURE_DOMAIN} ‖ header bytes.
 * Verification always uses the header bytes exactly as stored; nothing is re-encoded to verify.
 */
import { asMap, bigintField, bytesField, decode, describe, encode, encodeFlatMap, numberField, textField } from './cbor.ts'
import { CheckpointError } from './errors.ts'
import { cidOf, isCid } from './hash.ts'
import { publicKeyFromDid, sign, verifySignature, type Identity } from './identity.ts'

/** The checkpoint format version this igord writes and reads. */
export const FORMAT_VERSION = 1

/** Domain tag prefixed to the header bytes before signing: ASCII `igord/checkpoint/v1` then one 0x00 byte. */
export const SIGNATURE_DOMAIN: Uint8Array = new Uint8Array([...Buffer.from('igord/checkpoint/v1', 'ascii'), 0])

/** Why a checkpoint was written / what the agent is doing (DESIGN §7, §9). */
export type Status = 'running' | 'paused' | 'exhausted' | 'finished' | 'handoff'

/** Every valid {@link Status}. */
export const STATUSES: readonly Status[] = ['running', 'paused', 'exhausted', 'finished', 'handoff']

/**
 * A decoded checkpoint header. CIDs are CIDv1 raw sha2-256 base32 strings.
 * - `v` format version (1); `agent` the agent's did:key; `code` CID of the original wasm;
 *   `manifest` CID of the manifest bytes; `tick` ticks run so far; `epoch` authority epoch (§9);
 *   `prev` CID of the previous header's bytes, null at genesis; `state` 32-byte state root;
 *   `log` CID of the event-log segment since `prev`, null when none; `fuel` lifetime fuel (units);
 *   `budget` remaining budget (microcents); `price` the writing host's price in microcents per
 *   million fuel, which charged the ticks since `prev` (replay needs it to recompute the budget);
 *   `host` ID of the node that wrote it; `time` Unix ms from the host's input clock (simulated in
 *   simulation mode; informational, not checked); `status`; `target` next host (present exactly when status is handoff);
 *   `reason` optional human reason (pause, exhaustion); `io` optional CID of the I/O state blob
 *   (inbox, pending requests, sleep: checkpoint/io.ts), absent when that state is empty.
 */
export interface CheckpointHeader {
  v: number; agent: string; code: string; manifest: string; tick: number
  epoch: number; prev: string | null; state: Uint8Array; log: string | null; fuel: bigint; budget: bigint
  price: bigint; host: string; time: number; status: Status; target?: string; reason?: string
  /** CID of the agent's I/O state (checkpoint/io.ts: inbox, pending requests, sleep); absent when empty. */
  io?: string
}

const FIELDS = ['v', 'agent', 'code', 'manifest', 'tick', 'epoch', 'prev', 'state', 'log', 'fuel', 'budget', 'price', 'host', 'time', 'status', 'target', 'reason', 'io'] as const
const MAX_TEXT = 1024
const TWO64N = 1n << 64n

function checkText (s: unknown, field: string, what: string, max = MAX_TEXT): void {
  if (typeof s !== 'string') throw new CheckpointError(`${what}: field "${field}" must be a text string, got ${describe(s)}`)
  if (s.length === 0 || s.length > max) throw new CheckpointError(`${what}: field "${field}" must be 1..${max} characters, got ${s.length}`)
}

function checkCid (s: unknown, field: string, what: string, nullable: boolean): void {
  if (s === null && nullable) return
  if (!isCid(s)) throw new CheckpointError(`${what}: field "${field}" must be ${nullable ? 'null or ' : ''}a CIDv1 raw sha2-256 (bafkrei…), got ${typeof s === 'string' ? JSON.stringify(s.slice(0, 80)) : describe(s)}`)
}

/**
 * Validates every field of a header (types, ranges, `agent` an Ed25519 did:key whose key decodes,
 * the handoff/target rule) and returns it.
 * @throws CheckpointError `<what>: field "<name>" …`, or
 *   `<what>: unsupported checkpoint format version N (this igord reads 1)`.
 */
export function validateHeader (h: CheckpointHeader, what: string): CheckpointHeader {
  const m = asMap(h, what, 'header')
  if (m.v !== FORMAT_VERSION) {
    if (typeof m.v === 'number' || typeof m.v === 'bigint') throw new CheckpointError(`${what}: unsupported checkpoint format version ${m.v} (this igord reads ${FORMAT_VERSION})`)
    throw new CheckpointError(`${what}: field "v" (format version) must be an integer, got ${describe(m.v)}`)
  }
  asMap(h, what, 'header', FIELDS)
  checkText(m.agent, 'agent', what, 200)
  if (!(m.agent as string).startsWith('did:key:z')) throw new CheckpointError(`${what}: field "agent" must be a did:key, got ${JSON.stringify((m.agent as string).slice(0, 80))}`)
  // an agent whose key cannot be read could never have signed (and would make verifyHeader throw)
  try { publicKeyFromDid(m.agent as string) } catch (e) { throw new CheckpointError(`${what}: field "agent": ${(e as Error).message}`) }
  checkCid(m.code, 'code', what, false)
  checkCid(m.manifest, 'manifest', what, false)
  numberField(m, 'tick', what)
  numberField(m, 'epoch', what)
  checkCid(m.prev, 'prev', what, true)
  bytesField(m, 'state', what, 32)
  checkCid(m.log, 'log', what, true)
  for (const f of ['fuel', 'budget', 'price']) {
    const v = m[f]
    if (typeof v !== 'bigint' || v < 0n || v >= TWO64N) throw new CheckpointError(`${what}: field "${f}" must be an unsigned 64-bit integer, got ${describe(v)}`)
  }
  checkText(m.host, 'host', what, 256)
  numberField(m, 'time', what)
  if (!STATUSES.includes(m.status as Status)) throw new CheckpointError(`${what}: field "status" must be one of ${STATUSES.join(', ')}, got ${typeof m.status === 'string' ? JSON.stringify(m.status.slice(0, 40)) : describe(m.status)}`)
  if (m.status === 'handoff') checkText(m.target, 'target', what, 256)
  else if (m.target !== undefined) throw new CheckpointError(`${what}: field "target" is only allowed when status is handoff (status is ${m.status})`)
  if (m.reason !== undefined) checkText(m.reason, 'reason', what, 4096)
  if (m.io !== undefined) checkCid(m.io, 'io', what, false)
  return h
}

/**
 * Canonical CBOR bytes of a header (fields validated first; optional fields left out when undefined).
 * @throws CheckpointError `header: field "<name>" …` for an invalid field.
 */
export function encodeHeader (h: CheckpointHeader): Uint8Array {
  const o: Record<string, unknown> = {}
  for (const f of FIELDS) if (h[f] !== undefined) o[f] = h[f]
  validateHeader(o as unknown as CheckpointHeader, 'header')
  return encodeFlatMap(o)
}

/**
 * Decodes and validates header bytes (canonical CBOR, see cbor.ts). `fuel`, `budget` and `price` come back
 * as BigInt, `tick`, `epoch` and `time` as numbers; `state` is a view into `bytes`.
 * @throws CheckpointError naming `what` and the field at fault; unknown version →
 *   `unsupported checkpoint format version N (this igord reads 1)`.
 */
export function decodeHeader (bytes: Uint8Array, what: string): CheckpointHeader {
  const raw = asMap(decode(bytes, `${what} header`), what, 'header')
  const h: Record<string, unknown> = { ...raw }
  if (typeof h.v === 'bigint') h.v = Number(h.v)
  for (const f of ['fuel', 'budget', 'price']) if (typeof h[f] === 'number') h[f] = BigInt(h[f] as number)
  for (const f of ['tick', 'epoch', 'time']) if (typeof h[f] === 'bigint') h[f] = numberField(h, f, what)
  return validateHeader(h as unknown as CheckpointHeader, what)
}

function signedMessage (headerBytes: Uint8Array): Uint8Array {
  const msg = new Uint8Array(SIGNATURE_DOMAIN.length + headerBytes.length)
  msg.set(SIGNATURE_DOMAIN, 0)
  msg.set(headerBytes, SIGNATURE_DOMAIN.length)
  return msg
}

/** Ed25519 signature (64 bytes) by `id` over {@link SIGNATURE_DOMAIN} ‖ `headerBytes`. */
export function signHeader (id: Identity, headerBytes: Uint8Array): Uint8Array {
  return sign(id, signedMessage(headerBytes))
}

/**
 * True when `sig` is `did`'s Ed25519 signature over {@link SIGNATURE_DOMAIN} ‖ `headerBytes`
 * (the stored bytes, never re-encoded).
 * @throws CheckpointError when `did` is not an Ed25519 did:key.
 */
export function verifyHeader (headerBytes: Uint8Array, sig: Uint8Array, did: string): boolean {
  return verifySignature(publicKeyFromDid(did), signedMessage(headerBytes), sig)
}

/** The CID of the header bytes: what the next checkpoint's `prev` holds and history file names carry. */
export function headerCid (headerBytes: Uint8Array): string {
  return cidOf(headerBytes)
}
