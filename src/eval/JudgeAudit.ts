/**
 * The judge audit's statistics (docs/evaluation.md, "Judge audit"), from the judge's own answers:
 *
 * - damage sensitivity, per damage: the share of stories the damaged version scores below the
 *   original (ties are not "lower"), and the mean drop in quality (original − damaged);
 * - length bias: Pearson r of quality with length over the undamaged stories (lengths differ
 *   freely), and, at equal quality, the padded version against its original: its mean score
 *   gain and its pairwise win rate (both orders, a win when both agree, ties half);
 * - position bias: the share of those pairs whose two orders agree, and the share of single
 *   answers that chose the story shown first (0.5 without a bias);
 * - test–retest noise: the standard deviation of a story's repeated verdicts (k samples), the
 *   mean over stories, for the quality and for each rubric dimension;
 * - agreement between two judges: Spearman's rank correlation of their quality on the stories.
 *
 * Every number comes with a 95% percentile-bootstrap interval over stories (`bootstrapCI`).
 */
import { type Interval, bootstrapCI, mean } from "./Stats.ts"
import { DAMAGES, type Damage, type Variant } from "./Damage.ts"

/** One story's answers from one judge. */
export interface StoryAnswers {
  readonly id: string
  /** Words per variant. */
  readonly words: Readonly<Record<Variant, number>>
  /** Per variant, the k verdicts: quality (0..1) and per-dimension scores. */
  readonly verdicts: Readonly<Record<Variant, ReadonlyArray<{ readonly quality: number; readonly scores: Readonly<Record<string, number | null>> }>>>
  /** The padded version against the original, in both orders: which the judge preferred. */
  readonly pairs: ReadonlyArray<{ readonly shownFirst: "original" | "padded"; readonly winner: "first" | "second" | "tie" }>
}

export interface AuditNumbers {
  readonly stories: number
  readonly damage: Readonly<Record<Damage, { readonly lower: Interval; readonly drop: Interval }>>
  readonly length: { readonly quality_length_r: Interval; readonly padded_gain: Interval; readonly padded_win_rate: Interval }
  readonly position: { readonly consistency: Interval; readonly first_chosen: Interval }
  readonly retest: { readonly samples: number; readonly quality_sd: Interval; readonly dimension_sd: Readonly<Record<string, Interval>> } | null
  readonly agreement: { readonly spearman: Interval; readonly stories: number } | null
}

const quality = (s: StoryAnswers, v: Variant) => mean(s.verdicts[v].map((x) => x.quality))
const sd = (xs: ReadonlyArray<number>) => {
  if (xs.length < 2) return NaN
  const m = mean(xs)
  return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1))
}

/** Pearson r of paired values; NaN when either side is constant or fewer than 3 pairs. */
export const pearson = (pairs: ReadonlyArray<readonly [number, number]>): number => {
  if (pairs.length < 3) return NaN
  const mx = mean(pairs.map((p) => p[0]))
  const my = mean(pairs.map((p) => p[1]))
  let sxy = 0, sxx = 0, syy = 0
  for (const [x, y] of pairs) {
    sxy += (x - mx) * (y - my)
    sxx += (x - mx) ** 2
    syy += (y - my) ** 2
  }
  return sxx === 0 || syy === 0 ? NaN : sxy / Math.sqrt(sxx * syy)
}

/** Average ranks (ties share their mean rank), 1-based. */
const ranks = (xs: ReadonlyArray<number>): Array<number> => {
  const order = xs.map((x, i) => [x, i] as const).sort((a, b) => a[0] - b[0])
  const out = new Array<number>(xs.length)
  for (let i = 0; i < order.length;) {
    let j = i
    while (j + 1 < order.length && order[j + 1]![0] === order[i]![0]) j++
    for (let k = i; k <= j; k++) out[order[k]![1]] = (i + j) / 2 + 1
    i = j + 1
  }
  return out
}

/** Spearman's rank correlation: Pearson r of the average ranks. */
export const spearman = (pairs: ReadonlyArray<readonly [number, number]>): number => {
  const rx = ranks(pairs.map((p) => p[0]))
  const ry = ranks(pairs.map((p) => p[1]))
  return pearson(rx.map((r, i) => [r, ry[i]!] as const))
}

