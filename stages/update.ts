/**
 * `update`: the policy update of a GRPO step. Loads the step's policy, optionally corrects the
 * sampler/trainer mismatch (src/grpo/MismatchCorrection.ts: the trainer's logprobs at the step's
 * weights become the old logprobs, the advantages carry TRL's importance weight), runs
 * forwardBackward on the step's datums (`ppo` with ratio bounds 1 − ε_low, 1 + ε_high;
 * `cross_entropy` for a luffy/sft reference) and an AdamW step, `inner_iterations` times, then
 * publishes, saves (a local checkpoint into the store, by content), and hands the next state
 * (new checkpoint, sampler state) to the next step.
 */
import { Effect, Schema } from "effect"
import { PolicyEngine, type Datum, type PolicyEngineShape, type PolicyError } from "../src/engines/PolicyEngine.ts"
import { correctedDatum, type MismatchCorrection, needsTrainerLogprobs } from "../src/grpo/MismatchCorrection.ts"
import { digest } from "../src/dag/Canonical.ts"
import * as Stage from "../src/dag/Stage.ts"
import { loadPolicy, samplingWeights, savePolicy } from "../src/engines/PolicyCheckpoint.ts"
import { TrainBatch, type DatumRecord } from "../src/records/TrainBatch.ts"
import { Batch } from "../src/records/Batch.ts"
import { PolicyState, TrainState } from "../src/records/TrainState.ts"

const datum = (d: DatumRecord): Datum => ({
  modelInput: d.model_input,
  targetTokens: d.target_tokens,
  ...(d.weights !== undefined ? { weights: d.weights } : {}),
  ...(d.logprobs !== undefined ? { logprobs: d.logprobs } : {}),
  ...(d.advantages !== undefined ? { advantages: d.advantages } : {})
})

/**
 * The `ppo` datums with the sampler/trainer mismatch corrected (MismatchCorrection.ts): one
 * teacher-forcing pass at the step's weights gives the trainer's logprobs, which become the old
 * logprobs, and the advantages are multiplied by TRL's importance weight w. `none`: unchanged, no pass.
 *
 * The datums' sampler logprobs are log-softmax of the sampler's RAW logits (PolicyEngine.ts
 * `SampledSequence.logprobs`), while the tokens were drawn with temperature / top_p / top_k: with
 * temperature ≠ 1 or truncation they are not the probabilities the tokens were drawn with, and w
 * corrects numerics only. A vLLM serving `--logprobs-mode processed_logprobs` reports the drawn-with
 * logprobs, and w then also absorbs that difference (MismatchCorrection.ts, docs/grpo.md).
 *
 * The trainer's logprobs come from `engine.trainerLogprobs`: the embedded engine's training
 * weights, Tinker's `forward` on the training model (also under `vllm` sampling), never the sampler.
 */
const correctMismatch = (
  engine: PolicyEngineShape,
  ppo: ReadonlyArray<Datum>,
  starts: ReadonlyArray<number>,
  correction: MismatchCorrection,
  cap: number,
  metric: (values: Record<string, number | null>) => Effect.Effect<void>
): Effect.Effect<ReadonlyArray<Datum>, PolicyError> =>
  Effect.gen(function*() {
    if (!needsTrainerLogprobs(correction) || ppo.length === 0) return ppo
    // trainer[i][t] scores targetTokens[t] (a one-token prompt), aligned with the datum's arrays.
    const trainer = yield* engine.trainerLogprobs(ppo.map((d) => ({ prompt: d.modelInput.slice(0, 1), completion: d.targetTokens })))
    const weights: Array<number> = []
    const diffs: Array<number> = []
    const corrected = ppo.map((d, i) => {
      const start = starts[i]!
      const sampler = d.logprobs ?? []
      const c = correctedDatum({ correction, cap, start, samplerLogprobs: sampler, trainerLogprobs: trainer[i]!, advantages: d.advantages ?? [] })
      for (const w of c.weights) weights.push(w)
      for (let t = start; t < sampler.length; t++) diffs.push(Math.abs(trainer[i]![t]! - sampler[t]!))
      return { ...d, logprobs: c.logprobs, advantages: c.advantages }
    })
    // TRL's sampling/importance_sampling_ratio/{min,mean,max} and sampling/sampling_logp_difference/{mean,max}.
    const mean = (xs: ReadonlyArray<number>) => (xs.length > 0 ? xs.reduce((a, x) => a + x, 0) / xs.length : null)
    const extreme = (xs: ReadonlyArray<number>, f: (a: number, b: number) => number) => (xs.length > 0 ? xs.reduce((a, x) => f(a, x)) : null)
    yield* metric({
      importance_sampling_ratio_min: extreme(weights, Math.min),
      importance_sampling_ratio_mean: mean(weights),
      importance_sampling_ratio_max: extreme(weights, Math.max),
      sampling_logp_difference_mean: mean(diffs),
      sampling_logp_difference_max: extreme(diffs, Math.max)
    })
    return corrected
  })

