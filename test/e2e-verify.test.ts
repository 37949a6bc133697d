/**
 * `igord verify` through the real CLI on histories written by `igord run`: VALID when clean;
 * INVALID naming the tick and the fault after flipping a byte of an archived checkpoint, deleting
 * one or swapping two; a FORK naming both files after one checkpoint was resumed twice; INVALID
 * after every page and global was rewritten and the genesis entry's unsigned base flag cleared;
 * every path form (data dir, `history/`, `history/<name>/`, folders of data dirs), relative too.
 */
import { spawnSync } from 'node:child_process'
import { copyFileSync, cpSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { cidOf } from '../checkpoint/hash.ts'
import { decodeEntry, encodeEntry } from '../checkpoint/writer.ts'
import { entriesIn, explode, segmentFiles } from './hist.ts'
import { agentWasm, cleanup, igord, IGORD, tempDir, type Run } from './helpers.ts'
import { blobBytes, flipBlobByte, packedBlobs } from './blobs.ts'

test.after(cleanup)

const TICKS = 12

/**
 * A data dir with a fresh ledger history of TICKS + 1 checkpoints (genesis included), in one
 * segment; with `files`, rewritten as one entry file per checkpoint (test/hist.ts `explode`: the
 * layout before segments, which verify reads too) so that a test can corrupt, delete or swap one.
 */
function history (files = false): { dir: string; entries: string[]; hist: string } {
  const dir = tempDir()
  const r = igord(['run', agentWasm('ledger'), '--dir', dir, '--ticks', String(TICKS), '--interval', '0ms', '-q', '--sim-seed', 'v'])
  assert.is(r.code, 0, r.stderr)
  const hist = join(dir, 'history', 'ledger')
  assert.is(segmentFiles(hist).length, 1)
  assert.is(entriesIn(hist).length, TICKS + 1)
  if (files) explode(hist)
  const entries = readdirSync(hist).sort()
  return { dir, entries, hist }
}

test('a clean history is VALID, through data dir or history dir, in text and JSON', () => {
  const { dir, hist } = history()
  for (const p of [dir, hist]) {
    const r = igord(['verify', p])
    assert.is(r.code, 0, r.stdout + r.stderr)
    assert.match(r.stdout, new RegExp(`^VALID: ${TICKS + 1} checkpoints, ticks 0.${TICKS}, did:key:z6Mk`))
  }
  const j = JSON.parse(igord(['verify', dir, '--json']).stdout)
  assert.is(j.valid, true)
  assert.is(j.checkpoints, TICKS + 1)
  assert.equal(j.faults, [])
})

test('flipping any single byte of an archived checkpoint makes it INVALID, naming the tick', () => {
  const { dir, entries, hist } = history(true)
  const victim = join(hist, entries[6])
  const original = readFileSync(victim)
  const tick = Number(entries[6].slice(0, 12))
  // A spread of positions through the file: tag, header, signature, page table, globals.
  const positions = new Set<number>([0, 3, 10, 40, 80, 120, 200])
  for (let i = 1; i < 12; i++) positions.add(Math.floor(original.length * i / 12))
  positions.add(original.length - 1)
  for (const pos of positions) {
    if (pos >= original.length) continue
    const bad = Buffer.from(original)
    bad[pos] ^= 0x01
    writeFileSync(victim, bad)
    const r = igord(['verify', dir])
    assert.is(r.code, 6, `byte ${pos} of ${original.length}: ${r.stdout}`)
    assert.match(r.stdout, /^INVALID/)
    assert.ok(r.stdout.includes(`tick ${tick}`) || r.stdout.includes(entries[6]), `byte ${pos}: the report names tick ${tick} or its file:\n${r.stdout}`)
  }
  writeFileSync(victim, original)
  assert.is(igord(['verify', dir]).code, 0)
})

test('flipping a byte of a page blob is INVALID', () => {
  const { dir } = history()
  const page = packedBlobs(dir).find((b) => (b[4] === 1 && b[3].length === 65536) || b[4] === 3)
  assert.ok(page !== undefined, 'a 64 KiB page blob exists')
  flipBlobByte(dir, page[0], 1234)
  const r = igord(['verify', dir])
  assert.is(r.code, 6)
  assert.match(r.stdout, /^INVALID/)
})

test('deleting an archived checkpoint is INVALID, naming the tick after the gap', () => {
  const { dir, entries, hist } = history(true)
  rmSync(join(hist, entries[5]))
  const r = igord(['verify', dir])
  assert.is(r.code, 6)
  assert.match(r.stdout, /^INVALID/)
  assert.match(r.stdout, /tick 6/)
})

test('swapping two archived checkpoints is INVALID', () => {
  const { dir, entries, hist } = history(true)
  const x = join(hist, entries[3]); const y = join(hist, entries[8]); const t = join(hist, 'swap.tmp')
  renameSync(x, t); renameSync(y, x); renameSync(t, y)
  const r = igord(['verify', dir])
  assert.is(r.code, 6)
  assert.match(r.stdout, /^INVALID/)
  assert.match(r.stdout, /tick (3|8)/)
})

test('one checkpoint resumed in two directories: merged histories report a FORK naming both files', () => {
  const { dir } = history()
  const b = tempDir(); const c = tempDir()
  copyFileSync(join(dir, 'ledger.ckpt'), join(b, 'ledger.ckpt'))
  copyFileSync(join(dir, 'ledger.ckpt'), join(c, 'ledger.ckpt'))
  assert.is(igord(['resume', join(b, 'ledger.ckpt'), '--ticks', '2', '--interval', '0ms', '-q', '--sim-seed', 'b']).code, 0)
  assert.is(igord(['resume', join(c, 'ledger.ckpt'), '--ticks', '2', '--interval', '0ms', '-q', '--sim-seed', 'c']).code, 0)
  // Each side alone (with the common past) is a valid life.
  assert.is(igord(['verify', dir, b]).code, 0)
  const merged = tempDir()
  for (const d of [dir, b, c]) for (const sub of ['history', 'blobs']) cpSync(join(d, sub), join(merged, sub), { recursive: true })
  const r = igord(['verify', merged])
  assert.is(r.code, 6)
  assert.match(r.stdout, /FORK after tick 12/)
  // each resume wrote its own segment (named after the resumed checkpoint and the writer's tag),
  // so copying the three directories into one lost neither; the fork names both tick-13 entries
  const forked = entriesIn(join(merged, 'history', 'ledger')).filter((t) => t.tick === 13)
  assert.is(forked.length, 2)
  assert.is(new Set(forked.map((t) => t.file)).size, 2)
  for (const t of forked) assert.ok(r.stdout.includes(t.where), `names ${t.where}:\n${r.stdout}`)
})

/** igord run in `cwd` (for relative paths), at most 60 s. */
function igordIn (cwd: string, args: string[]): Run {
  const r = spawnSync(process.execPath, [IGORD, ...args], { cwd, encoding: 'utf8', timeout: 60_000 })
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr }
}

