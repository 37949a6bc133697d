/**
 * Bad input through the real CLI: each case ends with one line on stderr naming the problem, the
 * documented exit code, and the previous checkpoint untouched.
 */
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { decodeFile, encodeFile } from '../checkpoint/cbor.ts'
import { agentWasm, cleanup, igord, tempDir } from './helpers.ts'

test.after(cleanup)

/** A stopped heartbeat in a fresh dir; returns the dir and the bytes of its live checkpoint. */
function agent (): { dir: string; ckpt: string; bytes: Buffer } {
  const dir = tempDir()
  const r = igord(['run', agentWasm('heartbeat'), '--dir', dir, '--ticks', '3', '--interval', '0ms', '-q'])
  assert.is(r.code, 0, r.stderr)
  const ckpt = join(dir, 'heartbeat.ckpt')
  return { dir, ckpt, bytes: readFileSync(ckpt) }
}

function oneLine (stderr: string): string {
  const lines = stderr.trim().split('\n')
  assert.is(lines.length, 1, `exactly one error line, got:\n${stderr}`)
  assert.match(lines[0], /^igord: /)
  return lines[0]
}

/** Resumes a damaged copy of a good checkpoint; the good one must be unchanged afterwards. */
function resumeDamaged (damage: (good: Buffer) => Uint8Array, expect: RegExp): void {
  const { dir, ckpt, bytes } = agent()
  const bad = join(dir, 'damaged.ckpt')
  writeFileSync(bad, damage(Buffer.from(bytes)))
  const r = igord(['resume', bad, '--ticks', '1', '-q'])
  assert.is(r.code, 3, r.stderr)
  const line = oneLine(r.stderr)
  assert.ok(line.includes('damaged.ckpt'), `names the file: ${line}`)
  assert.match(line, expect)
  assert.ok(readFileSync(ckpt).equals(bytes), 'the previous checkpoint is untouched')
  assert.ok(readFileSync(bad).equals(Buffer.from(damage(Buffer.from(bytes)))), 'the bad file is not rewritten')
}

test('truncated .ckpt', () => resumeDamaged((b) => b.subarray(0, Math.floor(b.length / 2)), /truncat/i))
test('empty .ckpt', () => resumeDamaged(() => new Uint8Array(0), /empty/i))
test('random bytes', () => resumeDamaged((b) => { const r = Buffer.alloc(b.length); for (let i = 0; i < r.length; i++) r[i] = (i * 2654435761) >>> 24; return r }, /not an igord|malformed|invalid/i))
test('wrong format version', () => resumeDamaged((b) => {
  const m = decodeFile(b, 'test') as Record<string, unknown>
  return encodeFile({ ...m, v: 99 })
}, /version/i))
test('flipped signature byte', () => resumeDamaged((b) => {
  const m = decodeFile(b, 'test') as Record<string, unknown>
  const sig = Buffer.from(m.sig as Uint8Array); sig[5] ^= 1
  return encodeFile({ ...m, sig })
}, /signature/i))

test('inspect and verify on a bad file: one line, exit 3 / 6', () => {
  const d = tempDir()
  writeFileSync(join(d, 'x.ckpt'), 'hello')
  const r = igord(['inspect', join(d, 'x.ckpt')])
  assert.is(r.code, 3)
  oneLine(r.stderr)
})

test('a wasm with a changed byte is refused with exit 4', () => {
  const d = tempDir()
  const wasm = readFileSync(agentWasm('heartbeat'))
  wasm[8] = 0xff // first section id
  writeFileSync(join(d, 'bad.wasm'), wasm)
  copyFileSync(agentWasm('heartbeat').replace('.wasm', '.manifest.json'), join(d, 'bad.manifest.json'))
  const r = igord(['run', join(d, 'bad.wasm'), '--dir', join(d, 'data'), '--ticks', '1'])
  assert.is(r.code, 4)
  assert.match(oneLine(r.stderr), /bad\.wasm/)
})

test('a malformed manifest is refused with exit 5, naming the file and field', () => {
  const d = tempDir()
  copyFileSync(agentWasm('heartbeat'), join(d, 'hb.wasm'))
  writeFileSync(join(d, 'hb.manifest.json'), '{"capabilities": {"clock": {"version": 1}, "teleport": {"version": 1}}}')
  let r = igord(['run', join(d, 'hb.wasm'), '--dir', join(d, 'data'), '--ticks', '1'])
  assert.is(r.code, 5)
  assert.match(oneLine(r.stderr), /teleport/)
  writeFileSync(join(d, 'hb.manifest.json'), '{"capabilities": ["clock", "log"], "resource_limits": {"max_memory_bytes": 1000}}')
  r = igord(['run', join(d, 'hb.wasm'), '--dir', join(d, 'data'), '--ticks', '1'])
  assert.is(r.code, 5)
  assert.match(oneLine(r.stderr), /max_memory_bytes/)
  writeFileSync(join(d, 'hb.manifest.json'), '{"capabilities": ')
  r = igord(['run', join(d, 'hb.wasm'), '--dir', join(d, 'data'), '--ticks', '1'])
  assert.is(r.code, 5)
  assert.match(oneLine(r.stderr), /hb\.manifest\.json/)
})

test('an import the manifest does not grant is refused with exit 4, naming import and capability', () => {
  const d = tempDir()
  const r = igord(['run', agentWasm('badimport'), '--dir', d, '--ticks', '1'])
  assert.is(r.code, 4)
  const line = oneLine(r.stderr)
  assert.match(line, /igor\.rand_bytes/)
  assert.match(line, /rand/)
})

test('bad command-line values exit 2', () => {
  const d = tempDir()
  const r = igord(['run', agentWasm('heartbeat'), '--dir', d, '--interval', 'soon'])
  assert.not.ok(existsSync(join(d, 'heartbeat.ckpt')), 'nothing is born when an option is bad')
  assert.is(r.code, 2)
  assert.match(r.stderr, /--interval/)
  assert.is(igord(['frobnicate']).code, 2)
})

test('a bad agent name is refused before birth: exit 2, one line naming the rule, nothing run or written', () => {
  const d = join(tempDir(), 'data')
  for (const [name, args] of [
    ['.foo', ['--name', '.foo']],
    ['-x', ['--name=-x']],
    ['a/b', ['--name', 'a/b']],
    ['x'.repeat(129), ['--name', 'x'.repeat(129)]],
  ] as const) {
    const r = igord(['run', agentWasm('heartbeat'), '--dir', d, ...args])
    assert.is(r.code, 2, `${name}: ${r.stderr}`)
    const lines = r.stderr.trim().split('\n')
    assert.is(lines.length, 1, r.stderr)
    assert.match(lines[0], /--name: agent name ".*" must be 1-128 letters, digits, '\.', '_' or '-', not starting with '\.' or '-'/)
    assert.is(r.stdout, '', `${name}: agent_init did not run (heartbeat logs from it)`)
    assert.not.ok(existsSync(d), `${name}: nothing was written`)
  }
  // a .ckpt whose file name breaks the rule is refused the same way on resume
  const ok = igord(['run', agentWasm('heartbeat'), '--dir', d, '--ticks', '1', '-q'])
  assert.is(ok.code, 0, ok.stderr)
  copyFileSync(join(d, 'heartbeat.ckpt'), join(d, '.hidden.ckpt'))
  const r = igord(['resume', join(d, '.hidden.ckpt'), '--ticks', '1'])
  assert.is(r.code, 2, r.stderr)
  assert.match(r.stderr, /\.hidden\.ckpt: agent name "\.hidden" must be/)
})

test.run()
