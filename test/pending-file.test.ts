/**
 * p2p/pending-file.ts `PendingFile`: a migration target's pending live checkpoint written while
 * the pages arrive. Whatever order the pages come in, with pages that share a CID, pages the
 * target already held (never received), an announced log length that turns out wrong, or an
 * I/O state, the finished file is byte for byte `encodeLive` of the checkpoint; folder 0700, file
 * 0600, both deleted by `remove`.
 */
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { cidOf } from '../checkpoint/hash.ts'
import { encodeLive } from '../checkpoint/live.ts'
import { PendingFile } from '../p2p/pending-file.ts'
import { cleanup, tempDir } from './helpers.ts'

test.after(() => cleanup())

const PAGE = 65536

/** A checkpoint of `n` pages (pages 3 and 7 equal, when present), with a log and optionally an I/O state. */
function checkpoint (n: number, io: boolean, log: Uint8Array | null = randomBytes(5000)) {
  const bodies = Array.from({ length: n }, () => new Uint8Array(randomBytes(PAGE)))
  if (n > 7) bodies[7] = bodies[3]
  const pages: [number, Uint8Array][] = bodies.map((b, k) => [k * 2 + 1, b])
  return {
    header: randomBytes(300), sig: randomBytes(64), parsed: undefined as never, wasm: randomBytes(3000), manifest: randomBytes(200),
    pageCount: 2 * n + 4, pages, globals: [{ index: 0, type: 'i32' as const, bytes: Uint8Array.of(1, 2, 3, 4) }],
    log, seed: randomBytes(32), io: io ? randomBytes(2000) : null,
  }
}

function shape (c: ReturnType<typeof checkpoint>, logBytes: number | null) {
  return { header: c.header, sig: c.sig, manifest: c.manifest, pageCount: c.pageCount, pages: c.pages.map(([i, b]): [number, string] => [i, cidOf(b)]), globals: c.globals, wasm: c.wasm, logBytes, ioBytes: c.io?.length ?? null }
}

test('pages put in any order, in frames, some shared, some never put: the file is encodeLive of the checkpoint', async () => {
  for (const io of [false, true]) {
    const root = join(tempDir('igord-pending-'), 'spool')
    const c = checkpoint(20, io)
    const f = new PendingFile(root, shape(c, c.log!.length))
    // frames of three pages, in reverse order; pages 0 and 11 are the target's own (never received); page 7 shares 3's CID
    const got = c.pages.map(([, b]): [string, Uint8Array] => [cidOf(b), b]).filter((_, k) => k !== 0 && k !== 11 && k !== 7).reverse()
    for (let k = 0; k < got.length; k += 3) f.put(got.slice(k, k + 3))
    f.put([[cidOf(c.wasm), c.wasm]]) // not a page: ignored
    const file = await f.finish(c)
    assert.ok(Buffer.compare(readFileSync(file), Buffer.concat(encodeLive(c))) === 0, `io ${io}`)
    assert.not.ok(f.rewrote, 'laid out as planned: only the head, the tail and the pages not put were written at the end')
    assert.is(statSync(file).mode & 0o777, 0o600)
    assert.is(statSync(f.dir).mode & 0o777, 0o700)
    f.remove()
    assert.not.ok(existsSync(f.dir))
  }
})

test('an announced log length that is not the real one: the file is rewritten whole, still exactly encodeLive', async () => {
  const root = join(tempDir('igord-pending-'), 'spool')
  const c = checkpoint(6, true)
  const f = new PendingFile(root, shape(c, c.log!.length + 10))
  f.put(c.pages.map(([, b]) => [cidOf(b), b]))
  const file = await f.finish(c)
  assert.ok(Buffer.compare(readFileSync(file), Buffer.concat(encodeLive(c))) === 0)
  assert.ok(f.rewrote)
  f.remove()
})

test('no log, no pages put before finish, and a checkpoint of no pages', async () => {
  const root = join(tempDir('igord-pending-'), 'spool')
  for (const n of [0, 3]) {
    const c = { ...checkpoint(n, false), log: null }
    const f = new PendingFile(root, shape(c, null))
    const file = await f.finish(c)
    assert.ok(Buffer.compare(readFileSync(file), Buffer.concat(encodeLive(c))) === 0, `${n} pages`)
    f.remove()
  }
})

test('remove deletes the folder and file; puts after it are ignored and finish refuses', async () => {
  const root = join(tempDir('igord-pending-'), 'spool')
  const c = checkpoint(4, false)
  const f = new PendingFile(root, shape(c, c.log!.length))
  f.put(c.pages.slice(0, 2).map(([, b]) => [cidOf(b), b]))
  f.remove()
  assert.not.ok(existsSync(f.dir))
  f.put(c.pages.slice(2).map(([, b]) => [cidOf(b), b]))
  try { await f.finish(c); assert.unreachable('finish after remove') } catch (e) { assert.match((e as Error).message, /^pending file: .* is closed/) }
})

test.run()
