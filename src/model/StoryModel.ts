/**
 * The embedded story model at run time: the four graphs of Transformer.ts in onnxruntime-node
 * sessions, and the host-side work around them (padding and micro-batching, masks, the key/value
 * cache, the sampling loop). Weights are a plain `Map<name, Float32Array>` owned by the caller,
 * fed to every run, so an optimizer updating them in place is seen by the next call.
 *
 * @example
 * const model = await StoryModel.create(config)
 * const [scored] = await model.score(weights, [{ input: [1, 2, 3], targets: [2, 3, 4] }])
 * const rows = await model.generate(weights, [promptIds], params, [endId])
 */
import * as ort from "onnxruntime-node"
import { availableParallelism } from "node:os"
import * as Onnx from "./graph/Onnx.ts"
import type { Graph } from "./graph/Graph.ts"
import { generate, type Decoder, type Generated, type NextToken, type RowParams } from "./Generate.ts"
import type { SamplingParams } from "./Sampling.ts"
import { decodeGraph, headDim, MASKED, paramShapes, prefillGraph, scoreGraph, trainGraph, type ModelConfig } from "./Transformer.ts"

/** One teacher-forced sequence, Tinker-aligned: position i scores `targets[i]` after `input[0..i]`. */
export interface Scored {
  readonly input: ReadonlyArray<number>
  readonly targets: ReadonlyArray<number>
}

/** A training sequence: per-token loss-head inputs, all of `input`'s length (see trainGraph). */
export interface TrainItem extends Scored {
  readonly weights: ArrayLike<number>
  readonly oldLogprobs: ArrayLike<number>
  readonly advantages: ArrayLike<number>
}

export interface TrainOutput {
  readonly logprobs: Float32Array
  readonly loss: Float32Array
  readonly clipped: Float32Array
}

export interface StoryModelOptions {
  /** Tokens per micro-batch (rows × padded length) for score/train runs; default 4096. */
  readonly tokenBudget?: number
  /** onnxruntime intra-op threads; default the machine's cores. */
  readonly threads?: number
}

/** Cache capacity grows in steps of this many slots (one copy per step instead of per token). */
const CACHE_CHUNK = 128

const sessionOptions = (threads: number): ort.InferenceSession.SessionOptions => ({
  intraOpNumThreads: threads,
  interOpNumThreads: 1,
  executionMode: "sequential",
  graphOptimizationLevel: "all"
})

const f32 = (data: Float32Array, dims: ReadonlyArray<number>): Onnx.TensorData => ({ data, dims })
const i64 = (values: ArrayLike<number>, dims: ReadonlyArray<number>): Onnx.TensorData => ({
  data: BigInt64Array.from(Array.from(values, (v) => BigInt(v))),
  dims
})

/** The additive causal mask [T, T]: 0 on and below the diagonal, MASKED above. */
export const causalMask = (T: number): Float32Array => {
  const m = new Float32Array(T * T)
  for (let i = 0; i < T; i++) m.fill(MASKED, i * T + i + 1, (i + 1) * T)
  return m
}

/** Groups items (longest first) into micro-batches whose rows × padded length fit the budget. */
export const microBatches = <A extends { readonly input: ReadonlyArray<number> }>(
  items: ReadonlyArray<A>,
  budget: number
): Array<Array<{ readonly item: A; readonly index: number }>> => {
  const order = items.map((item, index) => ({ item, index })).sort((a, b) => b.item.input.length - a.item.input.length)
  const batches: Array<Array<{ item: A; index: number }>> = []
  let current: Array<{ item: A; index: number }> = []
  for (const entry of order) {
    const T = current[0]?.item.input.length ?? entry.item.input.length
    if (current.length > 0 && (current.length + 1) * T > budget) {
      batches.push(current)
      current = []
    }
    current.push(entry)
  }
  if (current.length > 0) batches.push(current)
  return batches
}

export class StoryModel {
  private readonly sessions = new Map<string, Promise<Onnx.Runner>>()
  private readonly masks = new Map<number, Float32Array>()
  private readonly budget: number
  private readonly threads: number

