// loop — hostile: agent_tick never returns. Fuel metering must end the tick.
// Capabilities: log.
import { log } from "../sdk/igor";

let sink: u32 = 0; // a global the optimizer must keep writing

export function agent_tick(): i32 {
  log("loop: entering an endless loop");
  let x: u32 = sink;
  while (true) {
    x = x * 31 + 1;
    sink = x;
  }
  return 0;
}
