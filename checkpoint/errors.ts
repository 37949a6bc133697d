/**
 * Errors a user can cause, each carrying the process exit code the CLI ends with.
 *
 * Every message is one line that names the file, field or step at fault (DESIGN §10).
 * `hostcalls/` may import this module too: both are bottom layers.
 */

/**
 * Process exit codes of `igord`, documented in `igord --help`.
 * - OK 0: success (also a clean stop on SIGINT/SIGTERM).
 * - INTERNAL 1: a bug or an unexpected failure.
 * - USAGE 2: bad command-line arguments.
 * - CHECKPOINT 3: a checkpoint file is corrupt, truncated, of an unknown version or badly signed.
 * - MODULE 4: the wasm is invalid, uses a rejected feature or imports what the manifest does not grant.
 * - MANIFEST 5: the manifest is malformed, names an unknown capability or has a bad limit.
 * - INVALID 6: `verify` found the history INVALID (faults or forks).
 * - STOPPED 7: the agent stopped without finishing (paused after failures, or budget exhausted).
 * - IO 8: a file or directory could not be read or written.
 * - NETWORK 9: a peer could not be reached or refused (p2p commands).
 * - LOCKED 10: another live process writes that agent or serves that data directory (checkpoint/lock.ts).
 * - REFUSED 11: a message or top-up was refused (inbox full, message too large, no such agent).
 */
export const EXIT = {
  OK: 0,
  INTERNAL: 1,
  USAGE: 2,
  CHECKPOINT: 3,
  MODULE: 4,
  MANIFEST: 5,
  INVALID: 6,
  STOPPED: 7,
  IO: 8,
  NETWORK: 9,
  LOCKED: 10,
  REFUSED: 11,
} as const

/** The name of an exit code in {@link EXIT} (`'CHECKPOINT'` for 3), or `'INTERNAL'` for an unknown one. */
export function exitName (exitCode: number): string {
  for (const [k, v] of Object.entries(EXIT)) if (v === exitCode) return k
  return 'INTERNAL'
}

/**
 * An error a user can cause; `exitCode` is one of {@link EXIT}. `code` is a stable, machine-readable
 * reason for programs (the control socket, the HTTP API, embedders) that must not parse `message`:
 * the exit code's name in {@link EXIT} (`'CHECKPOINT'`, `'IO'`, …) unless a subclass names a finer
 * one (`'LOCKED'`, `'BAD_NAME'`, `'MIGRATION_REFUSED'`, `'DELIVERY_REFUSED'`, `'BAD_REQUEST'`).
 * Codes are upper-case ASCII and never change meaning once released.
 */
export class IgordError extends Error {
  readonly exitCode: number
  readonly code: string
  constructor (message: string, exitCode: number, code: string = exitName(exitCode)) {
    super(message)
    this.name = new.target.name
    this.exitCode = exitCode
    this.code = code
  }
}

/** A checkpoint file or history entry is corrupt, truncated, of an unknown version or badly signed (exit 3). */
export class CheckpointError extends IgordError {
  constructor (message: string) { super(message, EXIT.CHECKPOINT) }
}

/** A wasm module is invalid, uses a rejected feature, or imports what its manifest does not grant (exit 4). */
export class ModuleError extends IgordError {
  constructor (message: string) { super(message, EXIT.MODULE) }
}

/** A capability manifest is malformed, names an unknown capability or sets a bad limit (exit 5). */
export class ManifestError extends IgordError {
  constructor (message: string) { super(message, EXIT.MANIFEST) }
}

/** A file or directory could not be read or written (exit 8). */
export class StorageError extends IgordError {
  constructor (message: string) { super(message, EXIT.IO) }
}
