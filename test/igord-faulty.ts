#!/usr/bin/env node
/**
 * Test-only launcher of the igord CLI with fault injection: reads `IGORD_FAULT` (test/faults.ts),
 * installs its hooks into `igord node` (cmd/node.ts `injected`), then runs the CLI's main
 * (cmd/igord.ts) with the same arguments. The shipped `bin/igord` never reads `IGORD_FAULT`.
 */
import { injected } from '../cmd/node.ts'
import { faultsFrom } from './faults.ts'

const spec = process.env.IGORD_FAULT
if (spec !== undefined && spec !== '') {
  try { injected.faults = faultsFrom(spec) } catch (e) {
    process.stderr.write(`igord-faulty: ${(e as Error).message}\n`)
    process.exit(2)
  }
}
await import('../cmd/igord.ts')
