/**
 * Test helper: WebAssembly text → binary with binaryen's parser, checked valid.
 */
import * as assert from 'uvu/assert'
import binaryen from 'binaryen'

const F = binaryen.Features
/** The features the fuel and dirty-map tests assemble with (what the feature gate accepts, plus SIMD). */
export const GATE_FEATURES = F.MutableGlobals | F.SignExt | F.NontrappingFPToInt | F.BulkMemory | F.BulkMemoryOpt | F.Multivalue | F.SIMD128

/** Assembles WAT `text` with `features` (binaryen feature flags); asserts it validates. */
export function wat (text: string, features: number = GATE_FEATURES): Uint8Array {
  const m = binaryen.parseText(text)
  m.setFeatures(features)
  assert.ok(m.validate(), 'test module must validate')
  const b = m.emitBinary()
  m.dispose()
  return b
}