export const update = Stage.make({
  name: "update",
  version: "1",
  resource: "policy",
  engines: [PolicyEngine],
  inputs: { batch: TrainBatch, policy: PolicyState, next: Batch },
  params: Schema.Struct({
    learning_rate: Schema.Number,
    weight_decay: Schema.Number,
    max_grad_norm: Schema.Number,
    inner_iterations: Schema.Int,
    epsilon_low: Schema.Number,
    epsilon_high: Schema.Number,
    mismatch_correction: Schema.Literals(["none", "token", "sequence_geometric"]),
    mismatch_cap: Schema.Number,
    /** β of the k3 KL term to the initial policy (0: none). */
    beta: Schema.Number
  }),
  output: TrainState,
  run: ({ batch, policy, next }, p, ctx) =>
    Effect.gen(function*() {
      const engine = yield* PolicyEngine
      yield* loadPolicy(engine, ctx, policy.checkpoint)
      const ppo = yield* correctMismatch(engine, batch.ppo.map(datum), batch.starts, p.mismatch_correction, p.mismatch_cap, (m) => ctx.metric({ step: policy.step, ...m }))
      const ce = batch.cross_entropy.map(datum)
      if (p.beta > 0 && ppo.length > 0) {
        // β·k3 per token, k3 = exp(ref − lp) − (ref − lp) − 1, ref the initial policy's logprob:
        // dk3/dlp = 1 − exp(ref − lp), sent as cross_entropy weights w = β·c·(exp(ref − lp) − 1)
        // (c: the sequence's aggregation factor), exact at the step's weights. lp is the datum's old
        // logprob: the trainer's at the step's weights when the mismatch is corrected (what the
        // gradient is taken at), the sampler's under `none` (unchanged). Not multiplied by the
        // importance weight, as TRL adds β·per_token_kl after `per_token_loss * importance_sampling_ratio`.
        const initial = yield* samplingWeights(ctx, { checkpoint: policy.initial })
        const ref = yield* engine.logprobs(ppo.map((d) => ({ prompt: d.modelInput.slice(0, 1), completion: d.targetTokens })), initial)
        let kl = 0
        let n = 0
        ppo.forEach((d, i) => {
          const adv = Array.from(d.advantages ?? [], Number)
          const from = batch.starts[i]!
          const c = batch.scales[i]!
          const weights = adv.map((_, t) => {
            if (t < from) return 0
            const delta = ref[i]![t]! - Number(d.logprobs![t])
            kl += Math.exp(delta) - delta - 1
            n++
            return p.beta * c * (Math.exp(delta) - 1)
          })
          ce.push({ modelInput: d.modelInput, targetTokens: d.targetTokens, weights })
        })
        yield* ctx.metric({ step: policy.step, kl: n > 0 ? kl / n : null })
      }
      const adam = { learningRate: p.learning_rate, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: p.weight_decay, gradClipNorm: p.max_grad_norm }
      for (let it = 0; it < p.inner_iterations; it++) {
        // Only the metrics are read: the engine may skip the LM head where no token has a loss.
        const a = ppo.length > 0 ? yield* engine.forwardBackward(ppo, { name: "ppo", clipLow: 1 - p.epsilon_low, clipHigh: 1 + p.epsilon_high }, { logprobs: "loss" }) : undefined
        const b = ce.length > 0 ? yield* engine.forwardBackward(ce, { name: "cross_entropy" }, { logprobs: "loss" }) : undefined
        const step = yield* engine.optimStep(adam)
        const tokens = a?.metrics["tokens:sum"] ?? 0
        yield* ctx.metric({
          step: policy.step,
          inner_iteration: it,
          loss: (a?.metrics["loss:sum"] ?? 0) + (b?.metrics["loss:sum"] ?? 0),
          clip_frac: tokens > 0 ? (a?.metrics["clipped:sum"] ?? 0) / tokens : null,
          grad_norm: step.gradNorm,
          learning_rate: p.learning_rate
        })
      }
      // Named by what the update received, never by its node key: a local checkpoint is then
      // stored by content (its name is not kept), and a remote one's name is the same however
      // the code that made it is worded, so an update that re-runs to the same weights changes
      // no byte of its output and every later step stays cached (early cutoff).
      const name = `step-${String(policy.step + 1).padStart(4, "0")}-${digest({ batch, policy, params: p }).slice(0, 12)}`
      // Published first: the sampler (the embedded engine's workers, a vLLM server) loads the new
      // weights while the checkpoint is saved and the next step's nodes start.
      const published = yield* engine.publish()
      const checkpoint = yield* savePolicy(engine, ctx, name)
      const { sampler: _, ...rest } = policy
      return { policy: { ...rest, checkpoint, step: policy.step + 1, ...(published !== undefined ? { sampler: published.path } : {}) }, batch: next }
    })
})
