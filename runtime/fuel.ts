/**
 * Deterministic fuel metering of a binaryen module (DESIGN §5.1; the cost model is in
 * docs/ABI.md "Fuel"). Works on a module that already passed the feature gate
 * (`features.ts`), so every expression id met here is one of `ALLOWED_IDS`.
 *
 * Cost model (identical on every host; counted on binaryen 132's IR of the original module):
 * - every expression node costs 1 fuel, except `block`, `nop` and `unreachable` (which compile to
 *   nothing, do nothing, or end the call with a trap);
 * - a function's entry region (its body, not descending into loop bodies) is charged in full on
 *   entry; each loop's body region (again not descending into nested loops) is charged in full at
 *   the top of every iteration; a nested `loop` node itself costs 1 in its parent region;
 * - `memory.fill`, `memory.copy`, `memory.init` additionally cost ceil(len / 64) fuel, charged
 *   just before the operation; `memory.grow` additionally costs 1024 fuel per page actually grown
 *   (nothing when it fails or grows by 0), charged just after it.
 * A check follows every charge: if the counter is then below zero, the code stores it in
 * `__igor_fuel` and traps (`unreachable`).
 */
import binaryen from 'binaryen'
import { childrenOf, infoOf } from './features.ts'

/** Name (internal and export) of the i64 fuel counter global. */
export const FUEL_GLOBAL = '__igor_fuel'

/** Initial value of `__igor_fuel` (fuel): what a wasm start function may burn during instantiation. */
export const START_FUEL = 1_000_000_000n

/** Fuel per expression node, per 64 bytes of bulk memory, per 64 KiB page grown. */
export const COSTS = { node: 1, bulkBytesPerFuel: 64, growPage: 1024 } as const

/**
 * Where the counter lives while wasm code runs. All three give the same fuel to the unit for every
 * call that does not trap, and all store a negative counter in `__igor_fuel` before a fuel trap.
 * - `thread` (default): every defined function gets a twin taking the counter as an extra i64
 *   parameter and returning it as an extra result, so the counter stays in registers across
 *   direct calls; the original function becomes a wrapper that loads `__igor_fuel`, calls the
 *   twin and stores the counter back (it serves exports, the table and the start function). The
 *   global is also written before and read after calls to imports and `call_indirect`.
 * - `local`: functions with loops keep the counter in an i64 local and write it back to the global
 *   around calls, at return and before a fuel trap; loop-free functions charge the global directly.
 * - `global`: every charge reads and writes the global (the research prototype's scheme).
 */
export type Strategy = 'thread' | 'local' | 'global'

/** Names of the internal helper functions the meter adds (when used). */
export const HELPERS = { bulk: '__igor_bulk', grow: '__igor_grow' } as const

const EXIT_LABEL = '__igor_exit'

/** The subset of binaryen's run-time API that its index.d.ts does not declare. */
interface Accessors { [k: string]: (...a: number[]) => number }
const B = binaryen as unknown as Record<string, Accessors> & { _BinaryenFunctionAddVar: (f: number, t: number) => number }

