/**
 * Unit tests of runtime/memory.ts: the committed page image (commit, rollback, growth, load,
 * takeCheckpoint) and isZeroPage.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createHash } from 'node:crypto'
import { PAGE_SIZE } from '../checkpoint/state.ts'
import { borrows, isZeroPage, pageDigest, PageImage } from '../runtime/memory.ts'

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')
const page = (mem: Uint8Array, i: number) => mem.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE)
function memory (pages: number): Uint8Array { return new Uint8Array(pages * PAGE_SIZE) }

test('isZeroPage is true only for an all-zero page', () => {
  const p = new Uint8Array(PAGE_SIZE)
  assert.ok(isZeroPage(p))
  p[PAGE_SIZE - 1] = 1
  assert.not.ok(isZeroPage(p))
  p[PAGE_SIZE - 1] = 0; p[0] = 0x80
  assert.not.ok(isZeroPage(p))
})

test('commit detects exactly the changed pages and copies them', () => {
  const img = new PageImage()
  const mem = memory(4)
  assert.is(img.commit(mem), 0, 'all-zero memory has no changed page')
  assert.is(img.pageCount, 4)
  assert.is(img.dirty.size, 0)
  mem[1 * PAGE_SIZE + 10] = 1
  mem[3 * PAGE_SIZE + PAGE_SIZE - 1] = 2
  assert.is(img.commit(mem), 2)
  assert.equal([...img.dirty].sort(), [1, 3])
  assert.equal(img.committed(1), Buffer.from(page(mem, 1)))
  assert.equal(img.committed(3), Buffer.from(page(mem, 3)))
  assert.is(img.committed(0), undefined)
  assert.is(img.committed(2), undefined)
  // the image holds copies, not views of the live memory
  mem[1 * PAGE_SIZE + 10] = 9
  assert.is(img.committed(1)![10], 1)
  // unchanged memory: nothing to commit
  mem[1 * PAGE_SIZE + 10] = 1
  assert.is(img.commit(mem), 0)
  // one byte in one page
  img.takeCheckpoint()
  mem[2 * PAGE_SIZE + 7] = 5
  assert.is(img.commit(mem), 1)
  assert.equal([...img.dirty], [2])
})

test('rollback writes the committed bytes back, including pages committed as zero', () => {
  const img = new PageImage()
  const mem = memory(3)
  mem[5] = 1; mem[PAGE_SIZE + 5] = 2
  img.commit(mem)
  const committed = mem.slice()
  mem[5] = 100                       // changed non-zero page
  mem.fill(0, PAGE_SIZE, 2 * PAGE_SIZE) // non-zero page zeroed
  mem[2 * PAGE_SIZE + 123] = 7       // zero page dirtied
  img.rollback(mem)
  assert.equal(mem, committed)
  assert.equal([...img.dirty].sort(), [0, 1], 'rollback does not touch the dirty set')
})

test('growth adds pages; a new non-zero page is changed, zero ones are not', () => {
  const img = new PageImage()
  const small = memory(1)
  small[0] = 1
  img.commit(small)
  const big = memory(4)
  big.set(small)
  big[3 * PAGE_SIZE] = 4
  assert.is(img.commit(big), 1)
  assert.is(img.pageCount, 4)
  const cp = img.takeCheckpoint()
  assert.equal(cp.pages.map(([i]) => i), [0, 3])
  // restoreInto a fresh, larger memory reproduces the image and zeroes the rest
  const fresh = memory(4).fill(0xee)
  img.restoreInto(fresh)
  assert.equal(fresh, big)
})

test('a page that returns to zero is dropped from pages and digests at takeCheckpoint', () => {
  const img = new PageImage()
  const mem = memory(3)
  mem[PAGE_SIZE] = 1; mem[2 * PAGE_SIZE] = 2
  img.commit(mem)
  let cp = img.takeCheckpoint()
  assert.equal(cp.digests.map(([i]) => i), [1, 2])
  mem[PAGE_SIZE] = 0
  assert.is(img.commit(mem), 1)
  cp = img.takeCheckpoint()
  assert.equal(cp.changed, [1])
  assert.equal(cp.pages.map(([i]) => i), [2])
  assert.equal(cp.digests.map(([i]) => i), [2])
  assert.not.ok(img.digests.has(1))
})

test('takeCheckpoint returns sorted non-zero pages with SHA-256 digests and clears the dirty set', () => {
  const img = new PageImage()
  const mem = memory(6)
  for (const i of [5, 0, 3]) mem[i * PAGE_SIZE + i] = 0x40 + i
  img.commit(mem)
  const cp = img.takeCheckpoint()
  assert.equal(cp.changed, [0, 3, 5])
  assert.equal(cp.pages.map(([i]) => i), [0, 3, 5])
  assert.equal(cp.digests.map(([i]) => i), [0, 3, 5])
  for (let k = 0; k < cp.pages.length; k++) {
    const [i, p] = cp.pages[k]
    assert.equal(p, Buffer.from(page(mem, i)))
    assert.is(hex(cp.digests[k][1]), sha(page(mem, i)))
  }
  assert.is(img.dirty.size, 0)
  // nothing changed: same pages and digests, no changed indices
  const again = img.takeCheckpoint()
  assert.equal(again.changed, [])
  assert.equal(again.digests.map(([i, d]) => [i, hex(d)]), cp.digests.map(([i, d]) => [i, hex(d)]))
  // a changed page gets a new digest
  mem[3 * PAGE_SIZE] = 1
  img.commit(mem)
  const third = img.takeCheckpoint()
  assert.equal(third.changed, [3])
  assert.is(hex(third.digests[1][1]), sha(page(mem, 3)))
  assert.is.not(hex(third.digests[1][1]), hex(cp.digests[1][1]))
})

test('load without digests hashes the pages; nothing is dirty afterwards', () => {
  const p0 = new Uint8Array(PAGE_SIZE).fill(1)
  const p2 = new Uint8Array(PAGE_SIZE).fill(2)
  const img = new PageImage()
  img.commit(memory(1).fill(9)) // previous content is discarded
  img.load(3, [[0, p0], [2, p2]])
  assert.is(img.pageCount, 3)
  assert.is(img.dirty.size, 0)
  assert.is(img.committed(1), undefined)
  const cp = img.takeCheckpoint()
  assert.equal(cp.changed, [])
  assert.equal(cp.digests.map(([i, d]) => [i, hex(d)]), [[0, sha(p0)], [2, sha(p2)]])
  // the image holds copies of the given pages
  p0[0] = 7
  assert.is(img.committed(0)![0], 1)
  const mem = memory(3)
  img.restoreInto(mem)
  assert.is(mem[0], 1); assert.is(mem[PAGE_SIZE], 0); assert.is(mem[2 * PAGE_SIZE], 2)
  // and never writes into the caller's pages: commits go to the image's own copy
  mem[5] = 42
  assert.is(img.commit(mem), 1)
  assert.is(p0[5], 1, 'the caller\'s page is unchanged')
  assert.is(img.committed(0)![5], 42)
  mem[6] = 43
  assert.is(img.commit(mem), 1)
  assert.is(img.committed(0)![6], 43); assert.is(p0[6], 1)
  // a rollback restores from the image, not from the caller's bytes
  mem[2 * PAGE_SIZE] = 99
  img.rollback(mem)
  assert.is(mem[2 * PAGE_SIZE], 2); assert.is(p2[0], 2)
})

test('load into a fresh memory: one pass into the image and the memory, stray pages cleared, digests returned, the map trusted', () => {
  const p0 = new Uint8Array(PAGE_SIZE).fill(1)
  const p2 = new Uint8Array(PAGE_SIZE).fill(2)
  const mem = memory(4)
  mem[PAGE_SIZE + 3] = 5 // a data segment's write on a page the checkpoint has as zero
  const map = new Uint8Array(4 * 16)
  map[17] = 1; map[40] = 1 // marks left by the start function
  const img = new PageImage()
  img.track(map)
  const digests = img.load(4, [[0, p0], [2, p2]], undefined, mem)
  assert.equal(digests.map(([i, d]) => [i, hex(d)]), [[0, sha(p0)], [2, sha(p2)]])
  assert.is(hex(page(mem, 0)), hex(p0)); assert.ok(isZeroPage(page(mem, 1)), 'stray page cleared'); assert.is(hex(page(mem, 2)), hex(p2)); assert.ok(isZeroPage(page(mem, 3)))
  assert.is(img.committed(0)![0], 1); assert.is(img.committed(1), undefined)
  assert.is(map.indexOf(1), -1, 'the map is cleared')
  assert.ok(img.tracking, 'and trusted: the memory equals the image')
  assert.is(img.dirty.size, 0)
  mem[2 * PAGE_SIZE + 9] = 7; map[32] = 1 // a marked store
  assert.is(img.commit(mem), 1)
  assert.equal(img.takeCheckpoint().changed, [2])
  // known digests are used as given; a memory of another size or pages out of order are refused
  const given = new Uint8Array(32).fill(0xab)
  assert.equal(new PageImage().load(1, [[0, p0]], [[0, given]], memory(1)).map(([i, d]) => [i, hex(d)]), [[0, hex(given)]])
  assert.throws(() => new PageImage().load(2, [[0, p0]], undefined, memory(3)), /memory of 3 pages, expected 2/)
  assert.throws(() => new PageImage().load(3, [[2, p2], [0, p0]], undefined, memory(3)), /page 0 out of order/)
  // restoreInto a memory of exactly the image's size trusts the map too
  const map2 = new Uint8Array(4 * 16).fill(1)
  img.track(map2)
  assert.not.ok(img.tracking)
  const mem2 = memory(4)
  img.restoreInto(mem2)
  assert.is(hex(page(mem2, 2)), hex(page(mem, 2)))
  assert.ok(img.tracking); assert.is(map2.indexOf(1), -1)
})

test('takeCheckpoint lists stay exact across checkpoints that reuse them: changed, zeroed, revived, still-zero pages, growth', () => {
  const mem = memory(6)
  for (const i of [0, 2, 3, 5]) mem[i * PAGE_SIZE + 1] = i + 1
  const img = new PageImage()
  const expect = (m: Uint8Array, label: string) => {
    const cp = img.takeCheckpoint()
    const want: [number, string][] = []
    for (let i = 0; i < m.length / PAGE_SIZE; i++) if (!isZeroPage(page(m, i))) want.push([i, sha(page(m, i))])
    assert.equal(cp.digests.map(([i, d]) => [i, hex(d)]), want, label)
    assert.equal(cp.pages.map(([i, p]) => [i, sha(p)]), want, label)
    cp.pages.pop(); cp.digests.reverse() // a caller's changes to the lists do not reach the next ones
  }
  img.commit(mem); expect(mem, 'first')
  mem[2 * PAGE_SIZE + 9] = 7; img.commit(mem); expect(mem, 'one changed')
  mem[4 * PAGE_SIZE + 9] = 1; img.commit(mem); mem[4 * PAGE_SIZE + 9] = 0; img.commit(mem) // dirty, zero before and after
  assert.ok(img.dirty.has(4))
  expect(mem, 'a page dirtied and zero again')
  const before = mem[3 * PAGE_SIZE + 1]; mem[3 * PAGE_SIZE + 1] = 0; img.commit(mem); expect(mem, 'a page became zero')
  mem[3 * PAGE_SIZE + 1] = before; img.commit(mem); expect(mem, 'and came back')
  mem[0] = 9; mem[5 * PAGE_SIZE] = 9; img.commit(mem); expect(mem, 'two changed')
  const grown = memory(8); grown.set(mem); grown[7 * PAGE_SIZE] = 1; img.commit(grown); expect(grown, 'grown')
  grown[7 * PAGE_SIZE + 2] = 2; img.commit(grown); expect(grown, 'after growth')
})

test('a restore told nothing writes its pages borrows them (never writing them) when they pin little else, and copies them otherwise', () => {
  // the rule: buffers of at most twice the pages' bytes are borrowed, a small page in a big buffer is not
  const shared = new Uint8Array(new SharedArrayBuffer(3 * PAGE_SIZE))
  assert.ok(borrows([[0, shared.subarray(0, PAGE_SIZE)], [1, shared.subarray(PAGE_SIZE, 2 * PAGE_SIZE)]]))
  assert.not.ok(borrows([[0, new Uint8Array(5 * PAGE_SIZE).subarray(0, PAGE_SIZE)]]))
  assert.not.ok(borrows([]))
  for (const tracked of [true, false]) {
    const p0 = new Uint8Array(PAGE_SIZE).fill(1)
    const p1 = new Uint8Array(PAGE_SIZE).fill(2)
    const before = [hex(p0), hex(p1)]
    const mem = memory(3)
    const map = new Uint8Array(3 * 16)
    const img = new PageImage()
    if (tracked) img.track(map)
    img.load(3, [[0, p0], [1, p1]], undefined, mem, true)
    assert.is(img.committed(1)![5], 2, 'a borrowed page reads as committed')
    // a committed change of a borrowed page goes to the image, not to the caller's bytes
    mem[PAGE_SIZE + 7] = 9; map[16] = 1
    assert.is(img.commit(mem), 1)
    assert.is(img.committed(1)![7], 9)
    const ck = img.takeCheckpoint()
    assert.equal(ck.changed, [1])
    assert.equal(ck.pages.map(([i, b]) => [i, hex(b)]), [[0, hex(page(mem, 0))], [1, hex(page(mem, 1))]])
    assert.equal(ck.digests.map(([i, d]) => [i, hex(d)]), [[0, sha(page(mem, 0))], [1, sha(page(mem, 1))]])
    // a failed tick's writes to both pages are rolled back from the image
    mem[3] = 4; mem[PAGE_SIZE + 7] = 8; map[0] = 1; map[16] = 1
    img.rollback(mem)
    assert.is(mem[3], 1); assert.is(mem[PAGE_SIZE + 7], 9)
    // a fresh memory gets the image back: page 0 from the borrowed bytes, page 1 from the slab
    const mem2 = memory(3)
    img.restoreInto(mem2)
    assert.is(hex(mem2), hex(mem))
    assert.equal([hex(p0), hex(p1)], before, `the caller's pages are unchanged (${tracked ? 'with' : 'without'} a dirty map)`)
  }
  // not told: copied, so a later write of the caller's bytes does not reach the image
  const p0 = new Uint8Array(PAGE_SIZE).fill(1)
  const img = new PageImage()
  img.load(1, [[0, p0]], undefined, memory(1))
  p0[0] = 5
  assert.is(img.committed(0)![0], 1)
})

test('load with given digests uses them instead of re-hashing', () => {
  const p0 = new Uint8Array(PAGE_SIZE).fill(1)
  const p1 = new Uint8Array(PAGE_SIZE).fill(3)
  const given = new Uint8Array(32).fill(0xab) // deliberately not the real digest: proves it is used as is
  const img = new PageImage()
  img.load(2, [[0, p0], [1, p1]], [[0, given]])
  const cp = img.takeCheckpoint()
  assert.equal(cp.digests.map(([i, d]) => [i, hex(d)]), [[0, hex(given)], [1, sha(p1)]])
  assert.is(hex(pageDigest(p1)), sha(p1))
})

/** The 16 chunk digests of a page as the archive stores them (32 zero bytes for a zero chunk). */
function chunkList (p: Uint8Array): string {
  const out = Buffer.alloc(512)
  for (let k = 0; k < 16; k++) {
    const c = p.subarray(k * 4096, (k + 1) * 4096)
    if (c.some((x) => x !== 0)) out.set(createHash('sha256').update(c).digest(), k * 32)
  }
  return out.toString('hex')
}

