/**
 * Preload for `jco componentize` (`node --import ./scripts/jco-preopen.ts …/jco.js componentize …`,
 * used by `make agents` for agents-js/): grants jco's WASI-hosted tools (wasm-tools, the
 * ComponentizeJS splicer, run by `@bytecodealliance/preview2-shim`) the repository directory.
 *
 * preview2-shim 0.26 starts with no preopened directory, and jco 1.35 does not add one before it
 * asks wasm-tools to read the WIT package, so a bare `jco componentize` fails with
 * "failed to get path metadata: No such file or directory (os error 44)". This maps the repository
 * root (host path = guest path, so the absolute paths jco passes resolve) and nothing else.
 * Build-time only: the runtime never loads preview2-shim.
 */
import { _setPreopens } from '@bytecodealliance/preview2-shim/filesystem'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
// The Node build of preview2-shim maps virtual paths to host paths (its types describe the browser build).
;(_setPreopens as unknown as (preopens: Record<string, string>) => void)({ [root]: root })