/** [class, getter, setter] for each single-child slot, in evaluation order. */
const SLOTS = new Map<number, Array<[string, string]>>([
  [binaryen.IfId, [['If', 'Condition'], ['If', 'IfTrue'], ['If', 'IfFalse']]],
  [binaryen.LoopId, [['Loop', 'Body']]],
  [binaryen.BreakId, [['Break', 'Value'], ['Break', 'Condition']]],
  [binaryen.SwitchId, [['Switch', 'Value'], ['Switch', 'Condition']]],
  [binaryen.LocalSetId, [['LocalSet', 'Value']]],
  [binaryen.GlobalSetId, [['GlobalSet', 'Value']]],
  [binaryen.LoadId, [['Load', 'Ptr']]],
  [binaryen.StoreId, [['Store', 'Ptr'], ['Store', 'Value']]],
  [binaryen.UnaryId, [['Unary', 'Value']]],
  [binaryen.BinaryId, [['Binary', 'Left'], ['Binary', 'Right']]],
  [binaryen.SelectId, [['Select', 'IfTrue'], ['Select', 'IfFalse'], ['Select', 'Condition']]],
  [binaryen.DropId, [['Drop', 'Value']]],
  [binaryen.ReturnId, [['Return', 'Value']]],
  [binaryen.MemoryGrowId, [['MemoryGrow', 'Delta']]],
  [binaryen.MemoryInitId, [['MemoryInit', 'Dest'], ['MemoryInit', 'Offset'], ['MemoryInit', 'Size']]],
  [binaryen.MemoryCopyId, [['MemoryCopy', 'Dest'], ['MemoryCopy', 'Source'], ['MemoryCopy', 'Size']]],
  [binaryen.MemoryFillId, [['MemoryFill', 'Dest'], ['MemoryFill', 'Value'], ['MemoryFill', 'Size']]],
  [binaryen.SIMDExtractId, [['SIMDExtract', 'Vec']]],
  [binaryen.SIMDReplaceId, [['SIMDReplace', 'Vec'], ['SIMDReplace', 'Value']]],
  [binaryen.SIMDShuffleId, [['SIMDShuffle', 'Left'], ['SIMDShuffle', 'Right']]],
  [binaryen.SIMDTernaryId, [['SIMDTernary', 'A'], ['SIMDTernary', 'B'], ['SIMDTernary', 'C']]],
  [binaryen.SIMDShiftId, [['SIMDShift', 'Vec'], ['SIMDShift', 'Shift']]],
  [binaryen.SIMDLoadId, [['SIMDLoad', 'Ptr']]],
  [binaryen.SIMDLoadStoreLaneId, [['SIMDLoadStoreLane', 'Ptr'], ['SIMDLoadStoreLane', 'Vec']]],
  [binaryen.TupleExtractId, [['TupleExtract', 'Tuple']]],
])
/** Classes whose children are an operand list (plus CallIndirect's target, evaluated last). */
const LISTS = new Map<number, string>([
  [binaryen.BlockId, 'Block'], [binaryen.CallId, 'Call'], [binaryen.CallIndirectId, 'CallIndirect'], [binaryen.TupleMakeId, 'TupleMake'],
])

/** Replaces every child of `e` (in evaluation order) by `fn(child)`; null children are skipped. */
function mapChildren (e: number, id: number, fn: (child: number) => number): void {
  const list = LISTS.get(id)
  if (list !== undefined) {
    const c = B[list]
    const isBlock = id === binaryen.BlockId
    const n = isBlock ? c.getNumChildren(e) : c.getNumOperands(e)
    for (let i = 0; i < n; i++) {
      const child = isBlock ? c.getChildAt(e, i) : c.getOperandAt(e, i)
      const next = fn(child)
      if (next !== child) { if (isBlock) c.setChildAt(e, i, next); else c.setOperandAt(e, i, next) }
    }
    if (id === binaryen.CallIndirectId) {
      const t = c.getTarget(e); const next = fn(t)
      if (next !== t) c.setTarget(e, next)
    }
    return
  }
  for (const [cls, slot] of SLOTS.get(id) ?? []) {
    const child = B[cls]['get' + slot](e)
    if (!child) continue
    const next = fn(child)
    if (next !== child) B[cls]['set' + slot](e, next)
  }
}

/** Static analysis of one function body: region costs and which subtrees contain loops. */
interface Analysis { entryCost: number; loopCost: Map<number, number>; hasLoop: Set<number>; usesGrow: boolean; usesBulk: boolean }

/** Nodes that cost nothing: blocks compile to nothing, nop does nothing, unreachable traps. */
const FREE_IDS = new Set([binaryen.BlockId, binaryen.NopId, binaryen.UnreachableId])

function analyse (body: number): Analysis {
  const a: Analysis = { entryCost: 0, loopCost: new Map(), hasLoop: new Set(), usesGrow: false, usesBulk: false }
  // Returns whether the subtree contains a loop; adds each node's cost to the innermost region.
  const visit = (e: number, region: { cost: number }): boolean => {
    const info = infoOf(e)
    if (!FREE_IDS.has(info.id)) region.cost += COSTS.node
    if (info.id === binaryen.MemoryGrowId) a.usesGrow = true
    if (info.id === binaryen.MemoryFillId || info.id === binaryen.MemoryCopyId || info.id === binaryen.MemoryInitId) a.usesBulk = true
    let loop = false
    if (info.id === binaryen.LoopId) {
      const inner = { cost: 0 }
      visit(info.body as number, inner)
      a.loopCost.set(e, inner.cost)
      loop = true
    } else {
      for (const c of childrenOf(info)) if (visit(c, region)) loop = true
    }
    if (loop) a.hasLoop.add(e)
    return loop
  }
  const entry = { cost: 0 }
  visit(body, entry)
  a.entryCost = entry.cost
  return a
}

