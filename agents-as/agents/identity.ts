// identity — logs its own DID and a signature by its own key over "tick N".
// Capabilities: identity, log.
import { agentDid, agentSignString, log, toHex, IDLE } from "../sdk/igor";

let ticks: i32 = 0;
let did: string = "";

export function agent_init(): void {
  did = agentDid();
  log("identity: I am " + did);
}

export function agent_tick(): i32 {
  ticks++;
  const msg = "tick " + ticks.toString();
  const sig = agentSignString(msg);
  log("identity: " + did + " signed \"" + msg + "\": " + toHex(sig));
  return IDLE;
}
