// floodclock — hostile: every tick calls clock_now in an endless loop. Each call is one event in
// the tick's event log, so without a per-tick bound the host's memory grows until it dies; with
// one, the tick traps at max_events_per_tick (docs/ABI.md "Per-tick limits").
// Capabilities: clock.
import { clockNow } from "../sdk/igor";

let sink: i64 = 0; // a global the optimizer must keep writing

export function agent_tick(): i32 {
  while (true) {
    sink += clockNow();
  }
  return 0;
}
