/**
 * The connection cut during a migration while both processes keep running
 * (IGORD_FAULT=cut:<step> through the test-only launcher test/igord-faulty.ts: the node resets the stream and closes the connection at that step):
 * exactly one node runs the agent afterwards, every tick ran exactly once, the merged histories
 * verify VALID with no fork, and a pending copy is resolved by asking the other side.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { cleanup } from './helpers.ts'
import { faultScenario, nodeTracker } from './node-helpers.ts'

const { track, killAll } = nodeTracker()
test.after.each(killAll)
test.after(cleanup)

test('cut during the transfer: the agent stays on the source', async () => {
  const rep = await faultScenario({ fault: 'cut:target-during-transfer', on: 'target', killed: false, expect: 'source', track })
  assert.equal(rep.epochs, [0])
})

test('cut after the target stored the agent as pending: the source keeps it, the target drops its copy', async () => {
  const rep = await faultScenario({ fault: 'cut:target-after-pending', on: 'target', killed: false, expect: 'source', track })
  assert.equal(rep.epochs, [0])
})

test('cut after the source read pending: it commits; the target gets the handoff by asking and takes over', async () => {
  const rep = await faultScenario({ fault: 'cut:source-after-pending', on: 'source', killed: false, expect: 'target', track })
  assert.equal(rep.epochs, [0, 1])
})

test.run()
