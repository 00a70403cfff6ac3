/**
 * Evaluation statistics (ARCHITECTURE.md §8, rubric.md "Pairwise judging"): percentile bootstrap
 * confidence intervals, dual-position pairwise verdicts, Bradley-Terry ratings on the Elo scale
 * with bootstrap CIs over prompts, and head-to-head win rates. Pure functions; all randomness comes
 * from `seeded(seed)`, so the same inputs and seed always give the same numbers.
 *
 * Percentile bootstrap (Efron): draw R resamples of the n items with replacement, compute the
 * statistic θ*_r on each, sort them, and report
 *
 *   low  = Q(θ*, (1 − level)/2)        high = Q(θ*, 1 − (1 − level)/2)
 *
 * where Q(s, q) is the linearly interpolated quantile of the sorted s at position q·(R − 1)
 * (R's type 7, numpy's default). The estimate is the statistic on the original items.
 *
 * Bradley-Terry (Hunter 2004, "MM algorithms for generalized Bradley-Terry models"): P(i beats j) =
 * p_i / (p_i + p_j). With W_i the wins of i (a tie is half a win for each side) and n_ij the number
 * of comparisons of i and j, the MM update is
 *
 *   p_i ← W_i / Σ_{j≠i} n_ij / (p_i + p_j)
 *
 * which increases the likelihood Π_i p_i^{W_i} / Π_{i<j} (p_i + p_j)^{n_ij} every step. On the Elo
 * scale p_i = 10^{R_i / scale}, so P(i beats j) = 1 / (1 + 10^{(R_j − R_i)/scale}) and
 *
 *   R_i = anchorRating + scale · log10(p_i / p_anchor).
 *
 * Prior: every system other than the anchor gets ONE virtual tie with the anchor (half a win each,
 * n_{i,anchor} += 1). This keeps a system that won (or lost) everything finite and ties every
 * system to the anchor even when the comparison graph is not connected; with k real comparisons
 * per system it pulls ratings towards the anchor by O(1/k).
 */
import { seeded } from "../internal/random.ts"

/** A percentile-bootstrap confidence interval around a point estimate. */
export interface Interval {
  readonly estimate: number
  readonly low: number
  readonly high: number
}

export interface BootstrapOptions {
  /** Number of bootstrap resamples (default 1000). */
  readonly resamples?: number
  /** Two-sided confidence level in (0, 1) (default 0.95). */
  readonly level?: number
  /** Seed of the resampling RNG. */
  readonly seed: string
  /** The statistic (default the mean). */
  readonly statistic?: (xs: ReadonlyArray<number>) => number
}

/**
 * The arithmetic mean; NaN for an empty array.
 *
 * @example
 * mean([1, 2, 6]) // 3
 */
export const mean = (xs: ReadonlyArray<number>): number => {
  if (xs.length === 0) return NaN
  let s = 0
  for (const x of xs) s += x
  return s / xs.length
}

/** Linearly interpolated quantile (type 7) of an ascending-sorted, non-empty array. */
const quantileSorted = (sorted: ReadonlyArray<number>, q: number): number => {
  const pos = q * (sorted.length - 1)
  const lo = Math.floor(pos)
  const hi = Math.ceil(pos)
  const a = sorted[lo] ?? NaN
  const b = sorted[hi] ?? NaN
  return lo === hi ? a : a + (b - a) * (pos - lo)
}

const checkResamplesLevel = (resamples: number, level: number): void => {
  if (!Number.isInteger(resamples) || resamples < 1) throw new RangeError(`resamples must be a positive integer, got ${resamples}`)
  if (!(level > 0 && level < 1)) throw new RangeError(`level must be in (0, 1), got ${level}`)
}

/** The (low, high) percentile bounds of the finite bootstrap replicates; NaNs when there are none. */
const percentileBounds = (replicates: ReadonlyArray<number>, level: number): { low: number; high: number } => {
  const sorted = replicates.filter(Number.isFinite).sort((x, y) => x - y)
  if (sorted.length === 0) return { low: NaN, high: NaN }
  const alpha = (1 - level) / 2
  return { low: quantileSorted(sorted, alpha), high: quantileSorted(sorted, 1 - alpha) }
}

/**
 * Percentile-bootstrap CI of `statistic` (default the mean) over the items. NaN items are ignored;
 * with no items left every field is NaN. Replicates whose statistic is not finite are dropped
 * before taking percentiles.
 *
 * @example
 * bootstrapCI([2, 4, 6, 8], { seed: "s" })
 * // { estimate: 5, low: ≈3, high: ≈7 }  (deterministic for the seed)
 */