/**
 * Adds the exported i64 global `__igor_fuel` (initial value {@link START_FUEL}) and returns the
 * module's defined (non-imported) functions with expression builders for the counter.
 */
function addFuelGlobal (m: binaryen.Module): { funcs: number[]; gget: () => number; gset: (v: number) => number; negative: (v: number) => number } {
  const i64 = binaryen.i64
  const funcs: number[] = []
  for (let i = 0; i < m.getNumFunctions(); i++) {
    const f = m.getFunctionByIndex(i)
    if (!binaryen.getFunctionInfo(f).module) funcs.push(f)
  }
  m.addGlobal(FUEL_GLOBAL, i64, true, m.i64.const(START_FUEL))
  m.addGlobalExport(FUEL_GLOBAL, FUEL_GLOBAL)
  return {
    funcs,
    gget: () => m.global.get(FUEL_GLOBAL, i64),
    gset: (v) => m.global.set(FUEL_GLOBAL, v),
    negative: (v) => m.i64.lt_s(v, m.i64.const(0n)),
  }
}

/**
 * Wraps `call` (a call to an import, or a `call_indirect`) so that the function's fuel counter, kept
 * in local `fl`, is written to the global before the call and read back after it. When an operand
 * contains a loop (which charges the counter), the operands are first evaluated into fresh locals,
 * so the write-back happens after their charges. A call of type `unreachable` is returned as is.
 */
function syncAround (m: binaryen.Module, call: number, operandsWithLoops: boolean, fl: number, addVar: (t: number) => number): number {
  const type = binaryen.getExpressionType(call)
  if (type === binaryen.unreachable) return call
  const i32 = binaryen.i32; const i64 = binaryen.i64
  const pre: number[] = []
  if (operandsWithLoops) {
    const id = binaryen.getExpressionId(call)
    const cls = B[LISTS.get(id)!]
    for (let i = 0; i < cls.getNumOperands(call); i++) {
      const op = cls.getOperandAt(call, i); const t = binaryen.getExpressionType(op); const v = addVar(t)
      pre.push(m.local.set(v, op)); cls.setOperandAt(call, i, m.local.get(v, t))
    }
    if (id === binaryen.CallIndirectId) {
      const op = cls.getTarget(call); const v = addVar(i32)
      pre.push(m.local.set(v, op)); cls.setTarget(call, m.local.get(v, i32))
    }
  }
  pre.push(m.global.set(FUEL_GLOBAL, m.local.get(fl, i64)))
  const reload = m.local.set(fl, m.global.get(FUEL_GLOBAL, i64))
  if (type === binaryen.none) return m.block(null, [...pre, call, reload], binaryen.none)
  const r = addVar(type)
  return m.block(null, [...pre, m.local.set(r, call), reload, m.local.get(r, type)], type)
}

/**
 * Meters every defined function of `m` in place and adds the exported `__igor_fuel` global
 * (initial value {@link START_FUEL}) plus the helpers in {@link HELPERS} that are used.
 * @param m a binaryen module that passed the feature gate, with at most one memory.
 * @param strategy see {@link Strategy}; both give the same fuel to the unit on every run that does not trap.
 */
