/**
 * `hri-groups`: GRPO with human-reference injection (ARCHITECTURE.md §7). Each prompt's group is
 * its rollouts plus the human reference; rewards come from the judge (the reference's by
 * `reference_reward`), advantages from the group statistics (src/grpo/Advantages.ts), and every
 * sequence becomes an engine datum whose per-token advantages or weights carry TRL's loss
 * aggregation (src/grpo/TokenLoss.ts): rollouts and an `on_policy` reference go to the `ppo`
 * loss, a `luffy` or `sft` reference to `cross_entropy`. The step's metrics are computed here.
 */
import { Effect, Schema } from "effect"
import { datumOf } from "../src/engines/PolicyEngine.ts"
import { advantages, referenceReward } from "../src/grpo/Advantages.ts"
import { luffyWeights, sequenceScale, sftWeights } from "../src/grpo/TokenLoss.ts"
import * as Stage from "../src/dag/Stage.ts"
import { Judgement } from "../src/records/Judgement.ts"
import { Reference } from "../src/records/Reference.ts"
import { Group } from "../src/records/Group.ts"
import { referenceId, rolloutId } from "./stepCandidates.ts"
import { DatumRecord, TrainBatch } from "../src/records/TrainBatch.ts"

const record = (d: ReturnType<typeof datumOf>): DatumRecord => ({
  model_input: [...d.modelInput],
  target_tokens: [...d.targetTokens],
  ...(d.weights !== undefined ? { weights: Array.from(d.weights) } : {}),
  ...(d.logprobs !== undefined ? { logprobs: Array.from(d.logprobs) } : {}),
  ...(d.advantages !== undefined ? { advantages: Array.from(d.advantages) } : {})
})

const mean = (xs: ReadonlyArray<number>) => (xs.length === 0 ? null : xs.reduce((a, b) => a + b, 0) / xs.length)
const std = (xs: ReadonlyArray<number>) => {
  const m = mean(xs)
  return m === null || xs.length < 2 ? null : Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1))
}
const pearson = (xs: ReadonlyArray<number>, ys: ReadonlyArray<number>) => {
  const mx = mean(xs)
  const my = mean(ys)
  if (mx === null || my === null || xs.length < 3) return null
  let sxy = 0
  let sxx = 0
  let syy = 0
  xs.forEach((x, i) => {
    sxy += (x - mx) * (ys[i]! - my)
    sxx += (x - mx) ** 2
    syy += (ys[i]! - my) ** 2
  })
  return sxx === 0 || syy === 0 ? null : sxy / Math.sqrt(sxx * syy)
}

