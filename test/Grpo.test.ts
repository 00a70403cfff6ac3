/**
 * GRPO math (src/grpo/Advantages.ts, src/grpo/TokenLoss.ts) against numbers from an independent
 * torch computation.
 *
 * The constants below marked "torch" were produced by `/usr/bin/python3 test/fixtures/grpo_reference.py`
 * (torch 1.13, float64), which copies TRL's lines from huggingface/trl trl/trainer/grpo_trainer.py at
 * commit d2b69d769dab6f77acbfd33252bcd7d22765571b (GRPOTrainer._generate_and_score_completions for the
 * advantages, GRPOTrainer._compute_loss for the per-token loss and the grpo / bnpo / dr_grpo
 * aggregation) plus the TRL ≥ 0.22 lines for scale_rewards "batch" and loss_type "dapo"; NaN members,
 * reference_in_stats = false and degenerate groups are POLARIS rules, done there with masked torch
 * reductions and checked against TRL's literal lines on the NaN-free batch.
 */
import { describe, expect, it } from "vitest"
import { advantages, referenceReward, type ScaleRewards } from "../src/grpo/Advantages.ts"
import {
  engineLoss,
  type LossType,
  luffyWeights,
  sequenceScale,
  sftWeights
} from "../src/grpo/TokenLoss.ts"

const TOL = 1e-6

// ---- The fixture batch (identical to grpo_reference.py): 2 groups × (3 rollouts + 1 reference) ----
const REWARDS_NAN: ReadonlyArray<{ rollouts: Array<number | null>; reference: number | null }> = [
  { rollouts: [0.42, 0.61, 0.35], reference: 0.8 },
  { rollouts: [0.55, null, 0.48], reference: 0.72 } // rollout 1 unscorable (NaN in torch)
]
const REWARDS_FULL: ReadonlyArray<{ rollouts: Array<number | null>; reference: number | null }> = [
  { rollouts: [0.42, 0.61, 0.35], reference: 0.8 },
  { rollouts: [0.55, 0.3, 0.48], reference: 0.72 }
]

interface Pinned {
  readonly rollouts: ReadonlyArray<number>
  readonly reference: number
  readonly mean: number
  readonly std: number
  readonly zeroStd: boolean
}

// torch: out["advantages"], key `${scaleRewards}/${ref_in | ref_out}`, on REWARDS_NAN
const TORCH_ADVANTAGES: Record<string, ReadonlyArray<Pinned>> = {
  "group/ref_in": [
    { rollouts: [-0.6172771231457688, 0.3209841040358002, -0.9629523121073994], reference: 1.2592453312173693, mean: 0.5449999999999999, std: 0.20240223977680355, zeroStd: false },
    { rollouts: [-0.2698544234138974, 0, -0.8365487125830826], reference: 1.106403135996979, mean: 0.5833333333333334, std: 0.12342339054382412, zeroStd: false }
  ],
  "group/ref_out": [
    { rollouts: [-0.2970968281656223, 1.1141131056210842, -0.8170162774554616], reference: 2.525323039407791, mean: 0.45999999999999996, std: 0.13453624047073712, zeroStd: false },
    { rollouts: [0.7056810900889561, 0, -0.7056810900889561], reference: 4.13327495623531, mean: 0.515, std: 0.049497474683058366, zeroStd: false }
  ],
  "batch/ref_in": [
    { rollouts: [-0.775020386207994, 0.4030106008281574, -1.2090318024844708], reference: 1.5810415878643092, mean: 0.5449999999999999, std: 0.20240223977680355, zeroStd: false },
    { rollouts: [-0.20667210298879843, 0, -0.6406835192652757], reference: 0.8473556222540733, mean: 0.5833333333333334, std: 0.12342339054382412, zeroStd: false }
  ],
  "batch/ref_out": [
    { rollouts: [-0.3886872373570796, 1.4575771400890494, -1.0688899027319694], reference: 3.303841517535179, mean: 0.45999999999999996, std: 0.13453624047073712, zeroStd: false },
    { rollouts: [0.34010133268744513, 0, -0.34010133268744513], reference: 1.9920220914550335, mean: 0.515, std: 0.049497474683058366, zeroStd: false }
  ],
  "none/ref_in": [
    { rollouts: [-0.12499999999999994, 0.06500000000000006, -0.19499999999999995], reference: 0.2550000000000001, mean: 0.5449999999999999, std: 0.20240223977680355, zeroStd: false },
    { rollouts: [-0.033333333333333326, 0, -0.10333333333333339], reference: 0.1366666666666666, mean: 0.5833333333333334, std: 0.12342339054382412, zeroStd: false }
  ],
  "none/ref_out": [
    { rollouts: [-0.03999999999999998, 0.15000000000000002, -0.10999999999999999], reference: 0.3400000000000001, mean: 0.45999999999999996, std: 0.13453624047073712, zeroStd: false },
    { rollouts: [0.03500000000000003, 0, -0.03500000000000003], reference: 0.20499999999999996, mean: 0.515, std: 0.049497474683058366, zeroStd: false }
  ]
}

