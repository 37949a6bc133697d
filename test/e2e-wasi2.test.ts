/**
 * End to end through the real CLI: a component agent that speaks WASI 0.2 directly (a WAT core
 * module made into a component with jco's wasm-tools, no preview 1 adapter) runs on igord's own
 * WASI 0.2 (hostcalls/wasi2.ts): its wall clock and random u64s come from the recorded inputs, its
 * stdout stream becomes log lines; `igord logs` shows the events; interrupted at tick 2 and its
 * `.ckpt` copied alone and resumed, it reaches the state root of an uninterrupted `--sim-seed`
 * run; `verify --replay` is VALID. Without capability `wasi`, or importing a WASI function igord
 * does not serve, it is refused at load (exit 4) naming the import.
 */
import { copyFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import binaryen from 'binaryen'
import { componentEmbed, componentNew } from '@bytecodealliance/jco-transpile/wasm-tools'
import { cleanup, igord, inspectJson, tempDir } from './helpers.ts'

test.after(cleanup)

/** The world, with the few WASI 0.2 items it uses declared inline (WIT nested packages). */
const wit = (extraStreamMethod = ''): string => `package test:wasi2-beat;

world beat {
  import wasi:clocks/wall-clock@0.2.0;
  import wasi:random/random@0.2.0;
  import wasi:cli/stdout@0.2.0;
  enum tick-result { idle, more, finished }
  export init: func();
  export tick: func() -> tick-result;
}

package wasi:io@0.2.0 {
  interface error { resource error { to-debug-string: func() -> string; } }
  interface streams {
    use error.{error};
    variant stream-error { last-operation-failed(error), closed }
    resource output-stream {
      blocking-write-and-flush: func(contents: list<u8>) -> result<_, stream-error>;
      ${extraStreamMethod}
    }
  }
}
package wasi:clocks@0.2.0 {
  interface wall-clock { record datetime { seconds: u64, nanoseconds: u32 } now: func() -> datetime; }
}
package wasi:random@0.2.0 {
  interface random { get-random-u64: func() -> u64; }
}
package wasi:cli@0.2.0 {
  interface stdout { use wasi:io/streams@0.2.0.{output-stream}; get-stdout: func() -> output-stream; }
}
`

/**
 * Birth stores a random u64 at 8; each tick counts at 0, reads the wall clock (at 16) and a random
 * u64 into the sum at 8, and writes `beat <letter>\n` to stdout (getting and dropping the stream
 * within the call). `extra` adds an import of a WASI function igord does not serve.
 */
async function beat (dir: string, extra = false): Promise<string> {
  const m = binaryen.parseText(`(module
  (import "wasi:clocks/wall-clock@0.2.0" "now" (func $now (param i32)))
  (import "wasi:random/random@0.2.0" "get-random-u64" (func $rand (result i64)))
  (import "wasi:cli/stdout@0.2.0" "get-stdout" (func $stdout (result i32)))
  (import "wasi:io/streams@0.2.0" "[method]output-stream.blocking-write-and-flush" (func $write (param i32 i32 i32 i32)))
  (import "wasi:io/streams@0.2.0" "[resource-drop]output-stream" (func $drop (param i32)))
  ${extra ? '(import "wasi:io/streams@0.2.0" "[method]output-stream.teleport" (func $teleport (param i32)))' : ''}
  (memory (export "memory") 1 4)
  (data (i32.const 100) "beat ?\\n")
  (func (export "init") (i64.store (i32.const 8) (call $rand)))
  (func (export "tick") (result i32)
    (local $h i32)
    (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
    (call $now (i32.const 16))
    (i64.store (i32.const 8) (i64.add (i64.load (i32.const 8)) (i64.xor (i64.load (i32.const 16)) (call $rand))))
    (i32.store8 (i32.const 105) (i32.add (i32.const 97) (i32.rem_u (i32.load (i32.const 0)) (i32.const 26))))
    (local.set $h (call $stdout))
    (call $write (local.get $h) (i32.const 100) (i32.const 7) (i32.const 200))
    ${extra ? '(call $teleport (local.get $h))' : ''}
    (call $drop (local.get $h))
    (i32.const 0)))`)
  let core: Uint8Array
  try { core = m.emitBinary() } finally { m.dispose() }
  const embedded = await componentEmbed({ binary: core, witSource: wit(extra ? 'teleport: func();' : ''), world: 'beat', stringEncoding: 'utf8' })
  const file = join(dir, extra ? 'teleport.wasm' : 'beat.wasm')
  writeFileSync(file, await componentNew(embedded, []))
  return file
}

const SEED = ['--sim-seed', 'wasi2-e2e', '--interval', '0ms']
const beats = (out: string): string[] => out.split('\n').filter((l) => l.startsWith('[beat] ')).map((l) => l.slice(7))
const manifest = (dir: string, name: string, caps: string[]): void => {
  writeFileSync(join(dir, `${name}.manifest.json`), JSON.stringify({ capabilities: Object.fromEntries(caps.map((c) => [c, { version: 1 }])) }))
}

test('a WASI 0.2 component: clock, random and stdout through the event log; moved mid-life = uninterrupted; replay VALID', async () => {
  const src = tempDir('igord-wasi2-src-')
  const file = await beat(src)
  manifest(src, 'beat', ['wasi'])
  const control = tempDir('igord-wasi2-control-')
  const c = igord(['run', file, '--dir', control, '--ticks', '4', ...SEED])
  assert.is(c.code, 0, c.stderr)
  assert.equal(beats(c.stdout), ['beat b', 'beat c', 'beat d', 'beat e'])
  const logs = igord(['logs', 'beat', '--dir', control])
  assert.is(logs.code, 0, logs.stderr)
  assert.match(logs.stdout, /tick 0 +event +wasi:random\/random\.get-random-u64 8 bytes/)
  assert.match(logs.stdout, /tick 3 +event +wasi:clocks\/wall-clock\.now 1700000003000000000/)
  assert.match(logs.stdout, /tick 3 +stdout +beat d/)

  const a = tempDir('igord-wasi2-a-'); const b = tempDir('igord-wasi2-b-')
  assert.is(igord(['run', file, '--dir', a, '--ticks', '2', ...SEED]).code, 0)
  copyFileSync(join(a, 'beat.ckpt'), join(b, 'beat.ckpt'))
  const r = igord(['resume', join(b, 'beat.ckpt'), '--ticks', '2', ...SEED])
  assert.is(r.code, 0, r.stderr)
  assert.equal(beats(r.stdout), ['beat d', 'beat e'])
  const want = inspectJson(join(control, 'beat.ckpt')); const got = inspectJson(join(b, 'beat.ckpt'))
  assert.is(got.tick, 4)
  assert.is(got.stateRoot, want.stateRoot)
  assert.is(got.fuel, want.fuel)
  assert.is(got.budget, want.budget)
  const v = igord(['verify', '--replay', a, b])
  assert.is(v.code, 0, v.stdout + v.stderr)
  assert.match(v.stdout, /^VALID: replayed 5 ticks \(ticks 0–4\)/)
})

test('refused at load: WASI without capability wasi; a WASI function igord does not serve, by name', async () => {
  const src = tempDir('igord-wasi2-refused-')
  const file = await beat(src)
  manifest(src, 'beat', ['clock'])
  const r = igord(['run', file, '--dir', tempDir(), '--ticks', '1', ...SEED])
  assert.is(r.code, 4, r.stdout + r.stderr)
  assert.match(r.stderr, /wasi:clocks\/wall-clock@0\.2\.0 needs capability "wasi"/)
  const tele = await beat(src, true)
  manifest(src, 'teleport', ['wasi'])
  const t = igord(['run', tele, '--dir', tempDir(), '--ticks', '1', ...SEED])
  assert.is(t.code, 4, t.stdout + t.stderr)
  assert.match(t.stderr, /imports wasi:io\/streams@0\.2\.0\.\[method\]output-stream\.teleport, which igord's WASI 0\.2 does not serve/)
})

test.run()
