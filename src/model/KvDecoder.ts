/**
 * The Decoder (Generate.ts) of one `generate` call over the embedded model's prefill and decode
 * graphs, with a key/value cache for the call's rows.
 *
 * A row's numbers depend only on the row: each distinct prompt is prefilled alone, and a decoding
 * run is never given a single row. On one onnxruntime thread a run's result for a row is the same
 * bits in every batch of 2 rows or more, whatever the other rows, their places or the cache's
 * capacity, while a lone row takes another kernel path (test/BatchInvariance.test.ts). So when
 * one row is left it gets a dummy companion, and a request's rows come out the same whatever
 * its other rows do (n = 5 or 6 samples give the same first five).
 *
 * Why not one batch for every request: a decoding run costs per row (its attention reads the
 * row's whole cache, as long as the batch's longest), not per run; merging the requests a worker
 * holds into one batch measured slower (a quickstart's rollouts 203 s instead of 108 s).
 *
 * The cache holds keys as Kᵀ [slots, H, D, C] and values [slots, H, C, D]; `filled` positions of
 * a row's slot hold its tokens so far. Finished rows keep their slot (fed a dummy token, outputs
 * dropped) until a quarter of the slots are dead, then the cache is compacted; it grows
 * CACHE_CHUNK positions at a time.
 *
 * @example
 * const rows = await generate(kvDecoder(config, prefill, decode), prompts, params, options)
 */
import type { Decoder, NextToken } from "./Generate.ts"
import * as Onnx from "./graph/Onnx.ts"
import { headDim, MASKED, type ModelConfig } from "./Transformer.ts"

/** Cache capacity grows in steps of this many positions (one copy per step instead of per token). */
const CACHE_CHUNK = 128

/** A slot that holds no row: the companion of a lone row. */
const DUMMY = -1

/** The prefill graph's run on one prompt: per layer `key.l` [1, H, D, T] and `value.l` [1, H, T, D], and `logits`, `probs` [1, V]. */
export type Prefill = (prompt: ReadonlyArray<number>) => Promise<Record<string, Onnx.TensorData>>

interface CacheSource {
  readonly keys: ReadonlyArray<Float32Array>
  readonly values: ReadonlyArray<Float32Array>
  readonly cap: number
  readonly slot: number
}