  private constructor(readonly config: ModelConfig, options: StoryModelOptions) {
    this.budget = options.tokenBudget ?? 4096
    this.threads = options.threads ?? availableParallelism()
  }

  static create(config: ModelConfig, options: StoryModelOptions = {}): StoryModel {
    return new StoryModel(config, options)
  }

  /** Sessions are built on first use: sampling-only users never pay for the training graph. */
  private session(kind: "score" | "train" | "prefill" | "decode"): Promise<Onnx.Runner> {
    let s = this.sessions.get(kind)
    if (s === undefined) {
      const build: Record<typeof kind, (c: ModelConfig) => Graph> = {
        score: scoreGraph, train: trainGraph, prefill: prefillGraph, decode: decodeGraph
      }
      s = Onnx.load(build[kind](this.config), sessionOptions(this.threads))
      this.sessions.set(kind, s)
    }
    return s
  }

  private mask(T: number): Float32Array {
    let m = this.masks.get(T)
    if (m === undefined) {
      if (this.masks.size > 8) this.masks.clear()
      this.masks.set(T, (m = causalMask(T)))
    }
    return m
  }

  private weightFeeds(weights: ReadonlyMap<string, Float32Array>): Record<string, Onnx.TensorData> {
    const feeds: Record<string, Onnx.TensorData> = {}
    for (const [name, shape] of paramShapes(this.config)) {
      const w = weights.get(name)
      if (w === undefined) throw new Error(`weights: missing ${name}`)
      feeds[name] = f32(w, shape)
    }
    return feeds
  }

  private checkLength(n: number): void {
    if (n > this.config.maxContext) {
      throw new Error(`sequence of ${n} tokens exceeds the model's context of ${this.config.maxContext}`)
    }
  }

  /** Feeds for a right-padded batch: tokens, flat target indices, positions, mask, and per-token floats. */
  private sequenceFeeds(rows: ReadonlyArray<Scored>, T: number): Record<string, Onnx.TensorData> {
    const B = rows.length
    const V = this.config.vocabSize
    const tokens = new BigInt64Array(B * T)
    const targets = new BigInt64Array(B * T)
    rows.forEach((r, b) => {
      this.checkLength(r.input.length)
      if (r.targets.length !== r.input.length) throw new Error("targets must have the input's length")
      for (let t = 0; t < T; t++) {
        const i = b * T + t
        tokens[i] = BigInt(r.input[t] ?? 0)
        targets[i] = BigInt(i * V + (r.targets[t] ?? 0))
      }
    })
    return {
      tokens: { data: tokens, dims: [B, T] },
      target_index: { data: targets, dims: [B, T] },
      positions: f32(Float32Array.from({ length: T }, (_, i) => i), [T]),
      mask: f32(this.mask(T), [T, T])
    }
  }

  /** Teacher-forced logprobs and entropies, one array of `input.length` per item. */
  async score(
    weights: ReadonlyMap<string, Float32Array>,
    items: ReadonlyArray<Scored>
  ): Promise<Array<{ logprobs: Float32Array; entropy: Float32Array }>> {
    const run = await this.session("score")
    const out = new Array<{ logprobs: Float32Array; entropy: Float32Array }>(items.length)
    const wf = this.weightFeeds(weights)
    for (const batch of microBatches(items, this.budget)) {
      const T = batch[0]!.item.input.length
      const res = await run({ ...wf, ...this.sequenceFeeds(batch.map((e) => e.item), T) })
      const lp = res["logprobs"]!.data as Float32Array
      const ent = res["entropy"]!.data as Float32Array
      batch.forEach((e, b) => {
        const n = e.item.input.length
        out[e.index] = { logprobs: lp.slice(b * T, b * T + n), entropy: ent.slice(b * T, b * T + n) }
      })
    }
    return out
  }

