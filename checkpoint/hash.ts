/**
 * Hashes and content identifiers.
 *
 * `sha256` is node:crypto's SHA-256 (FIPS 180-4). Blob identifiers are CIDv1 with the raw codec
 * (0x55) and a sha2-256 multihash (0x12, 32 bytes), written in multibase base32 lower case, so every
 * one looks like `bafkrei…` and is 59 characters long (multiformats CID spec).
 */
import { hash } from 'node:crypto'
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

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567' // RFC 4648 §6, lower case (multibase "b")
const ALPHA_CODES = Uint8Array.from(ALPHABET, (c) => c.charCodeAt(0))
/** char code → 5-bit value, 255 for a character outside the alphabet */
const ALPHA_VALUE = new Uint8Array(128).fill(255)
for (let i = 0; i < 32; i++) ALPHA_VALUE[ALPHA_CODES[i]] = i
const encodeScratch = Buffer.allocUnsafe(CID_LENGTH)

/**
 * True when the 32-byte SHA-256 digests at offset `at` of `a` and of `b` are equal (a byte loop: no
 * subarrays on the checkpoint path, where chunk digest lists of 512 bytes are compared row by row).
 */
export function sameDigest (a: Uint8Array, b: Uint8Array, at: number): boolean {
  for (let j = at; j < at + 32; j++) if (a[j] !== b[j]) return false
  return true
}

/**
 * The CID string (`bafkrei…`) of a 32-byte SHA-256 digest, without hashing anything. Encoded here
 * (RFC 4648 base32, the 36 bytes `CID_PREFIX ‖ digest` as 58 characters after "b"): the same string
 * multiformats' `base32.encode` gives (test/hash.test.ts), as one flat string instead of one built
 * a character at a time (verify encodes tens of thousands of them).
 */
export function cidOfDigest (digest: Uint8Array): string {
  const out = encodeScratch
  out[0] = 0x62 // 'b'
  let o = 1; let acc = 0; let bits = 0
  for (let i = 0; i < 36; i++) {
    acc = ((acc << 8) | (i < 4 ? CID_PREFIX[i] : digest[i - 4])) & 0xfff
    bits += 8
    while (bits >= 5) { bits -= 5; out[o++] = ALPHA_CODES[(acc >> bits) & 31] }
  }
  out[o++] = ALPHA_CODES[(acc << (5 - bits)) & 31] // 288 bits: 57 characters and 3 bits left
  return out.toString('latin1', 0, o)
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
  const d = decodeCid(cid)
  if (d === null) throw new CheckpointError(`${what}: ${JSON.stringify(String(cid).slice(0, 80))} is not a CIDv1 raw sha2-256 (bafkrei…)`)
  return d
}

/**
 * The digest of `cid` decoded in one pass, or null unless `cid` is what {@link isCid} accepts:
 * 59 characters, "b", then base32 of exactly `CID_PREFIX` (so "afkrei" and an 8th character a–h)
 * and 32 bytes, the 2 padding bits of the last character zero.
 */
function decodeCid (cid: string): Uint8Array | null {
  if (typeof cid !== 'string' || cid.length !== CID_LENGTH || cid.charCodeAt(0) !== 0x62) return null
  const out = new Uint8Array(32)
  let acc = 0; let bits = 0; let n = 0 // bytes decoded so far, prefix included
  for (let i = 1; i < CID_LENGTH; i++) {
    const c = cid.charCodeAt(i)
    const v = c < 128 ? ALPHA_VALUE[c] : 255
    if (v === 255) return null
    acc = ((acc << 5) | v) & 0x1fff
    bits += 5
    if (bits >= 8) {
      bits -= 8
      const byte = (acc >> bits) & 255
      if (n < 4) { if (byte !== CID_PREFIX[n]) return null } else out[n - 4] = byte
      n++
    }
  }
  return (acc & ((1 << bits) - 1)) === 0 ? out : null // 290 bits: 2 padding bits, zero
}