export const bootstrapCI = (values: ReadonlyArray<number>, options: BootstrapOptions): Interval => {
  const resamples = options.resamples ?? 1000
  const level = options.level ?? 0.95
  const statistic = options.statistic ?? mean
  checkResamplesLevel(resamples, level)
  const xs = values.filter((x) => !Number.isNaN(x))
  const n = xs.length
  if (n === 0) return { estimate: NaN, low: NaN, high: NaN }
  const rng = seeded(options.seed)
  const replicates: number[] = new Array<number>(resamples)
  const draw: number[] = new Array<number>(n)
  for (let r = 0; r < resamples; r++) {
    for (let i = 0; i < n; i++) draw[i] = xs[Math.floor(rng() * n)] ?? NaN
    replicates[r] = statistic(draw)
  }
  return { estimate: statistic(xs), ...percentileBounds(replicates, level) }
}

/**
 * Two-level percentile bootstrap of a mean over clusters of items (seeds, each with its
 * prompts): each replicate draws the clusters with replacement, then each drawn cluster's items
 * with replacement, and averages the drawn clusters' item means; the estimate is the mean of the
 * clusters' means. Both sources of spread count (Davison & Hinkley 1997, §3.8, "two-stage"
 * resampling). NaN items are ignored; an empty cluster is dropped.
 *
 * @example
 * hierarchicalBootstrapCI([[0.5, 0.7], [0.6, 0.9, 0.4]], { seed: "s" })
 * // { estimate: 0.6, low, high }  (deterministic for the seed)
 */
export const hierarchicalBootstrapCI = (clusters: ReadonlyArray<ReadonlyArray<number>>, options: Omit<BootstrapOptions, "statistic">): Interval => {
  const resamples = options.resamples ?? 1000
  const level = options.level ?? 0.95
  checkResamplesLevel(resamples, level)
  const cs = clusters.map((c) => c.filter((x) => !Number.isNaN(x))).filter((c) => c.length > 0)
  if (cs.length === 0) return { estimate: NaN, low: NaN, high: NaN }
  const rng = seeded(options.seed)
  const replicates = new Array<number>(resamples)
  for (let r = 0; r < resamples; r++) {
    let total = 0
    for (let k = 0; k < cs.length; k++) {
      const c = cs[Math.floor(rng() * cs.length)]!
      let s = 0
      for (let i = 0; i < c.length; i++) s += c[Math.floor(rng() * c.length)]!
      total += s / c.length
    }
    replicates[r] = total / cs.length
  }
  return { estimate: mean(cs.map(mean)), ...percentileBounds(replicates, level) }
}

// ───────────────────────────── pairwise comparisons ─────────────────────────────

/** A verdict naming a system (never a position): system a, system b, or a tie. */
export type Verdict = "a" | "b" | "tie"

/**
 * One dual-position judgement of systems `a` and `b` on `prompt`: `ab` is the verdict with a's text
 * shown first, `ba` with b's text shown first. Both refer to the systems, not to positions.
 */
export interface PairwiseComparison {
  readonly prompt: string
  readonly a: string
  readonly b: string
  readonly ab: Verdict
  readonly ba: Verdict
}

/**
 * The combined verdict: a win only when both orders agree, otherwise a tie.
 *
 * @example
 * combine({ prompt: "p", a: "x", b: "y", ab: "a", ba: "a" })   // "a"
 * combine({ prompt: "p", a: "x", b: "y", ab: "a", ba: "tie" }) // "tie"
 */
export const combine = (c: PairwiseComparison): Verdict => (c.ab === c.ba ? c.ab : "tie")

/**
 * Share of comparisons whose two orders agree (agreeing ties count as agreeing); NaN when empty.
 *
 * @example
 * positionConsistency([{ …, ab: "a", ba: "a" }, { …, ab: "a", ba: "b" }]) // 0.5
 */
export const positionConsistency = (comparisons: ReadonlyArray<PairwiseComparison>): number => {
  if (comparisons.length === 0) return NaN
  let agree = 0
  for (const c of comparisons) if (c.ab === c.ba) agree++
  return agree / comparisons.length
}

/** Comparisons grouped by prompt, in order of first appearance (the bootstrap's resampling unit). */
const byPrompt = <T extends { readonly prompt: string }>(items: ReadonlyArray<T>): T[][] => {
  const groups = new Map<string, T[]>()
  for (const c of items) {
    const g = groups.get(c.prompt)
    if (g === undefined) groups.set(c.prompt, [c])
    else g.push(c)
  }
  return [...groups.values()]
}

