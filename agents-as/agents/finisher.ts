// finisher — counts to 5 and retires: ticks 1–4 return IDLE, tick 5 returns FINISHED.
// Capabilities: log.
import { log, IDLE, FINISHED } from "../sdk/igor";

let count: i32 = 0;

export function agent_init(): void {
  log("finisher: starting");
}

export function agent_tick(): i32 {
  count++;
  log("finisher: " + count.toString() + "/5");
  return count >= 5 ? FINISHED : IDLE;
}