// torch: out["trl_literal"], TRL's own lines on REWARDS_FULL (reference in the statistics), members in order
const TORCH_TRL_LITERAL: Record<ScaleRewards, ReadonlyArray<ReadonlyArray<number>>> = {
  group: [
    [-0.6172771231457688, 0.3209841040358002, -0.9629523121073994, 1.2592453312173693],
    [0.21557499254814166, -1.2215916244394665, -0.18683166020838884, 1.1928482920997145]
  ],
  batch: [
    [-0.7117036663355489, 0.37008590649448597, -1.1102577194834566, 1.4518754793245212],
    [0.21351109990066527, -1.2098962327704337, -0.18504295324724265, 1.1814280861170119]
  ],
  none: [
    [-0.12499999999999994, 0.06500000000000006, -0.19499999999999995, 0.2550000000000001],
    [0.03750000000000009, -0.21249999999999997, -0.03249999999999997, 0.20750000000000002]
  ]
}

// ---- Loss fixture (identical to grpo_reference.py): ε_low 0.2, ε_high 0.28, max_completion_length 8 ----
const CLIP_LOW = 1 - 0.2
const CLIP_HIGH = 1 + 0.28
const MAX_COMPLETION_LENGTH = 8
const LENGTHS = [3, 5, 4, 6, 6, 3, 5, 4]
const OLD = [
  [-1.2, -0.35, -2.1],
  [-0.8, -1.5, -0.2, -3.0, -0.95],
  [-1.1, -0.6, -2.4, -0.3],
  [-2.2, -0.15, -1.3, -0.7, -0.45, -1.85],
  [-0.5, -1.25, -0.9, -2.6, -0.05, -1.4],
  [-1.7, -0.4, -0.65],
  [-0.25, -2.8, -1.05, -0.55, -1.6],
  [-0.9, -0.3, -1.95, -0.75]
]
const DELTA = [
  [0.3, -0.05, -0.35],
  [0.1, 0.4, -0.3, 0.02, -0.12],
  [-0.25, 0.0, 0.28, -0.4],
  [0.5, -0.5, 0.15, 0.26, -0.21, 0.05],
  [-0.3, 0.35, 0.01, -0.08, 0.6, -0.45],
  [0.2, -0.24, 0.33],
  [-0.6, 0.07, 0.45, -0.15, 0.24],
  [0.12, -0.33, 0.29, -0.02]
]
// torch: out["loss"]
const TORCH_LOSS: Record<LossType, number> = {
  grpo: 0.007676708809340682,
  bnpo: -0.04922567490366874,
  dapo: -0.04922567490366874,
  dr_grpo: -0.027689442133313667
}
const TORCH_CLIPPED = 10
const TORCH_PER_SEQUENCE_SUM = [
  1.9142308225175142, -1.6155485977249837, 3.777786923487803, -7.795005942455431,
  1.8280890856999636, 0, 4.661899837691747, -4.543576425748686
]

const expectClose = (actual: ReadonlyArray<number>, expected: ReadonlyArray<number>, tol = TOL) => {
  expect(actual.length).toBe(expected.length)
  actual.forEach((a, i) => expect(Math.abs(a - expected[i]!), `index ${i}: ${a} vs ${expected[i]}`).toBeLessThanOrEqual(tol))
}

