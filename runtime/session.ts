/**
 * Starting and resuming agents on this host: the glue between a wasm file or a live checkpoint,
 * the agent instance, the host identity and the checkpoint writer.
 */
import { existsSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { CheckpointError, StorageError } from '../checkpoint/errors.ts'
import { headerCid } from '../checkpoint/header.ts'
import { checkAgentName, codeCacheDir, livePath as layoutLivePath, nameOfLive } from '../checkpoint/layout.ts'
import { generateIdentity, identityFromSeed } from '../checkpoint/identity.ts'
import type { LiveCheckpoint } from '../checkpoint/live.ts'
import { checkLiveState, readLive } from '../checkpoint/live.ts'
import { CheckpointWriter } from '../checkpoint/writer.ts'
import { parseManifest } from '../hostcalls/manifest.ts'
import { decodeIo } from '../checkpoint/io.ts'
import { Agent } from './agent.ts'
import { Mailbox } from './mailbox.ts'
import type { Envelope, SendOutcome } from '../checkpoint/envelope.ts'
import { loadHostIdentity } from './host.ts'
import { liveInputs, simulatedInputs } from './inputs.ts'
import type { InputSource } from './inputs.ts'
import type { CodeCache } from './code-cache.ts'
import type { Lineage } from './runner.ts'
import { writeCheckpoint } from './runner.ts'

/** Host-side settings shared by new and resumed agents. */
export interface HostSettings {
  /** Data directory: live checkpoints, history, blobs and the host key. */
  dir: string
  /** Price, microcents per million fuel. */
  price: bigint
  /** When set, clock and random bytes are derived from this seed (simulation mode). */
  simSeed?: string
  /** Receives each line the agent logs. */
  emit (line: string): void
  /** Sends an agent's signed message (runtime/mailbox.ts `MailboxOptions.send`); absent: messages bounce. */
  send? (env: Envelope, first?: boolean): Promise<SendOutcome>
}

/** A ready-to-run agent with its lineage and its mailbox (inbox, timer, HTTP requests). */
export interface Session { agent: Agent; lineage: Lineage; name: string; ckptPath: string; mailbox: Mailbox }

/** The host's cache of instrumented code, `<dir>/cache/code` (runtime/code-cache.ts); its notes go to `s.emit`. */
export function codeCacheOf (s: Pick<HostSettings, 'dir'> & { emit? (line: string): void }): CodeCache {
  return { dir: codeCacheDir(s.dir), ...(s.emit === undefined ? {} : { note: s.emit }) }
}

function inputsFor (s: HostSettings): InputSource {
  return s.simSeed === undefined ? liveInputs() : simulatedInputs(s.simSeed)
}

/** The live checkpoint path of agent `name` in `dir`, absolute (checkpoint/layout.ts). */
export function livePath (dir: string, name: string): string {
  return resolve(layoutLivePath(dir, name))
}

/**
 * Births a new agent from wasm and manifest bytes and writes its genesis checkpoint (tick 0).
 * @param budget microcents
 * @throws NameError (exit 2) for a name that breaks the rule (checked before anything runs);
 *   ModuleError, ManifestError, StorageError; and StorageError when `<dir>/<name>.ckpt`
 *   already exists (an existing agent is never overwritten: resume it instead)
 */
export function startAgent (s: HostSettings, a: { name: string; wasm: Uint8Array; wasmFile: string; manifest: Uint8Array; manifestFile: string; budget: bigint }): Session {
  checkAgentName(a.name)
  const ckptPath = livePath(s.dir, a.name)
  if (existsSync(ckptPath)) {
    throw new StorageError(`${ckptPath} already exists: resume it with 'igord resume ${ckptPath}' or choose another --name or --dir`)
  }
  const manifest = parseManifest(a.manifest, a.manifestFile)
  const identity = generateIdentity()
  const agent = Agent.birth({ wasm: a.wasm, manifest, identity, budget: a.budget, price: s.price, inputs: inputsFor(s), emit: s.emit, file: a.wasmFile, codeCache: codeCacheOf(s) })
  const lineage: Lineage = {
    writer: new CheckpointWriter(s.dir, a.name),
    identity,
    wasm: a.wasm,
    manifest: a.manifest,
    host: loadHostIdentity(s.dir).peerId,
    epoch: 0,
    prev: null,
    lastTick: -1,
  }
  writeCheckpoint(agent, lineage, 'running')
  const mailbox = new Mailbox(agent, { dir: s.dir, name: a.name, host: lineage.host, note: s.emit, ...(s.send === undefined ? {} : { send: s.send }) })
  mailbox.recover(lineage.host) // drop files left for this name before it was born
  return { agent, lineage, name: a.name, ckptPath, mailbox }
}

/**
 * Restores an agent from its live checkpoint file, ready to continue in `s.dir` (by default the
 * file's own directory) under the same name, DID, tick count and epoch. The pages read from the
 * file are hashed and copied into the committed image and the new instance's memory in one pass,
 * and checked against the signed state root before the agent runs anything but its start function
 * (`Agent.restore`'s `check`); the returned `live` then has its `digests`.
 * @throws CheckpointError for a bad file or an agent that has finished; ModuleError, ManifestError
 */
export function resumeAgent (s: HostSettings, file: string): Session & { live: LiveCheckpoint } {
  // the pages are checked against the signed state root while Agent.restore copies them into the
  // instance (one pass: hash, copy into the image, copy into memory), before anything reads them
  const live = readLive(file, { deferState: true })
  const h = live.parsed
  const name = checkAgentName(nameOfLive(file), file)
  if ((h.status === 'finished' || h.status === 'handoff') && resolve(s.dir) === dirname(resolve(file))) {
    // its last checkpoint may be only in the live file (a kill before its history entry): archive it
    checkLiveState(live, file)
    new CheckpointWriter(s.dir, name).ensureArchived(live)
  }
  if (h.status === 'finished') throw new CheckpointError(`${file}: the agent finished at tick ${h.tick}; a finished agent cannot be resumed`)
  if (h.status === 'handoff') throw new CheckpointError(`${file}: the agent was handed off to ${h.target ?? 'another host'} at tick ${h.tick}; resume it there`)
  const manifest = parseManifest(live.manifest, `${file} (manifest)`)
  const identity = identityFromSeed(live.seed)
  const agent = Agent.restore(
    { wasm: live.wasm, manifest, identity, budget: h.budget, price: s.price, inputs: inputsFor(s), emit: s.emit, file: `${file} (wasm)`, codeCache: codeCacheOf(s), ...(live.io === null ? {} : { io: decodeIo(live.io, `${file} (io)`) }) },
    { tick: h.tick, fuel: h.fuel, pageCount: live.pageCount, pages: live.pages, ...(live.digests === undefined ? {} : { digests: live.digests }), globals: live.globals, check: (digests) => checkLiveState(live, file, digests), borrow: true },
  )
  const writer = new CheckpointWriter(s.dir, name)
  writer.ensureArchived(live)
  const lineage: Lineage = {
    writer,
    identity,
    wasm: live.wasm,
    manifest: live.manifest,
    host: loadHostIdentity(s.dir).peerId,
    epoch: h.epoch,
    prev: headerCid(live.header),
    lastTick: h.tick,
  }
  const mailbox = new Mailbox(agent, { dir: s.dir, name, host: lineage.host, note: s.emit, ...(s.send === undefined ? {} : { send: s.send }) })
  mailbox.recover(h.host)
  return { agent, lineage, name, ckptPath: livePath(s.dir, name), live, mailbox }
}

/** The default data directory for a resumed checkpoint: the directory holding the file. */
export function defaultResumeDir (file: string): string {
  return dirname(resolve(file))
}
