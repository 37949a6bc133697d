/**
 * Reading an agent's state back out of a history archive (docs/FORMAT.md "History", "Blob store"):
 * blobs by CID from one or more blob stores, checked against their CID, and the memory pages and
 * globals of one archived checkpoint from its rebuilt page table. Replay (runtime/replay.ts)
 * restores agents from these.
 */
import { CheckpointError } from './errors.ts'
import { cidOfDigest, sha256 } from './hash.ts'
import type { PageTable } from './history.ts'
import { readBlobIn } from './store.ts'
import { PAGE_SIZE, type GlobalValue } from './state.ts'
import type { HistoryEntry } from './writer.ts'

/**
 * The bytes of blob `cid`, from the first of `blobDirs` that holds it (a loose file or a pack frame), checked against the CID
 * (SHA-256, CIDv1 raw).
 * @param what names the blob in errors (e.g. `event log of tick 12`)
 * @throws CheckpointError `<what>: blob <cid> is missing (looked in …)` or `… is corrupt (…)`
 */
export function readArchivedBlob (blobDirs: readonly string[], cid: string, what: string): Uint8Array {
  for (const d of blobDirs) {
    const bytes = readBlobIn(d, cid)
    if (bytes === null) continue
    if (cidOfDigest(sha256(bytes)) !== cid) throw new CheckpointError(`${what}: blob ${cid} in ${d} is corrupt (its bytes do not match its CID)`)
    return bytes
  }
  throw new CheckpointError(`${what}: blob ${cid} is missing (looked in ${blobDirs.join(', ') || 'no blob directory'})`)
}

/** The memory and globals of one archived checkpoint, as `Agent.restore` takes them. */
export interface ArchivedState {
  /** Memory size in 64 KiB pages. */
  pageCount: number
  /** `[index, 65536 bytes]` for every non-zero page, ascending. */
  pages: [number, Uint8Array][]
  /** `[index, SHA-256]` of the same pages. */
  digests: [number, Uint8Array][]
  /** Exported mutable globals, ascending by index. */
  globals: GlobalValue[]
}

/**
 * Reads every page of a checkpoint from the blob stores: `table` is its page table (rebuilt along
 * the chain with `nextPageTable`), `entry` its history entry (page count, globals).
 * @throws CheckpointError when a page blob is missing, corrupt or not 65536 bytes
 */
export function archivedState (blobDirs: readonly string[], table: PageTable, entry: HistoryEntry): ArchivedState {
  const pages: [number, Uint8Array][] = []
  const digests: [number, Uint8Array][] = []
  const what = `checkpoint at tick ${entry.parsed.tick}`
  for (let i = 0; i < table.length && i < entry.pageCount; i++) {
    const d = table[i]
    if (d === undefined) continue
    const bytes = readArchivedBlob(blobDirs, cidOfDigest(d), `${what}, page ${i}`)
    if (bytes.length !== PAGE_SIZE) throw new CheckpointError(`${what}, page ${i}: blob is ${bytes.length} bytes, expected ${PAGE_SIZE}`)
    pages.push([i, bytes])
    digests.push([i, d])
  }
  return { pageCount: entry.pageCount, pages, digests, globals: entry.globals }
}
