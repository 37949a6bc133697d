/**
 * Bad input through the real CLI: each case ends with one line on stderr naming the problem, the
 * documented exit code, and the previous checkpoint untouched.
 */
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { decodeFile, encodeFile } from '../checkpoint/cbor.ts'
import { liveItems } from '../checkpoint/live.ts'
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

// cut inside the whole checkpoint the file starts with (a cut among the delta records after it is a torn tail: the last complete record resumes)
test('truncated .ckpt', () => resumeDamaged((b) => b.subarray(0, Math.floor(liveItems(b, 'test')[0] / 2)), /truncat/i))
test('empty .ckpt', () => resumeDamaged(() => new Uint8Array(0), /empty/i))
test('random bytes', () => resumeDamaged((b) => { const r = Buffer.alloc(b.length); for (let i = 0; i < r.length; i++) r[i] = (i * 2654435761) >>> 24; return r }, /not an igord|malformed|invalid/i))
test('wrong format version', () => resumeDamaged((b) => {
  const m = decodeFile(b.subarray(0, liveItems(b, 'test')[0]), 'test') as Record<string, unknown> // the whole checkpoint, without delta records
  return encodeFile({ ...m, v: 99 })
}, /version/i))
test('flipped signature byte', () => resumeDamaged((b) => {
  const m = decodeFile(b.subarray(0, liveItems(b, 'test')[0]), 'test') as Record<string, unknown> // the whole checkpoint, without delta records
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

/** Runs `igord run` on `bytes` saved as `<file>` (with an empty manifest); expects exit 4 and one line naming the file. */
function refusedAtLoad (file: string, bytes: Uint8Array | string, expect: RegExp): void {
  const d = tempDir()
  writeFileSync(join(d, file), bytes)
  writeFileSync(join(d, 'm.json'), '{"capabilities": []}')
  const r = igord(['run', join(d, file), '--manifest', join(d, 'm.json'), '--dir', join(d, 'data'), '--ticks', '1'])
  assert.is(r.code, 4, r.stderr)
  const line = oneLine(r.stderr)
  assert.ok(line.includes(join(d, file)), `names the file: ${line}`)
  assert.match(line, expect)
  assert.not.match(line, /\[object Object\]/)
  assert.not.ok(existsSync(join(d, 'data', file.replace(/\.wasm$/, '') + '.ckpt')), 'nothing is born')
}

const WASM_HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]
/** `agent_tick: () -> i32` (or `() -> i64`) plus an element section `elem` (one funcref table, one memory). */
const withElem = (elem: number[], i64 = false): Uint8Array => Uint8Array.from([...WASM_HEADER,
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, i64 ? 0x7e : 0x7f, // type 0: () -> i32 or i64
  0x03, 0x02, 0x01, 0x00, // function 0: type 0
  0x04, 0x04, 0x01, 0x70, 0x00, 0x01, // table: funcref, min 1
  0x05, 0x03, 0x01, 0x00, 0x01, // memory: min 1
  0x07, 0x0e, 0x01, 0x0a, ...new TextEncoder().encode('agent_tick'), 0x00, 0x00,
  0x09, elem.length, ...elem,
  0x0a, 0x06, 0x01, 0x04, 0x00, i64 ? 0x42 : 0x41, 0x00, 0x0b, // body: i32.const 0 or i64.const 0
])

test('a WebAssembly component is run as one: an empty component is refused for lacking init and tick (exit 4)', () => {
  refusedAtLoad('comp.wasm', Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]), /comp\.wasm: a component agent must export the functions init and tick of world igor:agent\/agent \(it lacks init, tick; exports: none\)/)
})

test('an empty file, WebAssembly text and another file type are named as such (exit 4)', () => {
  refusedAtLoad('empty.wasm', new Uint8Array(0), /not a valid WebAssembly module \(the file is empty\)$/)
  refusedAtLoad('text.wasm', '(module (func (export "agent_tick") (result i32) (i32.const 0)))\n', /it is WebAssembly text format; assemble it into a binary first/)
  refusedAtLoad('elf.wasm', Uint8Array.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), /it starts with bytes 7f 45 4c 46; a WebAssembly binary starts with 00 61 73 6d/)
})

test('agent_tick with the wrong signature is refused at load (exit 4), naming expected and actual', () => {
  refusedAtLoad('sig.wasm', withElem([0x01, 0x00, 0x41, 0x00, 0x0b, 0x01, 0x00], true), /exports agent_tick with signature \(\) -> i64; the igor ABI needs agent_tick: \(\) -> i32$/)
})

test('passive element segments, null elements and extended-const offsets are refused by the gate (exit 4), naming the segment', () => {
  refusedAtLoad('passive.wasm', withElem([0x01, 0x01, 0x00, 0x01, 0x00]), /uses a passive element segment \(element segment 0;/)
  refusedAtLoad('null.wasm', withElem([0x01, 0x04, 0x41, 0x00, 0x0b, 0x01, 0xd0, 0x70, 0x0b]), /reference types \(a null element: item 0 of element segment 0 is ref\.null/)
  refusedAtLoad('extconst.wasm', withElem([0x01, 0x00, 0x41, 0x00, 0x41, 0x00, 0x6a, 0x0b, 0x01, 0x00]), /uses extended constant expressions \(i32\.add\) in the offset of element segment 0, which igord does not allow$/)
})

test('code nested deeper than the gate allows is refused (exit 4), naming the function', () => {
  const depth = 5000
  const body = [0x00, ...Array(depth).fill([0x02, 0x40]).flat(), ...Array(depth).fill(0x0b), 0x41, 0x00, 0x0b]
  const leb = (n: number): number[] => { const o: number[] = []; do { let b = n & 0x7f; n >>>= 7; if (n !== 0) b |= 0x80; o.push(b) } while (n !== 0); return o }
  const code = [0x01, ...leb(body.length), ...body]
  const wasm = Uint8Array.from([...WASM_HEADER, 0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, 0x03, 0x02, 0x01, 0x00,
    0x07, 0x0e, 0x01, 0x0a, ...new TextEncoder().encode('agent_tick'), 0x00, 0x00, 0x0a, ...leb(code.length), ...code])
  refusedAtLoad('deep.wasm', wasm, /nests expressions more than 1000 deep in function 0, which igord does not allow$/)
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
