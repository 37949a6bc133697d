// floodrand — hostile: every tick asks rand_bytes for 64 KiB in an endless loop. Each answer is
// recorded in the event log; the tick traps at max_random_bytes_per_tick (docs/ABI.md).
// Capabilities: rand.
import { randBytes } from "../sdk/igor";

const buf = new Uint8Array(64 * 1024);
let sink: u8 = 0;

export function agent_tick(): i32 {
  while (true) {
    randBytes(buf);
    sink ^= buf[0];
  }
  return 0;
}