test('changes are found across runs of pages: each changed page, none other, in a memory of 40 pages', () => {
  const img = new PageImage()
  const mem = memory(40)
  img.commit(mem)
  for (const i of [0, 15, 16, 17, 31, 39]) mem[i * PAGE_SIZE + (i * 977) % PAGE_SIZE] = i + 1
  assert.is(img.commit(mem), 6)
  assert.equal([...img.dirty].sort((a, b) => a - b), [0, 15, 16, 17, 31, 39])
  for (let i = 0; i < 40; i++) assert.equal(img.committed(i) ?? null, [0, 15, 16, 17, 31, 39].includes(i) ? Buffer.from(page(mem, i)) : null)
  // rollback across runs restores exactly the committed bytes
  const committed = mem.slice()
  mem[20 * PAGE_SIZE + 5] = 9; mem[39 * PAGE_SIZE + 1] = 8
  img.rollback(mem)
  assert.equal(mem, committed)
})

test('takeCheckpoint gives each changed page its chunk digest list, re-hashing only changed chunks, across commits and growth', () => {
  const img = new PageImage()
  let mem = memory(2)
  mem[100] = 1; mem[5 * 4096 + 3] = 2
  img.commit(mem)
  let cp = img.takeCheckpoint()
  assert.equal([...cp.chunkDigests.keys()], [0])
  assert.is(Buffer.from(cp.chunkDigests.get(0)!).toString('hex'), chunkList(page(mem, 0)))
  // two commits before the next checkpoint, one chunk changed back: the list is still exact
  mem[100] = 7; img.commit(mem)
  mem[100] = 1; mem[15 * 4096] = 3; img.commit(mem)
  cp = img.takeCheckpoint()
  assert.equal(cp.changed, [0])
  assert.is(Buffer.from(cp.chunkDigests.get(0)!).toString('hex'), chunkList(page(mem, 0)))
  // growth: the slab is replaced, old pages kept, a new page gets its list
  const big = memory(5)
  big.set(mem)
  big[4 * PAGE_SIZE + 4096 * 2] = 4
  big[1 * PAGE_SIZE] = 5
  mem = big
  assert.is(img.commit(mem), 2)
  cp = img.takeCheckpoint()
  assert.equal(cp.changed, [1, 4])
  for (const i of [1, 4]) assert.is(Buffer.from(cp.chunkDigests.get(i)!).toString('hex'), chunkList(page(mem, i)))
  assert.equal(cp.pages.map(([i, p]) => [i, sha(p)]), [0, 1, 4].map((i) => [i, sha(page(mem, i))]))
  // a page that became zero has no list; the lists given out before are not modified later
  const kept = Buffer.from(cp.chunkDigests.get(4)!)
  mem.fill(0, 4 * PAGE_SIZE, 5 * PAGE_SIZE)
  mem[1 * PAGE_SIZE + 4096] = 6
  img.commit(mem)
  const next = img.takeCheckpoint()
  assert.equal(next.changed, [1, 4])
  assert.equal([...next.chunkDigests.keys()], [1])
  assert.is(Buffer.from(next.chunkDigests.get(1)!).toString('hex'), chunkList(page(mem, 1)))
  assert.equal(Buffer.from(cp.chunkDigests.get(4)!), kept)
})

