/**
 * Sources of the outside values an agent observes: the clock and random bytes.
 *
 * Live runs read the real wall clock and the CSPRNG. Simulation runs (`--sim-seed`) derive both
 * from a seed and the tick number, so two runs of the same ticks see the same inputs — the basis
 * of reproducible tests and of comparing an interrupted life with an uninterrupted one.
 * Whatever the source, every value is recorded in the event log by the hostcalls (DESIGN §8).
 */
import { createHash, randomFillSync } from 'node:crypto'

/** Where an agent's clock and random bytes come from during one tick. */
export interface InputSource {
  /** Called before each tick (and before birth, with tick 0). */
  beginTick (tick: number): void
  /** Unix time in ns. */
  now (): bigint
  /** Fills `buf` with random bytes. */
  randomFill (buf: Uint8Array): void
}

/** The real wall clock (ns since the Unix epoch) and the operating system's CSPRNG. */
export function liveInputs (): InputSource {
  const originNs = BigInt(Math.round(performance.timeOrigin * 1e6))
  return {
    beginTick () {},
    now: () => originNs + BigInt(Math.round(performance.now() * 1e6)),
    randomFill: (buf) => { randomFillSync(buf) },
  }
}

/** Simulated time at tick 0: 2023-11-14T22:13:20Z, in ns. */
export const SIM_EPOCH_NS = 1_700_000_000_000_000_000n

/**
 * Deterministic inputs derived from `seed` (any string) and the tick number.
 *
 * The clock reads `SIM_EPOCH_NS + tick × stepNs + k` for the k-th read within a tick (so it never
 * goes backwards); random bytes are SHA-256(seed ‖ tick ‖ counter) blocks, the counter running
 * within the tick. Tick t therefore sees the same values in every run and after any resume.
 * @param stepNs simulated time between ticks, ns (default 1 s)
 */
export function simulatedInputs (seed: string, stepNs = 1_000_000_000n): InputSource {
  let tick = 0
  let clockReads = 0n
  let block = 0
  return {
    beginTick (t) { tick = t; clockReads = 0n; block = 0 },
    now: () => SIM_EPOCH_NS + BigInt(tick) * stepNs + clockReads++,
    randomFill (buf) {
      for (let off = 0; off < buf.length; off += 32) {
        const h = createHash('sha256').update(seed).update(`\0${tick}\0${block++}`).digest()
        buf.set(h.subarray(0, Math.min(32, buf.length - off)), off)
      }
    },
  }
}