export function meter (m: binaryen.Module, strategy: Strategy = 'thread'): void {
  if (strategy === 'thread') { meterThreaded(m); return }
  const i64 = binaryen.i64; const i32 = binaryen.i32
  const { funcs, gget, gset, negative } = addFuelGlobal(m)
  let usesGrow = false; let usesBulk = false

  for (const f of funcs) {
    const info = binaryen.getFunctionInfo(f)
    const a = analyse(info.body)
    usesGrow ||= a.usesGrow; usesBulk ||= a.usesBulk
    const local = strategy === 'local' && a.hasLoop.size > 0
    const addVar = (t: number): number => B._BinaryenFunctionAddVar(f, t)
    const fl = local ? addVar(i64) : -1 // the function's fuel counter (local strategy)
    let scratch = -1 // an i64 temp for global-strategy checks
    const lget = (): number => m.local.get(fl, i64)
    /** A charge of `cost` fuel followed by the check, in this function's strategy. */
    const charge = (cost: number): number => {
      if (local) {
        return m.block(null, [
          m.local.set(fl, m.i64.sub(lget(), m.i64.const(BigInt(cost)))),
          m.if(negative(lget()), m.block(null, [gset(lget()), m.unreachable()], binaryen.unreachable)),
        ], binaryen.none)
      }
      if (scratch < 0) scratch = addVar(i64)
      return m.block(null, [
        gset(m.local.tee(scratch, m.i64.sub(gget(), m.i64.const(BigInt(cost))), i64)),
        m.if(negative(m.local.get(scratch, i64)), m.unreachable()),
      ], binaryen.none)
    }
    /** In the local strategy, writes the counter back around a call (see {@link syncAround}). */
    const synced = (call: number, operandsWithLoops: boolean): number =>
      local ? syncAround(m, call, operandsWithLoops, fl, addVar) : call
    const anyLoop = (children: number[]): boolean => children.some((c) => a.hasLoop.has(c))

    const rw = (e: number): number => {
      const info = infoOf(e)
      const id = info.id
      const kids = childrenOf(info)
      mapChildren(e, id, rw)
      switch (id) {
        case binaryen.LoopId: {
          const body = B.Loop.getBody(e)
          B.Loop.setBody(e, m.block(null, [charge(a.loopCost.get(e)!), body], binaryen.getExpressionType(body)))
          return e
        }
        case binaryen.ReturnId:
          return local ? m.br(EXIT_LABEL, 0, B.Return.getValue(e) || 0) : e
        case binaryen.CallId: case binaryen.CallIndirectId:
          return synced(e, anyLoop(kids))
        case binaryen.MemoryFillId: case binaryen.MemoryCopyId: case binaryen.MemoryInitId: {
          const cls = id === binaryen.MemoryFillId ? 'MemoryFill' : id === binaryen.MemoryCopyId ? 'MemoryCopy' : 'MemoryInit'
          const size = B[cls].getSize(e)
          B[cls].setSize(e, synced(m.call(HELPERS.bulk, [size], i32), a.hasLoop.has(kids[2])))
          return e
        }
        case binaryen.MemoryGrowId:
          return synced(m.call(HELPERS.grow, [B.MemoryGrow.getDelta(e)], i32), anyLoop(kids))
        default:
          return e
      }
    }
    const body = rw(info.body)
    const results = info.results
    let out: number
    if (local) {
      const entry = [
        m.local.set(fl, m.i64.sub(gget(), m.i64.const(BigInt(a.entryCost)))),
        m.if(negative(lget()), m.block(null, [gset(lget()), m.unreachable()], binaryen.unreachable)),
      ]
      const wrapped = m.block(EXIT_LABEL, [body], results)
      if (results === binaryen.none) {
        out = m.block(null, [...entry, wrapped, gset(lget())], binaryen.none)
      } else {
        const r = addVar(results)
        out = m.block(null, [...entry, m.local.set(r, wrapped), gset(lget()), m.local.get(r, results)], results)
      }
    } else {
      out = m.block(null, [charge(a.entryCost), body], results)
    }
    B.Function.setBody(f, out)
  }

  if (usesBulk) {
    // (n: i32) -> i32: charge ceil(n / 64), check, return n.
    const n64 = m.i64.extend_u(m.local.get(0, i32))
    const cost = m.i64.shr_u(m.i64.add(n64, m.i64.const(BigInt(COSTS.bulkBytesPerFuel - 1))), m.i64.const(6n))
    m.addFunction(HELPERS.bulk, i32, i32, [i64], m.block(null, [
      gset(m.local.tee(1, m.i64.sub(gget(), cost), i64)),
      m.if(negative(m.local.get(1, i64)), m.unreachable()),
      m.local.get(0, i32),
    ], i32))
  }
  if (usesGrow) {
    // (delta: i32) -> i32: grow; when it succeeds charge 1024 per page, check; return the old size or -1.
    m.addFunction(HELPERS.grow, i32, i32, [i32, i64], m.block(null, [
      m.local.set(1, m.memory.grow(m.local.get(0, i32))),
      m.if(m.i32.ne(m.local.get(1, i32), m.i32.const(-1)), m.block(null, [
        gset(m.local.tee(2, m.i64.sub(gget(), m.i64.shl(m.i64.extend_u(m.local.get(0, i32)), m.i64.const(10n))), i64)),
        m.if(negative(m.local.get(2, i64)), m.unreachable()),
      ], binaryen.none)),
      m.local.get(1, i32),
    ], i32))
  }
}

