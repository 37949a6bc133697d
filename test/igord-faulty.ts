#!/usr/bin/env node
/**
 * Test-only launcher of the igord CLI with fault injection: reads `IGORD_FAULT`, installs its hooks,
 * then runs the CLI's main (cmd/igord.ts) with the same arguments. The shipped `bin/igord` never
 * reads `IGORD_FAULT`.
 *
 * - `mailbox:<step>` (runtime/mailbox.ts MAILBOX_FAULT_STEPS: before-mark, after-mark,
 *   after-outcome): the process SIGKILLs itself at that step of an unsafe HTTP request; passed to
 *   the tick worker threads through runtime/pool.ts `injected` (their `workerData.faults`).
 * - anything else: a node fault of test/faults.ts, installed into `igord node` (cmd/node.ts `injected`).
 */
import { injected } from '../cmd/node.ts'
import { MAILBOX_FAULT_STEPS } from '../runtime/mailbox.ts'
import type { MailboxFaultStep } from '../runtime/mailbox.ts'
import { injected as poolInjected } from '../runtime/pool.ts'
import { faultsFrom } from './faults.ts'

const spec = process.env.IGORD_FAULT
if (spec !== undefined && spec !== '') {
  try {
    if (spec.startsWith('mailbox:')) {
      const step = spec.slice('mailbox:'.length)
      if (!(MAILBOX_FAULT_STEPS as readonly string[]).includes(step)) throw new Error(`IGORD_FAULT: unknown mailbox step ${JSON.stringify(step)} (known: ${MAILBOX_FAULT_STEPS.join(', ')})`)
      poolInjected.mailboxFault = step as MailboxFaultStep
    } else injected.faults = faultsFrom(spec)
  } catch (e) {
    process.stderr.write(`igord-faulty: ${(e as Error).message}\n`)
    process.exit(2)
  }
}
await import('../cmd/igord.ts')
