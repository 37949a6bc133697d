// floodlog — hostile: every tick emits 1 KiB log lines in an endless loop. Each line goes to the
// host's output and the event log; the tick traps at max_log_bytes_per_tick (docs/ABI.md).
// Capabilities: log.

// @ts-ignore: decorator
@external("igor", "log_emit")
declare function log_emit(ptr: usize, len: i32): void;

const line = new Uint8Array(1024);

export function agent_tick(): i32 {
  line.fill(0x61); // 'a'
  while (true) {
    log_emit(line.dataStart, line.byteLength);
  }
  return 0;
}