  /**
   * Forward and backward over the items with the loss head of `trainGraph`; parameter gradients
   * of the summed loss are ADDED into `grads` (accumulation until the optimizer step).
   */
  async forwardBackward(
    weights: ReadonlyMap<string, Float32Array>,
    items: ReadonlyArray<TrainItem>,
    clip: { readonly low: number; readonly high: number },
    grads: ReadonlyMap<string, Float32Array>
  ): Promise<Array<TrainOutput>> {
    const run = await this.session("train")
    const out = new Array<TrainOutput>(items.length)
    const wf = this.weightFeeds(weights)
    for (const batch of microBatches(items, this.budget)) {
      const T = batch[0]!.item.input.length
      const B = batch.length
      const perToken = (pick: (it: TrainItem) => ArrayLike<number>) => {
        const a = new Float32Array(B * T) // padding positions stay 0: no loss, no gradient
        batch.forEach((e, b) => {
          const src = pick(e.item)
          if (src.length !== e.item.input.length) throw new Error("per-token loss inputs must have the input's length")
          for (let t = 0; t < src.length; t++) a[b * T + t] = src[t]!
        })
        return f32(a, [B, T])
      }
      const res = await run({
        ...wf,
        ...this.sequenceFeeds(batch.map((e) => e.item), T),
        weights: perToken((it) => it.weights),
        old_logprobs: perToken((it) => it.oldLogprobs),
        advantages: perToken((it) => it.advantages),
        clip_low: f32(Float32Array.of(clip.low), []),
        clip_high: f32(Float32Array.of(clip.high), [])
      })
      for (const [name] of paramShapes(this.config)) {
        const acc = grads.get(name)!
        const g = res[`grad.${name}`]!.data as Float32Array
        for (let i = 0; i < acc.length; i++) acc[i]! += g[i]!
      }
      const pick = (key: string, b: number, n: number) => (res[key]!.data as Float32Array).slice(b * T, b * T + n)
      batch.forEach((e, b) => {
        const n = e.item.input.length
        out[e.index] = { logprobs: pick("logprobs", b, n), loss: pick("loss", b, n), clipped: pick("clipped", b, n) }
      })
    }
    return out
  }

  /**
   * Samples one continuation per row (`prompts[r]`), seeded per row (see Generate.ts). Identical
   * prompts are prefilled once.
   */
  generate(
    weights: ReadonlyMap<string, Float32Array>,
    prompts: ReadonlyArray<ReadonlyArray<number>>,
    params: SamplingParams | ReadonlyArray<RowParams>,
    stop: ReadonlyArray<number>
  ): Promise<Array<Generated>> {
    const { vocabSize, maxContext } = this.config
    return generate(this.decoder(weights), prompts, params, { stop, vocabSize, maxContext })
  }

