// ledger — an agent whose heap really grows: every tick it appends to an array and a map keyed by
// random numbers, keeps a running checksum over everything it has seen, and logs a summary.
// Capabilities: clock, rand, log.
import { clockNow, log, randU32, MORE, IDLE } from "../sdk/igor";

const times: i64[] = [];
const amounts: Array<u32> = [];
const notes = new Map<u32, string>();
let checksum: u64 = 0xcbf29ce484222325; // FNV-1a offset basis
let ticks: i32 = 0;

function mix(x: u64): void {
  for (let i = 0; i < 8; i++) {
    checksum ^= (x >> (<u64>i * 8)) & 0xff;
    checksum *= 0x100000001b3; // FNV-1a prime
  }
}

/** Appends one entry per tick, plus a padded note so the heap grows by about half a KiB. */
export function agent_tick(): i32 {
  ticks++;
  const t = clockNow();
  const key = randU32();
  const amount = key % 10000;
  times.push(t);
  amounts.push(amount);
  let note = "entry " + ticks.toString() + " key " + key.toString() + " ";
  while (note.length < 240) note += "."; // ~480 bytes of UTF-16 per entry
  notes.set(key, note);
  mix(<u64>key);
  mix(<u64>amount);
  mix(<u64>note.length);
  log("ledger: entries " + amounts.length.toString() + ", notes " + notes.size.toString()
    + ", checksum " + checksum.toString(16));
  // Every 50th tick asks for an immediate follow-up tick (exercises the fast path).
  return ticks % 50 == 0 ? MORE : IDLE;
}

/** For tests: the running checksum. */
export function ledger_checksum(): u64 {
  return checksum;
}

/** For tests: the number of entries. */
export function ledger_entries(): i32 {
  return amounts.length;
}
