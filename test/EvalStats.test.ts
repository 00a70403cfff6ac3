/**
 * Evaluation statistics (src/eval/Stats.ts): bootstrap CIs, dual-position verdicts, Bradley-Terry
 * ratings and win rates. Synthetic data come from `seeded`, so every number here is deterministic;
 * the tolerances are set by the sampling error of the synthetic design (stated at each test), not
 * by run-to-run noise.
 */
import { describe, expect, it } from "vitest"
import { seeded } from "../src/internal/random.ts"
import {
  bootstrapCI,
  bradleyTerry,
  bradleyTerryCI,
  combine,
  hierarchicalBootstrapCI,
  mean,
  positionConsistency,
  winRate,
  type PairwiseComparison,
  type Verdict,
} from "../src/eval/Stats.ts"

const cmp = (prompt: string, a: string, b: string, ab: Verdict, ba: Verdict): PairwiseComparison => ({ prompt, a, b, ab, ba })

/** Standard normal draws by Box-Muller from a seeded uniform. */
const normal = (rng: () => number): number => {
  const u = 1 - rng() // (0, 1]
  const v = rng()
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)
}

/**
 * Dual-position comparisons of every pair of `ratings` on `prompts` prompts. Each order's verdict is
 * an independent draw from the Bradley-Terry probability P(i beats j) = 1/(1 + 10^((R_j − R_i)/400));
 * which system is "a" alternates by prompt. Combined, i wins with p², loses with (1−p)², ties with
 * 2p(1−p): the expected score p² + p(1−p) = p is unchanged, so a BT fit with ties as half a win
 * estimates the generating ratings.
 */
const simulate = (ratings: Record<string, number>, prompts: number, seed: string): PairwiseComparison[] => {
  const rng = seeded(seed)
  const names = Object.keys(ratings)
  const out: PairwiseComparison[] = []
  for (let p = 0; p < prompts; p++) {
    for (let x = 0; x < names.length; x++) {
      for (let y = x + 1; y < names.length; y++) {
        const [a, b] = p % 2 === 0 ? [names[x]!, names[y]!] : [names[y]!, names[x]!]
        const pa = 1 / (1 + 10 ** ((ratings[b]! - ratings[a]!) / 400))
        const draw = (): Verdict => (rng() < pa ? "a" : "b")
        out.push(cmp(`p${p}`, a, b, draw(), draw()))
      }
    }
  }
  return out
}

