/**
 * End-to-end tests of `igord verify --replay` through the real CLI: whole lives of heartbeat and
 * ledger (200+ ticks, resumed in other directories, simulated and live inputs) replay VALID, also
 * from the middle (`--from`); an edited log blob is refused; a re-signed forgery and a memory
 * perturbation name the diverging tick and field (exit 6); and the same checkpoint resumed twice
 * with the same inputs writes byte-identical histories.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { createHash } from 'node:crypto'
import { readEntries } from '../checkpoint/entries.ts'
import { verifyChain } from '../checkpoint/history.ts'
import { forge } from './forge.ts'
import { agentWasm, cleanup, igord, tempDir } from './helpers.ts'
import { blobBytes, flipBlobByte } from './blobs.ts'

test.after.each(cleanup)

/** `igord run` or `resume` that must exit 0. */
function ok (args: string[]): void {
  const r = igord([...args, '--interval', '0ms', '-q'])
  assert.is(r.code, 0, `igord ${args.join(' ')} failed: ${r.stderr}`)
}

/**
 * Lives `name` for 80 ticks in A (simulated inputs), 80 in B (copied .ckpt, live inputs, another
 * price), 60 in C (simulated again): 220 ticks on three hosts. Returns the three data directories.
 */
function threeHostLife (name: string): string[] {
  const [a, b, c] = [tempDir(), tempDir(), tempDir()]
  ok(['run', agentWasm(name), '--dir', a, '--ticks', '80', '--sim-seed', 'e2e'])
  fs.copyFileSync(path.join(a, `${name}.ckpt`), path.join(b, `${name}.ckpt`))
  ok(['resume', path.join(b, `${name}.ckpt`), '--ticks', '80', '--price', '2500'])
  fs.copyFileSync(path.join(b, `${name}.ckpt`), path.join(c, `${name}.ckpt`))
  ok(['resume', path.join(c, `${name}.ckpt`), '--ticks', '60', '--sim-seed', 'e2e'])
  return [a, b, c]
}

for (const name of ['heartbeat', 'ledger']) {
  test(`verify --replay: ${name}'s whole 220-tick life on three hosts is VALID, also --from mid-life`, () => {
    const dirs = threeHostLife(name)
    const r = igord(['verify', '--replay', ...dirs])
    assert.is(r.code, 0, r.stdout + r.stderr)
    assert.match(r.stdout, /^VALID: replayed 221 ticks \(ticks 0–220\), \d+ checkpoints checked, did:key:z6Mk\w+\n$/)
    const mid = igord(['verify', '--replay', '--from', '150', ...dirs])
    assert.is(mid.code, 0, mid.stdout + mid.stderr)
    assert.match(mid.stdout, /^VALID: replayed \d+ ticks \(ticks \d+–220\) from the checkpoint at tick (\d+)/)
    const from = Number(/at tick (\d+)/.exec(mid.stdout)![1])
    assert.ok(from <= 150 && from > 100, mid.stdout)
    const json = JSON.parse(igord(['verify', '--replay', '--json', ...dirs]).stdout) as { valid: boolean; ticks: number; range: number[] }
    assert.equal([json.valid, json.ticks, json.range], [true, 221, [0, 220]])
  })
}

test('verify --replay refuses an edited log blob (its CID no longer matches) before replaying', () => {
  const dir = tempDir()
  ok(['run', agentWasm('ledger'), '--dir', dir, '--ticks', '20', '--sim-seed', 'e2e'])
  const link = verifyChain([dir]).links.find((l) => l.entry.parsed.tick === 12)!
  const log = link.entry.parsed.log!
  flipBlobByte(dir, log, blobBytes(dir, log).length - 3)
  const r = igord(['verify', '--replay', dir])
  assert.is(r.code, 6)
  assert.match(r.stdout, /^INVALID: 1 fault\ntick 12: event log blob bafk\w+ is corrupt/)
})

test('verify --replay names the diverging tick and field of a re-signed forgery (plain verify says VALID)', () => {
  const dir = tempDir()
  ok(['run', agentWasm('heartbeat'), '--dir', dir, '--ticks', '30', '--sim-seed', 'e2e'])
  forge(dir, 'heartbeat', 21, (recs) => {
    const ev = recs[0].events.find((e) => e[0] === 'clock_now')!
    ev[1] = (ev[1] as bigint) - 5_000_000_000n
  })
  assert.is(igord(['verify', dir]).code, 0)
  const r = igord(['verify', '--replay', dir])
  assert.is(r.code, 6)
  assert.match(r.stdout, /^INVALID: replay diverges at tick 21 \(event 1 \(log_emit\)\): event 1 \(log_emit\) differs: "tick 21, age 16 s" ≠ recorded "tick 21, age 21 s"\n/)
  assert.match(r.stdout, /in the segment of .*000000000021-bafk\w+\.cbor; 22 ticks re-executed/)
  // replay from after the forged tick does not see it
  assert.is(igord(['verify', '--replay', '--from', '21', dir]).code, 0)
})

test('--from needs --replay (usage error, exit 2)', () => {
  const r = igord(['verify', '--from', '3', tempDir()])
  assert.is(r.code, 2)
  assert.match(r.stderr, /--from needs --replay/)
})

/**
 * Every file under `dir` (relative path → bytes as hex). Packs are named by a random part per
 * writer (docs/FORMAT.md "Blob store"), so a pack is keyed by the SHA-256 of its bytes instead.
 */
function tree (dir: string): Map<string, string> {
  const out = new Map<string, string>()
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) walk(p)
      // packs and history segments have random names (one writer's each): keyed by their bytes
      else if (e.name.endsWith('.pack')) { const b = fs.readFileSync(p); out.set(`blobs/pack ${createHash('sha256').update(b).digest('hex')}`, b.toString('hex')) }
      else if (e.name.endsWith('.hist')) { const b = fs.readFileSync(p); out.set(`${path.relative(dir, d)}/segment ${createHash('sha256').update(b).digest('hex')}`, b.toString('hex')) }
      else out.set(path.relative(dir, p), fs.readFileSync(p).toString('hex'))
    }
  }
  walk(dir)
  return out
}

test('the same checkpoint resumed twice with the same inputs writes byte-identical histories', () => {
  const a = tempDir()
  ok(['run', agentWasm('ledger'), '--dir', a, '--ticks', '30', '--sim-seed', 'det', '--checkpoint-every', '0ms'])
  const [b, c] = [tempDir(), tempDir()]
  for (const d of [b, c]) fs.cpSync(a, d, { recursive: true }) // the same machine (host key) twice
  for (const d of [b, c]) ok(['resume', path.join(d, 'ledger.ckpt'), '--ticks', '70', '--sim-seed', 'det', '--checkpoint-every', '0ms'])
  const tb = tree(b); const tc = tree(c)
  const archived = readEntries(path.join(b, 'history', 'ledger')).entries.length
  assert.ok(archived > 100, `expected a real history, got ${archived} checkpoints`)
  assert.equal([...tb.keys()].sort(), [...tc.keys()].sort())
  for (const [f, bytes] of tb) assert.ok(tc.get(f) === bytes, `${f} differs between the two resumes`)
  const r = igord(['verify', '--replay', b])
  assert.is(r.code, 0, r.stdout)
  assert.match(r.stdout, /ticks 0–100/)
})

test.run()
