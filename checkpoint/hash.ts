/**
 * Hashes and content identifiers.
 *
 * `sha256` is node:crypto's SHA-256 (FIPS 180-4). Blob identifiers are CIDv1 with the raw codec
 * (0x55) and a sha2-256 multihash (0x12, 32 bytes), written in multibase base32 lower case, so every
 * one looks like `bafkrei…` and is 59 characters long (multiformats CID spec).
 */
import { hash } from 'node:crypto'
import { base32 } from 'multiformats/bases/base32'
import { CheckpointError } from './errors.ts'

/** Binary prefix of a CIDv1 raw sha2-256: version 1, codec raw 0x55, multihash sha2-256 0x12, length 32. */
export const CID_PREFIX: Uint8Array = Uint8Array.of(0x01, 0x55, 0x12, 0x20)

/** Length of a CIDv1 raw sha2-256 in base32 (characters): "b" + 58. */
export const CID_LENGTH = 59

// 'b' + base32 of 01 55 12 20 ‖ digest: the 8th char carries 2 zero bits then 3 digest bits, the last
// char 3 digest bits then 2 zero padding bits, so every match decodes to exactly 36 such bytes
const CID_RE = /^bafkrei[a-h][a-z2-7]{50}[aeimquy4]$/

/** SHA-256 of `bytes` (32 bytes, a Buffer). */
export function sha256 (bytes: Uint8Array): Uint8Array {
  return hash('sha256', bytes, 'buffer') // one-shot: no Hash object per call
}

/** The CID string (`bafkrei…`) of a 32-byte SHA-256 digest, without hashing anything. */
export function cidOfDigest (digest: Uint8Array): string {
  const b = new Uint8Array(36)
  b.set(CID_PREFIX, 0)
  b.set(digest, 4)
  return base32.encode(b)
}

/** The CIDv1 (raw, sha2-256, base32) of `bytes`, e.g. "hello world" → `bafkreifzjut3te…`. */
export function cidOf (bytes: Uint8Array): string {
  return cidOfDigest(sha256(bytes))
}

/** True when `s` is exactly the base32 form of a CIDv1 raw sha2-256 (`bafkrei` + 52 base32 chars, canonical padding bits). */
export function isCid (s: unknown): s is string {
  return typeof s === 'string' && s.length === CID_LENGTH && CID_RE.test(s)
}

/**
 * The 32-byte SHA-256 digest inside a CIDv1 raw sha2-256 base32 string.
 * @param what names the CID's origin in errors.
 * @throws CheckpointError `<what>: "<cid>" is not a CIDv1 raw sha2-256 (bafkrei…)`.
 */
export function digestOfCid (cid: string, what = 'CID'): Uint8Array {
  if (!isCid(cid)) throw new CheckpointError(`${what}: ${JSON.stringify(String(cid).slice(0, 80))} is not a CIDv1 raw sha2-256 (bafkrei…)`)
  let b: Uint8Array
  try { b = base32.decode(cid) } catch { throw new CheckpointError(`${what}: ${JSON.stringify(cid)} is not valid base32`) }
  if (b.length !== 36 || b[0] !== 1 || b[1] !== 0x55 || b[2] !== 0x12 || b[3] !== 0x20) throw new CheckpointError(`${what}: ${JSON.stringify(cid)} is not a CIDv1 raw sha2-256`)
  return b.subarray(4)
}