describe("bootstrapCI", () => {
  it("is deterministic for a seed and changes with the seed", () => {
    const xs = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9]
    const one = bootstrapCI(xs, { seed: "s1", resamples: 500 })
    expect(bootstrapCI(xs, { seed: "s1", resamples: 500 })).toEqual(one)
    expect(bootstrapCI(xs, { seed: "s2", resamples: 500 })).not.toEqual(one)
    expect(one.estimate).toBeCloseTo(77 / 15, 12)
    expect(one.low).toBeLessThan(one.estimate)
    expect(one.high).toBeGreaterThan(one.estimate)
  })

  it("ignores NaN items and gives NaNs when nothing is left", () => {
    const withNaN = bootstrapCI([1, NaN, 2, 3, NaN], { seed: "n", resamples: 200 })
    expect(withNaN).toEqual(bootstrapCI([1, 2, 3], { seed: "n", resamples: 200 }))
    expect(withNaN.estimate).toBe(2)
    const empty = bootstrapCI([NaN], { seed: "n" })
    expect(empty.estimate).toBeNaN()
    expect(empty.low).toBeNaN()
    expect(empty.high).toBeNaN()
    expect(bootstrapCI([], { seed: "n" }).estimate).toBeNaN()
  })

  it("a constant sample has a degenerate interval; a custom statistic is used", () => {
    expect(bootstrapCI([4, 4, 4], { seed: "c", resamples: 100 })).toEqual({ estimate: 4, low: 4, high: 4 })
    const max = (xs: ReadonlyArray<number>): number => Math.max(...xs)
    const ci = bootstrapCI([1, 2, 3, 10], { seed: "m", resamples: 400, statistic: max })
    expect(ci.estimate).toBe(10)
    expect(ci.high).toBe(10) // the max of a resample never exceeds the sample max
    expect(ci.low).toBeLessThan(10) // ≈ (3/4)^4 = 32% of resamples miss the 10
  })

  it("rejects bad resamples and levels", () => {
    expect(() => bootstrapCI([1], { seed: "x", resamples: 0 })).toThrow(RangeError)
    expect(() => bootstrapCI([1], { seed: "x", level: 1 })).toThrow(RangeError)
  })

  /**
   * 200 datasets of n = 40 draws from N(μ = 3, σ = 2), 400 resamples each. The percentile bootstrap
   * of the mean undercovers slightly at this n (its interval is ≈ sqrt((n−1)/n)·z rather than t wide:
   * nominal 95% → ≈ 94%). The binomial SD of an observed coverage over 200 datasets is
   * sqrt(.94·.06/200) ≈ 1.7 points, so [90%, 99%] is about −2.4 to +3 SD around the expected value;
   * a CI at the wrong level (e.g. 68% or 99.9%) or around the wrong centre falls outside. The 50%
   * interval must cover 40–60% (expected ≈ 49%, SD ≈ 3.5 points): this fails if `level` is ignored.
   */
  it("covers the true mean at about the nominal rate", () => {
    const truth = 3
    const rng = seeded("coverage")
    let covered95 = 0
    let covered50 = 0
    const datasets = 200
    for (let d = 0; d < datasets; d++) {
      const xs = Array.from({ length: 40 }, () => truth + 2 * normal(rng))
      const ci95 = bootstrapCI(xs, { seed: `d${d}`, resamples: 400 })
      const ci50 = bootstrapCI(xs, { seed: `d${d}`, resamples: 400, level: 0.5 })
      if (ci95.low <= truth && truth <= ci95.high) covered95++
      if (ci50.low <= truth && truth <= ci50.high) covered50++
    }
    expect(covered95 / datasets).toBeGreaterThanOrEqual(0.9)
    expect(covered95 / datasets).toBeLessThanOrEqual(0.99)
    expect(covered50 / datasets).toBeGreaterThanOrEqual(0.4)
    expect(covered50 / datasets).toBeLessThanOrEqual(0.6)
  })
})

describe("hierarchicalBootstrapCI", () => {
  it("estimates the mean of the clusters' means, deterministically; empty clusters and NaNs are dropped", () => {
    const clusters = [[0.5, 0.7], [0.6, 0.9, 0.3], [], [Number.NaN, 1]]
    const ci = hierarchicalBootstrapCI(clusters, { seed: "s" })
    expect(ci.estimate).toBeCloseTo((0.6 + 0.6 + 1) / 3, 12)
    expect(hierarchicalBootstrapCI(clusters, { seed: "s" })).toEqual(ci)
    expect(ci.low).toBeLessThanOrEqual(ci.estimate)
    expect(ci.high).toBeGreaterThanOrEqual(ci.estimate)
    expect(hierarchicalBootstrapCI([[], [Number.NaN]], { seed: "s" }).estimate).toBeNaN()
  })

  it("covers the true mean at about the nominal rate when seeds and prompts both vary", () => {
    // 4 seeds, each shifting its 12 prompts' scores by its own offset (sd 1), prompt noise sd 2:
    // an interval over prompts alone would be too narrow; two-stage resampling counts both.
    const truth = 5
    const rng = seeded("hier-coverage")
    let covered = 0
    let prompsOnly = 0
    const datasets = 150
    for (let d = 0; d < datasets; d++) {
      const clusters = Array.from({ length: 4 }, () => {
        const offset = normal(rng)
        return Array.from({ length: 12 }, () => truth + offset + 2 * normal(rng))
      })
      const ci = hierarchicalBootstrapCI(clusters, { seed: `d${d}`, resamples: 400 })
      if (ci.low <= truth && truth <= ci.high) covered++
      const flat = bootstrapCI(clusters.flat(), { seed: `d${d}`, resamples: 400 })
      if (flat.low <= truth && truth <= flat.high) prompsOnly++
    }
    // Percentile intervals from 4 clusters run a little narrow; far closer to 95% than pooling the prompts.
    expect(covered / datasets).toBeGreaterThanOrEqual(0.8)
    expect(covered / datasets).toBeGreaterThan(prompsOnly / datasets)
  })
})

