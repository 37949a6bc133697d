/**
 * Tick pool defaults, in a module without runtime imports so the CLI can show them in `--help`
 * without loading the runtime (binaryen, the agent, the worker): see docs/RATIONALE.md "CLI startup".
 */

/** Default wall-clock limit of one tick, ms (`--tick-timeout`). */
export const DEFAULT_TICK_TIMEOUT_MS = 10_000

/** Default time a stop waits for the tick in progress before terminating its worker, ms. */
export const DEFAULT_STOP_GRACE_MS = 250
