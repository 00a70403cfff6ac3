/**
 * The embedded story model at run time: the four graphs of Transformer.ts in onnxruntime-node
 * sessions, and the host-side work around them (padding and micro-batching, masks, the key/value
 * cache, the sampling loop). Weights are a plain `Map<name, Float32Array>` owned by the caller,
 * fed to every run, so an optimizer updating them in place is seen by the next call.
 *
 * @example
 * const model = StoryModel.create(config)
 * const [scored] = await model.score(weights, [{ input: [1, 2, 3], targets: [2, 3, 4] }])
 * const policy = await model.sampler(weights)
 * const rows = await policy.generate([promptIds], params, [endId])
 */
import type * as ort from "onnxruntime-node"
import { availableParallelism } from "node:os"
import * as Onnx from "./graph/Onnx.ts"
import type { Graph } from "./graph/Graph.ts"
import { KvBatch, type Prefill } from "./KvDecoder.ts"
import { generate, type Generated, type RowParams } from "./Generate.ts"
import type { SamplingParams } from "./Sampling.ts"
import { decodeGraph, MASKED, paramShapes, prefillGraph, scoreGraph, trainGraph, type ModelConfig } from "./Transformer.ts"

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

/** Weights frozen for sampling ({@link StoryModel.sampler}). */
export interface Sampler {
  /**
   * Samples one continuation per row (`prompts[r]`), seeded per row (see Generate.ts). Each
   * distinct prompt is prefilled once, alone; a row's tokens and logprobs depend on nothing but
   * the row (KvDecoder.ts). Calls in flight together are decoded together.
   */
  readonly generate: (
    prompts: ReadonlyArray<ReadonlyArray<number>>,
    params: SamplingParams | ReadonlyArray<RowParams>,
    stop: ReadonlyArray<number>
  ) => Promise<Array<Generated>>
  /** `StoryModel.score` under the frozen weights. */
  readonly score: (items: ReadonlyArray<Scored>) => Promise<Array<{ logprobs: Float32Array; entropy: Float32Array }>>
  /** Frees the sessions built for these weights. */
  readonly release: () => Promise<void>
}

export interface StoryModelOptions {
  /** Tokens per micro-batch (rows × padded length) for score/train runs; default 4096. */
  readonly tokenBudget?: number
  /** onnxruntime intra-op threads; default the machine's cores. */
  readonly threads?: number
}

const sessionOptions = (threads: number): ort.InferenceSession.SessionOptions => ({
  intraOpNumThreads: threads,
  interOpNumThreads: 1,
  executionMode: "sequential",
  graphOptimizationLevel: "all",
  // A memory pattern is planned per input shape and allocated afresh for each new shape; every
  // micro-batch and decode step has a new shape, and first-touching a new block of memory costs
  // more than the run (measured: a 4,096-token training run 1.7 s cold, 0.36 s warm). Without
  // patterns, the arena's blocks are reused across shapes.
  enableMemPattern: false
})

const f32 = (data: Float32Array, dims: ReadonlyArray<number>): Onnx.TensorData => ({ data, dims })
/** The additive causal mask [T, T]: 0 on and below the diagonal, MASKED above. */
export const causalMask = (T: number): Float32Array => {
  const m = new Float32Array(T * T)
  for (let i = 0; i < T; i++) m.fill(MASKED, i * T + i + 1, (i + 1) * T)
  return m
}

/**
 * Cost of one run over `rows` rows padded to `T` tokens, in token-equivalents: a token's matmuls
 * and elementwise work are fixed (about 2.65 MFLOP forward for story-1m) while its attention grows with T
 * (4·L·d·T, 2,048·T), hence the factor 1 + T/1,300; plus a fixed cost per run (onnxruntime's call,
 * the weight gradients copied out), measured as about 15 ms, about 120 tokens at 8,000 tokens/s.
 */
export const runCost = (rows: number, T: number): number => rows * T * (1 + T / 1300) + 120

/**
 * Groups items into micro-batches whose rows × padded length fit the budget, at the least total
 * `runCost`: with the items sorted longest first, the best split into consecutive runs is a
 * shortest path over the cut points (dynamic programming, O(n²) for n items). Greedily filling
 * each batch to the budget padded a GRPO step's sequences (one group's lengths vary 3×) to 80% real tokens.
 * Ties in length keep the items' order, so the batches are a function of the lengths alone.
 */
