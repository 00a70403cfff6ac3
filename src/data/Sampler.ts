/**
 * The length-stratified prompt sampler. Prompts fall into buckets by requested words (bucket
 * edges); each step draws `groupsPerStep` prompts, choosing a bucket per slot by weight and
 * taking that bucket's next prompt in a shuffled order. A bucket's order is a fresh permutation
 * per epoch, so no prompt repeats within its bucket's epoch.
 *
 * Everything is a pure function of (seed, state): the state (a cursor per bucket) is a node
 * output carried from step to step, so a resumed run draws exactly the same batches.
 */
import { Schema } from "effect"
import { seeded } from "../internal/random.ts"

/** A prompt as the sampler sees it. */
export interface Candidate {
  readonly id: string
  readonly requestedWords: number
}

/** Where each bucket stands: its epoch and the position in that epoch's order. */
export const SamplerState = Schema.Struct({
  step: Schema.Int,
  cursors: Schema.Array(Schema.Struct({ epoch: Schema.Int, position: Schema.Int }))
})
export type SamplerState = typeof SamplerState.Type

/** The sampler's settings. */
export interface SamplerConfig {
  /** Increasing bucket edges in requested words: bucket i is [edges[i], edges[i+1]). */
  readonly edges: ReadonlyArray<number>
  /** Weight per bucket (default: equal). Empty buckets are never chosen. */
  readonly weights?: ReadonlyArray<number>
  readonly groupsPerStep: number
  readonly seed: number
}

/** Index of the bucket of `words`, or -1 when outside every bucket. */
export const bucketOf = (edges: ReadonlyArray<number>, words: number): number => {
  for (let i = 0; i + 1 < edges.length; i++) if (words >= edges[i]! && words < edges[i + 1]!) return i
  return -1
}

/** Prompt ids per bucket, sorted by id so the input order does not matter. */
export const stratify = (candidates: ReadonlyArray<Candidate>, edges: ReadonlyArray<number>): Array<Array<string>> => {
  const buckets: Array<Array<string>> = Array.from({ length: Math.max(0, edges.length - 1) }, () => [])
  for (const c of candidates) {
    const b = bucketOf(edges, c.requestedWords)
    if (b >= 0) buckets[b]!.push(c.id)
  }
  return buckets.map((ids) => ids.sort())
}

/** The state before step 0. */
export const initial = (bucketCount: number): SamplerState => ({
  step: 0,
  cursors: Array.from({ length: bucketCount }, () => ({ epoch: 0, position: 0 }))
})

/** Fisher-Yates shuffle of `ids` determined by `seed`. */
const permutation = (ids: ReadonlyArray<string>, seed: string): Array<string> => {
  const random = seeded(seed)
  const out = [...ids]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

/** Picks an index with probability proportional to `weights` (all >= 0, some > 0). */
const pick = (weights: ReadonlyArray<number>, u: number): number => {
  const total = weights.reduce((a, b) => a + b, 0)
  let x = u * total
  for (let i = 0; i < weights.length; i++) {
    x -= weights[i]!
    if (x < 0 && weights[i]! > 0) return i
  }
  return weights.findLastIndex((w) => w > 0)
}

/**
 * Draws the batch of step `state.step`: `groupsPerStep` prompt ids, and the state for the next
 * step. Deterministic in (config.seed, state, buckets).
 */
export const draw = (
  buckets: ReadonlyArray<ReadonlyArray<string>>,
  state: SamplerState,
  config: SamplerConfig
): { readonly batch: ReadonlyArray<string>; readonly next: SamplerState } => {
  const weights = buckets.map((ids, i) => (ids.length === 0 ? 0 : config.weights?.[i] ?? 1))
  if (!weights.some((w) => w > 0)) throw new Error("every bucket is empty (or weighted 0): no prompt to sample")
  const cursors = state.cursors.map((c) => ({ ...c }))
  const random = seeded(`sampler:${config.seed}:step:${state.step}`)
  const batch: Array<string> = []
  for (let slot = 0; slot < config.groupsPerStep; slot++) {
    const b = pick(weights, random())
    const ids = buckets[b]!
    const cursor = cursors[b]!
    if (cursor.position >= ids.length) {
      cursor.epoch++
      cursor.position = 0
    }
    batch.push(permutation(ids, `sampler:${config.seed}:bucket:${b}:epoch:${cursor.epoch}`)[cursor.position]!)
    cursor.position++
  }
  return { batch, next: { step: state.step + 1, cursors } }
}