/** Indices 0..n−1 drawn n times with replacement. */
const drawIndices = (n: number, rng: () => number): number[] => {
  const out = new Array<number>(n)
  for (let i = 0; i < n; i++) out[i] = Math.floor(rng() * n)
  return out
}

// ───────────────────────────── Bradley-Terry ─────────────────────────────

export interface BradleyTerryOptions {
  /** The system whose rating is fixed at `anchorRating`. Must appear in the comparisons. */
  readonly anchor: string
  /** Rating of the anchor (default 1000). */
  readonly anchorRating?: number
  /** Elo scale: a `scale`-point gap means 10:1 odds (default 400). */
  readonly scale?: number
  /** Maximum MM iterations (default 10000). */
  readonly iterations?: number
  /** Stop when max_i |Δ log p_i| falls below this (default 1e-10). */
  readonly tolerance?: number
}

/** One combined outcome in index form: systems i and j, score of i (1, ½ or 0). */
interface Outcome {
  readonly i: number
  readonly j: number
  readonly s: number
}

const toOutcome = (c: PairwiseComparison, index: ReadonlyMap<string, number>): Outcome => {
  if (c.a === c.b) throw new RangeError(`comparison of ${JSON.stringify(c.a)} with itself (prompt ${JSON.stringify(c.prompt)})`)
  const v = combine(c)
  return { i: index.get(c.a) ?? -1, j: index.get(c.b) ?? -1, s: v === "a" ? 1 : v === "tie" ? 0.5 : 0 }
}

/** Sorted systems (anchor included) and their index map; throws when the anchor never appears. */
const systemsOf = (comparisons: ReadonlyArray<PairwiseComparison>, anchor: string): { systems: string[]; index: Map<string, number> } => {
  const set = new Set<string>()
  for (const c of comparisons) {
    set.add(c.a)
    set.add(c.b)
  }
  if (!set.has(anchor)) throw new RangeError(`anchor ${JSON.stringify(anchor)} appears in no comparison`)
  const systems = [...set].sort()
  return { systems, index: new Map(systems.map((s, k) => [s, k])) }
}

/**
 * MM fit on accumulated wins W (length k) and pair counts N (k×k, symmetric), prior included by the
 * caller. Returns log10(p_i / p_anchor).
 */
const fitLog10 = (W: Float64Array, N: Float64Array, k: number, anchorIdx: number, iterations: number, tolerance: number): Float64Array => {
  let p = new Float64Array(k).fill(1)
  let next = new Float64Array(k)
  for (let it = 0; it < iterations; it++) {
    for (let i = 0; i < k; i++) {
      let denom = 0
      const pi = p[i] ?? 1
      for (let j = 0; j < k; j++) {
        if (j === i) continue
        const nij = N[i * k + j] ?? 0
        if (nij > 0) denom += nij / (pi + (p[j] ?? 1))
      }
      next[i] = denom > 0 ? (W[i] ?? 0) / denom : pi
    }
    const norm = next[anchorIdx] ?? 1
    let delta = 0
    for (let i = 0; i < k; i++) {
      const v = (next[i] ?? 1) / norm
      delta = Math.max(delta, Math.abs(Math.log(v) - Math.log(p[i] ?? 1)))
      next[i] = v
    }
    ;[p, next] = [next, p]
    if (delta < tolerance) break
  }
  return p.map(Math.log10)
}

/** Accumulate W and N from outcomes plus the one-virtual-tie-with-the-anchor prior. */
const accumulate = (outcomes: Iterable<Outcome>, k: number, anchorIdx: number): { W: Float64Array; N: Float64Array } => {
  const W = new Float64Array(k)
  const N = new Float64Array(k * k)
  for (let i = 0; i < k; i++) {
    if (i === anchorIdx) continue
    W[i] = (W[i] ?? 0) + 0.5
    W[anchorIdx] = (W[anchorIdx] ?? 0) + 0.5
    N[i * k + anchorIdx] = (N[i * k + anchorIdx] ?? 0) + 1
    N[anchorIdx * k + i] = (N[anchorIdx * k + i] ?? 0) + 1
  }
  for (const o of outcomes) {
    W[o.i] = (W[o.i] ?? 0) + o.s
    W[o.j] = (W[o.j] ?? 0) + (1 - o.s)
    N[o.i * k + o.j] = (N[o.i * k + o.j] ?? 0) + 1
    N[o.j * k + o.i] = (N[o.j * k + o.i] ?? 0) + 1
  }
  return { W, N }
}

