/**
 * The feature gate of DESIGN §5.4: what a wasm module may use to run as an igord agent, checked
 * before instrumentation. The module-level half (section reader, ABI exports, header) lives in
 * runtime/module-facts.ts, which imports no binaryen; this file walks function bodies with binaryen.
 *
 * Allowed: MVP, mutable globals (v128 ones too), sign-extension, non-trapping float-to-int, bulk
 * memory (incl. binaryen's BulkMemoryOpt), multi-value, SIMD128 without relaxed SIMD, active
 * element segments of functions into table 0 in any encoding, declarative funcref segments.
 * Rejected (ModuleError naming the feature, and the function, segment, item or global where it was
 * found): threads/atomics and shared memory, relaxed SIMD, exception handling, tail calls,
 * reference types and GC beyond the MVP's one funcref table (incl. null elements and non-funcref
 * element segments), memory64, multi-memory, custom page sizes, extended constant expressions
 * (global initializers, data and element offsets), constant expressions reading a module-defined
 * global, stack switching, strings, wide arithmetic, run-time table mutation (`table.set`,
 * `table.grow`, `table.fill`, `table.copy`, `table.init`, `elem.drop`), passive element segments,
 * an imported memory, imported mutable globals, and ABI exports of the wrong signature.
 * {@link checkHeader} names inputs that are not core modules (empty, text, components, other magic).
 *
 * Sources: WebAssembly Core Specification 2.0 §5 (binary format) and the proposals' binary
 * encodings (threads: shared limits flag 0x02; memory64: flag 0x04; custom-page-sizes: flag 0x08;
 * exception handling: tag section id 13; extended-const: i32/i64 add, sub, mul in constant
 * expressions; component model: version 0x0d, layer 1).
 */
import binaryen from 'binaryen'
import { ModuleError } from '../checkpoint/errors.ts'

const F = binaryen.Features

/**
 * The binaryen feature set igord reads and writes modules with: exactly the allowed features.
 * Never `Features.All` (binaryen 132 then emits a compact-imports encoding V8 rejects). Changing
 * it (or anything else in the gate) changes instrumented output: bump runtime/code-cache.ts
 * `INSTRUMENT_VERSION` with it, so cached code made before is not used.
 */
export const ALLOWED_FEATURES: number = F.MutableGlobals | F.SignExt | F.NontrappingFPToInt |
  F.BulkMemory | F.BulkMemoryOpt | F.Multivalue | F.SIMD128

/** The byte-level checks, in runtime/module-facts.ts (no binaryen there); re-exported for existing importers. */
export { scanModule, thrownMessage, checkModuleFacts, ABI_EXPORTS, signatureText, checkAbiExports, checkHeader } from './module-facts.ts'
export type { ImportFact, ExportFact, Limits, FuncType, ModuleFacts } from './module-facts.ts'
import { fail, scanModule } from './module-facts.ts'
import type { ModuleFacts } from './module-facts.ts'

/**
 * A binaryen expression id by name. binaryen.js 132 exports some ids only as the C function
 * `_Binaryen<Name>Id` (TableFill, TryTable, …), so fall back to calling it.
 */
function exprId (name: string): number | undefined {
  const b = binaryen as unknown as Record<string, unknown>
  const v = b[name + 'Id']
  if (typeof v === 'number') return v
  const fn = b['_Binaryen' + name + 'Id']
  return typeof fn === 'function' ? (fn as () => number)() : undefined
}

const ID_FEATURE = new Map<number, string>()
function ids (feature: string, names: string[]): void {
  for (const n of names) { const id = exprId(n); if (id !== undefined) ID_FEATURE.set(id, feature) }
}
ids('threads (atomic instructions)', ['AtomicRMW', 'AtomicCmpxchg', 'AtomicWait', 'AtomicNotify', 'AtomicFence', 'Pause', 'StructWait', 'StructNotify'])
ids('exception handling', ['Try', 'TryTable', 'Throw', 'Rethrow', 'ThrowRef', 'Pop'])
ids('reference types', ['RefNull', 'RefIsNull', 'RefFunc', 'RefEq', 'RefAs', 'TableGet', 'TableSize'])
ids('GC', ['RefI31', 'I31Get', 'CallRef', 'RefTest', 'RefCast', 'RefGetDesc', 'BrOn', 'StructNew', 'StructGet', 'StructSet',
  'StructRMW', 'StructCmpxchg', 'ArrayNew', 'ArrayNewData', 'ArrayNewElem', 'ArrayNewFixed', 'ArrayGet', 'ArraySet', 'ArrayLoad',
  'ArrayStore', 'ArrayLen', 'ArrayCopy', 'ArrayFill', 'ArrayInitData', 'ArrayInitElem', 'ArrayRMW', 'ArrayCmpxchg'])
