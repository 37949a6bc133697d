/**
 * igord as a library: `import { birth, resume, verify, … } from 'igord'`. A small, typed facade
 * over the modules the CLI uses (runtime/pool.ts, checkpoint/history.ts, runtime/replay.ts,
 * checkpoint/inspect.ts, runtime/instrument.ts, p2p/node.ts); it holds no logic of its own beyond
 * defaults and argument checks, and the CLI calls these same functions for `verify`, `inspect` and
 * `instrument` (docs/RATIONALE.md "igord as a library").
 *
 * Every entry point is async and loads the heavy modules it needs when first called (binaryen for
 * instrument/replay/agents, libp2p for startNode), so `import 'igord'` itself is cheap.
 *
 * Errors: every failure a caller can cause is an {@link IgordError} with `exitCode` (the CLI's exit
 * code, {@link EXIT}) and `code`, a stable upper-case string (`'CHECKPOINT'`, `'MODULE'`,
 * `'MANIFEST'`, `'IO'`, `'USAGE'`, `'BAD_NAME'`, `'LOCKED'`, `'BAD_REQUEST'`, …). Anything else
 * thrown is a bug. Units: fuel in fuel units (bigint), budgets in microcents (bigint; 1 unit =
 * 1,000,000), prices in microcents per million fuel (bigint), durations in ms, sizes in bytes.
 *
 * Semver: what this module exports (names, option fields, result fields) is the public API of the
 * package; the files under dist/ are not (docs/RATIONALE.md).
 */
export { EXIT, IgordError, CheckpointError, ModuleError, ManifestError, StorageError } from '../checkpoint/errors.ts'
export { NameError } from '../checkpoint/layout.ts'
export { LockedError } from '../checkpoint/lock.ts'
export { Agent, birth, resume } from './agent.ts'
export type { AgentState, BirthOptions, LoopEnd, ResumeOptions, RunOptions, TickResult } from './agent.ts'
export { inspect, instrument, replay, verify } from './tools.ts'
export type { Divergence, Fault, Fork, Funding, Handoff, InspectView, Instrumented, InstrumentedGlobal, InstrumentOptions, ReplayOptions, ReplayReport, VerifyReport } from './tools.ts'
export { startNode } from './node.ts'
export type { AgentInfo, IgordNodeHandle, MigrateResult, NodeRunRequest, StartNodeOptions } from './node.ts'