interface ResolvedBT {
  readonly anchorRating: number
  readonly scale: number
  readonly iterations: number
  readonly tolerance: number
}

const resolveBT = (o: BradleyTerryOptions): ResolvedBT => ({
  anchorRating: o.anchorRating ?? 1000,
  scale: o.scale ?? 400,
  iterations: o.iterations ?? 10000,
  tolerance: o.tolerance ?? 1e-10,
})

const ratingsFrom = (log10p: Float64Array, systems: ReadonlyArray<string>, r: ResolvedBT): Record<string, number> => {
  const out: Record<string, number> = {}
  systems.forEach((s, k) => {
    out[s] = r.anchorRating + r.scale * (log10p[k] ?? NaN)
  })
  return out
}

/**
 * Bradley-Terry ratings on the Elo scale from the combined (dual-position) outcomes, ties half a
 * win each, with one virtual tie per system against the anchor as prior (see the module doc).
 * The anchor gets exactly `anchorRating`. Throws when the anchor appears in no comparison or a
 * comparison pits a system against itself.
 *
 * @example
 * // x beats y 3 times (both orders agree), y beats x once; prior adds one x–y tie:
 * // W_x = 3.5, W_y = 1.5, n = 5 → p_x/p_y = 7/3 → x = 1000 + 400·log10(7/3)
 * bradleyTerry(comparisons, { anchor: "y" }) // { x: 1147.2…, y: 1000 }
 */
export const bradleyTerry = (comparisons: ReadonlyArray<PairwiseComparison>, options: BradleyTerryOptions): Record<string, number> => {
  const r = resolveBT(options)
  const { systems, index } = systemsOf(comparisons, options.anchor)
  const k = systems.length
  const anchorIdx = index.get(options.anchor) ?? 0
  const { W, N } = accumulate(
    comparisons.map((c) => toOutcome(c, index)),
    k,
    anchorIdx
  )
  return ratingsFrom(fitLog10(W, N, k, anchorIdx, r.iterations, r.tolerance), systems, r)
}

export interface RatingInterval {
  readonly rating: number
  readonly low: number
  readonly high: number
}

export interface BradleyTerryCIOptions extends BradleyTerryOptions {
  /** Number of bootstrap resamples (default 1000). */
  readonly resamples?: number
  /** Two-sided confidence level (default 0.95). */
  readonly level?: number
  /** Seed of the resampling RNG. */
  readonly seed: string
}

/**
 * Bradley-Terry ratings with percentile-bootstrap CIs over PROMPTS: each resample draws the
 * distinct prompts with replacement and refits on all comparisons of every drawn prompt (a prompt
 * drawn twice counts twice). Systems absent from a resample keep only their prior tie with the
 * anchor and so sit at the anchor's rating in it. The anchor's interval is degenerate
 * (low = high = anchorRating): ratings are relative to it.
 *
 * @example
 * bradleyTerryCI(comparisons, { anchor: "base", seed: "eval-1", resamples: 500 })
 * // { base: { rating: 1000, low: 1000, high: 1000 }, tuned: { rating: 1085.3…, low: 1041.…, high: 1130.… } }
 */
export const bradleyTerryCI = (
  comparisons: ReadonlyArray<PairwiseComparison>,
  options: BradleyTerryCIOptions
): Record<string, RatingInterval> => {
  const resamples = options.resamples ?? 1000
  const level = options.level ?? 0.95
  checkResamplesLevel(resamples, level)
  const r = resolveBT(options)
  const { systems, index } = systemsOf(comparisons, options.anchor)
  const k = systems.length
  const anchorIdx = index.get(options.anchor) ?? 0
  const groups = byPrompt(comparisons).map((g) => g.map((c) => toOutcome(c, index)))
  const all = accumulate(groups.flat(), k, anchorIdx)
  const point = ratingsFrom(fitLog10(all.W, all.N, k, anchorIdx, r.iterations, r.tolerance), systems, r)
  const rng = seeded(options.seed)
  const replicates: number[][] = systems.map(() => new Array<number>(resamples))
  for (let b = 0; b < resamples; b++) {
    const drawn = drawIndices(groups.length, rng)
    const outcomes = function* (): Generator<Outcome> {
      for (const g of drawn) yield* groups[g] ?? []
    }
    const { W, N } = accumulate(outcomes(), k, anchorIdx)
    const fit = fitLog10(W, N, k, anchorIdx, r.iterations, r.tolerance)
    for (let s = 0; s < k; s++) {
      const rep = replicates[s]
      if (rep !== undefined) rep[b] = r.anchorRating + r.scale * (fit[s] ?? NaN)
    }
  }
  const out: Record<string, RatingInterval> = {}
  systems.forEach((s, i) => {
    out[s] = { rating: point[s] ?? NaN, ...percentileBounds(replicates[i] ?? [], level) }
  })
  return out
}

