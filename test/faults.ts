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
 *
 * `mailbox:<step>` (runtime/mailbox.ts MAILBOX_FAULT_STEPS: before-mark, after-mark, after-outcome):
 * the process SIGKILLs itself at that step of an unsafe HTTP request, in the tick worker thread
 * that runs the agent ({@link installWorkerFaults}, loaded there through runtime/pool.ts `injected`).
 */
import { writeSync } from 'node:fs'
import type { NodeFaults } from '../p2p/node.ts'
import { MAILBOX_FAULT_STEPS, mailboxHooks } from '../runtime/mailbox.ts'
import type { MailboxFaultStep } from '../runtime/mailbox.ts'

/**
 * The step of a `mailbox:<step>` spec.
 * @throws Error naming the spec when the step is unknown
 */
export function mailboxStepFrom (spec: string): MailboxFaultStep {
  const step = spec.slice('mailbox:'.length)
  if (!(MAILBOX_FAULT_STEPS as readonly string[]).includes(step)) throw new Error(`IGORD_FAULT: unknown mailbox step ${JSON.stringify(step)} (known: ${MAILBOX_FAULT_STEPS.join(', ')})`)
  return step as MailboxFaultStep
}

/**
 * Called in each tick worker thread (runtime/worker.ts) with a `mailbox:<step>` spec: installs the
 * mailbox hook that writes `igord: fault mailbox:<step>: …` to stderr and SIGKILLs the process.
 */
export function installWorkerFaults (spec: string): void {
  const at = mailboxStepFrom(spec)
  mailboxHooks.step = (step, what) => {
    if (step !== at) return
    writeSync(2, `igord: fault mailbox:${step}: ${what}: exiting abruptly\n`)
    process.kill(process.pid, 'SIGKILL')
  }
}

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
