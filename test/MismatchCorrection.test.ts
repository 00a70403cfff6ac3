/**
 * Sampler/trainer mismatch correction (src/grpo/MismatchCorrection.ts, stages/update.ts) against
 * TRL's vLLM importance-sampling correction.
 *
 * The constants marked "numpy" were produced by `python3 test/fixtures/mismatch_reference.py`
 * (numpy 2.4, float64), which transcribes TRL's lines from huggingface/trl
 * trl/trainer/grpo_trainer.py at commit f2cd57710ae345ea6428ae95363267fcf38a3dc8
 * (GRPOTrainer._generate_and_score_completions: `vllm_importance_sampling_ratio`, `token_truncate`;
 * GRPOTrainer._compute_loss: coef_1, coef_2, `per_token_loss * inputs["importance_sampling_ratio"]`)
 * and takes the per-token gradient by central finite differences. `sequence_geometric` is TRL's
 * `sequence_truncate` with the summed log-ratio replaced by its mean (TRL's GSPO normalisation).
 * Two sequences, A = +0.8 (5 tokens) and A = −0.6 (3 tokens), ε_low 0.2, ε_high 0.28, cap C = 2;
 * the cap binds on tokens 0.2 (row 0) and 1.0, 1.1 (row 1) per token, and on row 1 per sequence;
 * at lp_θ the PPO clip binds on tokens 0.1 (A > 0, ρ = 1.35) and 1.0 (A < 0, ρ = 0.74).
 */
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { type Datum, PolicyEngine, type PolicyEngineShape } from "../src/engines/PolicyEngine.ts"
import { initial } from "../src/data/Sampler.ts"
import type { StageContext } from "../src/dag/Stage.ts"
import { correctedDatum, importanceWeights, type MismatchCorrection, needsTrainerLogprobs } from "../src/grpo/MismatchCorrection.ts"
import { engineLoss } from "../src/grpo/TokenLoss.ts"
import { update } from "../stages/update.ts"

const TOL = 1e-9
const expectClose = (actual: ReadonlyArray<number>, expected: ReadonlyArray<number>, tol = TOL) => {
  expect(actual.length).toBe(expected.length)
  actual.forEach((a, i) => expect(Math.abs(a - expected[i]!), `index ${i}: ${a} vs ${expected[i]}`).toBeLessThanOrEqual(tol))
}

// ---- The fixture batch (identical to mismatch_reference.py, padding dropped) ----
const EPS_LOW = 0.2
const EPS_HIGH = 0.28
const CAP = 2
const CLIP = { clipLow: 1 - EPS_LOW, clipHigh: 1 + EPS_HIGH }
const ADVANTAGES = [0.8, -0.6]
const SAMPLER = [[-1.2, -0.4, -2.5, -0.9, -1.7], [-0.8, -1.9, -0.9]]
const OLD = [[-1.0, -0.55, -1.6, -0.95, -1.3], [-0.05, -0.95, -0.4]]
const STEP = [[0.05, 0.3, -0.1, 0.0, -0.3], [-0.3, 0.1, 0.0]] // lp_θ − lp_old
const THETA = OLD.map((row, b) => row.map((lp, t) => lp + STEP[b]![t]!))

// numpy: TRL's vllm_importance_sampling_ratio, per_token_loss (after `* importance_sampling_ratio`),
// d per_token_loss / d lp_θ at THETA, and at lp_θ = lp_old (the first inner iteration).
const TRL: Record<Exclude<MismatchCorrection, "none">, { weights: Array<Array<number>>; loss: Array<Array<number>>; grad: Array<Array<number>>; gradAtOld: Array<Array<number>> }> = {
  token: {
    weights: [[1.2214027581601699, 0.8607079764250578, 2.0, 0.951229424500714, 1.4918246976412701], [2.0, 2.0, 1.6487212707001282]],
    loss: [[-1.0272203333501932, -0.8813649678592592, -1.4477398688575354, -0.7609835396005713, -0.8841367344605181], [0.96, 1.326205101690777, 0.9892327624200768]],
    grad: [[-1.0272203333494545, 0.0, -1.4477398687651188, -0.760983539571658, -0.8841367344358808], [0.0, 1.326205101737088, 0.9892327624827502]],
    gradAtOld: [[-0.9771222064247631, -0.6885663810796139, -1.5999999998239645, -0.760983539571658, -1.193459758019877], [1.2000000000345068, 1.2000000000345068, 0.9892327624827502]]
  },
  sequence_geometric: {
    weights: [Array(5).fill(1.2969300866657718), [2.0, 2.0, 2.0]],
    loss: [[-1.0907400913057423, -1.3280564087457503, -0.9388086967934482, -1.0375440693326174, -0.7686315513218587], [0.96, 1.326205101690777, 1.2]],
    grad: [[-1.0907400913584553, 0.0, -0.9388086967265785, -1.0375440692156346, -0.7686315512955844], [0.0, 1.326205101737088, 1.2000000000345068]],
    gradAtOld: [Array(5).fill(-1.0375440692156346), [1.2000000000345068, 1.2000000000345068, 1.2000000000345068]]
  }
}
const CORRECTIONS = ["token", "sequence_geometric"] as const

