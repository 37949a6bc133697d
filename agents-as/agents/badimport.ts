// badimport — imports rand_bytes but its manifest grants only log: igord must refuse to load it,
// naming igor.rand_bytes and the capability "rand".
import { log, randU32 } from "../sdk/igor";

export function agent_tick(): i32 {
  log("badimport: " + randU32().toString());
  return 0;
}
