/**
 * Test-only fault injection for igord nodes (never imported by the shipped CLI or p2p/): turns a
 * fault spec (what `IGORD_FAULT` holds for test/igord-faulty.ts) into p2p/node.ts `NodeFaults`.
 *
 * Specs: `<step>` — the process SIGKILLs itself at that migration step; `cut:<step>` — the node
 * resets the migration stream and closes its connection to that peer (the process goes on); steps:
 * source-after-offer, source-during-transfer, source-after-pending, source-after-handoff,
 * target-during-transfer, target-after-pending, target-after-handoff. `forge-final` (source,
 * `migrate` only): after the agent's loop stops, flip the last byte of its memory, run one tick and
 * write a validly signed checkpoint that does not follow from its log (the target's replay must
 * refuse it). Each fault, when reached, writes a note `IGORD_FAULT=<spec>: …` first.
 */
import type { NodeFaults } from '../p2p/node.ts'

/** The known step names. */
export const FAULT_STEPS = ['source-after-offer', 'source-during-transfer', 'source-after-pending', 'source-after-handoff', 'target-during-transfer', 'target-after-pending', 'target-after-handoff'] as const

/**
 * The hooks of fault `spec`.
 * @throws Error naming the spec when it is not one of the forms above
 */
export function faultsFrom (spec: string): NodeFaults {
  if (spec === 'forge-final') {
    return {
      async beforeOffer (session, note) {
        // runtime/pool.ts AgentHandle.forge: in the agent's worker, flip the last byte of memory, run a tick, checkpoint
        const tick = await session.forge()
        note(`IGORD_FAULT=forge-final: ${session.name}: flipped the last byte of memory before tick ${tick}`)
      },
    }
  }
  const cut = spec.startsWith('cut:')
  const at = cut ? spec.slice(4) : spec
  if (!(FAULT_STEPS as readonly string[]).includes(at)) throw new Error(`IGORD_FAULT: unknown fault ${JSON.stringify(spec)} (known: forge-final, <step>, cut:<step>; steps: ${FAULT_STEPS.join(', ')})`)
  return {
    step (step, ch, peer, note) {
      if (step !== at) return
      if (!cut) {
        note(`IGORD_FAULT=${spec}: exiting abruptly`)
        process.kill(process.pid, 'SIGKILL')
        return
      }
      note(`IGORD_FAULT=${spec}: cutting the connection to ${ch.peer}`)
      ch.abort()
      for (const c of peer.getConnections()) if (c.remotePeer.toString() === ch.peer) c.abort(new Error('igord: IGORD_FAULT cut'))
    },
  }
}
