/**
 * Tick pool defaults, in a module without runtime imports so the CLI can show them in `--help`
 * without loading the runtime (binaryen, the agent, the worker): see docs/RATIONALE.md "CLI startup".
 */

/** Default wall-clock limit of one tick, ms (`--tick-timeout`). */
export const DEFAULT_TICK_TIMEOUT_MS = 10_000

/** Default time a stop waits for the tick in progress before terminating its worker, ms. */
export const DEFAULT_STOP_GRACE_MS = 250

/**
 * Default idle time after which a node hibernates an agent (drops its instance and memory, restores
 * it from its live checkpoint on its next tick), ms (`igord node --hibernate-after`). Waking costs
 * about a resume of the agent (read and check its live file, instantiate, copy its pages): for a
 * small agent well under a millisecond of CPU, so an agent idle 10 s costs at most that once per
 * 10 s, while one ticking more often than every 10 s (whose next tick always comes sooner) is never
 * dropped. docs/RATIONALE.md "Density: idle agents are not resident…".
 */
export const DEFAULT_HIBERNATE_AFTER_MS = 10_000