describe("advantages", () => {
  const modes: ReadonlyArray<ScaleRewards> = ["group", "batch", "none"]
  for (const scaleRewards of modes) {
    for (const referenceInStats of [true, false]) {
      const key = `${scaleRewards}/${referenceInStats ? "ref_in" : "ref_out"}`
      it(`${key}: matches torch, NaN member left out of the statistics with advantage 0`, () => {
        const got = advantages(REWARDS_NAN, { scaleRewards, referenceInStats })
        const want = TORCH_ADVANTAGES[key]!
        expect(got.length).toBe(want.length)
        got.forEach((g, k) => {
          const w = want[k]!
          expectClose(g.rollouts, w.rollouts)
          expectClose([g.reference, g.mean, g.std], [w.reference, w.mean, w.std])
          expect(g.zeroStd).toBe(w.zeroStd)
        })
        expect(got[1]!.rollouts[1]).toBe(0)
      })
    }
    it(`${scaleRewards}: TRL's literal lines on a NaN-free batch, reference in the statistics`, () => {
      const got = advantages(REWARDS_FULL, { scaleRewards, referenceInStats: true })
      got.forEach((g, k) => expectClose([...g.rollouts, g.reference], TORCH_TRL_LITERAL[scaleRewards][k]!))
    })
  }

  it("the NaN member is left out, not counted as 0", () => {
    const nan = advantages([{ rollouts: [0.55, Number.NaN, 0.48], reference: 0.72 }], { scaleRewards: "none", referenceInStats: true })
    expect(nan[0]!.mean).toBeCloseTo((0.55 + 0.48 + 0.72) / 3, 12)
    expect(nan[0]!.rollouts[1]).toBe(0)
  })

  it("zeroStd: no spread, or fewer than 2 members in the statistics, zeroes the whole group", () => {
    const flat = advantages([{ rollouts: [0.5, 0.5, 0.5], reference: 0.5 }], { scaleRewards: "group", referenceInStats: true })[0]!
    expect(flat).toEqual({ rollouts: [0, 0, 0], reference: 0, mean: 0.5, std: 0, zeroStd: true })

    // Rollouts tie, the reference is out of the statistics: r_ref − mean would be divided by 1e−4.
    for (const scaleRewards of ["group", "batch", "none"] as const) {
      const tie = advantages(
        [{ rollouts: [0.4, 0.4, 0.4], reference: 0.9 }, { rollouts: [0.1, 0.6, 0.3], reference: 0.7 }],
        { scaleRewards, referenceInStats: false }
      )
      const t0 = tie[0]!
      expect([...t0.rollouts, t0.reference, t0.zeroStd]).toEqual([0, 0, 0, 0, true])
      expect(t0.mean).toBeCloseTo(0.4, 12)
      expect(t0.std).toBeLessThan(1e-15) // 6.8e-17 of float noise: why isclose, not === 0
      expect(tie[1]!.zeroStd).toBe(false)
      expect(tie[1]!.reference).toBeGreaterThan(0)
    }

    // Below isclose's atol (1e−8) counts as zero; just above does not.
    const tiny = advantages([{ rollouts: [0.5, 0.5 + 1e-9], reference: null }], { scaleRewards: "group", referenceInStats: true })[0]!
    expect(tiny.zeroStd).toBe(true)
    expect(tiny.rollouts).toEqual([0, 0])
    const small = advantages([{ rollouts: [0.5, 0.5 + 1e-6], reference: null }], { scaleRewards: "none", referenceInStats: true })[0]!
    expect(small.zeroStd).toBe(false)
    expect(small.rollouts[1]).toBeCloseTo(0.5e-6, 15)

    // One scorable rollout, reference out of the statistics: std undefined → zeroStd.
    const lone = advantages([{ rollouts: [0.3, null, null], reference: 0.8 }], { scaleRewards: "group", referenceInStats: false })[0]!
    expect(lone).toEqual({ rollouts: [0, 0, 0], reference: 0, mean: 0.3, std: 0, zeroStd: true })
    // ... with the reference in the statistics it is a normal 2-member group.
    const pair = advantages([{ rollouts: [0.3, null, null], reference: 0.8 }], { scaleRewards: "none", referenceInStats: true })[0]!
    expect(pair.zeroStd).toBe(false)
    expectClose([pair.rollouts[0]!, pair.reference, pair.std], [-0.25, 0.25, Math.sqrt(0.125)])

    // Nothing scorable: mean NaN, all zero.
    const none = advantages([{ rollouts: [null, null], reference: null }], { scaleRewards: "group", referenceInStats: true })[0]!
    expect(none.zeroStd).toBe(true)
    expect(Number.isNaN(none.mean)).toBe(true)
    expect([...none.rollouts, none.reference]).toEqual([0, 0, 0])
  })

  it("a reference with no reward gets 0 and leaves the statistics", () => {
    const g = advantages([{ rollouts: [0.2, 0.6], reference: null }], { scaleRewards: "none", referenceInStats: true })[0]!
    expect(g.reference).toBe(0)
    expect(g.mean).toBeCloseTo(0.4, 12)
  })

  it("batch scaling: the mean stays per group, one std over the batch", () => {
    const groups = [{ rollouts: [0, 1], reference: null }, { rollouts: [10, 12], reference: null }]
    const got = advantages(groups, { scaleRewards: "batch", referenceInStats: true })
    const xs = [0, 1, 10, 12]
    const m = xs.reduce((a, x) => a + x, 0) / 4
    const s = Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / 3)
    expectClose(got[0]!.rollouts, [-0.5 / (s + 1e-4), 0.5 / (s + 1e-4)])
    expectClose(got[1]!.rollouts, [-1 / (s + 1e-4), 1 / (s + 1e-4)])
  })
})