ids('strings', ['StringNew', 'StringConst', 'StringMeasure', 'StringEncode', 'StringConcat', 'StringEq', 'StringTest', 'StringWTF16Get', 'StringSliceWTF'])
ids('stack switching', ['ContNew', 'ContBind', 'Suspend', 'Resume', 'ResumeThrow', 'StackSwitch'])
ids('threads (shared-everything wait queues)', ['WaitqueueNew', 'WaitqueueNotify'])
ids('wide arithmetic', ['WideIntAddSub', 'WideIntMul'])
const TABLE_MUTATION: Record<string, string> = { TableSet: 'table.set', TableGrow: 'table.grow', TableFill: 'table.fill', TableCopy: 'table.copy', TableInit: 'table.init', ElemDrop: 'elem.drop' }
for (const [k, op] of Object.entries(TABLE_MUTATION)) ids(`table mutation at run time (${op}; nothing in a table survives a snapshot)`, [k])

// Relaxed-SIMD op codes by expression id (binaryen's UnaryOp, BinaryOp and SIMDTernaryOp enums overlap).
const RELAXED_OPS = new Map<number, Set<number>>([[binaryen.UnaryId, new Set()], [binaryen.BinaryId, new Set()], [binaryen.SIMDTernaryId, new Set()]])
for (const [k, v] of Object.entries(binaryen as unknown as Record<string, unknown>)) {
  if (!/^Relaxed(?!SIMD$|Atomics$)[A-Z]/.test(k) || typeof v !== 'number') continue
  const id = /Trunc/.test(k) ? binaryen.UnaryId : /Madd|Nmadd|Laneselect|AddS/.test(k) ? binaryen.SIMDTernaryId : binaryen.BinaryId
  RELAXED_OPS.get(id)!.add(v)
}

/** Expression ids the rest of igord understands (allowed features). */
export const ALLOWED_IDS: ReadonlySet<number> = new Set([
  binaryen.NopId, binaryen.BlockId, binaryen.IfId, binaryen.LoopId, binaryen.BreakId, binaryen.SwitchId, binaryen.CallId,
  binaryen.CallIndirectId, binaryen.LocalGetId, binaryen.LocalSetId, binaryen.GlobalGetId, binaryen.GlobalSetId,
  binaryen.LoadId, binaryen.StoreId, binaryen.ConstId, binaryen.UnaryId, binaryen.BinaryId, binaryen.SelectId,
  binaryen.DropId, binaryen.ReturnId, binaryen.MemorySizeId, binaryen.MemoryGrowId, binaryen.UnreachableId,
  binaryen.MemoryInitId, binaryen.DataDropId, binaryen.MemoryCopyId, binaryen.MemoryFillId,
  binaryen.SIMDExtractId, binaryen.SIMDReplaceId, binaryen.SIMDShuffleId, binaryen.SIMDTernaryId, binaryen.SIMDShiftId,
  binaryen.SIMDLoadId, binaryen.SIMDLoadStoreLaneId, binaryen.TupleMakeId, binaryen.TupleExtractId,
])

const VALUE_TYPES = new Set<number>([binaryen.none, binaryen.unreachable, binaryen.i32, binaryen.i64, binaryen.f32, binaryen.f64, binaryen.v128])

/** Whether a binaryen type is none/unreachable, a number, v128, or a tuple of those. */
function typeAllowed (t: number): boolean {
  if (VALUE_TYPES.has(t)) return true
  const parts = binaryen.expandType(t)
  return parts.length > 1 && parts.every((p) => VALUE_TYPES.has(p))
}

/**
 * Checks every function body, global and local of a binaryen module against the feature gate,
 * walking expressions by id. Run it on a module read with `binaryen.readBinary` (binaryen reads
 * every feature; only validation checks them).
 * @param file the name used in error messages.
 * @param facts the module's {@link scanModule} facts: a passive element segment is refused after
 *   the code (so that a `table.init` using it is named first).
 * @throws ModuleError naming the feature and the function where it was found.
 */
export function checkCode (m: binaryen.Module, file: string, facts?: ModuleFacts): void {
  for (let i = 0; i < m.getNumGlobals(); i++) {
    const g = binaryen.getGlobalInfo(m.getGlobalByIndex(i))
    if (!typeAllowed(g.type)) fail(file, `reference types (global ${i})`)
    if (g.init && !g.module) checkConstExpr(g.init, file, `global ${i}`)
  }
  for (let i = 0; i < m.getNumFunctions(); i++) {
    const f = binaryen.getFunctionInfo(m.getFunctionByIndex(i))
    if (f.module) continue
    for (const t of [f.params, f.results, ...f.vars]) if (!typeAllowed(t)) fail(file, 'reference types (a reference-typed parameter, result or local)', f.name)
    walkCheck(f.body, file, f.name)
  }
  if (facts?.passiveProblem !== undefined) fail(file, facts.passiveProblem)
}

/** Extended constant expressions: a global initializer that is not a single constant/global.get. */
function checkConstExpr (e: number, file: string, where: string): void {
  const id = binaryen.getExpressionId(e)
  if (id !== binaryen.ConstId && id !== binaryen.GlobalGetId) {
    throw new ModuleError(`${file}: uses extended constant expressions (${where} initializer), which igord does not allow`)
  }
}