/** Suffix of the threaded twin of each defined function (`<name>__igor_t`). */
const TWIN_SUFFIX = '__igor_t'

/** The `thread` strategy of {@link meter}. */
function meterThreaded (m: binaryen.Module): void {
  const i64 = binaryen.i64; const i32 = binaryen.i32
  const { funcs, gget, gset, negative } = addFuelGlobal(m)
  const extend = (t: number, extra: number): number => binaryen.createType([...(t === binaryen.none ? [] : binaryen.expandType(t)), extra])

  // 1. Declare every twin first, so calls can be retargeted in any order.
  const twins = new Map<string, { twin: number; results: number; twinResults: number }>()
  for (const f of funcs) {
    const info = binaryen.getFunctionInfo(f)
    const name = info.name + TWIN_SUFFIX
    if (m.getFunction(name)) throw new Error(`function name ${name} already taken`)
    const twinResults = extend(info.results, i64)
    const twin = m.addFunction(name, extend(info.params, i64), twinResults, [], m.nop())
    twins.set(info.name, { twin, results: info.results, twinResults })
  }

  // 2. Move each body into its twin, metered; make the original a wrapper around the twin.
  for (const f of funcs) {
    const info = binaryen.getFunctionInfo(f)
    const { twin, results, twinResults } = twins.get(info.name)!
    const a = analyse(info.body)
    const nParams = binaryen.expandType(info.params).length
    const fl = nParams // the counter: the twin's last parameter
    for (const v of info.vars) B._BinaryenFunctionAddVar(twin, v)
    const addVar = (t: number): number => B._BinaryenFunctionAddVar(twin, t)
    const lget = (): number => m.local.get(fl, i64)
    const trapIfOut = (): number => m.if(negative(lget()), m.block(null, [gset(lget()), m.unreachable()], binaryen.auto))
    const sub = (cost: number): number => m.local.set(fl, m.i64.sub(lget(), cost))
    const charge = (cost: number): number => m.block(null, [sub(m.i64.const(BigInt(cost))), trapIfOut()], binaryen.none)
    /** A call the twin cannot thread the counter through (import, call_indirect): sync the global around it. */
    const synced = (call: number, operandsWithLoops: boolean): number => syncAround(m, call, operandsWithLoops, fl, addVar)
    const rw = (e: number): number => {
      const info = infoOf(e)
      const id = info.id
      const kids = childrenOf(info)
      mapChildren(e, id, rw)
      switch (id) {
        case binaryen.LocalGetId: case binaryen.LocalSetId: {
          const cls = id === binaryen.LocalGetId ? B.LocalGet : B.LocalSet
          const index = info.index as number
          if (index >= nParams) cls.setIndex(e, index + 1)
          return e
        }
        case binaryen.LoopId: {
          const body = B.Loop.getBody(e)
          B.Loop.setBody(e, m.block(null, [charge(a.loopCost.get(e)!), body], binaryen.auto))
          return e
        }
        case binaryen.ReturnId:
          return m.br(EXIT_LABEL, 0, B.Return.getValue(e) || 0)
        case binaryen.CallId: {
          const target = info.target as string
          const t = twins.get(target)
          if (t === undefined) return synced(e, kids.some((c) => a.hasLoop.has(c)))
          if (info.type === binaryen.unreachable) return e
          const call = m.call(binaryen.getFunctionInfo(t.twin).name, [...(B.Call.getOperands(e) as unknown as number[]), lget()], t.twinResults)
          if (t.results === binaryen.none) return m.local.set(fl, call)
          const tup = addVar(t.twinResults)
          const n = binaryen.expandType(t.results).length
          const values = Array.from({ length: n }, (_, i) => m.tuple.extract(m.local.get(tup, t.twinResults), i))
          return m.block(null, [
            m.local.set(tup, call),
            m.local.set(fl, m.tuple.extract(m.local.get(tup, t.twinResults), n)),
            n === 1 ? values[0] : m.tuple.make(values),
          ], t.results)
        }
        case binaryen.CallIndirectId:
          return synced(e, kids.some((c) => a.hasLoop.has(c)))
        case binaryen.MemoryFillId: case binaryen.MemoryCopyId: case binaryen.MemoryInitId: {
          // size -> (n = size; fuel -= ceil(n / 64); check; n)
          const cls = id === binaryen.MemoryFillId ? 'MemoryFill' : id === binaryen.MemoryCopyId ? 'MemoryCopy' : 'MemoryInit'
          const size = B[cls].getSize(e)
          if (binaryen.getExpressionType(size) === binaryen.unreachable) return e
          const n = addVar(i32)
          const cost = m.i64.shr_u(m.i64.add(m.i64.extend_u(m.local.get(n, i32)), m.i64.const(BigInt(COSTS.bulkBytesPerFuel - 1))), m.i64.const(6n))
          B[cls].setSize(e, m.block(null, [m.local.set(n, size), sub(cost), trapIfOut(), m.local.get(n, i32)], i32))
          return e
        }
        case binaryen.MemoryGrowId: {
          // (d = delta; r = memory.grow d; if r != -1 { fuel -= d * 1024; check }; r)
          const delta = B.MemoryGrow.getDelta(e)
          if (binaryen.getExpressionType(delta) === binaryen.unreachable) return e
          const d = addVar(i32); const r = addVar(i32)
          B.MemoryGrow.setDelta(e, m.local.get(d, i32))
          return m.block(null, [
            m.local.set(d, delta),
            m.local.set(r, e),
            m.if(m.i32.ne(m.local.get(r, i32), m.i32.const(-1)), m.block(null, [
              sub(m.i64.shl(m.i64.extend_u(m.local.get(d, i32)), m.i64.const(10n))), trapIfOut(),
            ], binaryen.none)),
            m.local.get(r, i32),
          ], i32)
        }
        default:
          return e
      }
    }
    const body = rw(info.body)
    const exit = m.block(EXIT_LABEL, [body], results)
    const entry = charge(a.entryCost)
    let twinBody: number
    if (results === binaryen.none) {
      twinBody = m.block(null, [entry, exit, lget()], i64)
    } else if (binaryen.expandType(results).length === 1) {
      twinBody = m.block(null, [entry, m.tuple.make([exit, lget()])], twinResults)
    } else {
      const r = addVar(results)
      const n = binaryen.expandType(results).length
      const values = Array.from({ length: n }, (_, i) => m.tuple.extract(m.local.get(r, results), i))
      twinBody = m.block(null, [entry, m.local.set(r, exit), m.tuple.make([...values, lget()])], twinResults)
    }
    B.Function.setBody(twin, twinBody)

    // The wrapper: load the counter, call the twin, store the counter back.
    const params = binaryen.expandType(info.params)
    const args = [...params.map((t, i) => m.local.get(i, t)), gget()]
    const twinName = binaryen.getFunctionInfo(twin).name
    let wrapper: number
    if (results === binaryen.none) {
      wrapper = gset(m.call(twinName, args, i64))
    } else {
      const tup = B._BinaryenFunctionAddVar(f, twinResults)
      const n = binaryen.expandType(results).length
      const values = Array.from({ length: n }, (_, i) => m.tuple.extract(m.local.get(tup, twinResults), i))
      wrapper = m.block(null, [
        m.local.set(tup, m.call(twinName, args, twinResults)),
        gset(m.tuple.extract(m.local.get(tup, twinResults), n)),
        n === 1 ? values[0] : m.tuple.make(values),
      ], results)
    }
    B.Function.setBody(f, wrapper)
  }
}

/**
 * Fuel a call consumed, from the limit the host set and the counter it read back afterwards:
 * `min(limit, limit − remaining)`, never below 0. After an out-of-fuel trap `remaining` is negative,
 * so the result is exactly `limit`.
 * @param limit fuel the host stored in `__igor_fuel` before the call (≥ 0).
 * @param remaining the value of `__igor_fuel` after the call returned or trapped.
 * @returns fuel units consumed, in [0, limit].
 */
export function fuelUsed (limit: bigint, remaining: bigint): bigint {
  const used = limit - remaining
  if (used > limit) return limit
  return used < 0n ? 0n : used
}