// A prompt of 3 tokens in front of each completion: the datum's arrays have 2 prompt positions.
const START = 2
const pad = (row: ReadonlyArray<number>, fill = 0) => [...Array(START).fill(fill), ...row]
/** The corrected datum arrays of row b, as the update stage builds them. */
const datumOf = (correction: MismatchCorrection, b: number) =>
  correctedDatum({
    correction,
    cap: CAP,
    start: START,
    samplerLogprobs: pad(SAMPLER[b]!),
    trainerLogprobs: pad(OLD[b]!, -7), // the trainer also scores the prompt; those positions must stay 0
    advantages: pad(SAMPLER[b]!.map(() => ADVANTAGES[b]!))
  })
/** The engine's ppo loss of one token (PolicyEngine.ts), float64. */
const tokenLoss = (lp: number, old: number, a: number) => engineLoss({ logprobs: [lp], oldLogprobs: [old], advantages: [a], ...CLIP }).loss
/** dℓ/dlp of the engine's ppo loss of one token, by central differences. */
const tokenGrad = (lp: number, old: number, a: number, h = 1e-6) => (tokenLoss(lp + h, old, a) - tokenLoss(lp - h, old, a)) / (2 * h)

describe("importanceWeights", () => {
  for (const correction of CORRECTIONS) {
    it(`${correction}: TRL's vllm_importance_sampling_ratio (numpy), the cap binding on some tokens`, () => {
      SAMPLER.forEach((s, b) => expectClose(importanceWeights(correction, OLD[b]!, s, CAP), TRL[correction].weights[b]!))
      expect(TRL[correction].weights.flat()).toContain(CAP) // the fixture exercises the cap
      expect(TRL[correction].weights.flat().some((w) => w < CAP && w !== 1)).toBe(true)
    })
  }
  it("none: all 1; an empty completion and mismatched lengths", () => {
    expect(importanceWeights("none", OLD[0]!, SAMPLER[0]!, CAP)).toEqual([1, 1, 1, 1, 1])
    expect(importanceWeights("sequence_geometric", [], [], CAP)).toEqual([])
    expect(() => importanceWeights("token", [0], [0, 0], CAP)).toThrow(RangeError)
  })
})