export const microBatches = <A extends { readonly input: ReadonlyArray<number> }>(
  items: ReadonlyArray<A>,
  budget: number
): Array<Array<{ readonly item: A; readonly index: number }>> => {
  const order = items.map((item, index) => ({ item, index })).sort((a, b) => b.item.input.length - a.item.input.length || a.index - b.index)
  const n = order.length
  // best[i]: least cost of batching order[i..n); cut[i]: where the batch starting at i ends.
  const best = new Float64Array(n + 1)
  const cut = new Int32Array(n + 1)
  for (let i = n - 1; i >= 0; i--) {
    const T = order[i]!.item.input.length
    best[i] = Infinity
    // A batch of one row is always allowed, even over the budget.
    for (let j = i + 1; j <= n && ((j - i) * T <= budget || j === i + 1); j++) {
      const c = runCost(j - i, T) + best[j]!
      if (c < best[i]!) {
        best[i] = c
        cut[i] = j
      }
    }
  }
  const batches: Array<Array<{ item: A; index: number }>> = []
  for (let i = 0; i < n; i = cut[i]!) batches.push(order.slice(i, cut[i]!))
  return batches
}

export class StoryModel {
  private readonly sessions = new Map<string, Promise<Onnx.Runner>>()
  private readonly masks = new Map<number, Float32Array>()
  private decodeGraph: Graph | undefined
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
  private session(kind: "score" | "train" | "prefill"): Promise<Onnx.Runner> {
    let s = this.sessions.get(kind)
    if (s === undefined) {
      const build: Record<typeof kind, (c: ModelConfig) => Graph> = { score: scoreGraph, train: trainGraph, prefill: prefillGraph }
      // Sampling runs on one thread (see `sampler`); teacher forcing and training on `threads`.
      s = Onnx.load(build[kind](this.config), sessionOptions(kind === "prefill" ? 1 : this.threads))
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

  /** Feeds for a right-padded batch: tokens, positions and mask. */
  private sequenceFeeds(rows: ReadonlyArray<Scored>, T: number): Record<string, Onnx.TensorData> {
    const tokens = new BigInt64Array(rows.length * T)
    rows.forEach((r, b) => {
      this.checkLength(r.input.length)
      if (r.targets.length !== r.input.length) throw new Error("targets must have the input's length")
      for (let t = 0; t < r.input.length; t++) tokens[b * T + t] = BigInt(r.input[t]!)
    })
    return {
      tokens: { data: tokens, dims: [rows.length, T] },
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
      // Flat index (b*T + t)*V + target into the batch's log-softmax; padding scores token 0.
      const targets = BigInt64Array.from({ length: batch.length * T }, (_, i) => BigInt(i * this.config.vocabSize))
      batch.forEach((e, b) => e.item.targets.forEach((x, t) => (targets[b * T + t]! += BigInt(x))))
      const res = await run({ ...wf, ...this.sequenceFeeds(batch.map((e) => e.item), T), target_index: { data: targets, dims: [batch.length, T] } })
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
   *
   * `logprobs: "loss"` runs the LM head only where a token has a loss (weight or advantage not 0):
   * a GRPO step's prompts are a quarter of its positions. Their `logprobs` are then NaN (not
   * computed), their `loss` and `clipped` 0 as under "all". The gradients are the same sums
   * either way, though not always to the last bit (the head's weight gradient sums fewer rows).
   */
  async forwardBackward(
    weights: ReadonlyMap<string, Float32Array>,
    items: ReadonlyArray<TrainItem>,
    clip: { readonly low: number; readonly high: number },
    grads: ReadonlyMap<string, Float32Array>,
    options: { readonly logprobs?: "all" | "loss" } = {}
  ): Promise<Array<TrainOutput>> {
    const run = await this.session("train")
    const out = new Array<TrainOutput>(items.length)
    const wf = this.weightFeeds(weights)
    const V = this.config.vocabSize
    const all = (options.logprobs ?? "all") === "all"
    for (const batch of microBatches(items, this.budget)) {
      const T = batch[0]!.item.input.length
      // The scored positions, row by row (flat index b*T + t into the batch), and the loss head's inputs there.
      const at: Array<number> = []
      const target: Array<bigint> = []
      const w: Array<number> = []
      const old: Array<number> = []
      const adv: Array<number> = []
      batch.forEach((e, b) => {
        const { input, targets, weights, advantages, oldLogprobs } = e.item
        if (weights.length !== input.length || advantages.length !== input.length || oldLogprobs.length !== input.length) {
          throw new Error("per-token loss inputs must have the input's length")
        }
        if (targets.length !== input.length) throw new Error("targets must have the input's length")
        this.checkLength(input.length)
        for (let t = 0; t < input.length; t++) {
          if (!all && weights[t] === 0 && advantages[t] === 0) continue
          target.push(BigInt(at.length * V + targets[t]!))
          at.push(b * T + t)
          w.push(weights[t]!)
          old.push(oldLogprobs[t]!)
          adv.push(advantages[t]!)
        }
      })
      const rows = batch.map((e) => {
        const n = e.item.input.length
        return { logprobs: new Float32Array(n).fill(NaN), loss: new Float32Array(n), clipped: new Float32Array(n) }
      })
      batch.forEach((e, b) => (out[e.index] = rows[b]!))
      const N = at.length
      // No token with a loss (a group whose rewards were all equal): no gradient, nothing to run.
      if (N === 0) continue
      const res = await run({
        ...wf,
        ...this.sequenceFeeds(batch.map((e) => e.item), T),
        scored: { data: BigInt64Array.from(at, BigInt), dims: [N] },
        target_index: { data: BigInt64Array.from(target), dims: [N] },
        weights: f32(Float32Array.from(w), [N]),
        old_logprobs: f32(Float32Array.from(old), [N]),
        advantages: f32(Float32Array.from(adv), [N]),
        clip_low: f32(Float32Array.of(clip.low), []),
        clip_high: f32(Float32Array.of(clip.high), [])
      })
      for (const [name] of paramShapes(this.config)) {
        const acc = grads.get(name)!
        const g = res[`grad.${name}`]!.data as Float32Array
        for (let i = 0; i < acc.length; i++) acc[i]! += g[i]!
      }
      const [lp, loss, clipped] = (["logprobs", "loss", "clipped"] as const).map((k) => res[k]!.data as Float32Array)
      at.forEach((i, n) => {
        const row = rows[Math.floor(i / T)]!
        row.logprobs[i % T] = lp![n]!
        row.loss[i % T] = loss![n]!
        row.clipped[i % T] = clipped![n]!
      })
    }
    return out
  }

  /** One-off sampling: `sampler(weights)` for one call (repeated calls on the same weights should keep a sampler). */
  async generate(
    weights: ReadonlyMap<string, Float32Array>,
    prompts: ReadonlyArray<ReadonlyArray<number>>,
    params: SamplingParams | ReadonlyArray<RowParams>,
    stop: ReadonlyArray<number>
  ): Promise<Array<Generated>> {
    const sampler = await this.sampler(weights)
    try {
      return await sampler.generate(prompts, params, stop)
    } finally {
      await sampler.release()
    }
  }

  /**
   * `weights` frozen for sampling: a copy is baked into a decode session of their own, where
   * onnxruntime folds and prepacks them once (fed on every run, they are repacked on every
   * decoding step: measured 1.5-1.7× slower), and fed to the shared prefill and score sessions.
   * Later changes to `weights` are not seen. Prefill and decoding run on one onnxruntime thread,
   * whatever `threads` says: on one thread a row's bits do not depend on the rows beside it
   * (KvDecoder.ts), nor on the machine's core count; the cores are used by running several
   * samplers side by side (SamplerPool.ts).
   */
  async sampler(weights: ReadonlyMap<string, Float32Array>): Promise<Sampler> {
    const frozen = new Map([...weights].map(([name, a]) => [name, a.slice()]))
    const wf = this.weightFeeds(frozen)
    this.decodeGraph ??= decodeGraph(this.config)
    // "extended" optimizations run this graph as fast as "all" and build in half the time (measured),
    // which counts: a sampler is built for every policy version.
    const decode = await Onnx.loadSession(this.decodeGraph, { ...sessionOptions(1), graphOptimizationLevel: "extended" }, frozen)
    const { vocabSize, maxContext } = this.config
    const prefill: Prefill = async (prompt) => {
      this.checkLength(prompt.length)
      const T = prompt.length
      return (await this.session("prefill"))({
        ...wf,
        tokens: Onnx.int64(prompt, [1, T]),
        positions: f32(Float32Array.from({ length: T }, (_, i) => i), [T]),
        mask: f32(this.mask(T), [T, T]),
        last_index: Onnx.int64([T - 1], [1])
      })
    }
    const batch = new KvBatch(this.config, prefill, decode.run)
    return {
      generate: (prompts, params, stop) => generate(batch.decoder(), prompts, params, { stop, vocabSize, maxContext }),
      score: (items) => this.score(frozen, items),
      release: decode.release
    }
  }
}
