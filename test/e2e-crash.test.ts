/**
 * Crash safety through the real CLI: `kill -9` of a running agent at random moments, 24 times in a
 * row on one data directory, always leaves a resumable checkpoint and a VALID history. The kill
 * moments come from a seed that is printed and named in every failure; `CRASH_SEED=<n>` replays them.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { agentWasm, cleanup, igord, igordSpawn, inspectJson, tempDir } from './helpers.ts'
import { prng } from './prng.ts'

test.after(cleanup)


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

test('kill -9 at random moments (24 times) always leaves a resumable checkpoint and a VALID history', async () => {
  const seed = Number(process.env.CRASH_SEED ?? Date.now() % 1e6)
  if (!Number.isSafeInteger(seed)) throw new Error(`CRASH_SEED=${process.env.CRASH_SEED}: an integer expected`)
  console.log(`e2e-crash: kill moments from seed ${seed} (reproduce with CRASH_SEED=${seed})`)
  const rand = prng(seed)
  const d = tempDir()
  const ckpt = join(d, 'ledger.ckpt')
  let lastTick = -1
  let round = 0
  try {
    await rounds()
  } catch (e) {
    // every failure names the seed, whatever threw (an assertion, inspect, a wait)
    const err = e as Error
    err.message = `[CRASH_SEED=${seed}, round ${round}] ${err.message}`
    throw err
  }
  async function rounds (): Promise<void> {
    for (; round < 24; round++) {
      const args = round === 0
        ? ['run', agentWasm('ledger'), '--dir', d, '--interval', '0ms', '-q']
        : ['resume', ckpt, '--interval', '0ms', '-q']
      const child = igordSpawn(args)
      // Wait until it is ticking (born or resumed), then kill it at a random moment.
      await child.waitFor(() => /born|resumed/.test(child.stderr()), 60_000)
      const delay = Math.floor(rand() * 120)
      await sleep(delay)
      child.child.kill('SIGKILL')
      const end = await child.done()
      assert.is(end.signal, 'SIGKILL', `round ${round} (seed ${seed}): the agent was still running when killed\n${end.stderr}`)
      assert.ok(existsSync(ckpt), `round ${round} (seed ${seed}, ${delay} ms): live checkpoint exists`)
      const info = inspectJson(ckpt)
      assert.ok(Number(info.tick) >= lastTick, `round ${round} (seed ${seed}): tick went backwards`)
      lastTick = Number(info.tick)
      const v = igord(['verify', d])
      assert.is(v.code, 0, `round ${round} (seed ${seed}, killed after ${delay} ms): ${v.stdout}`)
    }
  }
  // And it still resumes and ticks normally afterwards.
  const r = igord(['resume', ckpt, '--ticks', '3', '--interval', '0ms', '-q'])
  assert.is(r.code, 0, r.stderr)
  assert.is(Number(inspectJson(ckpt).tick), lastTick + 3)
  assert.is(igord(['verify', d]).code, 0)
})

test.run()
