// bomb — hostile: every tick grabs more memory and keeps it, until memory.grow fails at the
// manifest's 4 MiB cap. Each tick allocates a 256 KiB array on the GC heap and grows memory by
// 16 pages (1 MiB) directly; both are kept.
// Capabilities: log.
import { log } from "../sdk/igor";

const hoard: Array<Uint8Array> = [];
let ticks: i32 = 0;

export function agent_tick(): i32 {
  ticks++;
  const before = memory.size();
  const grown = memory.grow(16); // -1 once the cap is reached
  log("bomb: tick " + ticks.toString() + ", memory " + before.toString() + " pages, grow(16) -> " + grown.toString());
  const chunk = new Uint8Array(256 * 1024); // aborts ("allocation too large"/OOM) when the heap cannot grow
  chunk[0] = <u8>ticks;
  hoard.push(chunk);
  log("bomb: hoard " + hoard.length.toString() + " chunks, memory " + memory.size().toString() + " pages");
  return 0;
}
