/**
 * A large agent module for the code-cache benchmark (bench/resume.ts): about `bytes` bytes of code
 * (default 1.3 MB, the size of a C agent with SQLite linked in), generated directly as a binary
 * (WebAssembly spec §5.5), no toolchain needed. Deterministic for a given size.
 *
 * Shape: 2 pages of memory; N functions `(i32, i32) -> i32`, each a loop of blocks mixing
 * arithmetic, loads, stores and if/else (the constructs the fuel meter and binaryen work on);
 * `agent_tick: () -> i32` calls function 0 and returns 0 (idle).
 */

const enc = (n: number): number[] => { const out: number[] = []; do { let b = n & 0x7f; n >>>= 7; if (n !== 0) b |= 0x80; out.push(b) } while (n !== 0); return out }
const sleb = (v: number): number[] => { const out: number[] = []; for (;;) { const b = v & 0x7f; v >>= 7; if ((v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0)) { out.push(b); return out } out.push(b | 0x80) } }
const section = (id: number, body: number[]): number[] => [id, ...enc(body.length), ...body]
const vec = (items: number[][]): number[] => [...enc(items.length), ...items.flat()]
const str = (s: string): number[] => { const b = [...new TextEncoder().encode(s)]; return [...enc(b.length), ...b] }

const I32 = 0x7f

/** One block of work inside a function's loop; `k` varies the constants. */
function block (k: number): number[] {
  return [
    0x20, 0, 0x41, ...sleb(k % 977 + 1), 0x6a, 0x21, 0, // x += c
    0x20, 0, 0x41, ...sleb(0xffc), 0x71, 0x28, 2, 0, 0x20, 1, 0x73, 0x21, 2, // t = load(x & 0xffc) ^ y
    0x20, 2, 0x41, ...sleb(0x5bd1e995 | 0), 0x6c, 0x20, 0, 0x77, 0x21, 1, // y = rotl(t * m, x)
    0x20, 0, 0x41, ...sleb(0xffc), 0x71, 0x20, 1, 0x36, 2, 0, // store(x & 0xffc, y)
    0x20, 1, 0x41, 7, 0x71, 0x04, I32, // if (y & 7) (result i32)
    0x20, 1, 0x41, ...sleb(k % 31 + 1), 0x76, // y >> c
    0x05, // else
    0x20, 0, 0x41, ...sleb(k % 13 + 3), 0x74, // x << c
    0x0b, 0x20, 2, 0x6a, 0x21, 2, // end; t += that
  ]
}

/** A function `(x, y) -> i32` with one extra local: a loop of `blocks` blocks run `x`-bounded times. */
function body (f: number, blocks: number): number[] {
  const code: number[] = [0x02, 0x40, 0x03, 0x40] // block loop
  for (let b = 0; b < blocks; b++) code.push(...block(f * 131 + b))
  code.push(0x20, 0, 0x41, ...sleb(64), 0x49, 0x0d, 0, 0x0b, 0x0b) // br_if loop (x < 64); end; end
  code.push(0x20, 1, 0x20, 2, 0x6a, 0x0b) // y + t; end
  const locals = [1, 1, I32] // one group: 1 × i32
  const all = [...locals, ...code]
  return [...enc(all.length), ...all]
}

/**
 * The module, about `bytes` bytes long.
 * @param bytes target size in bytes (the result is within one function body of it).
 */
export function bigCodeModule (bytes = 1_300_000): Uint8Array {
  const blocks = 24
  const per = body(0, blocks).length
  const n = Math.max(1, Math.round(bytes / per))
  const types = section(1, vec([[0x60, 2, I32, I32, 1, I32], [0x60, 0, 1, I32]]))
  const funcs = section(3, [...enc(n + 1), ...new Array<number>(n).fill(0), 1])
  const memory = section(5, [1, 0x00, 2])
  const exports = section(7, vec([[...str('memory'), 2, 0], [...str('agent_tick'), 0, ...enc(n)]]))
  const bodies: number[][] = []
  for (let f = 0; f < n; f++) bodies.push(body(f, blocks))
  const tick = [0, 0x41, 1, 0x41, 2, 0x10, 0, 0x1a, 0x41, 0, 0x0b]
  bodies.push([...enc(tick.length), ...tick])
  const code = section(10, [...enc(bodies.length), ...bodies.flat()])
  return Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0, ...types, ...funcs, ...memory, ...exports, ...code])
}