/**
 * The deepest expression nesting (in binaryen's IR of a function body, the body itself at depth 1)
 * the gate accepts. The instrumenter's passes recurse once per level, so without a limit a deep
 * module would exhaust the JavaScript stack at a depth that depends on the thread's stack size
 * (about 1,300 nested blocks on Node's main thread): accepted on one host, refused on another. A
 * C `switch` nests one block per case; real agents stay far below this (SQLite: a few hundred).
 */
export const MAX_NESTING_DEPTH = 1000

function walkCheck (root: number, file: string, fn: string): void {
  const stack: [number, number][] = [[root, 1]]
  while (stack.length > 0) {
    const [e, depth] = stack.pop()!
    if (!e) continue
    if (depth > MAX_NESTING_DEPTH) {
      throw new ModuleError(`${file}: nests expressions more than ${MAX_NESTING_DEPTH} deep in function ${fn}, which igord does not allow`)
    }
    const info = infoOf(e)
    const id = info.id
    if (!ALLOWED_IDS.has(id)) fail(file, ID_FEATURE.get(id) ?? `an unsupported instruction (binaryen expression id ${id})`, fn)
    if (!typeAllowed(info.type)) fail(file, 'reference types', fn)
    if ((id === binaryen.CallId || id === binaryen.CallIndirectId) && info.isReturn === true) fail(file, 'tail calls (return_call)', fn)
    if ((id === binaryen.LoadId || id === binaryen.StoreId) && info.isAtomic === true) fail(file, 'threads (atomic instructions)', fn)
    if (RELAXED_OPS.get(id)?.has(info.op as number) === true) fail(file, 'relaxed SIMD', fn)
    for (const c of childrenOf(info)) stack.push([c, depth + 1])
  }
}

/** An expression's info as a record: `binaryen.getExpressionInfo`, which throws for ids without fields. */
export type Info = binaryen.ExpressionInfo & Record<string, unknown>

/**
 * `binaryen.getExpressionInfo(e)`, also for ids it has no accessor class for (nop, unreachable),
 * which have no fields besides id and type.
 */
export function infoOf (e: number): Info {
  const id = binaryen.getExpressionId(e)
  if (id === binaryen.NopId || id === binaryen.UnreachableId) return { id, type: binaryen.getExpressionType(e) }
  try {
    return binaryen.getExpressionInfo(e) as Info
  } catch (err) {
    if (err instanceof RangeError) throw err // stack exhausted: not an id without fields
    return { id, type: binaryen.getExpressionType(e) }
  }
}

/**
 * The child expressions of an allowed expression, in evaluation order (null entries skipped).
 * @param info from `binaryen.getExpressionInfo`.
 */
export function childrenOf (info: Info): number[] {
  const pick = (...keys: string[]): number[] => {
    const out: number[] = []
    for (const k of keys) { const v = info[k]; if (typeof v === 'number' && v !== 0) out.push(v) }
    return out
  }
  switch (info.id) {
    case binaryen.BlockId: return (info.children as number[]).filter((c) => c !== 0)
    case binaryen.IfId: return pick('condition', 'ifTrue', 'ifFalse')
    case binaryen.LoopId: return pick('body')
    case binaryen.BreakId: return pick('value', 'condition')
    case binaryen.SwitchId: return pick('value', 'condition')
    case binaryen.CallId: case binaryen.TupleMakeId: return (info.operands as number[]).filter((c) => c !== 0)
    case binaryen.CallIndirectId: return [...(info.operands as number[]), info.target as number].filter((c) => c !== 0)
    case binaryen.LocalSetId: case binaryen.GlobalSetId: case binaryen.UnaryId: case binaryen.DropId: case binaryen.ReturnId: return pick('value')
    case binaryen.LoadId: case binaryen.SIMDLoadId: return pick('ptr')
    case binaryen.StoreId: return pick('ptr', 'value')
    case binaryen.BinaryId: case binaryen.SIMDShuffleId: return pick('left', 'right')
    case binaryen.SelectId: return pick('ifTrue', 'ifFalse', 'condition')
    case binaryen.MemoryGrowId: return pick('delta')
    case binaryen.MemoryInitId: return pick('dest', 'offset', 'size')
    case binaryen.MemoryCopyId: return pick('dest', 'source', 'size')
    case binaryen.MemoryFillId: return pick('dest', 'value', 'size')
    case binaryen.SIMDExtractId: return pick('vec')
    case binaryen.SIMDReplaceId: return pick('vec', 'value')
    case binaryen.SIMDTernaryId: return pick('a', 'b', 'c')
    case binaryen.SIMDShiftId: return pick('vec', 'shift')
    case binaryen.SIMDLoadStoreLaneId: return pick('ptr', 'vec')
    case binaryen.TupleExtractId: return pick('tuple')
    default: return []
  }
}