test('after load and after dropPages/reload, the first chunk lists are computed in full and exact', () => {
  const p0 = new Uint8Array(PAGE_SIZE); p0[3] = 1; p0[9000] = 2
  const img = new PageImage()
  img.load(1, [[0, p0]])
  const mem = memory(1); img.restoreInto(mem)
  mem[9000] = 3
  img.commit(mem)
  let cp = img.takeCheckpoint()
  assert.is(Buffer.from(cp.chunkDigests.get(0)!).toString('hex'), chunkList(page(mem, 0)))
  img.dropPages()
  assert.is(img.committed(0), undefined)
  img.reload(1, [[0, Buffer.from(page(mem, 0))]])
  assert.equal(img.committed(0), Buffer.from(page(mem, 0)))
  mem[3] = 0
  img.commit(mem)
  cp = img.takeCheckpoint()
  assert.is(Buffer.from(cp.chunkDigests.get(0)!).toString('hex'), chunkList(page(mem, 0)))
})

test('of many changed pages, those all of whose chunks changed come without chunk lists, the others with lists and masks', () => {
  const img = new PageImage()
  const mem = memory(20)
  for (let i = 0; i < 10; i++) for (let k = 0; k < 16; k++) mem[i * PAGE_SIZE + k * 4096] = 1 // every chunk
  for (let i = 10; i < 20; i++) mem[i * PAGE_SIZE + 4096] = 1 // one chunk
  img.commit(mem)
  let cp = img.takeCheckpoint()
  assert.is(cp.changed.length, 20)
  assert.equal([...cp.chunkDigests.keys()].sort((a, b) => a - b), [10, 11, 12, 13, 14, 15, 16, 17, 18, 19])
  for (const [i, list] of cp.chunkDigests) assert.is(Buffer.from(list).toString('hex'), chunkList(page(mem, i)))
  assert.is(cp.chunkMasks.size, 0, 'no masks for pages that were zero')
  // 20 pages again: one chunk of each; a page listed before hashes only that chunk, the others all 16
  for (let i = 0; i < 20; i++) mem[i * PAGE_SIZE + 2 * 4096 + 7] = 3
  img.commit(mem)
  cp = img.takeCheckpoint()
  assert.is(cp.chunkDigests.size, 20)
  for (const [i, list] of cp.chunkDigests) assert.is(Buffer.from(list).toString('hex'), chunkList(page(mem, i)), `page ${i}`)
  assert.is(cp.chunkMasks.size, 20)
  for (const [, m] of cp.chunkMasks) assert.ok((m & 4) !== 0 && m !== 0xffff, `mask ${m.toString(16)}`)
  // a page all of whose chunks changed again: no list, no mask
  for (let k = 0; k < 16; k++) mem[5 * PAGE_SIZE + k * 4096] = 9
  for (let i = 0; i < 20; i++) if (i !== 5) mem[i * PAGE_SIZE + 9] = 4
  img.commit(mem)
  cp = img.takeCheckpoint()
  assert.not.ok(cp.chunkDigests.has(5)); assert.not.ok(cp.chunkMasks.has(5))
  mem[5 * PAGE_SIZE + 4096] = 2
  img.commit(mem)
  // the page's list is unknown after a checkpoint without it: computed in full
  assert.is(Buffer.from(img.takeCheckpoint().chunkDigests.get(5)!).toString('hex'), chunkList(page(mem, 5)))
})

test.run()