export const kvDecoder = (config: ModelConfig, prefill: Prefill, decode: Onnx.Runner): Decoder => {
  const { nLayers: L, nHeads: H, vocabSize: V, maxContext } = config
  const D = headDim(config)
  let slots: Array<number> = [] // row per cache slot (DUMMY: none)
  let filled: Array<number> = [] // per row: positions of its slot that hold its tokens
  let capacity = 0
  let keys: Array<Float32Array> = []
  let values: Array<Float32Array> = []
  const chunked = (n: number) => Math.min(Math.ceil(n / CACHE_CHUNK) * CACHE_CHUNK, maxContext)

  /** A new cache of `cap` positions for `rows` (at least 2 slots), each row's positions copied from `source(row)`. */
  const relayout = (rows: ReadonlyArray<number>, cap: number, source: (row: number) => CacheSource) => {
    const next = rows.length >= 2 ? [...rows] : [...rows, ...Array.from({ length: 2 - rows.length }, () => DUMMY)]
    const newKeys = Array.from({ length: L }, () => new Float32Array(next.length * H * D * cap))
    const newValues = Array.from({ length: L }, () => new Float32Array(next.length * H * cap * D))
    next.forEach((row, i) => {
      if (row === DUMMY) return
      const src = source(row)
      const n = filled[row]!
      for (let l = 0; l < L; l++) {
        for (let h = 0; h < H; h++) {
          for (let d = 0; d < D; d++) {
            const k = ((src.slot * H + h) * D + d) * src.cap
            newKeys[l]!.set(src.keys[l]!.subarray(k, k + n), ((i * H + h) * D + d) * cap)
          }
          const v = (src.slot * H + h) * src.cap * D
          newValues[l]!.set(src.values[l]!.subarray(v, v + n * D), (i * H + h) * cap * D)
        }
      }
    })
    slots = next
    keys = newKeys
    values = newValues
    capacity = cap
  }

  return {
    start: async (prompts) => {
      const keyOf = (p: ReadonlyArray<number>) => p.join(",")
      const unique = [...new Map(prompts.map((p) => [keyOf(p), p])).values()]
      const index = new Map(unique.map((p, i) => [keyOf(p), i]))
      const prefilled: Array<Record<string, Onnx.TensorData>> = []
      for (const p of unique) prefilled.push(await prefill(p))
      const sources = prefilled.map((res, u): CacheSource => ({
        keys: Array.from({ length: L }, (_, l) => res[`key.${l}`]!.data as Float32Array),
        values: Array.from({ length: L }, (_, l) => res[`value.${l}`]!.data as Float32Array),
        cap: unique[u]!.length,
        slot: 0
      }))
      filled = prompts.map((p) => p.length)
      const of = (r: number) => index.get(keyOf(prompts[r]!))!
      relayout(prompts.map((_, r) => r), chunked(Math.max(...filled) + 1), (r) => sources[of(r)]!)
      const pick = (name: string) => {
        const out = new Float32Array(prompts.length * V)
        prompts.forEach((_, r) => out.set((prefilled[of(r)]![name]!.data as Float32Array).subarray(0, V), r * V))
        return out
      }
      return { logits: pick("logits"), probs: pick("probs") }
    },

    step: async (rows, tokens) => {
      const need = Math.max(...rows.map((r) => filled[r]!)) + 1
      const live = slots.filter((r) => r !== DUMMY)
      if (rows.length <= (live.length * 3) / 4 || need > capacity) {
        const at = new Map(slots.map((r, i) => [r, i]))
        const from = { keys, values, cap: capacity }
        relayout(rows.length <= (live.length * 3) / 4 ? rows : live, Math.max(capacity, chunked(need)), (r) => ({ ...from, slot: at.get(r)! }))
      }
      const B = slots.length
      const token = new Map(rows.map((r, i) => [r, tokens[i]!]))
      const mask = new Float32Array(B * capacity).fill(MASKED)
      slots.forEach((r, b) => {
        if (r !== DUMMY) mask.fill(0, b * capacity, b * capacity + filled[r]!)
      })
      const res = await decode({
        tokens: Onnx.int64(slots.map((r) => token.get(r) ?? 0), [B, 1]),
        positions: Onnx.int64(slots.map((r) => (r === DUMMY ? 0 : Math.min(filled[r]!, maxContext - 1))), [B, 1]),
        mask: { data: mask, dims: [B, 1, 1, capacity] },
        ...Object.fromEntries(Array.from({ length: L }, (_, l) => [
          [`past_key.${l}`, { data: keys[l]!, dims: [B, H, D, capacity] }],
          [`past_value.${l}`, { data: values[l]!, dims: [B, H, capacity, D] }]
        ]).flat())
      })
      // Each live row's new key and value go into its slot's next position; dead rows' are dropped.
      slots.forEach((r, b) => {
        if (!token.has(r)) return
        const at = filled[r]!
        for (let l = 0; l < L; l++) {
          const k = res[`key.${l}`]!.data as Float32Array
          const v = res[`value.${l}`]!.data as Float32Array
          for (let h = 0; h < H; h++) {
            const src = (b * H + h) * D
            for (let d = 0; d < D; d++) keys[l]![((b * H + h) * D + d) * capacity + at] = k[src + d]!
            values[l]!.set(v.subarray(src, src + D), ((b * H + h) * capacity + at) * D)
          }
        }
        filled[r]!++
      })
      const slotOf = new Map(slots.map((r, b) => [r, b]))
      return rowsOf(res, rows.map((r) => slotOf.get(r)!), V)
    }
  }
}

/** Rows `from[i]` of a run's logits and probs, in order (no copy when they are all of them, in order). */
const rowsOf = (res: Record<string, Onnx.TensorData>, from: ReadonlyArray<number>, V: number): NextToken => {
  const pick = (a: Float32Array) => {
    if (from.length * V === a.length && from.every((b, i) => b === i)) return a
    const out = new Float32Array(from.length * V)
    from.forEach((b, i) => out.set(a.subarray(b * V, (b + 1) * V), i * V))
    return out
  }
  return { logits: pick(res["logits"]!.data as Float32Array), probs: pick(res["probs"]!.data as Float32Array) }
}
