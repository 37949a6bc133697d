// nomad — moves itself: every 10 ticks it asks its node to migrate it to the cheapest known peer
// that grants its capabilities (agent-initiated migration). Its tick count and heap travel with it.
// Capabilities: clock, log, migrate.
import { clockNow, log, migrateToCheapest, IDLE } from "../sdk/igor";

class Journey {
  ticks: i64 = 0;
  requests: i32 = 0;
  bornNs: i64 = 0;
}

const journey = new Journey();

export function agent_init(): void {
  journey.bornNs = clockNow();
  log("nomad born");
}

export function agent_tick(): i32 {
  journey.ticks++;
  log("tick " + journey.ticks.toString() + ", " + journey.requests.toString() + " moves asked");
  if (journey.ticks % 10 == 0) {
    journey.requests++;
    const r = migrateToCheapest();
    log("asked to move to the cheapest peer: " + r.toString());
  }
  return IDLE;
}