describe("referenceReward", () => {
  it("judge keeps the judged reward, null stays null", () => {
    expect(referenceReward({ mode: "judge" }, 0.7, [0.1])).toBe(0.7)
    expect(referenceReward({ mode: "judge" }, null, [0.1])).toBeNull()
  })
  it("fixed is the value whatever was judged", () => {
    expect(referenceReward({ mode: "fixed", value: 0.95 }, 0.2, [])).toBe(0.95)
    expect(referenceReward({ mode: "fixed", value: 0.95 }, null, [null])).toBe(0.95)
  })
  it("max_of_group_plus: best scorable rollout + margin, null when none is scorable", () => {
    expect(referenceReward({ mode: "max_of_group_plus", margin: 0.1 }, 0.2, [0.3, null, 0.55])).toBeCloseTo(0.65, 12)
    expect(referenceReward({ mode: "max_of_group_plus", margin: 0.1 }, 0.9, [-0.4, Number.NaN])).toBeCloseTo(-0.3, 12)
    expect(referenceReward({ mode: "max_of_group_plus", margin: 0.1 }, 0.9, [null, null])).toBeNull()
  })
})

describe("sequenceScale + engine ppo sum loss = TRL's aggregate", () => {
  const advantagesPerSequence = (() => {
    const a = advantages(REWARDS_NAN, { scaleRewards: "group", referenceInStats: true })
    return a.flatMap((g) => [...g.rollouts, g.reference])
  })()
  const logprobs = OLD.map((row, i) => row.map((o, t) => o + DELTA[i]![t]!))

  it("the fixture's token counts and per-sequence sums match torch", () => {
    expect(OLD.map((r) => r.length)).toEqual(LENGTHS)
    const sums = OLD.map((old, i) =>
      engineLoss({
        logprobs: logprobs[i]!,
        oldLogprobs: old,
        advantages: old.map(() => advantagesPerSequence[i]!),
        clipLow: CLIP_LOW,
        clipHigh: CLIP_HIGH
      })
    )
    expectClose(sums.map((s) => s.loss), TORCH_PER_SEQUENCE_SUM)
    expect(sums.reduce((a, s) => a + s.clipped, 0)).toBe(TORCH_CLIPPED)
  })

  for (const lossType of ["grpo", "bnpo", "dapo", "dr_grpo"] as const) {
    it(`${lossType}: Σ_i Σ_t ℓ(c_i·A_i) equals torch's TRL loss`, () => {
      const c = sequenceScale(lossType, LENGTHS, MAX_COMPLETION_LENGTH)
      let total = 0
      let clipped = 0
      OLD.forEach((old, i) => {
        const r = engineLoss({
          logprobs: logprobs[i]!,
          oldLogprobs: old,
          advantages: old.map(() => c[i]! * advantagesPerSequence[i]!),
          clipLow: CLIP_LOW,
          clipHigh: CLIP_HIGH
        })
        total += r.loss
        clipped += r.clipped
      })
      expect(Math.abs(total - TORCH_LOSS[lossType])).toBeLessThanOrEqual(TOL)
      expect(clipped).toBe(TORCH_CLIPPED) // scaling by c > 0 changes no branch
    })
  }

  it("the factors by hand", () => {
    expectClose(sequenceScale("grpo", [3, 5], 1024), [1 / 6, 1 / 10], 1e-15)
    expectClose(sequenceScale("bnpo", [3, 5], 1024), [1 / 8, 1 / 8], 1e-15)
    expectClose(sequenceScale("dapo", [3, 5], 1024), [1 / 8, 1 / 8], 1e-15)
    expectClose(sequenceScale("dr_grpo", [3, 5], 1024), [1 / 2048, 1 / 2048], 1e-15)
    expectClose(sequenceScale("grpo", [0, 4], 8), [1 / 2, 1 / 8], 1e-15) // TRL's clamp(min=1)
    expect(sequenceScale("bnpo", [], 8)).toEqual([])
  })
})