describe("correctedDatum: the engine's ppo loss on the corrected datum is TRL's corrected loss", () => {
  for (const correction of CORRECTIONS) {
    it(`${correction}: per-token loss and gradient at lp_θ (some tokens clipped) equal TRL's (numpy)`, () => {
      SAMPLER.forEach((_, b) => {
        const d = datumOf(correction, b)
        const theta = THETA[b]!
        const at = (t: number) => [theta[t]!, d.logprobs[START + t]!, d.advantages[START + t]!] as const
        expectClose(theta.map((_, t) => tokenLoss(...at(t))), TRL[correction].loss[b]!)
        expectClose(theta.map((_, t) => tokenGrad(...at(t))), TRL[correction].grad[b]!, 1e-7)
      })
    })

    it(`${correction}: at the step's weights the gradient coefficient is −w·A (TRL), not −(π_t/π_s)·w·A, and no token clips`, () => {
      SAMPLER.forEach((s, b) => {
        const d = datumOf(correction, b)
        const old = OLD[b]!
        const grads = old.map((lp, t) => tokenGrad(lp, d.logprobs[START + t]!, d.advantages[START + t]!))
        expectClose(grads, TRL[correction].gradAtOld[b]!, 1e-7)
        // The double-counting form (sampler logprobs as old ones, advantages × w): its ratio is π_t/π_s.
        const doubled = old.map((lp, t) => tokenGrad(lp, s[t]!, ADVANTAGES[b]! * TRL[correction].weights[b]![t]!))
        expect(doubled.some((g, t) => Math.abs(g - grads[t]!) > 0.1)).toBe(true)
        // Tokens clip on the policy's own change only: none at the step's weights (row 0 token 2 has
        // π_t/π_s = e^0.9 = 2.46 > 1 + ε_high with A > 0 and clipped in the doubled form).
        expect(engineLoss({ logprobs: pad(old), oldLogprobs: d.logprobs, advantages: d.advantages, ...CLIP }).clipped).toBe(0)
      })
      const s = SAMPLER[0]!
      expect(engineLoss({ logprobs: OLD[0]!, oldLogprobs: s, advantages: s.map(() => ADVANTAGES[0]!), ...CLIP }).clipped).toBeGreaterThan(0)
    })
  }

  it("prompt positions keep the sampler's 0s; completion old logprobs are the trainer's", () => {
    const d = datumOf("token", 0)
    expect(d.logprobs.slice(0, START)).toEqual([0, 0])
    expect(d.advantages.slice(0, START)).toEqual([0, 0])
    expect(d.logprobs.slice(START)).toEqual(OLD[0])
    expectClose(d.weights, TRL.token.weights[0]!)
  })

  it("none: the datum is left as the sampler produced it, and needs no trainer pass", () => {
    const d = datumOf("none", 1)
    expect(d.logprobs).toEqual(pad(SAMPLER[1]!))
    expect(d.advantages).toEqual(pad(SAMPLER[1]!.map(() => ADVANTAGES[1]!)))
    expect(needsTrainerLogprobs("none")).toBe(false)
    expect(needsTrainerLogprobs("token")).toBe(true)
    expect(needsTrainerLogprobs("sequence_geometric")).toBe(true)
  })

  it("mismatched lengths or a start outside the datum throw", () => {
    const base = { correction: "token" as const, cap: CAP, start: 0, samplerLogprobs: [0, 0], trainerLogprobs: [0, 0], advantages: [0, 0] }
    expect(() => correctedDatum({ ...base, trainerLogprobs: [0] })).toThrow(RangeError)
    expect(() => correctedDatum({ ...base, start: 3 })).toThrow(RangeError)
  })
})

// ---- The update stage with a recording engine: the datums it sends, the KL term's logprob ----

const PROMPT = [5, 6, 7]
const COMPLETION = [8, 9, 10, 11, 12]
const C = 0.1 // the sequence's aggregation factor
const BETA = 0.05
const REF = OLD[0]!.map((lp, t) => lp - 0.1 * (t + 1)) // the initial policy's logprobs

