/**
 * Node's on-disk compile cache for the igord CLI (`module.enableCompileCache`, Node ≥ 22.8; Node's
 * "Module compile cache" docs): V8 code caches, and with Node 24 the type-stripped output of our
 * TypeScript, kept under the user's cache directory, so a later `igord` compiles only what changed
 * (docs/RATIONALE.md "CLI startup"). Never written into the working directory; off when no cache
 * directory is known or Node cannot create it. `NODE_COMPILE_CACHE=<dir>` chooses another directory
 * and `NODE_DISABLE_COMPILE_CACHE=1` turns it off (both read by Node itself).
 */
import * as nodeModule from 'node:module'
import { homedir } from 'node:os'
import { isAbsolute, join } from 'node:path'

/** Where under the user's cache directory the CLI keeps Node's compile cache. */
export const COMPILE_CACHE_SUBDIR = join('igord', 'compile-cache')

function home (): string | null {
  try { return homedir() } catch { return null }
}

/**
 * The compile cache directory of the CLI: `<cache>/igord/compile-cache`, where `<cache>` is
 * `%LOCALAPPDATA%` on Windows, `~/Library/Caches` on macOS, and `$XDG_CACHE_HOME` (when absolute)
 * or else `~/.cache` elsewhere (the XDG Base Directory spec); `homeDir` null: no home directory
 * known. bin/igord computes the same path in sh.
 * @returns an absolute path, or null when no absolute base is known (the cache is then off)
 */
export function compileCacheDir (env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform, homeDir: string | null = home()): string | null {
  const abs = (p: string | null | undefined): string | null => p !== undefined && p !== null && p !== '' && isAbsolute(p) ? p : null
  const h = abs(homeDir)
  const base = platform === 'win32' ? abs(env.LOCALAPPDATA)
    : platform === 'darwin' ? (h === null ? null : join(h, 'Library', 'Caches'))
      : abs(env.XDG_CACHE_HOME) ?? (h === null ? null : join(h, '.cache'))
  return base === null ? null : join(base, COMPILE_CACHE_SUBDIR)
}

/**
 * Turns on Node's compile cache for the modules this process loads from now on (the modules
 * already loaded were compiled without it: bin/igord sets `NODE_COMPILE_CACHE` before Node starts,
 * so there the cache covers the whole CLI), and passes it on to worker threads started later
 * through `process.env.NODE_COMPILE_CACHE`. Does nothing on a Node without the API, when
 * `NODE_DISABLE_COMPILE_CACHE` is set, or when no directory is known.
 * @returns the cache directory in use (Node adds a per-version subdirectory), or null when off;
 *   never throws (a cache that cannot be used is only slower)
 */
export function enableCompileCache (): string | null {
  const enable = (nodeModule as Partial<typeof nodeModule>).enableCompileCache
  if (typeof enable !== 'function' || process.env.NODE_DISABLE_COMPILE_CACHE !== undefined) return null
  const dir = process.env.NODE_COMPILE_CACHE ?? compileCacheDir()
  if (dir === null) return null
  try {
    const r = enable(dir)
    const on = r.status === nodeModule.constants.compileCacheStatus.ENABLED || r.status === nodeModule.constants.compileCacheStatus.ALREADY_ENABLED
    if (!on) return null
    process.env.NODE_COMPILE_CACHE ??= dir
    return r.directory ?? dir
  } catch {
    return null
  }
}
