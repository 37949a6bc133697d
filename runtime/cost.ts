/**
 * What a tick costs, in a module without runtime imports so `igord logs` (runtime/logs.ts) can
 * follow an agent's budget without loading replay and binaryen.
 */

/** Microcents a tick costs: min(budget, ceil(fuel × price / 10^6)) (DESIGN §6; what `Agent` charges). */
export function tickCost (fuel: bigint, price: bigint, budget: bigint): bigint {
  const cost = (fuel * price + 999_999n) / 1_000_000n
  return cost > budget ? budget : cost
}