const fakeEngine = (calls: { logprobs: number; fb: Array<{ name: string; datums: ReadonlyArray<Datum> }> }): PolicyEngineShape => {
  let loaded = ""
  const score = (items: ReadonlyArray<{ readonly completion: ReadonlyArray<number> }>, weights: string) =>
    Effect.sync(() => {
      calls.logprobs++
      const lp = weights === "init" ? REF : OLD[0]!
      return items.map((i) => Float32Array.from([...Array(i.completion.length - lp.length).fill(-7), ...lp]))
    })
  return {
    fingerprint: "fake",
    tokenizer: undefined as never,
    endToken: 0,
    maxContext: 64,
    promptIds: () => [],
    sample: () => Effect.die("unused"),
    // Sampling calls name their weights (the initial policy's, for the KL term); the trainer's are the loaded ones.
    logprobs: (items, weights) => score(items, weights?.checkpoint ?? loaded),
    // The fake's trainer and sampler agree at the loaded weights; the sampler logprobs of the datums do not.
    trainerLogprobs: (items) => score(items, loaded),
    forwardBackward: (datums, loss) => Effect.sync(() => (calls.fb.push({ name: loss.name, datums }), { logprobs: [], metrics: {} })),
    optimStep: () => Effect.succeed({ gradNorm: 0, clipScale: 1, step: 1 }),
    save: (name) => Effect.succeed({ path: `tinker://${name}` }),
    load: (ref) => Effect.sync(() => void (loaded = ref.path)),
    publish: () => Effect.succeed(undefined)
  }
}
const runUpdate = async (correction: MismatchCorrection) => {
  const calls = { logprobs: 0, fb: [] as Array<{ name: string; datums: ReadonlyArray<Datum> }> }
  const metrics: Array<Readonly<Record<string, unknown>>> = []
  const ctx = { metric: (m: Readonly<Record<string, unknown>>) => Effect.sync(() => void metrics.push(m)) } as unknown as StageContext
  const full = [...PROMPT, ...COMPLETION]
  const datum = {
    model_input: full.slice(0, -1),
    target_tokens: full.slice(1),
    logprobs: pad(SAMPLER[0]!),
    advantages: pad(SAMPLER[0]!.map(() => ADVANTAGES[0]! * C))
  }
  const params = { learning_rate: 1e-5, weight_decay: 0, max_grad_norm: 1, inner_iterations: 1, epsilon_low: EPS_LOW, epsilon_high: EPS_HIGH, mismatch_correction: correction, mismatch_cap: CAP, beta: BETA }
  const batch = { ppo: [datum], cross_entropy: [], scales: [C], starts: [START], metrics: {} }
  const next = { prompts: [], sampler: initial(0) }
  await Effect.runPromise(
    update.run({ batch, policy: { checkpoint: "ckpt", step: 0, initial: "init" }, next }, params, ctx).pipe(Effect.provideService(PolicyEngine, fakeEngine(calls)))
  )
  const ppo = calls.fb.find((c) => c.name === "ppo")!.datums[0]!
  const kl = calls.fb.find((c) => c.name === "cross_entropy")!.datums[0]!
  return { calls, ppo, kl, metrics: Object.assign({}, ...metrics) as Record<string, number | null> }
}

describe("update stage", () => {
  it("token: sends old logprobs = trainer's and advantages A·w (TRL), and takes k3 at the trainer's logprobs", async () => {
    const { calls, ppo, kl, metrics } = await runUpdate("token")
    expect(calls.logprobs).toBe(2) // the trainer pass and the KL reference pass
    // The engine's logprobs are float32.
    expectClose(Array.from(ppo.logprobs!).slice(START), OLD[0]!, 1e-6)
    expect(Array.from(ppo.logprobs!).slice(0, START)).toEqual([0, 0])
    expectClose(Array.from(ppo.advantages!).slice(START), TRL.token.weights[0]!.map((w) => ADVANTAGES[0]! * C * w), 1e-6)
    expectClose(Array.from(kl.weights!).slice(START), REF.map((r, t) => BETA * C * (Math.exp(r - OLD[0]![t]!) - 1)), 1e-6)
    // TRL's sampling/ metrics: w over the completion tokens; |lp_old − lp_sampler| = [0.2, 0.15, 0.9, 0.05, 0.4].
    const w = TRL.token.weights[0]!
    expectClose(
      [metrics.importance_sampling_ratio_min!, metrics.importance_sampling_ratio_mean!, metrics.importance_sampling_ratio_max!, metrics.sampling_logp_difference_mean!, metrics.sampling_logp_difference_max!],
      [Math.min(...w), w.reduce((a, x) => a + x, 0) / w.length, CAP, 0.34, 0.9],
      1e-6
    )
  })

  it("none: the sampler's datum unchanged, no trainer pass, k3 at the sampler's logprobs (as before)", async () => {
    const { calls, ppo, kl, metrics } = await runUpdate("none")
    expect(calls.logprobs).toBe(1) // the KL reference pass only
    expect(metrics.importance_sampling_ratio_mean).toBeUndefined()
    expect(Array.from(ppo.logprobs!)).toEqual(pad(SAMPLER[0]!))
    expect(Array.from(ppo.advantages!)).toEqual(pad(SAMPLER[0]!.map(() => ADVANTAGES[0]! * C)))
    expectClose(Array.from(kl.weights!).slice(START), REF.map((r, t) => BETA * C * (Math.exp(r - SAMPLER[0]![t]!) - 1)), 1e-6)
  })
})
