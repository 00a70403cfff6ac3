/**
 * Next-token pretraining of the story model: deterministic batches from a TokenCorpus, the mean
 * per-token cross-entropy (as the `cross_entropy` loss with weights 1/tokens), AdamW under an LR
 * schedule, and held-out negative log-likelihood. Steps are numbered globally, so a run split
 * into segments (one cached pipeline node each) follows exactly the trajectory of one long run.
 *
 * @example
 * const r = await trainSteps(model, weights, optimizer, corpus, { from: 0, to: 100 }, settings)
 * const nll = await meanNll(model, weights, heldout) // perplexity = Math.exp(nll)
 */
import { seeded } from "../internal/random.ts"
import type { AdamParams, AdamW } from "./AdamW.ts"
import { lrAt, type LrSchedule } from "./LrSchedule.ts"
import type { StoryModel } from "./StoryModel.ts"
import * as TokenCorpus from "./TokenCorpus.ts"

export interface PretrainSettings {
  readonly batchSize: number
  readonly learningRate: number
  readonly schedule: LrSchedule
  readonly adam: Omit<AdamParams, "learningRate">
  readonly seed: string
}

export interface StepLog {
  readonly step: number
  readonly loss: number
  readonly lr: number
  readonly gradNorm: number
  readonly tokens: number
}

/** A seeded permutation of 0..n-1 (Fisher-Yates). */
const permutation = (n: number, seed: string): Int32Array => {
  const u = seeded(seed)
  const p = Int32Array.from({ length: n }, (_, i) => i)
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(u() * (i + 1))
    ;[p[i], p[j]] = [p[j]!, p[i]!]
  }
  return p
}

/** Sequence indices of global step `step`: epochs are fresh permutations; a batch may span two. */
export const batchIndices = (n: number, batchSize: number, step: number, seed: string): Array<number> => {
  const epochs = new Map<number, Int32Array>() // a batch spans at most two epochs: shuffle each once
  const out: Array<number> = []
  for (let k = step * batchSize; k < (step + 1) * batchSize; k++) {
    const epoch = Math.floor(k / n)
    let order = epochs.get(epoch)
    if (order === undefined) epochs.set(epoch, (order = permutation(n, `${seed}:epoch:${epoch}`)))
    out.push(order[k % n]!)
  }
  return out
}

/** Runs global steps [from, to) in place on `weights` and `optimizer`. */
export const trainSteps = async (
  model: StoryModel,
  weights: ReadonlyMap<string, Float32Array>,
  optimizer: AdamW,
  corpus: TokenCorpus.TokenCorpus,
  range: { readonly from: number; readonly to: number },
  settings: PretrainSettings,
  onStep: (log: StepLog) => void | Promise<void> = () => {}
): Promise<void> => {
  const grads = new Map([...weights].map(([n, a]) => [n, new Float32Array(a.length)]))
  const n = TokenCorpus.size(corpus)
  for (let step = range.from; step < range.to; step++) {
    const seqs = batchIndices(n, settings.batchSize, step, settings.seed).map((i) => TokenCorpus.sequence(corpus, i))
    const tokens = seqs.reduce((s, q) => s + q.length - 1, 0)
    const items = seqs.map((q) => {
      const len = q.length - 1
      return {
        input: Array.from(q.subarray(0, len)),
        targets: Array.from(q.subarray(1)),
        weights: new Float32Array(len).fill(1 / tokens),
        oldLogprobs: new Float32Array(len),
        advantages: new Float32Array(len)
      }
    })
    for (const g of grads.values()) g.fill(0)
    const outs = await model.forwardBackward(weights, items, { low: 0, high: 1e30 }, grads)
    const loss = outs.reduce((s, o) => s + o.loss.reduce((a, b) => a + b, 0), 0)
    const lr = lrAt(settings.schedule, settings.learningRate, step)
    const { gradNorm } = optimizer.step(weights, grads, { ...settings.adam, learningRate: lr })
    await onStep({ step, loss, lr, gradNorm, tokens })
  }
}

/** Mean negative log-likelihood per predicted token over the corpus. */
export const meanNll = async (
  model: StoryModel,
  weights: ReadonlyMap<string, Float32Array>,
  corpus: TokenCorpus.TokenCorpus
): Promise<number> => {
  const items = Array.from({ length: TokenCorpus.size(corpus) }, (_, i) => {
    const q = TokenCorpus.sequence(corpus, i)
    return { input: Array.from(q.subarray(0, -1)), targets: Array.from(q.subarray(1)) }
  })
  const scored = await model.score(weights, items)
  let nll = 0
  let n = 0
  for (const s of scored) {
    for (const lp of s.logprobs) nll -= lp
    n += s.logprobs.length
  }
  return nll / n
}
