/**
 * Agent identity: an Ed25519 key pair (RFC 8032) and its `did:key` (W3C did:key method, multicodec
 * ed25519-pub 0xed, base58btc). Signing and verification use node:crypto KeyObjects, built once per
 * identity / public key and cached (creating a KeyObject costs about as much as a signature).
 */
import { createPrivateKey, createPublicKey, randomBytes, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto'
import { base58btc } from 'multiformats/bases/base58'
import { varint } from 'multiformats'
import { CheckpointError } from './errors.ts'

/** An agent's key pair and DID. `seed` is the 32-byte RFC 8032 secret key; keep it secret. */
export interface Identity {
  /** 32-byte Ed25519 secret seed (RFC 8032 §5.1.5 "private key"). */
  seed: Uint8Array
  /** 32-byte Ed25519 public key. */
  publicKey: Uint8Array
  /** `did:key:z6Mk…` of `publicKey`. */
  did: string
}

/** DER prefix that turns a 32-byte seed into PKCS#8 (RFC 8410). */
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')
/** DER prefix that turns a 32-byte public key into SPKI (RFC 8410). */
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')
/** multicodec ed25519-pub. */
const ED25519_PUB = 0xed

const privateKeys = new WeakMap<Identity, KeyObject>()
const publicKeys = new Map<string, KeyObject>()

function privateKeyOf (id: Identity): KeyObject {
  let k = privateKeys.get(id)
  if (k === undefined) {
    if (!(id.seed instanceof Uint8Array) || id.seed.length !== 32) throw new CheckpointError('identity: the secret seed must be 32 bytes')
    k = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, id.seed]), format: 'der', type: 'pkcs8' })
    privateKeys.set(id, k)
  }
  return k
}

function publicKeyObject (pub: Uint8Array): KeyObject {
  const key = Buffer.from(pub.buffer, pub.byteOffset, pub.byteLength).toString('base64')
  let k = publicKeys.get(key)
  if (k === undefined) {
    k = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, pub]), format: 'der', type: 'spki' })
    if (publicKeys.size >= 1024) publicKeys.clear()
    publicKeys.set(key, k)
  }
  return k
}

/**
 * The identity of a 32-byte Ed25519 seed (RFC 8032 §5.1.5): derives the public key and DID.
 * @throws CheckpointError when `seed` is not 32 bytes.
 */
export function identityFromSeed (seed: Uint8Array): Identity {
  if (!(seed instanceof Uint8Array) || seed.length !== 32) throw new CheckpointError(`identity: the secret seed must be 32 bytes, got ${seed?.length}`)
  const s = Uint8Array.from(seed)
  const priv = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, s]), format: 'der', type: 'pkcs8' })
  const spki = createPublicKey(priv).export({ format: 'der', type: 'spki' })
  const publicKey = Uint8Array.from(spki.subarray(spki.length - 32))
  const id: Identity = { seed: s, publicKey, did: didFromPublicKey(publicKey) }
  privateKeys.set(id, priv)
  return id
}

/** A new identity from 32 bytes of the OS's cryptographic randomness. */
export function generateIdentity (): Identity {
  return identityFromSeed(randomBytes(32))
}

/**
 * `did:key:` + base58btc(varint 0xed ‖ publicKey) (W3C did:key, Ed25519): `did:key:z6Mk…`.
 * @throws CheckpointError when `pub` is not 32 bytes.
 */
export function didFromPublicKey (pub: Uint8Array): string {
  if (!(pub instanceof Uint8Array) || pub.length !== 32) throw new CheckpointError(`identity: an Ed25519 public key must be 32 bytes, got ${pub?.length}`)
  const n = varint.encodingLength(ED25519_PUB)
  const b = new Uint8Array(n + 32)
  varint.encodeTo(ED25519_PUB, b, 0)
  b.set(pub, n)
  return 'did:key:' + base58btc.encode(b)
}

const didCache = new Map<string, Uint8Array>()

/**
 * The 32-byte Ed25519 public key inside a `did:key` (W3C did:key).
 * @throws CheckpointError `"<did>" is not a did:key …` / `… is not an Ed25519 did:key (multicodec 0x…)`.
 */
export function publicKeyFromDid (did: string): Uint8Array {
  const cached = didCache.get(did)
  if (cached !== undefined) return cached
  const shown = JSON.stringify(String(did).slice(0, 100))
  if (typeof did !== 'string' || !did.startsWith('did:key:z')) throw new CheckpointError(`${shown} is not a did:key (expected did:key:z…)`)
  let b: Uint8Array
  try { b = base58btc.decode(did.slice(8)) } catch { throw new CheckpointError(`${shown} is not a did:key: invalid base58btc`) }
  let code: number; let n: number
  try { [code, n] = varint.decode(b) } catch { throw new CheckpointError(`${shown} is not a did:key: bad multicodec prefix`) }
  if (code !== ED25519_PUB) throw new CheckpointError(`${shown} is not an Ed25519 did:key (multicodec 0x${code.toString(16)}, expected 0xed)`)
  if (b.length - n !== 32) throw new CheckpointError(`${shown} is not a valid Ed25519 did:key (key is ${b.length - n} bytes, expected 32)`)
  const pub = Uint8Array.from(b.subarray(n))
  if (didCache.size >= 1024) didCache.clear()
  didCache.set(did, pub)
  return pub
}

/**
 * Ed25519 signature (RFC 8032 §5.1.6, pure Ed25519) of `msg` by `id`: 64 bytes.
 * @throws CheckpointError when the identity's seed is not 32 bytes.
 */
export function sign (id: Identity, msg: Uint8Array): Uint8Array {
  return cryptoSign(null, msg, privateKeyOf(id))
}

/**
 * True when `sig` is a valid Ed25519 signature (RFC 8032 §5.1.7) of `msg` by the 32-byte
 * `publicKey`. Never throws for bad input: a wrong-length key or signature is simply invalid.
 */
export function verifySignature (publicKey: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32 || !(sig instanceof Uint8Array) || sig.length !== 64) return false
  try {
    return cryptoVerify(null, msg, publicKeyObject(publicKey), sig)
  } catch {
    return false
  }
}
