/**
 * verify through its fast read paths (checkpoint/pack.ts `PackRun`'s read-ahead window and the
 * reused zstd decompression context; checkpoint/store.ts `hashPackedIn`): a history written by the
 * real CheckpointWriter with compressible pages (chunks stored as zstd frames) verifies VALID, and a
 * byte flipped inside any one chunk frame of the pack — compressed or stored as is — makes it
 * INVALID naming a page blob as corrupt, as does a frame cut out of the pack (missing).
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { createHash, randomBytes } from 'node:crypto'
import { formatReport, verifyHistory } from '../checkpoint/history.ts'
import { generateIdentity } from '../checkpoint/identity.ts'
import { FRAME_BLOB, FRAME_HEADER, FRAME_ZSTD, isPackName, PackIndex, type PackSlot } from '../checkpoint/pack.ts'
import { PAGE_SIZE } from '../checkpoint/state.ts'
import { CheckpointWriter, type Snapshot } from '../checkpoint/writer.ts'

const tmp: string[] = []
test.after(() => { for (const d of tmp.splice(0)) fs.rmSync(d, { recursive: true, force: true }) })
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest()

/** A 40-checkpoint history of a 4-page memory: pages 0–1 compressible text, 2 random, 3 zero; one chunk changes a tick. */
function history (): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'igord-vreads-')); tmp.push(dir)
  const n = 4
  const mem = Buffer.alloc(n * PAGE_SIZE)
  for (let i = 0; i < 2 * PAGE_SIZE; i += 64) mem.write(`line ${i} of a text page `.padEnd(64, '.'), i)
  randomBytes(PAGE_SIZE).copy(mem, 2 * PAGE_SIZE)
  const id = generateIdentity()
  const w = new CheckpointWriter(dir, 'v')
  let prev: string | null = null; let fuel = 0n
  const wasm = Buffer.from('\0asm\x01\0\0\0'); const manifest = Buffer.from('{"capabilities":{}}')
  for (let tick = 0; tick < 40; tick++) {
    if (tick > 0) mem.write(`tick ${tick}`, (tick % 3) * PAGE_SIZE + (tick % 16) * 4096 + 100)
    const pages: [number, Uint8Array][] = []; const digests: [number, Uint8Array][] = []
    for (let i = 0; i < n; i++) {
      const p = Buffer.from(mem.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE))
      if (p.every((x) => x === 0)) continue
      pages.push([i, p]); digests.push([i, sha(p)])
    }
    const snap: Snapshot = { pageCount: n, pages, digests, changed: tick === 0 ? null : [0, 1, 2], globals: [{ index: 0, type: 'i32', bytes: Uint8Array.of(tick, 0, 0, 0) }] }
    const r = w.write({ identity: id, wasm, manifest, snapshot: snap, tick, epoch: 0, prev, fuel, budget: 1_000_000n, price: 1000n, host: 'test', status: 'running', log: Buffer.from(`tick ${tick}`) })
    prev = r.cid; fuel += 10n
  }
  return dir
}

/** Every chunk frame of the history's packs: zstd frames (only chunks are compressed here) and 4 KiB raw frames. */
function chunkFrames (dir: string): { file: string; slot: PackSlot }[] {
  const bd = path.join(dir, 'blobs')
  const out: { file: string; slot: PackSlot }[] = []
  for (const n of fs.readdirSync(bd).filter(isPackName)) {
    const file = path.join(bd, n)
    new PackIndex(file).scan((_, slot) => { if (slot.kind === FRAME_ZSTD || (slot.kind === FRAME_BLOB && slot.len === 4096)) out.push({ file, slot }) })
  }
  return out
}

test('a history with compressed and raw chunk frames verifies VALID, twice (cached indexes)', () => {
  const dir = history()
  for (let k = 0; k < 2; k++) {
    const r = verifyHistory([dir])
    assert.ok(r.valid, formatReport(r))
    assert.is(r.checkpoints, 40)
  }
  const kinds = new Set(chunkFrames(dir).map((f) => f.slot.kind))
  assert.ok(kinds.has(FRAME_ZSTD), 'some chunks are zstd frames')
  assert.ok(kinds.has(FRAME_BLOB), 'some chunks are stored as they are')
})

test('a byte flipped inside any one chunk frame: INVALID, a page blob corrupt', () => {
  const dir = history()
  assert.ok(verifyHistory([dir]).valid)
  const frames = chunkFrames(dir)
  const picks = [...frames.filter((f) => f.slot.kind === FRAME_ZSTD).slice(0, 6), ...frames.filter((f) => f.slot.kind === FRAME_BLOB).slice(0, 3)]
  assert.ok(picks.length >= 6)
  for (const { file, slot } of picks) {
    const orig = fs.readFileSync(file)
    for (const at of [slot.off + 8, slot.off + (slot.len >> 1), slot.off + slot.len - 2]) {
      const b = Buffer.from(orig); b[at] ^= 0x24
      fs.writeFileSync(file, b)
      const r = verifyHistory([dir])
      assert.not.ok(r.valid, `kind ${slot.kind} frame at ${slot.off}, byte ${at}: still VALID`)
      assert.ok(r.faults.some((f) => /page \d+ blob \S+ is corrupt/.test(f.fault)), formatReport(r))
    }
    fs.writeFileSync(file, orig)
  }
  assert.ok(verifyHistory([dir]).valid, 'restored')
})

test('a chunk frame cut out of the pack: INVALID', () => {
  const dir = history()
  const { file, slot } = chunkFrames(dir).find((f) => f.slot.kind === FRAME_ZSTD)!
  const b = fs.readFileSync(file)
  fs.writeFileSync(file, Buffer.concat([b.subarray(0, slot.off - FRAME_HEADER), b.subarray(slot.off + slot.len)]))
  const r = verifyHistory([dir])
  assert.not.ok(r.valid)
  assert.ok(r.faults.some((f) => /page \d+ blob \S+ is (missing|corrupt)/.test(f.fault)), formatReport(r))
})

test.run()