test('verify takes history/, history/<name>/, . and a folder of data dirs, also as relative paths from inside', () => {
  const { dir } = history()
  const b = tempDir()
  copyFileSync(join(dir, 'ledger.ckpt'), join(b, 'ledger.ckpt'))
  assert.is(igord(['resume', join(b, 'ledger.ckpt'), '--ticks', '2', '--interval', '0ms', '-q', '--sim-seed', 'b']).code, 0)
  const valid = new RegExp(`^VALID: ${TICKS + 1} checkpoints, ticks 0.${TICKS}, did:key:z6Mk`)
  for (const p of ['history/', 'history', '.', 'history/ledger/', 'history/ledger', dir + '/history/']) {
    const r = igordIn(dir, ['verify', p])
    assert.is(r.code, 0, `verify ${p}: ${r.stdout}${r.stderr}`)
    assert.match(r.stdout, valid)
  }
  // the resumed copy's history merged with the original, and a folder holding both data dirs
  const hosts = tempDir()
  cpSync(dir, join(hosts, 'hostA'), { recursive: true }); cpSync(b, join(hosts, 'hostB'), { recursive: true })
  for (const args of [['verify', 'hostA/history/', 'hostB/history/'], ['verify', '.'], ['verify', 'hostA', 'hostB/history/ledger']]) {
    const r = igordIn(hosts, args)
    assert.is(r.code, 0, `${args.join(' ')}: ${r.stdout}${r.stderr}`)
    assert.match(r.stdout, new RegExp(`^VALID: ${TICKS + 3} checkpoints, ticks 0.${TICKS + 2}`))
  }
  // a folder with nothing in it is still "no history entries found", exit 6
  mkdirSync(join(hosts, 'empty'))
  const r = igordIn(hosts, ['verify', 'empty'])
  assert.is(r.code, 6)
  assert.match(r.stdout, /no history entries found/)
})

test('flipping a byte of a history segment is INVALID, naming the segment and the damaged bytes', () => {
  const { dir, hist } = history()
  const seg = segmentFiles(hist)[0]
  const sixth = entriesIn(hist).find((t) => t.tick === 6)!
  const bytes = readFileSync(seg)
  bytes[sixth.at! + 30] ^= 0x01
  writeFileSync(seg, bytes)
  const r = igord(['verify', dir])
  assert.is(r.code, 6, r.stdout)
  assert.match(r.stdout, /^INVALID/)
  assert.ok(r.stdout.includes(`bytes ${sixth.at}–`) && r.stdout.includes(`damaged (not a history frame) (${seg})`), r.stdout)
  // the entries after it are read: tick 7 is named as the one whose parent is missing
  assert.match(r.stdout, /tick 7: previous checkpoint \S+ is missing/)
})

test('every archived page and global rewritten and the genesis base flag cleared: plain verify is INVALID', () => {
  const { dir, entries, hist } = history(true)
  for (const name of entries) {
    const file = join(hist, name)
    const e = decodeEntry(readFileSync(file), file)
    const pages = e.pages.map(([i, c]): [number, string | null] => {
      if (c === null) return [i, c]
      const body = blobBytes(dir, c); body[100] ^= 0x5a
      const cid = cidOf(body); writeFileSync(join(dir, 'blobs', cid), body)
      return [i, cid]
    })
    const globals = e.globals.map((g) => ({ ...g, bytes: Uint8Array.from(g.bytes, (x) => x ^ 1) }))
    writeFileSync(file, encodeEntry({ ...e, base: e.parsed.prev === null ? false : e.base, pages, globals }))
  }
  const r = igord(['verify', dir])
  assert.is(r.code, 6, r.stdout)
  assert.match(r.stdout, new RegExp(`^INVALID: 1 fault\\ntick 0: genesis entry is not a base entry: its page table cannot be rebuilt, so the state roots of ticks 0–${TICKS} are unchecked`))
})

test.run()