describe("combine and positionConsistency", () => {
  it("is a win only when both orders agree", () => {
    expect(combine(cmp("p", "x", "y", "a", "a"))).toBe("a")
    expect(combine(cmp("p", "x", "y", "b", "b"))).toBe("b")
    expect(combine(cmp("p", "x", "y", "tie", "tie"))).toBe("tie")
    expect(combine(cmp("p", "x", "y", "a", "b"))).toBe("tie")
    expect(combine(cmp("p", "x", "y", "b", "a"))).toBe("tie")
    expect(combine(cmp("p", "x", "y", "a", "tie"))).toBe("tie")
    expect(combine(cmp("p", "x", "y", "tie", "b"))).toBe("tie")
  })

  it("counts agreeing orders, agreeing ties included", () => {
    const cs = [
      cmp("p1", "x", "y", "a", "a"), // agree
      cmp("p2", "x", "y", "tie", "tie"), // agree
      cmp("p3", "x", "y", "a", "b"), // disagree (position bias)
      cmp("p4", "x", "y", "b", "tie"), // disagree
      cmp("p5", "x", "y", "b", "b"), // agree
    ]
    expect(positionConsistency(cs)).toBe(3 / 5)
    expect(positionConsistency([])).toBeNaN()
  })
})

describe("bradleyTerry", () => {
  it("matches the hand-solved two-system fit with the one-tie prior", () => {
    // x beats y on 3 prompts, y beats x on 1, and one split verdict (a tie). Prior: one more tie.
    // W_x = 3 + 0.5 + 0.5 = 4, W_y = 1 + 0.5 + 0.5 = 2, n = 6 → p_x / p_y = 2.
    const cs = [
      cmp("p1", "x", "y", "a", "a"),
      cmp("p2", "y", "x", "b", "b"),
      cmp("p3", "x", "y", "a", "a"),
      cmp("p4", "x", "y", "b", "b"),
      cmp("p5", "x", "y", "a", "b"),
    ]
    const r = bradleyTerry(cs, { anchor: "y" })
    expect(r["y"]).toBe(1000)
    expect(r["x"]).toBeCloseTo(1000 + 400 * Math.log10(2), 6)
    const r2 = bradleyTerry(cs, { anchor: "x", anchorRating: 1500, scale: 173.7178 })
    expect(r2["x"]).toBe(1500)
    expect(r2["y"]).toBeCloseTo(1500 - 173.7178 * Math.log10(2), 6)
  })

  it("keeps an undefeated system finite through the prior", () => {
    // 10 clean wins + prior tie: W = 10.5 vs 0.5 over n = 11 → ratio 21.
    const cs = Array.from({ length: 10 }, (_, i) => cmp(`p${i}`, "x", "y", "a", "a"))
    const r = bradleyTerry(cs, { anchor: "y" })
    expect(Number.isFinite(r["x"])).toBe(true)
    expect(r["x"]).toBeCloseTo(1000 + 400 * Math.log10(21), 6)
  })

  it("rejects a missing anchor and self-comparisons", () => {
    expect(() => bradleyTerry([cmp("p", "x", "y", "a", "a")], { anchor: "z" })).toThrow(RangeError)
    expect(() => bradleyTerry([cmp("p", "x", "x", "a", "a")], { anchor: "x" })).toThrow(RangeError)
  })

  /**
   * 4 systems, 1000 prompts, all 6 pairs per prompt (6000 dual-position comparisons, 1000 per pair).
   * Per comparison the combined score has variance p(1−p)/2 ≤ 1/8, so one pair's score mean has SE
   * ≤ 0.011, ≈ 8 Elo near p = ½ (dR/dp = 400/(ln 10 · p(1−p))); each rating pools three pairs, so
   * its SE is a few Elo. The prior (one tie per system among ~3000 comparisons) shifts ratings by
   * < 1 Elo. ±30 Elo is thus several SEs; swapping a/b, dropping the tie half-wins, a wrong anchor
   * or a wrong log base all miss it by far more.
   */
  it("recovers known ratings from simulated comparisons", () => {
    const truth = { base: 1000, tuned: 1100, weak: 900, best: 1250 }
    const cs = simulate(truth, 1000, "bt-sim")
    const fit = bradleyTerry(cs, { anchor: "base" })
    expect(fit["base"]).toBe(1000)
    for (const [s, r] of Object.entries(truth)) expect(Math.abs(fit[s]! - r)).toBeLessThan(30)
    // Anchoring is a pure shift.
    const shifted = bradleyTerry(cs, { anchor: "base", anchorRating: 1500 })
    for (const s of Object.keys(truth)) expect(shifted[s]!).toBeCloseTo(fit[s]! + 500, 6)
  })
})

