/**
 * A node killed (SIGKILL, IGORD_FAULT=<step> through the test-only launcher test/igord-faulty.ts) at the migration steps not covered by
 * e2e-node-faults.test.ts, then restarted on its data directory: afterwards exactly one node runs
 * the agent, every tick ran exactly once, the merged histories verify VALID with no fork, and the
 * restarted node resolves the interrupted migration by itself.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { cleanup } from './helpers.ts'
import { faultScenario, nodeTracker } from './node-helpers.ts'

const { track, killAll } = nodeTracker()
test.after.each(killAll)
test.after(cleanup)

test('kill the source right after its offer: the restarted source runs the agent, the target holds nothing', async () => {
  const rep = await faultScenario({ fault: 'source-after-offer', on: 'source', killed: true, expect: 'source', track })
  assert.equal(rep.epochs, [0])
})

test('kill the source during the transfer: the restarted source runs the agent', async () => {
  const rep = await faultScenario({ fault: 'source-during-transfer', on: 'source', killed: true, expect: 'source', track })
  assert.equal(rep.epochs, [0])
})

test('kill the target after it stored the agent as pending: the source keeps it, the restarted target drops its copy', async () => {
  const rep = await faultScenario({ fault: 'target-after-pending', on: 'target', killed: true, expect: 'source', track })
  assert.equal(rep.epochs, [0])
})

test('kill the target after the handoff arrived: the restarted target asks the source and takes over', async () => {
  const rep = await faultScenario({ fault: 'target-after-handoff', on: 'target', killed: true, expect: 'target', track })
  assert.equal(rep.epochs, [0, 1])
  assert.is((rep.handoffs as unknown[]).length, 1)
})

test.run()
