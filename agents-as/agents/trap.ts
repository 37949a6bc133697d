// trap — hostile: every tick logs a line and then traps with `unreachable`.
// The tick rolls back; after 3 consecutive failures the agent pauses.
// Capabilities: log.
import { log } from "../sdk/igor";

let attempts: i32 = 0; // rolled back with the rest of the tick: always 1 in the log line

export function agent_tick(): i32 {
  attempts++;
  log("trap: attempt " + attempts.toString() + ", about to hit unreachable");
  unreachable();
  return 0;
}
