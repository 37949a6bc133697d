/**
 * The migration protocol `/igor/migrate/1.0.0` (DESIGN §9, docs/PROTOCOL.md), both sides, and the
 * status query `/igor/migrate/status/1.0.0` that resolves an interrupted migration.
 *
 * Source → target, one stream, CBOR frames (p2p/wire.ts):
 *   offer → (accept {want} | refuse {reason]) → blobs* → end {key, log, io, baseIo, baseShared} → (pending | refuse) →
 *   handoff {header, sig} → started
 * When the offer carries the state of the offered checkpoint's `prev` (`base`), the target replays
 * the ticks of the offered checkpoint's log from it before answering `pending` (DESIGN §8/§9) and
 * refuses the agent when the replay diverges.
 * The source commits by writing the signed handoff checkpoint once it has read `pending`; the
 * target starts the agent only with that signed handoff in hand (from the `handoff` frame, or later
 * from a status query answered by the source). Hosting decisions (policy, storage, starting the
 * agent) are the node's: this module calls them through {@link SourceHooks} / {@link TargetHooks}.
 */
import { AGENT_NAME_RULE, isAgentName } from '../checkpoint/layout.ts'
import { randomBytes } from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'
import type { Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { describe } from '../checkpoint/cbor.ts'
import { CheckpointError } from '../checkpoint/errors.ts'
import { cidOf, cidOfDigest, digestOfCid, sha256 } from '../checkpoint/hash.ts'
import { decodeHeader, headerCid, verifyHeader } from '../checkpoint/header.ts'
import type { CheckpointHeader } from '../checkpoint/header.ts'
import { identityFromSeed } from '../checkpoint/identity.ts'
import type { LiveCheckpoint } from '../checkpoint/live.ts'
import { decodeGlobals } from '../checkpoint/live.ts'
import { MAX_PAGES, PAGE_SIZE, stateRoot } from '../checkpoint/state.ts'
import type { IoState } from '../checkpoint/io.ts'
import { EventLog } from '../hostcalls/eventlog.ts'
import { parseManifest } from '../hostcalls/manifest.ts'
import type { Manifest } from '../hostcalls/manifest.ts'
import { replaySegment } from '../runtime/replay.ts'
import { planEnd, restoreBaseIo, sharedOf } from './endframe.ts'
import { hashShared, touchShared } from './hasher.ts'
import { PendingFile, writevAt } from './pending-file.ts'
import { NetworkError, RefusedError } from './errors.ts'
import type { Peer } from './peer.ts'
import { blobsFrameParts, bytesOf, Channel, copyOut, MAX_FRAME, MAX_OFFER_FRAME, MAX_SMALL_FRAME, PeerSlots, textOf } from './wire.ts'
import type { BlobsFrame, Frame } from './wire.ts'

/** Protocol ID of the migration stream. */
export const MIGRATE_PROTOCOL = '/igor/migrate/1.0.0'
/** Protocol ID of the status query. */
export const STATUS_PROTOCOL = '/igor/migrate/status/1.0.0'
/** Blob frames are filled to at least this many bytes (except the last): 1 MiB (DESIGN §3 asks ≥ 256 KiB). */
export const CHUNK_BYTES = 1024 * 1024
/** Received bytes a target holds in memory while they wait to be written to the offer's spool (8 MiB); beyond, it reads no frame until they are written. */
export const SPOOL_QUEUE_BYTES = 8 * 1024 * 1024
/** Received pages a target holds while their hashes are computed (16 MiB); beyond, it reads no frame until they are checked. */
export const UNCHECKED_BYTES = 16 * 1024 * 1024
/** Largest wasm module accepted in an offer, bytes. */
export const MAX_WASM_BYTES = 64 * 1024 * 1024

/** Timeouts of each protocol step, ms. */
export interface Timeouts {
  /** dialing and opening a stream */
  dialMs: number
  /** each small request/answer step (offer, accept, pending, started, status) */
  stepMs: number
  /** each blob frame (1 MiB) */
  frameMs: number
  /** from `pending` until the `handoff` frame arrives (the target then asks the source) */
  handoffMs: number
  /**
   * target: the whole offer, from the stream's opening to `pending` (transfer, verification, replay);
   * an offer still running then is refused and its reservations released
   */
  offerMs: number
}

/** Default {@link Timeouts}: 5 s dial, 10 s per step, 10 s per frame, 15 s for the handoff, 5 min per offer. */
export const DEFAULT_TIMEOUTS: Timeouts = { dialMs: 5000, stepMs: 10_000, frameMs: 10_000, handoffMs: 15_000, offerMs: 300_000 }

/** Largest `blobs` frame a target reads once it holds the wasm (or did not ask for it), bytes: one chunk plus a page and the map. */
export const MAX_BLOBS_FRAME = CHUNK_BYTES + PAGE_SIZE + 64 * 1024

/**
 * A target's bounds on inbound offers (docs/PROTOCOL.md "Target limits"). Offers over a bound are
 * refused with a one-line reason; nothing is buffered for them.
 */
export interface TargetLimits {
  /** offers in progress (stream open, not yet `pending`) from one peer at once */
  maxOffersPerPeer: number
  /** offers in progress from all peers at once */
  maxOffers: number
  /**
   * bytes the spools of all offers in progress may reserve together; an offer reserves, before it is
   * accepted, {@link MAX_WASM_BYTES} when the wasm is asked for plus 64 KiB per page asked for
   */
  maxSpoolBytes: number
  /**
   * bytes of received blobs all offers in progress may hold in memory together (the same
   * reservation as for the spool, made first: an offer that fits is received into memory,
   * {@link MemorySpool}; one that does not is spooled to disk, {@link Spool}, under `maxSpoolBytes`)
   */
  maxMemoryBytes: number
}

/** Default {@link TargetLimits}: 2 offers per peer, 8 in total, 16 GiB of spool, 256 MiB of it in memory. */
export const DEFAULT_TARGET_LIMITS: TargetLimits = { maxOffersPerPeer: 2, maxOffers: 8, maxSpoolBytes: 16 * 1024 ** 3, maxMemoryBytes: 256 * 1024 ** 2 }

/**
 * The target's count of offers in progress per peer and in total, and of spool bytes reserved on
 * disk and in memory (one per node, shared by all inbound streams). Single-threaded: no locking.
 */
export class InboundGate {
  readonly limits: TargetLimits
  readonly #slots: PeerSlots
  #spool = 0
  #memory = 0

  constructor (limits: Partial<TargetLimits> = {}) {
    this.limits = { ...DEFAULT_TARGET_LIMITS, ...limits }
    this.#slots = new PeerSlots(this.limits.maxOffersPerPeer, this.limits.maxOffers, 'offers')
  }

  /** Offers in progress, and spool bytes reserved by them on disk and in memory. */
  get offers (): number { return this.#slots.total }
  get spoolBytes (): number { return this.#spool }
  get memoryBytes (): number { return this.#memory }

  /** Admits one more offer from `peer`; returns null (admitted: call {@link leave} later) or the refusal reason. */
  enter (peer: string): string | null { return this.#slots.enter(peer) }

  /** Ends an offer admitted by {@link enter}. */
  leave (peer: string): void { this.#slots.leave(peer) }

  /** Reserves `bytes` of spool; returns null (reserved: call {@link release} later) or the refusal reason. */
  reserve (bytes: number): string | null {
    if (this.#spool + bytes > this.limits.maxSpoolBytes) {
      return `not enough spool space: the offer needs up to ${bytes} bytes, ${Math.max(0, this.limits.maxSpoolBytes - this.#spool)} of the node's ${this.limits.maxSpoolBytes} are free`
    }
    this.#spool += bytes
    return null
  }

  /** Releases a reservation made by {@link reserve}. */
  release (bytes: number): void { this.#spool = Math.max(0, this.#spool - bytes) }

  /** Reserves `bytes` of the in-memory budget; true (reserved: call {@link releaseMemory} later) or false (it does not fit: spool to disk). */
  reserveMemory (bytes: number): boolean {
    if (this.#memory + bytes > this.limits.maxMemoryBytes) return false
    this.#memory += bytes
    return true
  }

  /** Releases a reservation made by {@link reserveMemory}. */
  releaseMemory (bytes: number): void { this.#memory = Math.max(0, this.#memory - bytes) }
}

/**
 * The received blobs of one offer held in memory (an offer within the node's in-memory budget,
 * {@link TargetLimits.maxMemoryBytes}; the interface of {@link Spool}): each blob is copied once on
 * arrival, from the frame's chunks into memory {@link take} hands out — a page into the next 64 KiB
 * slot of one `SharedArrayBuffer` of `pages` slots ({@link memory}, allocated at once; the caller
 * has a helper thread commit it ahead of the copies), any other blob (the wasm) into its own — and
 * {@link load} returns those views: nothing is written to disk or read back. Blobs are hashed once,
 * by the caller ({@link receiveAgent}), before {@link putAll} keeps them. Holds at most `pages` ×
 * 64 KiB plus one blob that is not a page slot (≤ {@link MAX_WASM_BYTES}), or a page past the
 * slots: within the offer's reservation.
 */
export class MemorySpool {
  /** bytes stored; bytes waiting for a write (always 0: nothing is written) */
  bytes = 0
  readonly queued = 0
  readonly #at = new Map<string, Uint8Array>()
  readonly #slots: Uint8Array
  /** the buffers {@link take} handed out (the slots' one, and the blobs' own) */
  readonly #taken = new WeakSet<ArrayBufferLike>()
  #used = 0
  #removed = false

  /** @param pages 64 KiB slots for the pages the offer was asked for */
  constructor (pages: number) { this.#slots = new Uint8Array(new SharedArrayBuffer(pages * PAGE_SIZE)) }

  /** The memory of the page slots (not to be written but through {@link take}). */
  get memory (): SharedArrayBuffer { return this.#slots.buffer as SharedArrayBuffer }

  /**
   * Memory for a received blob of `length` bytes, to copy it into before {@link putAll}: the next
   * free 64 KiB slot for a page while slots remain, else a buffer of its own (shared too).
   */
  take (length: number): Uint8Array {
    const v = length === PAGE_SIZE && (this.#used + 1) * PAGE_SIZE <= this.#slots.length
      ? this.#slots.subarray(this.#used * PAGE_SIZE, ++this.#used * PAGE_SIZE)
      : new Uint8Array(new SharedArrayBuffer(length))
    this.#taken.add(v.buffer)
    return v
  }

  /**
   * Keeps blobs `[cid, bytes]` (each already checked against its CID): memory from {@link take} as it
   * is, any other blob copied in (as into memory from `take`).
   * @throws NetworkError when the spool was removed
   */
  putAll (blobs: [string, Uint8Array][]): void {
    if (this.#removed) throw new NetworkError('spool: removed')
    for (const [cid, b] of blobs) {
      let v = b
      if (!this.#taken.has(b.buffer)) { v = this.take(b.length); v.set(b) }
      this.#at.set(cid, v)
      this.bytes += b.length
    }
  }

  /** Nothing waits for a write. */
  async settled (): Promise<void> {}

  has (cid: string): boolean { return this.#at.has(cid) }

  /** Blobs stored. */
  get count (): number { return this.#at.size }

  /**
   * Every stored blob by CID: views of `SharedArrayBuffer`s (so that handing the pages to tick
   * workers shares them), not to be written.
   * @throws NetworkError when the spool was removed
   */
  async load (): Promise<Map<string, Uint8Array>> {
    if (this.#removed) throw new NetworkError('spool: removed')
    return new Map(this.#at)
  }

  /** Drops the blobs (what {@link load} returned stays valid for whoever holds it); never throws. `later`: as {@link Spool.remove} (no effect here). */
  remove (later = false): void {
    void later
    this.#removed = true
    this.#at.clear()
  }
}

/**
 * The received blobs of one offer, on disk: one file `<root>/<random>/blobs` (folder 0700, file
 * 0600) to which each `blobs` frame's blobs are appended with one `writev`, and an index in memory
 * (CID → offset, length). Blobs are hashed once, on arrival, by the caller ({@link receiveAgent}),
 * and appended only when their CID is one the target asked for; {@link load} reads them back in
 * one read, without hashing again (the file is this process's own, private, and lives only for the
 * offer: docs/RATIONALE.md "Migration at stream speed"). No fsync: a spool is never the only copy
 * of anything (the source keeps the agent until the target answered `pending`, and the target
 * stores the agent as pending before that), so {@link remove} deletes it and a restart clears it.
 */
export class Spool {
  /** the spool's folder */
  readonly dir: string
  /** the file holding the blobs, in arrival order */
  readonly file: string
  /** bytes stored, and bytes of them queued for writing (held in memory until written) */
  bytes = 0
  queued = 0
  readonly #at = new Map<string, { off: number; len: number }>()
  #fd: number | null
  /** the queued writes, in order; the first failure's message */
  #writing: Promise<void> = Promise.resolve()
  #failed: string | null = null

  /** Creates a new empty spool under `root`. @throws NetworkError when the folder or file cannot be created */
  constructor (root: string) {
    this.dir = path.join(root, randomBytes(8).toString('hex'))
    this.file = path.join(this.dir, 'blobs')
    try {
      fs.mkdirSync(root, { recursive: true, mode: 0o700 })
      fs.mkdirSync(this.dir, { mode: 0o700 })
      this.#fd = fs.openSync(this.file, 'wx+', 0o600)
    } catch (e) { throw new NetworkError(`spool: cannot create ${this.file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`) }
  }

  /** Memory for a received blob of `length` bytes, to copy it into before {@link putAll} (a buffer of its own, held until written). */
  take (length: number): Uint8Array { return new Uint8Array(length) }

  /**
   * Appends blobs `[cid, bytes]` (each already checked against its CID) with one writev on the
   * thread pool, after the writes queued before (so a busy disk does not stall the stream's
   * reader); `bytes` must not change until {@link load}. A failed write is thrown by {@link load}.
   * @throws NetworkError when the spool is closed
   */
  putAll (blobs: [string, Uint8Array][]): void {
    const fd = this.#fd
    if (fd === null) throw new NetworkError(`spool: ${this.file} is closed`)
    const at = this.bytes
    for (const [cid, b] of blobs) { this.#at.set(cid, { off: this.bytes, len: b.length }); this.bytes += b.length }
    const n = this.bytes - at
    this.queued += n
    this.#writing = this.#writing.then(async () => { if (this.#failed === null) await writevAt(fd, blobs.map((b) => b[1]), at) })
      .catch((e: NodeJS.ErrnoException) => { this.#failed ??= `spool: cannot write ${this.file}: ${e.code ?? e.message}` })
      .finally(() => { this.queued -= n })
  }

  /** Waits for the queued writes (a reader calls it when {@link queued} is over its bound, so a slow disk slows the sender). */
  async settled (): Promise<void> { await this.#writing }

  has (cid: string): boolean { return this.#at.has(cid) }

  /** Blobs stored. */
  get count (): number { return this.#at.size }

  /**
   * Every stored blob by CID, once the queued writes are done, read back in one read into one
   * `SharedArrayBuffer` (so that handing the pages to tick workers shares them instead of copying:
   * runtime/pool.ts); the views are not to be written. Not hashed again (see the class doc).
   * @throws NetworkError when a write failed, or the file is unreadable or short
   */
  async load (): Promise<Map<string, Uint8Array>> {
    await this.#writing
    if (this.#failed !== null) throw new NetworkError(this.#failed)
    if (this.#fd === null) throw new NetworkError(`spool: ${this.file} is closed`)
    const all = new Uint8Array(new SharedArrayBuffer(this.bytes))
    try {
      for (let off = 0; off < this.bytes;) {
        const n = fs.readSync(this.#fd, all, off, this.bytes - off, off)
        if (n === 0) throw new Error(`${this.bytes - off} bytes missing`)
        off += n
      }
    } catch (e) { throw new NetworkError(`spool: cannot read ${this.file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`) }
    const out = new Map<string, Uint8Array>()
    for (const [cid, { off, len }] of this.#at) out.set(cid, all.subarray(off, off + len))
    return out
  }

  /**
   * Closes and deletes the spool; never throws. `later`: delete it in the background (freeing a
   * large file can take a while; an offer answered `pending` need not wait for it).
   */
  remove (later = false): void {
    const fd = this.#fd
    this.#fd = null
    this.#failed ??= 'spool: removed' // writes queued and not yet started are skipped
    // unlinking is safe with the descriptor open; it is closed only once no write uses it
    if (!later) try { fs.rmSync(this.dir, { recursive: true, force: true }) } catch { /* best effort */ }
    void this.#writing.then(() => {
      if (fd !== null) try { fs.closeSync(fd) } catch { /* gone */ }
      if (later) fs.rm(this.dir, { recursive: true, force: true }, () => { /* best effort: a restart clears spools */ })
    })
  }
}

/** Deletes every spool folder under `root` (left by a crash: spools are never the only copy); never throws. */
export function clearSpools (root: string): void {
  try { fs.rmSync(root, { recursive: true, force: true }) } catch { /* best effort */ }
}

/** What one successful migration did (the `igord migrate --json` result). */
export interface MigrateResult {
  /** agent name and DID */
  name: string; agent: string
  /** source and target peer IDs */
  from: string; to: string
  /** the target address used */
  addr: string
  /** tick of the handoff checkpoint; the target runs tick + 1 next */
  tick: number
  /** the agent's epoch on the target (the handoff's epoch + 1) */
  epoch: number
  /** CID of the signed handoff checkpoint header */
  handoff: string
  /** non-zero pages offered, and how many the target asked for */
  pagesOffered: number; pagesSent: number
  /** pages of the replay base (the offered checkpoint's `prev`) sent besides the offered pages */
  basePagesSent: number
  /** ticks the target re-executed from the replay base before accepting (0: no base was offered) */
  replayedTicks: number
  /**
   * bytes of the replay base's I/O state sent in `end` (`baseIo`), and the bytes of bodies left out
   * of it because the offered checkpoint's I/O state carries them (`baseShared`, p2p/endframe.ts);
   * both 0 without a base
   */
  baseIoBytes: number; sharedBytes: number
  /** blobs sent (pages + wasm) and their bytes */
  blobsSent: number; blobBytes: number
  /** every frame byte sent and received on the stream */
  bytesSent: number; bytesReceived: number
  /** whether the target confirmed that the agent started (false: it will resolve by asking) */
  confirmed: boolean
  /** wall time: the whole migration (from stopping the agent on the source to `started`), and offer → pending, ms */
  ms: number; transferMs: number
  /**
   * wall time of each step, ms, in order: `stop` (the source's loop ends, writes its final
   * checkpoint, and the node reads it back; for an agent that asked to move, only the read),
   * `dial` (opening the stream), `offer` (offer → accept), `transfer` (blob
   * frames), `verify` (`end` → `pending`: the target's verification and durable pending write),
   * `commit` (the source writes the handoff), `start` (`handoff` → `started`: the target installs and
   * starts the agent)
   */
  steps: Record<string, number>
}

/**
 * The state of the offered checkpoint's `prev` checkpoint P (the replay base, DESIGN §8/§9): P's
 * signed header bytes and signature, its memory size in 64 KiB pages, its page table `[index, page
 * CID]` (every non-zero page, ascending), its globals, and `blob(cid)`, which returns the bytes of
 * one of its pages (the source's blob store; throws when missing).
 */
export interface ReplayBase {
  header: Uint8Array; sig: Uint8Array; pageCount: number; pages: [number, string][]
  globals: LiveCheckpoint['globals']; blob (cid: string): Uint8Array
  /** P's I/O state blob (the bytes whose CID is P's header field `io`); null when P has none */
  io: Uint8Array | null
}

/** Progress of a transfer: blob bytes sent so far and in total. */
export type Progress = (sentBytes: number, totalBytes: number) => void

/** What the source node provides to {@link sendAgent}. */
export interface SourceHooks {
  /**
   * Writes the signed handoff checkpoint naming `target` durably (the source's commit point) and
   * returns its bytes; throws when it cannot (the migration then aborts).
   */
  commit (target: string): { header: Uint8Array; sig: Uint8Array; cid: string } | Promise<{ header: Uint8Array; sig: Uint8Array; cid: string }>
  progress?: Progress
  /** test hook: may kill the process, or cut the stream and connection `ch`, at a step */
  fault? (step: string, ch: Channel): void
}

/**
 * Opens a migration (or status, info, inbox) stream to `addr` (a multiaddr ending in `/p2p/<id>`)
 * within the dial timeout. `maxBuffer`: see {@link Channel} (default: the largest frame).
 * @throws NetworkError `dial <addr>: …`
 */
export async function openChannel (peer: Peer, addr: Multiaddr, protocol: string, t: Pick<Timeouts, 'dialMs'>, maxBuffer?: number): Promise<Channel> {
  const id = addr.getComponents().find((c) => c.name === 'p2p')?.value
  if (id === undefined) throw new NetworkError(`dial ${addr.toString()}: the address must end in /p2p/<peer id>`)
  if (id === peer.peerId.toString()) throw new NetworkError(`dial ${addr.toString()}: that is this node itself`)
  let stream: Stream
  try {
    stream = await peer.dialProtocol(addr, protocol, { signal: AbortSignal.timeout(t.dialMs) })
  } catch (e) {
    const err = e as Error
    const why = err.name === 'TimeoutError' || err.name === 'AbortError' ? `timed out after ${t.dialMs} ms` : err.message.split('\n')[0]
    throw new NetworkError(`dial ${addr.toString()}: ${why}`)
  }
  return new Channel(stream, id, maxBuffer)
}

/**
 * Source side of one migration attempt over an open channel: offers `live` (the agent's last
 * checkpoint, status running), sends the blobs the target asks for, commits through
 * `hooks.commit` once the target holds the agent durably as pending, and sends the handoff.
 * With `a.base` (the state of `live`'s `prev`), the offer carries it as `base` so that the target
 * can replay `live`'s log before accepting; its pages are sent when the target asks for them —
 * unless the `end` frame would not fit one frame with the base's I/O state (p2p/endframe.ts
 * `planEnd`): then the offer goes without a base.
 * @param id migration id (32 hex chars)
 * @param addrs this node's dialable addresses (the target asks them if the stream breaks)
 * @throws RequestError before anything is sent when the `end` frame would not fit one frame even
 *   without the base (the agent cannot move now); RefusedError when the target refuses (nothing
 *   changed); NetworkError for any failure before the commit (nothing changed: the caller resumes
 *   the agent or tries another peer)
 */
export async function sendAgent (ch: Channel, a: { id: string; name: string; live: LiveCheckpoint; addrs: string[]; addr: string; me: string; base?: ReplayBase }, hooks: SourceHooks, t: Timeouts): Promise<MigrateResult> {
  const t0 = performance.now()
  const steps: Record<string, number> = {}
  let mark = t0
  const step = (k: string) => { const now = performance.now(); steps[k] = now - mark; mark = now }
  const { live } = a
  // `end` is planned first: when it would not fit one frame with the base's I/O state, the offer
  // goes without the base; when it would not fit at all, nothing is offered (RequestError)
  const plan = planEnd(a.name, live, a.base === undefined ? undefined : a.base.io)
  const base = plan.withBase ? a.base : undefined
  const digests = live.digests ?? live.pages.map(([i, p]) => [i, sha256(p)] as [number, Uint8Array])
  const rows: [number, string][] = digests.map(([i, d]) => [i, cidOfDigest(d)])
  await ch.send({
    t: 'offer', v: 1, id: a.id, name: a.name, header: live.header, sig: live.sig, manifest: live.manifest,
    pageCount: live.pageCount, pages: rows, globals: live.globals.map((g) => [g.index, g.type, g.bytes]), from: a.addrs,
    // the lengths of what `end` carries, so that the target can lay its pending file out as the pages arrive
    ...(live.log === null ? {} : { logBytes: live.log.length }), ...(live.io === null ? {} : { ioBytes: live.io.length }),
    ...(base === undefined ? {} : { base: { header: base.header, sig: base.sig, pageCount: base.pageCount, pages: base.pages, globals: base.globals.map((g) => [g.index, g.type, g.bytes]) } }),
  }, 'offer', t.stepMs)
  hooks.fault?.('source-after-offer', ch)
  const answer = await ch.recv('offer', t.stepMs, ['accept', 'refuse'], MAX_OFFER_FRAME)
  if (answer.t === 'refuse') throw new RefusedError(ch.peer, textOf(answer, 'reason', 'offer'))
  step('offer')
  if (!Array.isArray(answer.want)) throw new NetworkError(`offer: malformed accept from ${ch.peer}: "want" must be an array`)
  // Blobs the target lacks: the wasm and pages, by CID.
  const byCid = new Map<string, Uint8Array>()
  byCid.set(live.parsed.code, live.wasm)
  for (let k = 0; k < rows.length; k++) byCid.set(rows[k][1], live.pages[k][1])
  const baseCids = new Set((base?.pages ?? []).map((r) => r[1]))
  const want: Uint8Array[] = []
  let total = 0
  let pagesSent = 0
  let basePagesSent = 0
  for (const c of answer.want as unknown[]) {
    let b = typeof c === 'string' ? byCid.get(c) : undefined
    if (b === undefined && typeof c === 'string' && baseCids.has(c)) {
      try { b = base!.blob(c) } catch (e) { throw new NetworkError(`offer: cannot read page ${c} of the replay base: ${(e as Error).message}`) }
      basePagesSent++
    } else if (b !== undefined && c !== live.parsed.code) pagesSent++
    if (b === undefined) throw new NetworkError(`offer: ${ch.peer} asked for a blob that was not offered`)
    want.push(b); total += b.length
  }
  let sent = 0
  let batch: Uint8Array[] = []
  let batchBytes = 0
  let frames = 0
  const flush = async () => {
    await ch.sendParts(blobsFrameParts(batch), 'transfer', t.frameMs) // the frame `{t: "blobs", b: batch}`, the blobs not copied
    sent += batchBytes; batch = []; batchBytes = 0
    if (++frames === 1) hooks.fault?.('source-during-transfer', ch)
    hooks.progress?.(sent, total)
  }
  for (const b of want) {
    batch.push(b); batchBytes += b.length
    if (batchBytes >= CHUNK_BYTES) await flush()
  }
  if (batch.length > 0) await flush()
  step('transfer')
  await ch.sendRaw(plan.frame, 'transfer', t.stepMs) // `end`: key, log, io, baseIo with shared bodies left out (p2p/endframe.ts)
  const pending = await ch.recv('pending', t.stepMs + t.frameMs, ['pending', 'refuse'], MAX_SMALL_FRAME)
  if (pending.t === 'refuse') throw new RefusedError(ch.peer, textOf(pending, 'reason', 'pending'))
  const replayedTicks = typeof pending.replayed === 'number' && Number.isSafeInteger(pending.replayed) && pending.replayed >= 0 ? pending.replayed : 0
  const transferMs = performance.now() - t0
  step('verify')
  hooks.fault?.('source-after-pending', ch)
  const h = await hooks.commit(ch.peer) // the commit point: from here on the agent belongs to the target
  step('commit')
  hooks.fault?.('source-after-handoff', ch)
  let confirmed = false
  try {
    await ch.send({ t: 'handoff', header: h.header, sig: h.sig }, 'handoff', t.stepMs)
    confirmed = (await ch.recv('started', t.stepMs, ['started', 'refuse'], MAX_SMALL_FRAME)).t === 'started'
  } catch { /* the target holds the agent as pending and will ask us for the handoff */ }
  step('start')
  await ch.close()
  return {
    name: a.name, agent: live.parsed.agent, from: a.me, to: ch.peer, addr: a.addr, tick: live.parsed.tick, epoch: live.parsed.epoch + 1,
    handoff: h.cid, pagesOffered: rows.length, pagesSent, basePagesSent, replayedTicks, baseIoBytes: plan.baseIoBytes, sharedBytes: plan.savedBytes, blobsSent: want.length, blobBytes: total,
    bytesSent: ch.sent, bytesReceived: ch.received, confirmed, ms: performance.now() - t0, transferMs, steps,
  }
}

/**
 * A decoded, signature-checked offer. `base`: the offered replay base (the state of the offered
 * checkpoint's `prev`), its header signature-checked for the same agent and its CID equal to `prev`.
 */
export interface Offer {
  id: string; name: string; header: Uint8Array; sig: Uint8Array; parsed: CheckpointHeader; cid: string
  manifestBytes: Uint8Array; manifest: Manifest; pageCount: number; pages: [number, string][]
  globals: LiveCheckpoint['globals']; from: string[]
  /**
   * the lengths of the event log and I/O state the `end` frame will carry, as announced (null: none,
   * as the header says); undefined when the offer did not announce them (they are then not used)
   */
  ends?: { logBytes: number | null; ioBytes: number | null }
  base?: { header: Uint8Array; sig: Uint8Array; parsed: CheckpointHeader; pageCount: number; pages: [number, string][]; globals: LiveCheckpoint['globals'] }
}

/** Everything the target needs from its node. */
export interface TargetHooks {
  /** this node's peer ID */
  me: string
  /** null to accept, or the one-line reason to refuse (capabilities, policy, a clash) */
  policy (offer: Offer, fromPeer: string): string | null
  /** the folder under which each offer's {@link Spool} is made (`<data>/migrate/spool`) */
  spoolRoot: string
  /** the local blob store */
  hasBlob (cid: string): boolean
  getBlob (cid: string): Uint8Array
  /**
   * Stores the assembled agent durably as pending (before the target answers `pending`) and, with
   * `restore` true, checks it can run here by restoring it for hosting (else {@link
   * TargetHooks.restoreLater} follows once its replay succeeded); throws to refuse (the message is
   * sent as the reason), leaving no pending files. Runs while the offer's replay does ({@link
   * TargetHooks.discard} undoes it when the replay fails); `live`'s pages may be views of a
   * `SharedArrayBuffer` ({@link Spool.load}): read only. `file`: the pending live checkpoint, already
   * written and synced there (p2p/pending-file.ts, under {@link TargetHooks.spoolRoot}): to be
   * renamed into place rather than written again.
   */
  prepare (offer: Offer, fromPeer: string, live: LiveCheckpoint, restore: boolean, file?: string): void | Promise<void>
  /**
   * Optional: restores the agent for hosting in the background, after `pending` — called instead of
   * a restore in {@link TargetHooks.prepare} when the offer's replay re-executed ticks of this very
   * module into exactly the offered state (which proves the module instantiates here and the state
   * restores into it: docs/RATIONALE.md "Offer → pending at half the raw stream"). Its failure is
   * the node's to handle at install (it resumes the agent from its pending checkpoint). Absent:
   * `prepare` always restores.
   */
  restoreLater? (offer: Offer, live: LiveCheckpoint): void
  /**
   * Undoes a successful {@link TargetHooks.prepare} whose offer then failed its replay (prepare runs
   * while the replay does): removes the pending files; {@link TargetHooks.failed} follows.
   */
  discard (offer: Offer): void
  /**
   * Checks the signed handoff (p2p/authority.ts `checkHandoff`), installs and starts the agent;
   * throws to refuse the handoff (the message is sent as the reason; the pending agent is then
   * resolved through {@link TargetHooks.unresolved}).
   */
  install (offer: Offer, handoff: { header: Uint8Array; sig: Uint8Array }): void | Promise<void>
  /** The handoff did not arrive (or was invalid): resolve the pending agent by asking the source. */
  unresolved (offer: Offer, fromPeer: string): void
  /** A refused or failed offer (for the log). */
  failed? (offer: Offer | null, fromPeer: string, reason: string): void
  /** test hook: may kill the process, or cut the stream and connection `ch`, at a step */
  fault? (step: string, ch: Channel): void
  /**
   * Optional: prepares the offered module (`wasm`, checked against the offer's code CID) for its
   * replay and restore — e.g. instruments it in a worker while the pages are in transit. Never throws;
   * its failure is found again, and reported, by the replay or restore.
   */
  warm? (wasm: Uint8Array, offer: Offer): void
  /** Runs runtime/replay.ts `replaySegment` elsewhere (a node: in a tick worker thread, under its tick timeout); default: here. */
  replay? (...a: Parameters<typeof replaySegment>): Promise<ReturnType<typeof replaySegment>>
}

/**
 * Decodes and checks an offer frame: header fields and signature, the manifest's CID, page rows.
 * @throws NetworkError naming the field at fault
 */
export function decodeOffer (f: Frame): Offer {
  const step = 'offer'
  if (f.v !== 1) throw new NetworkError(`offer: unsupported protocol version ${typeof f.v === 'number' || typeof f.v === 'bigint' ? String(f.v) : describe(f.v)} (this igord speaks 1)`)
  const id = textOf(f, 'id', step, 64)
  const name = textOf(f, 'name', step, 128)
  if (!isAgentName(name)) throw new NetworkError(`offer: agent name ${JSON.stringify(name)} must be ${AGENT_NAME_RULE}`)
  const header = bytesOf(f, 'header', step)
  const sig = bytesOf(f, 'sig', step, 64)
  let parsed: CheckpointHeader
  try { parsed = decodeHeader(header, 'offered checkpoint') } catch (e) { throw new NetworkError(`offer: ${(e as CheckpointError).message}`) }
  if (!verifyHeader(header, sig, parsed.agent)) throw new NetworkError(`offer: the checkpoint's signature does not verify for ${parsed.agent}`)
  if (parsed.status !== 'running') throw new NetworkError(`offer: only a running agent can move (the offered checkpoint is ${parsed.status})`)
  const manifestBytes = bytesOf(f, 'manifest', step)
  if (cidOf(manifestBytes) !== parsed.manifest) throw new NetworkError('offer: the manifest does not match the checkpoint\'s manifest CID')
  let manifest: Manifest
  try { manifest = parseManifest(manifestBytes, 'offered manifest') } catch (e) { throw new NetworkError(`offer: ${(e as Error).message}`) }
  const { pageCount, pages, globals } = decodeTable(f, 'offer')
  const from = Array.isArray(f.from) ? (f.from as unknown[]).filter((x): x is string => typeof x === 'string').slice(0, 16) : []
  const offer: Offer = { id, name, header, sig, parsed, cid: headerCid(header), manifestBytes, manifest, pageCount, pages, globals, from }
  const size = (k: string): number | undefined => {
    const v = f[k]
    if (v === undefined) return undefined
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > MAX_FRAME) throw new NetworkError(`offer: field "${k}" must be a length in bytes (at most ${MAX_FRAME})`)
    return v
  }
  const logBytes = size('logBytes'); const ioBytes = size('ioBytes')
  if ((logBytes !== undefined || parsed.log === null) && (ioBytes !== undefined || parsed.io === undefined)) {
    offer.ends = { logBytes: parsed.log === null ? null : logBytes!, ioBytes: parsed.io === undefined ? null : ioBytes! }
  }
  if (f.base !== undefined && f.base !== null) {
    const b = f.base as Frame
    if (typeof b !== 'object' || Array.isArray(b)) throw new NetworkError('offer: field "base" must be a map')
    const bh = bytesOf(b, 'header', 'offer base')
    const bsig = bytesOf(b, 'sig', 'offer base', 64)
    let bp: CheckpointHeader
    try { bp = decodeHeader(bh, 'replay base checkpoint') } catch (e) { throw new NetworkError(`offer: ${(e as CheckpointError).message}`) }
    if (headerCid(bh) !== parsed.prev) throw new NetworkError('offer: the replay base is not the offered checkpoint\'s prev')
    if (bp.agent !== parsed.agent || !verifyHeader(bh, bsig, parsed.agent)) throw new NetworkError(`offer: the replay base's signature does not verify for ${parsed.agent}`)
    if (bp.code !== parsed.code || bp.manifest !== parsed.manifest) throw new NetworkError('offer: the replay base has another code or manifest than the offered checkpoint')
    offer.base = { header: bh, sig: bsig, parsed: bp, ...decodeTable(b, 'offer base') }
  }
  return offer
}

/** Decodes `pageCount`, `pages` (`[index, cid]` ascending, inside memory) and `globals` of an offer or its base. */
function decodeTable (f: Frame, step: string): { pageCount: number; pages: [number, string][]; globals: LiveCheckpoint['globals'] } {
  const pageCount = f.pageCount
  if (typeof pageCount !== 'number' || !Number.isInteger(pageCount) || pageCount < 0 || pageCount > MAX_PAGES) throw new NetworkError(`${step}: field "pageCount" out of range`)
  if (!Array.isArray(f.pages)) throw new NetworkError(`${step}: field "pages" must be an array`)
  const pages: [number, string][] = []
  let last = -1
  for (const r of f.pages as unknown[]) {
    if (!Array.isArray(r) || r.length !== 2 || typeof r[0] !== 'number' || typeof r[1] !== 'string') throw new NetworkError(`${step}: field "pages" rows must be [index, cid]`)
    if (r[0] <= last || r[0] >= pageCount) throw new NetworkError(`${step}: page ${r[0]} out of order or outside memory`)
    try { digestOfCid(r[1]) } catch { throw new NetworkError(`${step}: page ${r[0]} has no valid CID`) }
    last = r[0]
    pages.push([r[0], r[1]])
  }
  let globals: LiveCheckpoint['globals']
  try { globals = decodeGlobals(f.globals, step) } catch (e) { throw new NetworkError((e as Error).message) }
  return { pageCount, pages, globals }
}

/**
 * Target side of `/igor/migrate/1.0.0` on one inbound stream from `ch.peer`. Never throws: every
 * failure is answered with a `refuse` frame when possible and reported through `hooks.failed`.
 *
 * Bounds (docs/PROTOCOL.md "Target limits"): the stream is refused at once, before any frame is
 * read, when `gate` already counts {@link TargetLimits.maxOffersPerPeer} offers of that peer or
 * {@link TargetLimits.maxOffers} in total; each frame's length is checked on its prefix against the
 * limit of its step; an offer announcing more pages than its manifest's memory limit, or more spool
 * bytes than the gate has free, is refused before `accept`; received blobs go to a {@link MemorySpool}
 * (within the in-memory budget) or a {@link Spool} in `hooks.spoolRoot`, each hashed once (pages in
 * memory in the hash thread, p2p/hasher.ts, checked in arrival order before `end` is handled), never
 * more than were asked for; for an offer in memory that announced the lengths of its `end`, the
 * pending live checkpoint is written as the pages arrive (p2p/pending-file.ts); no frame within `t.frameMs` (or `t.stepMs`), or the offer
 * still unfinished `t.offerMs` after the stream opened, ends it. On every exit the spool is deleted
 * and the gate's count and reservation are released (the agent name is released by `hooks.failed`).
 */
export async function receiveAgent (ch: Channel, hooks: TargetHooks, t: Timeouts, gate: InboundGate): Promise<void> {
  const admitted = gate.enter(ch.peer)
  if (admitted !== null) {
    await refuse(ch, admitted, t)
    hooks.failed?.(null, ch.peer, `refused: ${admitted}`)
    return
  }
  const deadline = Date.now() + t.offerMs
  /** a read bounded by the step's timeout and by what is left of the offer's deadline */
  const recv = async (step: string, ms: number, expect: string[], max: number): Promise<Frame> => {
    const left = deadline - Date.now()
    if (left <= 0) throw new NetworkError(`${step}: the offer is still unfinished after ${t.offerMs} ms (the limit of one offer)`)
    try { return await ch.recv(step, Math.min(ms, left), expect, max) } catch (e) {
      if (Date.now() >= deadline) throw new NetworkError(`${step}: the offer is still unfinished after ${t.offerMs} ms (the limit of one offer)`)
      throw e
    }
  }
  const recvBlobs = async (step: string, ms: number, expect: string[], max: number): Promise<Frame | BlobsFrame> => {
    const left = deadline - Date.now()
    if (left <= 0) throw new NetworkError(`${step}: the offer is still unfinished after ${t.offerMs} ms (the limit of one offer)`)
    try { return await ch.recvBlobs(step, Math.min(ms, left), expect, max) } catch (e) {
      if (Date.now() >= deadline) throw new NetworkError(`${step}: the offer is still unfinished after ${t.offerMs} ms (the limit of one offer)`)
      throw e
    }
  }
  let offer: Offer | null = null
  let pendingWritten = false
  let spool: Spool | MemorySpool | null = null
  /** the pending live checkpoint written as the pages arrive (an offer received into memory that announced the lengths of its `end`) */
  let pending: PendingFile | null = null
  let reserved = 0
  let inMemory = false
  let inGate = true
  const leaveGate = (later = false) => {
    if (!inGate) return
    inGate = false
    spool?.remove(later)
    pending?.remove(later)
    if (inMemory) gate.releaseMemory(reserved); else gate.release(reserved)
    gate.leave(ch.peer)
  }
  try {
    let f: Frame
    try { f = await recv('offer', t.stepMs, ['offer'], MAX_OFFER_FRAME) } catch (e) {
      await refuse(ch, (e as Error).message, t)
      throw e
    }
    try { offer = decodeOffer(f) } catch (e) {
      await refuse(ch, (e as Error).message.replace(/^offer: /, ''), t)
      throw e
    }
    const reason = hooks.policy(offer, ch.peer)
    if (reason !== null) { await refuse(ch, reason, t); hooks.failed?.(offer, ch.peer, `refused: ${reason}`); return }
    const want: string[] = []
    const wanted = new Set<string>()
    let wantPages = 0
    if (!hooks.hasBlob(offer.parsed.code)) { want.push(offer.parsed.code); wanted.add(offer.parsed.code) }
    for (const [, c] of [...offer.pages, ...(offer.base?.pages ?? [])]) if (!wanted.has(c) && !hooks.hasBlob(c)) { want.push(c); wanted.add(c); wantPages++ }
    const bound = announced(offer)
    if (bound !== null) throw await refused(ch, bound, t)
    const need = (wanted.has(offer.parsed.code) ? MAX_WASM_BYTES : 0) + wantPages * PAGE_SIZE
    // received into memory when the node's in-memory budget has room for the reservation, else spooled to disk
    if (gate.reserveMemory(need)) {
      inMemory = true
      reserved = need
      spool = new MemorySpool(wantPages)
      touchShared(spool.memory) // its page faults taken by the hash thread, ahead of the copies
    } else {
      const noSpace = gate.reserve(need)
      if (noSpace !== null) throw await refused(ch, noSpace, t)
      reserved = need
      try { spool = new Spool(hooks.spoolRoot) } catch (e) { throw await refused(ch, (e as Error).message, t) }
    }
    await ch.send({ t: 'accept', want }, 'accept', t.stepMs)
    // the pending file is laid out once the wasm is at hand; blobs received before that wait in `early`
    const lay = inMemory && offer.ends !== undefined
    let early: [string, Uint8Array][] | null = lay ? [] : null
    const plan = (wasm: Uint8Array) => {
      const o = offer!
      try { pending = new PendingFile(hooks.spoolRoot, { header: o.header, sig: o.sig, manifest: o.manifestBytes, pageCount: o.pageCount, pages: o.pages, globals: o.globals, wasm, ...o.ends! }) } catch { pending = null } // then written whole after `end`, as without
      pending?.put(early!)
      early = null
    }
    if (lay && !wanted.has(offer.parsed.code)) { try { plan(hooks.getBlob(offer.parsed.code)) } catch { early = null } }
    // transfer: every blob is copied once, from the received chunks to where it stays; a frame of
    // pages in shared memory is hashed in the hash thread while the next frames arrive, and checked
    // when its digests are back (frames in arrival order), any other here at once
    const code = offer.parsed.code
    let codeIn = !wanted.has(code)
    let frames = 0
    let received = 0 // blobs received, checked or not: never more than were asked for
    let unchecked = 0 // bytes of them not yet checked
    let checking: Promise<void> = Promise.resolve()
    let fail: (e: Error) => void = () => {}
    const failed = new Promise<never>((_resolve, reject) => { fail = reject })
    failed.catch(() => {}) // raced below
    /** checks one frame's blobs against the CIDs asked for, then keeps them (throws the refusal reason) */
    const keep = (got: Uint8Array[], cids: string[]): void => {
      const blobs: [string, Uint8Array][] = []
      const inFrame = new Set<string>()
      got.forEach((b, k) => {
        const c = cids[k]
        if (!wanted.has(c) || spool!.has(c) || inFrame.has(c)) throw new NetworkError('transfer: received a blob that was not asked for (or twice)')
        if (c !== code && b.length !== PAGE_SIZE) throw new NetworkError(`transfer: page ${c} is ${b.length} bytes, not ${PAGE_SIZE}`)
        inFrame.add(c); blobs.push([c, b])
      })
      spool!.putAll(blobs) // one writev per frame
      for (const [c, b] of blobs) {
        if (c !== code) continue
        codeIn = true
        hooks.warm?.(b, offer!) // a module T did not hold is instrumented while the pages arrive
      }
      if (early !== null) {
        early.push(...blobs)
        for (const [c, b] of blobs) if (c === code) plan(b)
      } else (pending as PendingFile | null)?.put(blobs)
    }
    let end: Frame
    for (;;) {
      // while the wasm is awaited a frame may hold it; once every blob is in, only `end` (log, I/O states) may come
      const max = !codeIn || received === wanted.size ? MAX_FRAME : MAX_BLOBS_FRAME
      let fr: Frame | BlobsFrame
      try {
        const next = recvBlobs('transfer', t.frameMs, ['blobs', 'end'], max)
        next.catch(() => {}) // when a check fails first
        fr = await Promise.race([next, failed])
      } catch (e) {
        await refuse(ch, (e as Error).message, t)
        throw e
      }
      if (fr.t === 'end') { end = fr as Frame; break }
      if (++frames === 1) hooks.fault?.('target-during-transfer', ch)
      // a canonical frame's blobs are copied out of its chunks into the spool's memory; a frame
      // that is not (decoded whole: it fails the checks) holds them as views
      const fast = 'chunks' in fr ? fr as BlobsFrame : null
      const count = fast !== null ? fast.blobs.length : Array.isArray((fr as Frame).b) ? ((fr as Frame).b as unknown[]).length : 0
      if (count === 0) throw await refused(ch, 'transfer: field "b" must be a non-empty array of byte strings', t)
      if (received + count > wanted.size) throw await refused(ch, 'transfer: received a blob that was not asked for (or twice)', t)
      received += count
      const got: Uint8Array[] = []
      for (let k = 0; k < count; k++) {
        const slow = fast === null ? ((fr as Frame).b as unknown[])[k] : null
        const size = fast !== null ? fast.blobs[k][1] : slow instanceof Uint8Array ? slow.length : -1
        if (size < 0 || size > MAX_WASM_BYTES) throw await refused(ch, 'transfer: a blob is not a byte string or is too large', t)
        let b: Uint8Array
        if (fast !== null) { b = spool.take(size); copyOut(fast.chunks, fast.blobs[k][0], b) } else b = slow as Uint8Array
        got.push(b)
      }
      const shared = got[0].buffer
      if (shared instanceof SharedArrayBuffer && got.every((b) => b.length === PAGE_SIZE && b.buffer === shared)) {
        const n = count * PAGE_SIZE
        unchecked += n
        const digests = hashShared(got).catch(() => got.map((b) => sha256(b))) // no hash thread: hashed here
        checking = checking.then(async () => { const d = await digests; keep(got, d.map(cidOfDigest)) }).finally(() => { unchecked -= n })
        checking.catch((e: Error) => fail(e))
        if (unchecked > UNCHECKED_BYTES) await checking.catch(() => {})
      } else {
        await checking.catch(() => {}) // frames are checked in order
        try { keep(got, got.map((b) => cidOf(b))) } catch (e) { fail(e as Error) }
      }
      if (spool.queued > SPOOL_QUEUE_BYTES) await spool.settled()
    }
    try { await Promise.race([checking, failed]) } catch (e) { throw await refused(ch, (e as Error).message, t) }
    for (const c of wanted) if (!spool.has(c)) throw await refused(ch, `transfer: blob ${c} was asked for but not sent`, t)
    let got: Map<string, Uint8Array>
    try { got = await spool.load() } catch (e) { throw await refused(ch, (e as Error).message, t) }
    let live: LiveCheckpoint
    let replayed = 0
    try {
      live = assemble(offer, end, got, hooks)
      // The replay (a tick worker) runs while the node restores the agent for hosting (another
      // worker) and stores it as pending (this thread); a failed replay undoes the pending write.
      // A replay failure is reported before a failure of prepare, as when they ran one after the other.
      // With a replay, the restore for hosting waits until after `pending` (the replay is that check).
      const later = hooks.restoreLater !== undefined && replays(offer, live)
      const rp = replayBase(offer, live, got, hooks, baseIoOf(offer, end))
      // the pending file written during the transfer is completed and synced (else prepare writes it whole)
      const pf = pending as PendingFile | null
      const pp = (async () => hooks.prepare(offer, ch.peer, live, !later, pf === null ? undefined : await pf.finish(live).catch(() => undefined)))()
      const [r, p] = await Promise.allSettled([rp, pp])
      if (r.status === 'rejected') {
        if (p.status === 'fulfilled') hooks.discard(offer)
        throw r.reason
      }
      if (p.status === 'rejected') throw p.reason
      replayed = r.value
      if (later) hooks.restoreLater!(offer, live)
    } catch (e) {
      await refuse(ch, (e as Error).message.split('\n')[0], t)
      throw e
    }
    pendingWritten = true
    leaveGate(true) // the agent is stored as pending: the spool and the offer's slot are no longer needed
    hooks.fault?.('target-after-pending', ch)
    await ch.send({ t: 'pending', replayed }, 'pending', t.stepMs)
    const h = await ch.recv('handoff', t.handoffMs, ['handoff'], MAX_SMALL_FRAME)
    hooks.fault?.('target-after-handoff', ch)
    try {
      await hooks.install(offer, { header: bytesOf(h, 'header', 'handoff'), sig: bytesOf(h, 'sig', 'handoff', 64) })
    } catch (e) {
      await refuse(ch, (e as Error).message.split('\n')[0], t)
      throw e
    }
    pendingWritten = false
    try { await ch.send({ t: 'started' }, 'started', t.stepMs) } catch { /* the source committed anyway */ }
    await ch.close()
  } catch (e) {
    ch.abort()
    leaveGate()
    hooks.failed?.(offer, ch.peer, (e as Error).message)
    if (pendingWritten && offer !== null) hooks.unresolved(offer, ch.peer)
  } finally { leaveGate() }
}

/**
 * The bound on what an accepted offer may announce: its memory and its replay base's at most the
 * manifest's `max_memory_bytes` (so the pages asked for are at most 2 × that / 64 KiB; the wasm is at
 * most {@link MAX_WASM_BYTES}). Returns null or the refusal reason.
 */
function announced (o: Offer): string | null {
  const cap = Math.floor(o.manifest.maxMemoryBytes / PAGE_SIZE)
  if (o.pageCount > cap) return `the offer announces ${o.pageCount} pages of memory; the agent's manifest allows ${cap}`
  if (o.base !== undefined && o.base.pageCount > cap) return `the offer's replay base announces ${o.base.pageCount} pages of memory; the agent's manifest allows ${cap}`
  return null
}

/** Sends a `refuse` with `reason` and returns the NetworkError to throw. */
async function refused (ch: Channel, reason: string, t: Timeouts): Promise<NetworkError> {
  await refuse(ch, reason, t)
  return new NetworkError(reason)
}

async function refuse (ch: Channel, reason: string, t: Timeouts): Promise<void> {
  try { await ch.send({ t: 'refuse', reason: reason.slice(0, 1000) }, 'refuse', t.stepMs); await ch.close() } catch { ch.abort() }
}

/**
 * Builds the live checkpoint from the offer, the `end` frame (secret key, event log), the received
 * blobs `got` (by CID, each hashed on arrival: {@link Spool.load}) and the local store, and verifies
 * it: the key belongs to the DID, the wasm and log match their CIDs, every local blob hashes to its
 * CID, every page is 64 KiB, and the state root matches the header.
 * @throws NetworkError naming what does not match
 */
function assemble (offer: Offer, end: Frame, got: Map<string, Uint8Array>, hooks: TargetHooks): LiveCheckpoint {
  const seed = bytesOf(end, 'key', 'end', 32)
  if (identityFromSeed(seed).did !== offer.parsed.agent) throw new NetworkError('verify: the secret key does not belong to the offered agent')
  const log = end.log === null ? null : bytesOf(end, 'log', 'end')
  if ((log === null) !== (offer.parsed.log === null) || (log !== null && cidOf(log) !== offer.parsed.log)) throw new NetworkError('verify: the event log does not match the checkpoint\'s log CID')
  const io = end.io === undefined ? null : bytesOf(end, 'io', 'end')
  if ((io === null) !== (offer.parsed.io === undefined) || (io !== null && cidOf(io) !== offer.parsed.io)) throw new NetworkError('verify: the I/O state does not match the checkpoint\'s io CID')
  const blob = (c: string): Uint8Array => {
    const b = got.get(c)
    if (b !== undefined) return b
    const local = hooks.getBlob(c)
    if (cidOf(local) !== c) throw new NetworkError(`verify: local blob ${c} is corrupt`)
    return local
  }
  const wasm = blob(offer.parsed.code)
  const pages: [number, Uint8Array][] = []
  const digests: [number, Uint8Array][] = []
  for (const [i, c] of offer.pages) {
    const p = blob(c)
    if (p.length !== PAGE_SIZE) throw new NetworkError(`verify: page ${i} is ${p.length} bytes`)
    pages.push([i, p]); digests.push([i, digestOfCid(c)])
  }
  const root = stateRoot({ pages: offer.pageCount, digests, globals: offer.globals, fuel: offer.parsed.fuel, budget: offer.parsed.budget })
  if (Buffer.compare(root, offer.parsed.state) !== 0) throw new NetworkError('verify: the state root of the transferred pages does not match the signed checkpoint')
  return { header: offer.header, sig: offer.sig, parsed: offer.parsed, wasm, manifest: offer.manifestBytes, pageCount: offer.pageCount, pages, globals: offer.globals, log, seed, digests, io }
}

/**
 * The replay base's I/O state from the `end` frame's `baseIo` (with the bodies `baseShared` lists
 * taken from `io`, p2p/endframe.ts): required when the base's header names an `io` CID (the
 * rebuilt bytes must hash to it), absent otherwise; undefined without a base.
 * @throws NetworkError `verify: …`
 */
function baseIoOf (offer: Offer, end: Frame): IoState | undefined {
  const b = offer.base
  if (b === undefined) return undefined
  const want = b.parsed.io
  const got = end.baseIo === undefined || end.baseIo === null ? null : bytesOf(end, 'baseIo', 'end')
  const shared = end.baseShared === undefined || end.baseShared === null ? null : sharedOf(end.baseShared)
  if (want === undefined) {
    if (got !== null || shared !== null) throw new NetworkError('verify: the replay base has no I/O state, but "baseIo" was sent')
    return undefined
  }
  if (got === null) throw new NetworkError(`verify: the replay base's I/O state ${want} is missing (field "baseIo" of end)`)
  const io = end.io === undefined || end.io === null ? null : bytesOf(end, 'io', 'end')
  return restoreBaseIo(got, shared, io, want)
}

/**
 * The target's check of an offer's replay base: P's pages hash to their CIDs and are 64 KiB, P's
 * state root (pages, globals, fuel, budget) equals P's signed `state`, and the ticks of the offered
 * checkpoint's log, re-executed from P with their recorded inputs (runtime/replay.ts), end in
 * exactly the offered checkpoint. Returns the number of ticks replayed (0 without a base or log).
 * @throws NetworkError `verify: …` for a bad base; `replay diverges at tick N (<field>): <message>`
 */
/** Whether {@link replayBase} re-executes ticks for this offer (it has a replay base and the offered checkpoint a log). */
function replays (offer: Offer, live: LiveCheckpoint): boolean { return offer.base !== undefined && live.log !== null }

async function replayBase (offer: Offer, live: LiveCheckpoint, got: Map<string, Uint8Array>, hooks: TargetHooks, io: IoState | undefined): Promise<number> {
  const b = offer.base
  if (b === undefined || live.log === null) return 0 // as replays(): nothing to re-execute
  const pages: [number, Uint8Array][] = []
  const digests: [number, Uint8Array][] = []
  for (const [i, c] of b.pages) {
    let p = got.get(c)
    if (p === undefined) {
      p = hooks.getBlob(c)
      if (cidOf(p) !== c) throw new NetworkError(`verify: local blob ${c} is corrupt`)
    }
    if (p.length !== PAGE_SIZE) throw new NetworkError(`verify: page ${i} of the replay base is ${p.length} bytes`)
    pages.push([i, p]); digests.push([i, digestOfCid(c)])
  }
  const root = stateRoot({ pages: b.pageCount, digests, globals: b.globals, fuel: b.parsed.fuel, budget: b.parsed.budget })
  if (Buffer.compare(root, b.parsed.state) !== 0) throw new NetworkError('verify: the state root of the replay base does not match its signed checkpoint')
  let records
  try { records = EventLog.decodeSegment(live.log, `event log ${offer.parsed.log}`) } catch (e) { throw new NetworkError(`verify: ${(e as Error).message}`) }
  let r
  try {
    const start = { header: b.parsed, wasm: live.wasm, manifest: live.manifest, pageCount: b.pageCount, pages, digests, globals: b.globals, ...(io === undefined ? {} : { io }) }
    r = hooks.replay !== undefined ? await hooks.replay(start, records, offer.parsed) : replaySegment(start, records, offer.parsed)
  } catch (e) { throw new NetworkError(`replay: ${(e as Error).message.split('\n')[0]}`) }
  const d = r.divergence
  if (d !== null) throw new NetworkError(`replay diverges at tick ${d.tick} (${d.field}): ${d.message}`)
  return r.ticks
}

/** Answer of a status query. */
export type StatusAnswer = { state: 'handoff'; header: Uint8Array; sig: Uint8Array } | { state: 'pending' } | { state: 'aborted' }

/**
 * Asks the source of a pending migration what became of it (`/igor/migrate/status/1.0.0`).
 * @throws NetworkError when no address answers
 */
export async function queryStatus (peer: Peer, addrs: Multiaddr[], q: { name: string; agent: string; offer: string; id: string; tick: number }, t: Timeouts): Promise<StatusAnswer> {
  let last: Error = new NetworkError('status: no address for the source')
  for (const addr of addrs) {
    let ch: Channel | null = null
    try {
      ch = await openChannel(peer, addr, STATUS_PROTOCOL, t)
      await ch.send({ t: 'status', ...q }, 'status', t.stepMs)
      const a = await ch.recv('status', t.stepMs, ['status'])
      await ch.close()
      if (a.state === 'handoff') return { state: 'handoff', header: bytesOf(a, 'header', 'status'), sig: bytesOf(a, 'sig', 'status', 64) }
      if (a.state === 'pending' || a.state === 'aborted') return { state: a.state }
      throw new NetworkError(`status: unknown state from ${ch.peer}`)
    } catch (e) { ch?.abort(); last = e as Error }
  }
  throw last
}
