/**
 * Unit tests of runtime/reclaim.ts: the thread's full-GC function is available without
 * `--expose-gc` and without leaking a `gc` global, collects an unreachable buffer, and
 * reclaimSoon runs one collection per burst.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { setTimeout as sleep } from 'node:timers/promises'
import { runInNewContext } from 'node:vm'
import { gcFunction, RECLAIM_DELAY_MS, reclaimRuns, reclaimSoon } from '../runtime/reclaim.ts'

test('gcFunction gives a working full GC and leaves no gc global behind', async () => {
  const gc = gcFunction()
  assert.type(gc, 'function')
  assert.is(gcFunction(), gc, 'taken once')
  assert.is(runInNewContext('typeof gc'), 'undefined', 'later contexts do not get a gc global')
  let big: ArrayBuffer | null = new ArrayBuffer(8 << 20)
  const ref = new WeakRef(big)
  big = null
  await sleep(0) // a WeakRef target stays alive until the end of the job that made it
  gc!()
  assert.is(ref.deref(), undefined, 'the unreachable buffer was collected')
})

test('reclaimSoon runs one collection for a burst of hibernations', async () => {
  const before = reclaimRuns()
  for (let i = 0; i < 50; i++) reclaimSoon()
  for (let waited = 0; reclaimRuns() === before && waited < RECLAIM_DELAY_MS + 20_000; waited += 100) await sleep(100)
  assert.is(reclaimRuns(), before + 1)
  await sleep(300)
  assert.is(reclaimRuns(), before + 1, 'not once per call')
})

test.run()