export const hriGroups = Stage.make({
  name: "hri-groups",
  version: "1",
  // One list per group of the step (each group's nodes run apart, `pipelines/polaris.ts`), in group order.
  inputs: { groups: Schema.Array(Schema.Array(Group)), references: Schema.Array(Schema.Array(Reference)), judged: Schema.Array(Schema.Array(Judgement)) },
  params: Schema.Struct({
    reference_reward: Schema.Union([
      Schema.Struct({ mode: Schema.Literal("judge") }),
      Schema.Struct({ mode: Schema.Literal("fixed"), value: Schema.Number }),
      Schema.Struct({ mode: Schema.Literal("max_of_group_plus"), margin: Schema.Number })
    ]),
    scale_rewards: Schema.Literals(["group", "batch", "none"]),
    reference_in_stats: Schema.Boolean,
    loss_type: Schema.Literals(["grpo", "bnpo", "dapo", "dr_grpo"]),
    reference_loss: Schema.Literals(["on_policy", "luffy", "sft"]),
    luffy_gamma: Schema.Number,
    /** TRL's max_completion_length, the dr_grpo normaliser: the step's token cap. */
    max_completion_length: Schema.Int,
    truncated: Schema.Literals(["mask", "penalize", "keep"])
  }),
  output: TrainBatch,
  run: (parts, p, ctx) =>
    Effect.gen(function*() {
      const groups = parts.groups.flat()
      const references = parts.references.flat()
      const judged = parts.judged.flat()
      const byId = new Map(judged.map((j) => [j.id, j]))
      const refs = new Map(references.map((r) => [r.prompt_id, r]))
      // Rewards: a truncated rollout is masked (no reward: it leaves the statistics, advantage 0),
      // penalized (reward 0), or kept as judged.
      const rewardOf = (id: string, truncated: boolean): number | null => {
        const j = byId.get(id)
        const r = j?.reward ?? null
        if (!truncated || p.truncated === "keep") return r
        return p.truncated === "mask" ? null : 0
      }
      const rewards = groups.map((g) => {
        const rollouts = g.samples.map((s, i) => rewardOf(rolloutId(g.prompt_id, i), s.stop_reason === "length"))
        const judgedRef = byId.get(referenceId(g.prompt_id))?.reward ?? null
        return { rollouts, reference: refs.has(g.prompt_id) ? referenceReward(p.reference_reward, judgedRef, rollouts) : null }
      })
      const adv = advantages(rewards, { scaleRewards: p.scale_rewards, referenceInStats: p.reference_in_stats })

      // Every sequence that takes a loss counts in TRL's normalisers (B, token totals).
      const lengths = groups.flatMap((g) => [...g.samples.map((s) => s.tokens.length), ...(refs.has(g.prompt_id) ? [refs.get(g.prompt_id)!.tokens.length] : [])])
      const scales = sequenceScale(p.loss_type, lengths, p.max_completion_length)
      const ppo: Array<DatumRecord> = []
      const ppoScales: Array<number> = []
      const ppoStarts: Array<number> = []
      const ce: Array<DatumRecord> = []
      let k = 0
      groups.forEach((g, gi) => {
        g.samples.forEach((s, i) => {
          const c = scales[k++]!
          const a = adv[gi]!.rollouts[i]! * c
          ppo.push(record(datumOf(g.prompt_tokens, s.tokens, { logprobs: s.logprobs, advantages: s.tokens.map(() => a) })))
          ppoScales.push(c)
          ppoStarts.push(g.prompt_tokens.length - 1)
        })
        const ref = refs.get(g.prompt_id)
        if (ref === undefined) return
        const a = adv[gi]!.reference
        const c = scales[k++]!
        if (p.reference_loss === "on_policy") {
          ppo.push(record(datumOf(ref.prompt_tokens, ref.tokens, { logprobs: ref.logprobs, advantages: ref.tokens.map(() => a * c) })))
          ppoScales.push(c)
          ppoStarts.push(ref.prompt_tokens.length - 1)
        }
        else if (p.reference_loss === "luffy") ce.push(record(datumOf(ref.prompt_tokens, ref.tokens, { weights: luffyWeights(ref.logprobs, a, c, p.luffy_gamma) })))
        else ce.push(record(datumOf(ref.prompt_tokens, ref.tokens, { weights: sftWeights(ref.tokens.length, c) })))
      })

      // Metrics (ARCHITECTURE.md §7).
      const policyRewards = rewards.flatMap((r) => r.rollouts).filter((r): r is number => r !== null)
      const referenceRewards = rewards.map((r) => r.reference).filter((r): r is number => r !== null)
      const allAdv = adv.flatMap((a) => [...a.rollouts, a.reference])
      const samples = groups.flatMap((g) => g.samples.map((s, i) => ({ g, s, j: byId.get(rolloutId(g.prompt_id, i)) })))
      const scored = samples.filter((x) => x.j?.reward !== null && x.j?.reward !== undefined)
      const tokens = samples.reduce((n, x) => n + x.s.tokens.length, 0)
      const metrics: Record<string, number | null> = {
        reward_policy_mean: mean(policyRewards),
        reward_policy_std: std(policyRewards),
        reward_reference_mean: mean(referenceRewards),
        reward_reference_std: std(referenceRewards),
        advantage_mean: mean(allAdv),
        advantage_std: std(allAdv),
        advantage_min: allAdv.length > 0 ? Math.min(...allAdv) : null,
        advantage_max: allAdv.length > 0 ? Math.max(...allAdv) : null,
        frac_zero_std_groups: adv.length > 0 ? adv.filter((a) => a.zeroStd).length / adv.length : null,
        words_mean: mean(samples.map((x) => x.j?.words ?? 0)),
        length_ratio_mean: mean(samples.map((x) => (x.j?.words ?? 0) / x.g.requested_words)),
        length_score_mean: mean(samples.map((x) => x.j?.length_score ?? 0)),
        quality_mean: mean(scored.map((x) => x.j!.quality!)),
        truncated_frac: samples.length > 0 ? samples.filter((x) => x.s.stop_reason === "length").length / samples.length : null,
        unscorable: samples.filter((x) => x.j?.unscorable !== null).length,
        // E[−log q(x)] over sampled tokens is the sampler's entropy (temperature 1, no filtering).
        entropy_estimate: tokens > 0 ? -samples.reduce((n, x) => n + x.s.logprobs.reduce((a, b) => a + b, 0), 0) / tokens : null,
        reward_length_corr: pearson(scored.map((x) => x.j!.words), scored.map((x) => x.j!.reward!))
      }
      // Words and length ratio per requested-length bucket (by hundreds of requested words).
      const buckets = new Map<number, Array<(typeof samples)[number]>>()
      for (const x of samples) {
        const b = Math.floor(x.g.requested_words / 100) * 100
        buckets.set(b, [...(buckets.get(b) ?? []), x])
      }
      for (const [b, xs] of buckets) {
        metrics[`words_mean@${b}`] = mean(xs.map((x) => x.j?.words ?? 0))
        metrics[`length_ratio@${b}`] = mean(xs.map((x) => (x.j?.words ?? 0) / x.g.requested_words))
      }
      yield* ctx.metric(metrics)
      return { ppo, cross_entropy: ce, scales: ppoScales, starts: ppoStarts, metrics }
    })
})