describe("bradleyTerryCI", () => {
  it("brackets the truth, is deterministic, and pins the anchor", () => {
    const truth = { base: 1000, tuned: 1100, weak: 900, best: 1250 }
    const cs = simulate(truth, 1000, "bt-sim")
    const opts = { anchor: "base", seed: "boot", resamples: 200 }
    const ci = bradleyTerryCI(cs, opts)
    expect(bradleyTerryCI(cs, opts)).toEqual(ci)
    expect(ci["base"]).toEqual({ rating: 1000, low: 1000, high: 1000 })
    const point = bradleyTerry(cs, { anchor: "base" })
    for (const [s, r] of Object.entries(truth)) {
      const c = ci[s]!
      expect(c.rating).toBe(point[s])
      if (s === "base") continue
      expect(c.low).toBeLessThan(c.rating)
      expect(c.high).toBeGreaterThan(c.rating)
      expect(c.low).toBeLessThanOrEqual(r)
      expect(c.high).toBeGreaterThanOrEqual(r)
      // With 1000 prompts a rating's SE is ≈ 6–7 Elo, so the 95% width is ≈ 25 Elo; a CI that
      // resampled single comparisons (6× the units, not independent) or ignored `level` would
      // be far narrower or wider.
      expect(c.high - c.low).toBeGreaterThan(12)
      expect(c.high - c.low).toBeLessThan(60)
    }
  })

  /**
   * Coverage: 200 synthetic evaluations of a system 100 Elo above the baseline on 80 prompts.
   * The 95% intervals of its rating and of its win rate (true expected score 1/(1 + 10^(−1/4)) ≈
   * 0.640) must cover the truth in 88–99% of them (expected ≈ 94%, SD ≈ 1.6 points; the one-tie
   * prior shrinks the rating by about 1%). A CI over single comparisons, at another level, or
   * around a wrong centre misses this band.
   */
  it("rating and win-rate intervals cover the truth at about the nominal rate", () => {
    const truth = { base: 1000, tuned: 1100 }
    const expected = 1 / (1 + 10 ** (-100 / 400))
    let rating = 0
    let rate = 0
    const datasets = 200
    for (let d = 0; d < datasets; d++) {
      const cs = simulate(truth, 80, `coverage-${d}`)
      const ci = bradleyTerryCI(cs, { anchor: "base", seed: `b${d}`, resamples: 300 })["tuned"]!
      const w = winRate(cs, "tuned", "base", { seed: `w${d}`, resamples: 300 })
      if (ci.low <= truth.tuned && truth.tuned <= ci.high) rating++
      if (w.low <= expected && expected <= w.high) rate++
    }
    expect(rating / datasets).toBeGreaterThanOrEqual(0.88)
    expect(rating / datasets).toBeLessThanOrEqual(0.99)
    expect(rate / datasets).toBeGreaterThanOrEqual(0.88)
    expect(rate / datasets).toBeLessThanOrEqual(0.99)
  })

  it("resamples prompts, not comparisons: one prompt gives a degenerate interval", () => {
    // All comparisons on one prompt: every resample redraws that prompt, so the fit never changes.
    const cs = [cmp("only", "x", "y", "a", "a"), cmp("only", "x", "y", "b", "b"), cmp("only", "y", "x", "b", "b")]
    const ci = bradleyTerryCI(cs, { anchor: "y", seed: "s", resamples: 50 })
    expect(ci["x"]!.low).toBeCloseTo(ci["x"]!.rating, 9)
    expect(ci["x"]!.high).toBeCloseTo(ci["x"]!.rating, 9)
    // Same outcomes on three prompts: now the interval opens up.
    const spread = cs.map((c, i) => ({ ...c, prompt: `p${i}` }))
    const ci2 = bradleyTerryCI(spread, { anchor: "y", seed: "s", resamples: 50 })
    expect(ci2["x"]!.rating).toBeCloseTo(ci["x"]!.rating, 9)
    expect(ci2["x"]!.high - ci2["x"]!.low).toBeGreaterThan(50)
  })
})

