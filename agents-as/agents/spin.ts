// spin — hostile: a few ordinary ticks, then a tick that never returns under a fuel limit of 2^53-1
// (about 100 days of CPU). Only the host's wall-clock watchdog (or a signal) can end it.
// Capabilities: log.
import { log, IDLE } from "../sdk/igor";

let beats: u32 = 0;
let sink: u32 = 0; // a global the optimizer must keep writing

/** Ticks 1 and 2 are ordinary (checkpointed); from tick 3 on every tick spins forever. */
export function agent_tick(): i32 {
  beats++;
  if (beats <= 2) {
    log("spin: beat " + beats.toString());
    return IDLE;
  }
  log("spin: spinning");
  let x: u32 = sink;
  while (true) {
    x = x * 31 + 1;
    sink = x;
  }
  return IDLE;
}