  /**
   * A Decoder over the prefill and decode graphs. The cache holds keys as Kᵀ [slots, H, D, C] and
   * values [slots, H, C, D]; `filled[r]` slots of row r hold its tokens so far. Finished rows keep
   * their slot (fed a dummy token) until a quarter of the slots are dead, then the cache is
   * compacted; it grows CACHE_CHUNK slots at a time.
   */
  private decoder(weights: ReadonlyMap<string, Float32Array>): Decoder {
    const { nLayers: L, nHeads: H, vocabSize: V, maxContext } = this.config
    const D = headDim(this.config)
    const wf = this.weightFeeds(weights)
    let slots: Array<number> = [] // row id per cache slot
    let filled: Array<number> = []
    let capacity = 0
    let keys: Array<Float32Array> = []
    let values: Array<Float32Array> = []
    const chunked = (n: number) => Math.min(Math.ceil(n / CACHE_CHUNK) * CACHE_CHUNK, maxContext)
    /** Rows `from[i]` of a run's logits and probs, in order. */
    const rowsOf = (res: Record<string, Onnx.TensorData>, from: ReadonlyArray<number>): NextToken => {
      const pick = (a: Float32Array) => {
        if (from.length * V === a.length && from.every((b, i) => b === i)) return a // every slot live, in order: no copy
        const out = new Float32Array(from.length * V)
        from.forEach((b, i) => out.set(a.subarray(b * V, (b + 1) * V), i * V))
        return out
      }
      return { logits: pick(res["logits"]!.data as Float32Array), probs: pick(res["probs"]!.data as Float32Array) }
    }

    /** Copies the filled part of each of `rows` (source slot `from(row)`) into a new cache of `cap` slots. */
    const relayout = (rows: ReadonlyArray<number>, cap: number, src: { keys: ReadonlyArray<Float32Array>; values: ReadonlyArray<Float32Array>; cap: number; slot: (row: number) => number }) => {
      const newKeys = Array.from({ length: L }, () => new Float32Array(rows.length * H * D * cap))
      const newValues = Array.from({ length: L }, () => new Float32Array(rows.length * H * cap * D))
      rows.forEach((row, i) => {
        const from = src.slot(row)
        const n = filled[row]!
        for (let l = 0; l < L; l++) {
          for (let h = 0; h < H; h++) {
            for (let d = 0; d < D; d++) {
              const k = ((from * H + h) * D + d) * src.cap
              newKeys[l]!.set(src.keys[l]!.subarray(k, k + n), ((i * H + h) * D + d) * cap)
            }
            const v = (from * H + h) * src.cap * D
            newValues[l]!.set(src.values[l]!.subarray(v, v + n * D), (i * H + h) * cap * D)
          }
        }
      })
      const old = slots
      keys = newKeys
      values = newValues
      capacity = cap
      slots = [...rows]
      return old
    }

    return {
      start: async (prompts) => {
        for (const p of prompts) this.checkLength(p.length)
        const keyOf = (p: ReadonlyArray<number>) => p.join(",")
        const unique = [...new Map(prompts.map((p) => [keyOf(p), p])).values()]
        const index = new Map(unique.map((p, i) => [keyOf(p), i]))
        const Tp = Math.max(...unique.map((p) => p.length))
        const res = await (await this.session("prefill"))({
          ...wf,
          tokens: i64(unique.flatMap((p) => Array.from({ length: Tp }, (_, t) => p[t] ?? 0)), [unique.length, Tp]),
          positions: f32(Float32Array.from({ length: Tp }, (_, i) => i), [Tp]),
          mask: f32(this.mask(Tp), [Tp, Tp]),
          last_index: i64(unique.map((p, u) => u * Tp + p.length - 1), [unique.length])
        })
        filled = prompts.map((p) => p.length)
        relayout(prompts.map((_, r) => r), chunked(Math.max(...filled) + 1), {
          keys: Array.from({ length: L }, (_, l) => res[`key.${l}`]!.data as Float32Array),
          values: Array.from({ length: L }, (_, l) => res[`value.${l}`]!.data as Float32Array),
          cap: Tp,
          slot: (r) => index.get(keyOf(prompts[r]!))!
        })
        return rowsOf(res, prompts.map((p) => index.get(keyOf(p))!))
      },

      step: async (rows, tokens) => {
        const need = Math.max(...rows.map((r) => filled[r]!)) + 1
        if (rows.length <= (slots.length * 3) / 4 || need > capacity) {
          const at = new Map(slots.map((r, i) => [r, i]))
          relayout(rows.length <= (slots.length * 3) / 4 ? rows : slots, Math.max(capacity, chunked(need)), { keys, values, cap: capacity, slot: (r) => at.get(r)! })
        }
        const B = slots.length
        const token = new Map(rows.map((r, i) => [r, tokens[i]!]))
        const mask = new Float32Array(B * capacity).fill(MASKED)
        slots.forEach((r, b) => mask.fill(0, b * capacity, b * capacity + filled[r]!))
        const res = await (await this.session("decode"))({
          ...wf,
          tokens: i64(slots.map((r) => token.get(r) ?? 0), [B, 1]),
          positions: f32(Float32Array.from(slots, (r) => Math.min(filled[r]!, maxContext - 1)), [B, 1]),
          mask: f32(mask, [B, 1, 1, capacity]),
          ...Object.fromEntries(Array.from({ length: L }, (_, l) => [
            [`past_key.${l}`, f32(keys[l]!, [B, H, D, capacity])],
            [`past_value.${l}`, f32(values[l]!, [B, H, capacity, D])]
          ]).flat())
        })
        // Each live row's new key and value go into its slot `filled`; dead rows' are dropped.
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
        return rowsOf(res, rows.map((r) => slotOf.get(r)!))
      }
    }
  }
}