describe("engineLoss", () => {
  it("ppo by hand: clipped above with A > 0, below with A < 0, never with A = 0", () => {
    const lr = Math.log(1.5)
    expect(engineLoss({ logprobs: [lr], oldLogprobs: [0], advantages: [2], clipLow: 0.8, clipHigh: 1.2 })).toEqual({ loss: -2.4, clipped: 1 })
    const below = engineLoss({ logprobs: [Math.log(0.5)], oldLogprobs: [0], advantages: [-1], clipLow: 0.8, clipHigh: 1.2 })
    expect(below.clipped).toBe(1)
    expect(below.loss).toBeCloseTo(0.8, 12)
    const inside = engineLoss({ logprobs: [lr], oldLogprobs: [0], advantages: [-1], clipLow: 0.8, clipHigh: 1.2 })
    expect(inside.clipped).toBe(0) // r > hi but A < 0: the unclipped r·A is the min
    expect(inside.loss).toBeCloseTo(1.5, 12)
    const zero = engineLoss({ logprobs: [lr], oldLogprobs: [0], advantages: [0], clipLow: 0.8, clipHigh: 1.2 })
    expect([zero.loss + 0, zero.clipped]).toEqual([0, 0])
  })
})

describe("reference token losses", () => {
  it("luffyWeights: −w is the finite-difference derivative of −scale·A·p/(p+γ) w.r.t. lp", () => {
    const lps = [-6, -2.3, -1, -0.1, -0.001]
    for (const [A, scale, gamma] of [[1.3, 0.25, 0.1], [-0.7, 1 / 48, 0.1], [2, 1, 0.5]] as const) {
      const w = luffyWeights(lps, A, scale, gamma)
      const loss = (lp: number) => {
        const p = Math.exp(lp)
        return -scale * A * p / (p + gamma)
      }
      const h = 1e-5
      lps.forEach((lp, t) => {
        const fd = (loss(lp + h) - loss(lp - h)) / (2 * h)
        expect(Math.abs(-w[t]! - fd), `lp ${lp}`).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(fd)))
      })
    }
    expect(luffyWeights([Math.log(0.1)], 1, 1)[0]).toBeCloseTo(0.25, 6)
    expect(luffyWeights([Math.log(0.1)], 1, 1, 0.2)[0]).toBeCloseTo((0.2 * 0.1) / 0.09, 6) // γ matters
  })

  it("sftWeights: every token weighs scale", () => {
    expect(Array.from(sftWeights(3, 0.5))).toEqual([0.5, 0.5, 0.5])
    expect(sftWeights(0, 1).length).toBe(0)
  })
})