/** A statistic over stories with its bootstrap interval (resampling stories). */
const overStories = <S>(items: ReadonlyArray<S>, statistic: (drawn: ReadonlyArray<S>) => number, seed: string): Interval => {
  // bootstrapCI resamples numbers: resample indices and map back to the items.
  const index = items.map((_, i) => i)
  return bootstrapCI(index, { seed, statistic: (drawn) => statistic(drawn.map((i) => items[i]!)) })
}

/** The audit's numbers for `stories` (one judge), with `second` the other judge's answers on the same stories when there is one. */
export const audit = (stories: ReadonlyArray<StoryAnswers>, second: ReadonlyArray<StoryAnswers> | undefined, seed: string): AuditNumbers => {
  const damage = Object.fromEntries(DAMAGES.map((d) => [d, {
    lower: overStories(stories, (xs) => mean(xs.map((s) => (quality(s, d) < quality(s, "original") ? 1 : 0))), `${seed}:${d}:lower`),
    drop: overStories(stories, (xs) => mean(xs.map((s) => quality(s, "original") - quality(s, d))), `${seed}:${d}:drop`)
  }])) as AuditNumbers["damage"]
  const answers = stories.flatMap((s) => s.pairs.map((p) => ({ s, p })))
  const paddedScore = (s: StoryAnswers) => {
    // Both orders: a win only when they agree, else a tie (as the pairwise evaluation counts).
    const verdict = (p: StoryAnswers["pairs"][number]) => (p.winner === "tie" ? "tie" : (p.winner === "first") === (p.shownFirst === "padded") ? "padded" : "original")
    const vs = s.pairs.map(verdict)
    return vs.length === 0 ? NaN : vs.every((v) => v === vs[0]) ? (vs[0] === "padded" ? 1 : vs[0] === "tie" ? 0.5 : 0) : 0.5
  }
  const withPairs = stories.filter((s) => s.pairs.length === 2)
  const k = Math.min(...stories.map((s) => s.verdicts.original.length))
  const dimensions = [...new Set(stories.flatMap((s) => s.verdicts.original.flatMap((v) => Object.keys(v.scores))))].sort()
  const byId = new Map((second ?? []).map((s) => [s.id, s]))
  const shared = stories.filter((s) => byId.has(s.id))
  return {
    stories: stories.length,
    damage,
    length: {
      quality_length_r: overStories(stories, (xs) => pearson(xs.map((s) => [s.words.original, quality(s, "original")] as const)), `${seed}:length:r`),
      padded_gain: overStories(stories, (xs) => mean(xs.map((s) => quality(s, "padded") - quality(s, "original"))), `${seed}:padded:gain`),
      padded_win_rate: overStories(withPairs, (xs) => mean(xs.map(paddedScore)), `${seed}:padded:win`)
    },
    position: {
      consistency: overStories(withPairs, (xs) => mean(xs.map((s) => {
        const [a, b] = s.pairs
        const sideOf = (p: NonNullable<typeof a>) => (p.winner === "tie" ? "tie" : (p.winner === "first") === (p.shownFirst === "padded") ? "padded" : "original")
        return sideOf(a!) === sideOf(b!) ? 1 : 0
      })), `${seed}:position:consistency`),
      first_chosen: overStories(answers, (xs) => mean(xs.map(({ p }) => (p.winner === "first" ? 1 : p.winner === "tie" ? 0.5 : 0))), `${seed}:position:first`)
    },
    retest: k < 2 ? null : {
      samples: k,
      quality_sd: overStories(stories, (xs) => mean(xs.map((s) => sd(s.verdicts.original.map((v) => v.quality)))), `${seed}:retest:quality`),
      dimension_sd: Object.fromEntries(dimensions.map((d) => [d, overStories(stories, (xs) => mean(xs.flatMap((s) => {
        const scores = s.verdicts.original.map((v) => v.scores[d]).filter((x): x is number => typeof x === "number")
        return scores.length < 2 ? [] : [sd(scores)]
      })), `${seed}:retest:${d}`)]))
    },
    agreement: second === undefined ? null : {
      stories: shared.length,
      spearman: overStories(shared, (xs) => spearman(xs.map((s) => [quality(s, "original"), quality(byId.get(s.id)!, "original")] as const)), `${seed}:agreement`)
    }
  }
}
