/**
 * Test helpers for the blob store of a data directory (docs/FORMAT.md "Blob store"): blobs are
 * loose files `<dir>/blobs/<cid>` or frames in pack files `<dir>/blobs/<agent>+<hex>.pack`.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { FRAME_HEADER, PACK_MAGIC, isPackName } from '../checkpoint/pack.ts'
import { readBlobIn } from '../checkpoint/store.ts'
import { cidOfDigest } from '../checkpoint/hash.ts'

/** The bytes of blob `cid` in data directory `dir` (loose or packed). @throws when absent */
export function blobBytes (dir: string, cid: string): Buffer {
  const b = readBlobIn(path.join(dir, 'blobs'), cid)
  if (b === null) throw new Error(`blob ${cid} not in ${dir}/blobs`)
  return Buffer.from(b)
}

/**
 * Every frame of every pack in `<dir>/blobs`, as `[cid, pack file, frame offset, payload, kind]`
 * (kind 1: the blob, 2: zstd, 3: a page as 16 chunk digests — checkpoint/pack.ts).
 */
export function packedBlobs (dir: string): [string, string, number, Buffer, number][] {
  const out: [string, string, number, Buffer, number][] = []
  const bd = path.join(dir, 'blobs')
  for (const n of fs.readdirSync(bd).filter(isPackName).sort()) {
    const b = fs.readFileSync(path.join(bd, n))
    let p = PACK_MAGIC.length
    while (p + FRAME_HEADER <= b.length && b[p] >= 1 && b[p] <= 3) {
      const len = b.readUInt32BE(p + 1)
      if (p + FRAME_HEADER + len > b.length) break
      out.push([cidOfDigest(b.subarray(p + 5, p + 37)), path.join(bd, n), p, b.subarray(p + FRAME_HEADER, p + FRAME_HEADER + len), b[p]])
      p += FRAME_HEADER + len
    }
  }
  return out
}

/** CIDs of every blob in `<dir>/blobs` (loose files and pack frames), deduplicated. */
export function blobCids (dir: string): string[] {
  const bd = path.join(dir, 'blobs')
  const loose = fs.readdirSync(bd).filter((n) => n.startsWith('bafk'))
  return [...new Set([...loose, ...packedBlobs(dir).map((x) => x[0])])].sort()
}

/** Removes blob `cid` from `<dir>/blobs`: its loose file and its frames (each pack holding it is rewritten without them). */
export function dropBlob (dir: string, cid: string): void {
  const bd = path.join(dir, 'blobs')
  fs.rmSync(path.join(bd, cid), { force: true })
  const byPack = new Map<string, number[]>()
  for (const [c, file, off] of packedBlobs(dir)) if (c === cid) byPack.set(file, [...(byPack.get(file) ?? []), off])
  for (const [file, offs] of byPack) {
    const b = fs.readFileSync(file)
    const parts: Buffer[] = []; let p = 0
    for (const off of offs) { parts.push(b.subarray(p, off)); p = off + FRAME_HEADER + b.readUInt32BE(off + 1) }
    parts.push(b.subarray(p))
    fs.writeFileSync(file, Buffer.concat(parts))
  }
}

/**
 * Damages blob `cid` where it is stored in `<dir>/blobs`: flips byte `at` of its loose file and of
 * every raw pack frame; a compressed frame gets a payload byte flipped (it then no longer
 * decompresses to the blob); a chunked page gets the chunk holding `at` damaged (the first
 * non-zero chunk when that one is all zero).
 */
export function flipBlobByte (dir: string, cid: string, at: number): void {
  const loose = path.join(dir, 'blobs', cid)
  if (fs.existsSync(loose)) { const b = fs.readFileSync(loose); b[at] ^= 1; fs.writeFileSync(loose, b) }
  const flip = (file: string, pos: number) => {
    const fd = fs.openSync(file, 'r+')
    try { const x = Buffer.alloc(1); fs.readSync(fd, x, 0, 1, pos); x[0] ^= 1; fs.writeSync(fd, x, 0, 1, pos) } finally { fs.closeSync(fd) }
  }
  for (const [c, file, off, payload, kind] of packedBlobs(dir)) {
    if (c !== cid) continue
    if (kind === 1) flip(file, off + FRAME_HEADER + at)
    else if (kind === 2) flip(file, off + FRAME_HEADER + (payload.length >> 1))
    else {
      const ds = [...Array(16).keys()].map((k) => payload.subarray(k * 32, k * 32 + 32))
      let k = at >> 12
      if (ds[k].every((x) => x === 0)) k = ds.findIndex((d) => d.some((x) => x !== 0))
      if (k < 0) { flip(file, off + FRAME_HEADER); continue } // an all-zero page: its digests
      flipBlobByte(dir, cidOfDigest(ds[k]), k === at >> 12 ? at & 4095 : 0)
    }
  }
}

/**
 * Rewrites `<dir>/blobs` in the layout written before packs: every packed blob becomes a loose file
 * `<dir>/blobs/<cid>` (0600) and the packs are removed — for tests that mutate blob files one by one.
 */
export function unpackToFiles (dir: string): void {
  const frames = packedBlobs(dir)
  const chunks = new Set(frames.filter((f) => f[4] === 3).flatMap((f) => [...Array(16).keys()].map((k) => f[3].subarray(k * 32, k * 32 + 32)).filter((d) => d.some((x) => x !== 0)).map((d) => cidOfDigest(d))))
  for (const [cid] of frames) {
    const f = path.join(dir, 'blobs', cid)
    if (!chunks.has(cid) && !fs.existsSync(f)) fs.writeFileSync(f, blobBytes(dir, cid), { mode: 0o600 })
  }
  for (const n of fs.readdirSync(path.join(dir, 'blobs')).filter(isPackName)) fs.unlinkSync(path.join(dir, 'blobs', n))
}
