/**
 * The host's own identity: a persistent Ed25519 key in the data directory and the libp2p peer ID
 * derived from it, which every checkpoint this host writes names in its `host` field.
 *
 * The peer ID is the libp2p one (libp2p peer-ids spec): base58btc, without multibase prefix, of the
 * identity multihash (code 0x00) of the protobuf `PublicKey { Type: Ed25519 (1), Data: 32 bytes }`,
 * so it reads `12D3KooW…` and is the same ID the node's libp2p stack announces.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { base58btc } from 'multiformats/bases/base58'
import { StorageError } from '../checkpoint/errors.ts'
import { generateIdentity, identityFromSeed } from '../checkpoint/identity.ts'
import type { Identity } from '../checkpoint/identity.ts'
import { hostKeyPath } from '../checkpoint/layout.ts'
import { atomicWrite } from '../checkpoint/store.ts'

/** File name of the host key inside a data directory (32-byte Ed25519 seed, mode 0600). */
export const HOST_KEY_FILE = 'host.key'

/** The libp2p peer ID (`12D3KooW…`) of an Ed25519 public key (32 bytes). */
export function peerIdFromPublicKey (publicKey: Uint8Array): string {
  const mh = new Uint8Array(6 + 32)
  mh.set([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])
  mh.set(publicKey, 6)
  return base58btc.baseEncode(mh)
}

/** A host's key and peer ID. */
export interface HostIdentity { key: Identity; peerId: string }

/**
 * Loads `<dir>/host.key`, creating the directory and a fresh key on first use.
 * @throws StorageError when the key file cannot be read or written, or is not 32 bytes
 */
export function loadHostIdentity (dir: string): HostIdentity {
  const path = hostKeyPath(dir)
  let key: Identity
  try {
    if (existsSync(path)) {
      const seed = readFileSync(path)
      if (seed.length !== 32) throw new StorageError(`${path}: host key must be 32 bytes, found ${seed.length}`)
      key = identityFromSeed(seed)
    } else {
      mkdirSync(dir, { recursive: true, mode: 0o700 })
      key = generateIdentity()
      atomicWrite(path, key.seed, 0o600)
    }
  } catch (e) {
    if (e instanceof StorageError) throw e
    throw new StorageError(`${path}: cannot load the host key: ${(e as Error).message}`)
  }
  return { key, peerId: peerIdFromPublicKey(key.publicKey) }
}