describe("winRate", () => {
  const cs = [
    cmp("p1", "tuned", "base", "a", "a"), // tuned wins
    cmp("p2", "base", "tuned", "b", "b"), // tuned wins (tuned is b)
    cmp("p3", "tuned", "base", "a", "b"), // orders disagree: tie
    cmp("p4", "base", "tuned", "a", "a"), // base wins
    cmp("p5", "tuned", "other", "a", "a"), // other opponent: ignored
    cmp("p6", "base", "other", "b", "b"), // ignored
  ]

  it("counts combined verdicts from the system's side in either orientation", () => {
    const w = winRate(cs, "tuned", "base", { seed: "w", resamples: 500 })
    expect([w.wins, w.ties, w.losses]).toEqual([2, 1, 1])
    expect(w.rate).toBe((2 + 0.5) / 4)
    expect(w.low).toBeGreaterThanOrEqual(0)
    expect(w.high).toBeLessThanOrEqual(1)
    expect(w.low).toBeLessThan(w.rate)
    expect(w.high).toBeGreaterThan(w.rate)
    const back = winRate(cs, "base", "tuned", { seed: "w", resamples: 500 })
    expect([back.wins, back.ties, back.losses]).toEqual([1, 1, 2])
    expect(back.rate).toBe(1 - w.rate)
    expect(winRate(cs, "tuned", "base", { seed: "w", resamples: 500 })).toEqual(w)
  })

  it("gives NaN rate when the two never met, and a degenerate CI on one prompt", () => {
    const none = winRate(cs, "weak", "base", { seed: "w" })
    expect([none.wins, none.ties, none.losses]).toEqual([0, 0, 0])
    expect(none.rate).toBeNaN()
    const one = cs.slice(0, 4).map((c) => ({ ...c, prompt: "same" }))
    const w = winRate(one, "tuned", "base", { seed: "w", resamples: 100 })
    expect(w).toEqual({ wins: 2, ties: 1, losses: 1, rate: 0.625, low: 0.625, high: 0.625 })
  })
})

describe("mean", () => {
  it("averages and is NaN when empty", () => {
    expect(mean([1, 2, 6])).toBe(3)
    expect(mean([])).toBeNaN()
  })
})
