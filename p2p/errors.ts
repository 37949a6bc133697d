/**
 * Errors of the p2p layer. A {@link NetworkError} carries exit code 9 (`EXIT.NETWORK`): a peer
 * could not be reached, timed out, broke the protocol or refused.
 */
import { EXIT, IgordError } from '../checkpoint/errors.ts'

/** A peer could not be reached, timed out, broke the protocol or refused (exit 9; code `NETWORK` unless given). */
export class NetworkError extends IgordError {
  constructor (message: string, code?: string) { super(message, EXIT.NETWORK, code); this.name = 'NetworkError' }
}

/**
 * A migration target refused an offer; `reason` is its one-line reason, e.g.
 * `capability "rand" not offered by this node` (exit 9, code `MIGRATION_REFUSED`).
 */
export class RefusedError extends NetworkError {
  /** the target's reason, as it sent it */
  readonly reason: string
  constructor (peer: string, reason: string) { super(`${peer} refused the migration: ${reason}`, 'MIGRATION_REFUSED'); this.reason = reason; this.name = 'RefusedError' }
}

/** A bad request to a node: a malformed multiaddr, an unknown agent, an agent in the wrong state (exit 2, a usage error; code `BAD_REQUEST`). */
export class RequestError extends IgordError {
  constructor (message: string) { super(message, EXIT.USAGE, 'BAD_REQUEST'); this.name = 'RequestError' }
}
