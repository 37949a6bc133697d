/**
 * Test-only fault hooks of a node (p2p/node.ts `NodeOptions.faults`; only test/faults.ts builds
 * them, the shipped CLI never sets them). Carved out of p2p/node.ts
 * (docs/RATIONALE.md "Splitting p2p/node.ts"): the source and target sides call {@link Faults}
 * without knowing whether any hook is installed.
 */
import type { AgentHandle } from '../runtime/pool.ts'
import type { Peer } from './peer.ts'
import type { Channel } from './wire.ts'

/**
 * Test-only fault hooks of a node (p2p/node.ts `NodeOptions.faults`): undefined in production.
 * `step(step, ch, peer, note)`: called at each migration step (steps: source-after-offer,
 * source-during-transfer, source-after-pending, source-after-handoff, target-during-transfer,
 * target-after-pending, target-after-handoff). `beforeOffer(session, note)`: called on the source
 * once the agent's loop stopped for `migrate`, before its last checkpoint is offered.
 */
export interface NodeFaults {
  step? (step: string, ch: Channel, peer: Peer, note: (line: string) => void): void
  beforeOffer? (session: AgentHandle, note: (line: string) => void): void | Promise<void>
}

/**
 * The fault hooks as the node's parts call them: each a no-op when `faults` (or that hook) is
 * absent. `note` is the node's note line; `peer` the node's libp2p peer.
 */
export class Faults {
  readonly #faults: NodeFaults | undefined
  readonly #peer: Peer
  readonly #note: (line: string) => void
  constructor (faults: NodeFaults | undefined, peer: Peer, note: (line: string) => void) {
    this.#faults = faults; this.#peer = peer; this.#note = note
  }

  /** Migration step `step` reached on stream `ch` (may kill the process, or cut the stream). */
  step (step: string, ch: Channel): void {
    this.#faults?.step?.(step, ch, this.#peer, this.#note)
  }

  /** The source stopped `session`'s loop for `migrate` and is about to read its last checkpoint. */
  async beforeOffer (session: AgentHandle): Promise<void> {
    await this.#faults?.beforeOffer?.(session, this.#note)
  }
}