// ───────────────────────────── head-to-head ─────────────────────────────

export interface WinRate {
  readonly wins: number
  readonly ties: number
  readonly losses: number
  /** (wins + ties/2) / n; NaN when the two never met. */
  readonly rate: number
  readonly low: number
  readonly high: number
}

export interface WinRateOptions {
  readonly seed: string
  /** Number of bootstrap resamples (default 1000). */
  readonly resamples?: number
  /** Two-sided confidence level (default 0.95). */
  readonly level?: number
}

/**
 * Combined-verdict record of `system` against `opponent` over every comparison of the two (in
 * either a/b orientation), with the rate (wins + ties/2)/n and its percentile-bootstrap CI over
 * prompts (each resample: prompts with replacement, rate = Σ(wins + ties/2) / Σ n over the drawn
 * prompts). All fields but the counts are NaN when the two never met.
 *
 * @example
 * winRate(comparisons, "tuned", "base", { seed: "s" })
 * // { wins: 2, ties: 1, losses: 1, rate: 0.625, low: …, high: … }
 */
export const winRate = (
  comparisons: ReadonlyArray<PairwiseComparison>,
  system: string,
  opponent: string,
  options: WinRateOptions
): WinRate => {
  const resamples = options.resamples ?? 1000
  const level = options.level ?? 0.95
  checkResamplesLevel(resamples, level)
  const scored: { prompt: string; s: number }[] = []
  for (const c of comparisons) {
    const v = combine(c)
    if (c.a === system && c.b === opponent) scored.push({ prompt: c.prompt, s: v === "a" ? 1 : v === "tie" ? 0.5 : 0 })
    else if (c.a === opponent && c.b === system) scored.push({ prompt: c.prompt, s: v === "b" ? 1 : v === "tie" ? 0.5 : 0 })
  }
  let wins = 0, ties = 0, losses = 0
  for (const x of scored) {
    if (x.s === 1) wins++
    else if (x.s === 0) losses++
    else ties++
  }
  const n = scored.length
  if (n === 0) return { wins, ties, losses, rate: NaN, low: NaN, high: NaN }
  const groups = byPrompt(scored).map((g) => ({ sum: g.reduce((t, x) => t + x.s, 0), n: g.length }))
  const rng = seeded(options.seed)
  const replicates = new Array<number>(resamples)
  for (let b = 0; b < resamples; b++) {
    let sum = 0, m = 0
    for (const g of drawIndices(groups.length, rng)) {
      sum += groups[g]?.sum ?? 0
      m += groups[g]?.n ?? 0
    }
    replicates[b] = sum / m
  }
  return { wins, ties, losses, rate: (wins + ties / 2) / n, ...percentileBounds(replicates, level) }
}

/**
 * Cohen's kappa of two raters' labels on the same items (Cohen 1960):
 * κ = (p_o − p_e) / (1 − p_e), p_o the share of items they label alike, p_e = Σ_k p_A(k)·p_B(k)
 * the agreement expected from each rater's own label frequencies. 1 when both always give the
 * same single label (p_e = 1, no chance to disagree); NaN without items.
 *
 * @example
 * cohenKappa(["a", "a", "b", "tie"], ["a", "b", "b", "tie"]) // p_o 0.75, p_e 0.3125 -> 0.636…
 */
export const cohenKappa = (a: ReadonlyArray<string>, b: ReadonlyArray<string>): number => {
  if (a.length !== b.length) throw new Error(`cohenKappa: ${a.length} labels against ${b.length}`)
  const n = a.length
  if (n === 0) return NaN
  const po = a.filter((x, i) => x === b[i]).length / n
  const labels = new Set([...a, ...b])
  let pe = 0
  for (const k of labels) pe += (a.filter((x) => x === k).length / n) * (b.filter((x) => x === k).length / n)
  return pe === 1 ? 1 : (po - pe) / (1 - pe)
}
