/**
 * `update`: the policy update of a GRPO step. Loads the step's policy, optionally corrects the
 * sampler/trainer mismatch (trainer logprobs at the step's weights against the sampler's),
 * runs forwardBackward on the step's datums (`ppo` with ratio bounds 1 − ε_low, 1 + ε_high;
 * `cross_entropy` for a luffy/sft reference) and an AdamW step, `inner_iterations` times, then
 * saves (a local checkpoint into the store, by content), publishes, and hands the next state
 * (new checkpoint, sampler state) to the next step.
 */
import { Effect, Schema } from "effect"
import { PolicyEngine, type Datum } from "../src/engines/PolicyEngine.ts"
import { mismatchCorrection } from "../src/grpo/TokenLoss.ts"
import { digest } from "../src/dag/Canonical.ts"
import * as Stage from "../src/dag/Stage.ts"
import { loadPolicy, savePolicy } from "../src/engines/PolicyCheckpoint.ts"
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
      let ppo = batch.ppo.map(datum)
      if (p.mismatch_correction !== "none" && ppo.length > 0) {
        // Trainer logprobs at the step's weights (teacher forcing) against the sampler's.
        const trainer = yield* engine.logprobs(ppo.map((d) => ({ prompt: d.modelInput.slice(0, 1), completion: d.targetTokens })))
        const mode = p.mismatch_correction === "token" ? "token_tis" : "geo_mean"
        ppo = ppo.map((d, i) => {
          // trainer[i][t] scores targetTokens[t]; the completion starts at `starts[i]`.
          const adv = Array.from(d.advantages ?? [], Number)
          const from = batch.starts[i]!
          const sampler = Array.from(d.logprobs ?? [], Number).slice(from)
          const factor = mismatchCorrection(trainer[i]!.slice(from), sampler, mode, p.mismatch_cap)
          return { ...d, advantages: adv.map((a, t) => (t >= from ? a * factor[t - from]! : a)) }
        })
      }
      const ce = batch.cross_entropy.map(datum)
      if (p.beta > 0 && ppo.length > 0) {
        // β·k3 per token, k3 = exp(ref − lp) − (ref − lp) − 1, ref the initial policy's logprob:
        // dk3/dlp = 1 − exp(ref − lp), sent as cross_entropy weights w = β·c·(exp(ref − lp) − 1)
        // (c: the sequence's aggregation factor), exact at the step's weights (lp: the sampler's).
        yield* loadPolicy(engine, ctx, policy.initial)
        const ref = yield* engine.logprobs(ppo.map((d) => ({ prompt: d.modelInput.slice(0, 1), completion: d.targetTokens })))
        yield* loadPolicy(engine, ctx, policy.checkpoint)
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
        const a = ppo.length > 0 ? yield* engine.forwardBackward(ppo, { name: "ppo", clipLow: 1 - p.epsilon_low, clipHigh: 1 + p.epsilon_high }) : undefined
        const b = ce.length > 0 ? yield* engine.forwardBackward(ce, { name: "cross_entropy" }) : undefined
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
      const checkpoint = yield* savePolicy(engine, ctx, name)
      yield* engine.publish()
      return { policy: { ...policy, checkpoint, step: policy.step + 1 }, batch: next }
    })
})
