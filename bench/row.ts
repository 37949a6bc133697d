/**
 * One figure printed by `make bench`.
 * - `value`: the measured figure in `unit` (ms, MiB/s, checkpoints/s, ×).
 * - `floor`: the same work's lower bound measured in the same run, same unit.
 * - `ratio`: value / floor (for throughputs, floor / value, so lower is always better).
 * - `target`: the DESIGN §11 target in words; `met`: whether this run met it.
 */
export interface BenchRow {
  name: string
  value: number
  unit: string
  floor?: number
  ratio?: number
  target?: string
  met?: boolean
}
