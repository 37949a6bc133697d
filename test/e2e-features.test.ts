/**
 * The feature gate's v128 support through the real CLI: an agent whose state is a mutable v128
 * global is born, stopped, resumed from a copy of its .ckpt in another directory, and its whole
 * life verifies and replays VALID; the global holds the value the agent's arithmetic implies.
 */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { readLive } from '../checkpoint/live.ts'
import { cleanup, igord, tempDir } from './helpers.ts'
import { expectedV, v128Agent } from './v128-agent.ts'

test.after(cleanup)

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

test('a v128 agent runs, resumes elsewhere from its .ckpt and replays VALID through the CLI', () => {
  const d = tempDir()
  writeFileSync(join(d, 'v.wasm'), v128Agent())
  writeFileSync(join(d, 'v.manifest.json'), '{"capabilities": []}')
  const a = join(d, 'a'); const b = join(d, 'b')
  let r = igord(['run', join(d, 'v.wasm'), '--dir', a, '--ticks', '4', '--interval', '0ms', '-q'])
  assert.is(r.code, 0, r.stderr)
  const first = readLive(join(a, 'v.ckpt'))
  assert.is(first.parsed.tick, 4)
  assert.equal(first.globals.map((g) => [g.index, g.type]), [[0, 'v128'], [1, 'i32']])
  assert.is(hex(first.globals[0].bytes), hex(expectedV(4)))
  mkdirSync(b)
  copyFileSync(join(a, 'v.ckpt'), join(b, 'v.ckpt'))
  r = igord(['resume', join(b, 'v.ckpt'), '--ticks', '5', '--interval', '0ms', '-q'])
  assert.is(r.code, 0, r.stderr)
  const last = readLive(join(b, 'v.ckpt'))
  assert.is(last.parsed.tick, 9)
  assert.is(hex(last.globals[0].bytes), hex(expectedV(9)), 'the resumed instance continued from the restored v128')
  assert.is(hex(last.pages[0][1].subarray(16, 32)), hex(expectedV(9)))
  r = igord(['verify', a, b])
  assert.is(r.code, 0, r.stdout + r.stderr)
  assert.match(r.stdout, /^VALID/)
  r = igord(['verify', '--replay', a, b])
  assert.is(r.code, 0, r.stdout + r.stderr)
  assert.match(r.stdout, /^VALID: replayed 10 ticks \(ticks 0–9\)/)
})

test.run()
