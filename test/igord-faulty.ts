#!/usr/bin/env node
/**
 * Test-only launcher of the igord CLI with fault injection: reads `IGORD_FAULT`, installs its hooks,
 * then runs the CLI's main (cmd/igord.ts) with the same arguments. The shipped `bin/igord` never
 * reads `IGORD_FAULT`.
 *
 * - `mailbox:<step>` (runtime/mailbox.ts MAILBOX_FAULT_STEPS: before-mark, after-mark,
 *   after-outcome): the process SIGKILLs itself at that step of an unsafe HTTP request; the tick
 *   worker threads load test/faults.ts `installWorkerFaults` through runtime/pool.ts `injected`
 *   (their `workerData.faults`).
 * - `mdns-stub:<multiaddr>`: `igord node --mdns` uses test/mdns-stub.ts instead of `@libp2p/mdns`
 *   (no multicast): it "finds" the peer at that multiaddr (with /p2p/).
 * - `gc-slow:<ms>`: `igord gc` pauses `<ms>` ms after each durable step (checkpoint/gc.ts `gcHooks`), so
 *   that a test's kill -9 at a random moment lands between any two steps; each step is named on stderr
 *   (`igord-faulty: gc step <name>`: planned, pack-written, pack-renamed, record-written, pack-unlinked).
 * - anything else: a node fault of test/faults.ts, installed into `igord node` (cmd/node.ts `injected`).
 */
import { injected } from '../cmd/node.ts'
import { injected as poolInjected } from '../runtime/pool.ts'
import { gcHooks } from '../checkpoint/gc.ts'
import { writeSync } from 'node:fs'
import { faultsFrom, mailboxStepFrom } from './faults.ts'
import { mdnsStub } from './mdns-stub.ts'

const spec = process.env.IGORD_FAULT
if (spec !== undefined && spec !== '') {
  try {
    if (spec.startsWith('gc-slow:')) {
      const ms = Number(spec.slice('gc-slow:'.length))
      if (!Number.isFinite(ms) || ms < 0) throw new Error(`IGORD_FAULT: bad gc-slow delay ${JSON.stringify(spec)}`)
      const cell = new Int32Array(new SharedArrayBuffer(4))
      gcHooks.step = (step) => { writeSync(2, `igord-faulty: gc step ${step}\n`); Atomics.wait(cell, 0, 0, ms) }
    } else if (spec.startsWith('mdns-stub:')) injected.mdns = mdnsStub(spec.slice('mdns-stub:'.length))
    else if (spec.startsWith('mailbox:')) {
      mailboxStepFrom(spec) // checked here, installed in each worker (test/faults.ts installWorkerFaults)
      poolInjected.workerFaults = { module: new URL('./faults.ts', import.meta.url).href, spec }
    } else injected.faults = faultsFrom(spec)
  } catch (e) {
    process.stderr.write(`igord-faulty: ${(e as Error).message}\n`)
    process.exit(2)
  }
}
await import('../cmd/igord.ts')
