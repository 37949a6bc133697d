/*
 * vm — an interpreter-shaped C agent: a tiny stack-machine bytecode VM whose dispatch is one
 * `switch` in a loop (clang compiles it to a wasm `br_table` inside a `loop`, the shape of SQLite's
 * VDBE, Lua or a regex engine). Used by the fuel tests and the fuel bench (docs/ABI.md "Fuel"): an
 * executed VM instruction must cost the few wasm instructions its own case runs, not the whole
 * switch body.
 *
 * Every tick it runs the bytecode program below (an FNV-style hash loop with a data-dependent
 * branch, a call and a return per round) for 2,000 rounds and prints the result (printf → WASI
 * fd_write → the agent log). Capabilities: wasi.
 *
 * Exports for tests and benches: vm_run(rounds) runs the program and returns its result;
 * vm_executed() is the number of VM instructions executed since the start (a u64).
 */
#include <stdint.h>
#include <stdio.h>

#include "igor.h"

enum {
  OP_HALT, OP_PUSH, OP_LOAD, OP_STORE, OP_ADD, OP_SUB, OP_MUL, OP_XOR, OP_AND, OP_SHR, OP_SHL,
  OP_DUP, OP_DROP, OP_SWAP, OP_JMP, OP_JZ, OP_JNZ, OP_LT, OP_EQ, OP_INC, OP_DEC, OP_CALL, OP_RET,
  OP_NOP, OP_NOT, OP_OVER
};

typedef struct { uint8_t op; int32_t arg; } insn;

/* r0 = rounds, r1 = h, r2 = scratch */
static const insn program[] = {
  /*  0 */ {OP_PUSH, (int32_t)2166136261u}, {OP_STORE, 1},
  /*  2 loop: */ {OP_LOAD, 0}, {OP_JZ, 29},
  /*  4 */ {OP_LOAD, 1}, {OP_LOAD, 0}, {OP_XOR, 0}, {OP_PUSH, 16777619}, {OP_MUL, 0}, {OP_STORE, 1},
  /* 10 */ {OP_LOAD, 1}, {OP_PUSH, 1}, {OP_AND, 0}, {OP_JZ, 19},
  /* 14 */ {OP_LOAD, 1}, {OP_LOAD, 0}, {OP_ADD, 0}, {OP_STORE, 1}, {OP_JMP, 25},
  /* 19 else: */ {OP_LOAD, 1}, {OP_PUSH, 3}, {OP_SHR, 0}, {OP_CALL, 31}, {OP_NOP, 0}, {OP_STORE, 1},
  /* 25 next: */ {OP_LOAD, 0}, {OP_DEC, 0}, {OP_STORE, 0}, {OP_JMP, 2},
  /* 29 end: */ {OP_LOAD, 1}, {OP_HALT, 0},
  /* 31 sub: x -> (x ^ h) + (x < 7) */ {OP_LOAD, 1}, {OP_XOR, 0}, {OP_DUP, 0}, {OP_PUSH, 7}, {OP_LT, 0}, {OP_ADD, 0}, {OP_RET, 0},
};

static uint64_t executed;
static uint32_t regs[4];

static uint32_t run(const insn *code, uint32_t rounds) {
  uint32_t stack[64];
  int rstack[16];
  int sp = 0, rsp = 0, pc = 0;
  regs[0] = rounds;
  for (;;) {
    insn i = code[pc++];
    executed++;
    switch (i.op) {
      case OP_HALT: return sp > 0 ? stack[sp - 1] : 0;
      case OP_PUSH: stack[sp++] = (uint32_t)i.arg; break;
      case OP_LOAD: stack[sp++] = regs[i.arg & 3]; break;
      case OP_STORE: regs[i.arg & 3] = stack[--sp]; break;
      case OP_ADD: sp--; stack[sp - 1] += stack[sp]; break;
      case OP_SUB: sp--; stack[sp - 1] -= stack[sp]; break;
      case OP_MUL: sp--; stack[sp - 1] *= stack[sp]; break;
      case OP_XOR: sp--; stack[sp - 1] ^= stack[sp]; break;
      case OP_AND: sp--; stack[sp - 1] &= stack[sp]; break;
      case OP_SHR: sp--; stack[sp - 1] >>= (stack[sp] & 31); break;
      case OP_SHL: sp--; stack[sp - 1] <<= (stack[sp] & 31); break;
      case OP_DUP: stack[sp] = stack[sp - 1]; sp++; break;
      case OP_DROP: sp--; break;
      case OP_SWAP: { uint32_t t = stack[sp - 1]; stack[sp - 1] = stack[sp - 2]; stack[sp - 2] = t; break; }
      case OP_OVER: stack[sp] = stack[sp - 2]; sp++; break;
      case OP_JMP: pc = i.arg; break;
      case OP_JZ: if (stack[--sp] == 0) pc = i.arg; break;
      case OP_JNZ: if (stack[--sp] != 0) pc = i.arg; break;
      case OP_LT: sp--; stack[sp - 1] = stack[sp - 1] < stack[sp]; break;
      case OP_EQ: sp--; stack[sp - 1] = stack[sp - 1] == stack[sp]; break;
      case OP_INC: stack[sp - 1]++; break;
      case OP_DEC: stack[sp - 1]--; break;
      case OP_NOT: stack[sp - 1] = !stack[sp - 1]; break;
      case OP_CALL: rstack[rsp++] = pc; pc = i.arg; break;
      case OP_RET: pc = rstack[--rsp]; break;
      case OP_NOP: break;
      default: return 0xffffffffu;
    }
    if (sp < 0 || sp >= 62 || rsp < 0 || rsp >= 15 || pc < 0 || pc >= (int)(sizeof program / sizeof program[0])) return 0xfffffffeu;
  }
}

IGOR_EXPORT("vm_run") uint32_t vm_run(uint32_t rounds) { return run(program, rounds); }

IGOR_EXPORT("vm_executed") uint64_t vm_executed(void) { return executed; }

static int ticks;

IGOR_EXPORT("agent_tick") int agent_tick(void) {
  uint32_t r = run(program, 2000);
  ticks++;
  printf("vm: tick %d result %08x executed %llu\n", ticks, r, (unsigned long long)executed);
  return IGOR_IDLE;
}
