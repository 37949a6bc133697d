/**
 * `igord instrument` through the real CLI: the output is a valid module exporting the fuel
 * counter, the internal globals and the memory, capped at the requested limit; bad input exits 4.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { agentWasm, cleanup, igord, tempDir } from './helpers.ts'

test.after(cleanup)

test('instrument writes a valid metered module with exported fuel, globals and a capped memory', () => {
  const d = tempDir()
  const out = join(d, 'hb.metered.wasm')
  const r = igord(['instrument', agentWasm('heartbeat'), '-o', out, '--memory-limit', String(2 * 1024 * 1024)])
  assert.is(r.code, 0, r.stderr)
  assert.match(r.stderr, /bafkrei/)
  const mod = new WebAssembly.Module(readFileSync(out))
  const exports = WebAssembly.Module.exports(mod)
  assert.ok(exports.some((e) => e.name === '__igor_fuel' && e.kind === 'global'))
  assert.ok(exports.some((e) => e.name.startsWith('__igor_g') && e.kind === 'global'))
  const mem = exports.find((e) => e.name === 'memory')
  assert.is(mem?.kind, 'memory')
  assert.equal(WebAssembly.Module.imports(mod).map((i) => `${i.module}.${i.name}`).sort(), WebAssembly.Module.imports(new WebAssembly.Module(readFileSync(agentWasm('heartbeat')))).map((i) => `${i.module}.${i.name}`).sort())
})

test('instrument rejects garbage with exit 4 and a bad limit with exit 2', () => {
  const d = tempDir()
  writeFileSync(join(d, 'junk.wasm'), 'not wasm at all')
  const r = igord(['instrument', join(d, 'junk.wasm'), '-o', join(d, 'o.wasm')])
  assert.is(r.code, 4)
  assert.match(r.stderr, /junk\.wasm/)
  assert.is(igord(['instrument', agentWasm('heartbeat'), '-o', join(d, 'o.wasm'), '--memory-limit', '1000']).code, 2)
})

test('every command answers --help with the exit codes', () => {
  for (const cmd of ['run', 'resume', 'verify', 'inspect', 'instrument']) {
    const r = igord([cmd, '--help'])
    assert.is(r.code, 0, cmd)
    assert.match(r.stdout, /Exit codes:/, cmd)
  }
  assert.is(igord(['--version']).code, 0)
})

test.run()
