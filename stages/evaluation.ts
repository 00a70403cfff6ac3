/**
 * Held-out evaluation of a policy (the before/after of a training run; issue 9 builds the full
 * report on it): `eval-batch` picks the held-out prompts, the `rollout` and `judge` stages do the
 * work (memoized as in training), and `summarize-eval` reduces them to length adherence (mean
 * S_l, length ratio, truncation) and reward per requested-length bucket.
 */
import { Effect, Schema } from "effect"
import { initial } from "../src/data/Sampler.ts"
import * as Stage from "../src/Stage.ts"
import { PromptWithReference } from "./derivePrompts.ts"
import { Judgement } from "./judge.ts"
import { Group } from "./rollout.ts"
import { Batch } from "./sampleBatch.ts"
import { rolloutId } from "./stepCandidates.ts"

export const evalBatch = Stage.make({
  name: "eval-batch",
  version: "1",
  inputs: { prompts: Schema.Array(PromptWithReference) },
  params: Schema.Struct({ max_prompts: Schema.Int }),
  output: Batch,
  run: ({ prompts }, { max_prompts }) =>
    Effect.succeed({ prompts: prompts.map((p) => p.id).sort().slice(0, max_prompts), sampler: initial(0) })
})

export const EvalSummary = Schema.Struct({
  stories: Schema.Int,
  length_score_mean: Schema.NullOr(Schema.Number),
  reward_mean: Schema.NullOr(Schema.Number),
  quality_mean: Schema.NullOr(Schema.Number),
  words_mean: Schema.NullOr(Schema.Number),
  length_ratio_mean: Schema.NullOr(Schema.Number),
  truncated_frac: Schema.NullOr(Schema.Number),
  unscorable: Schema.Int,
  /** Per requested-length bucket (hundreds of words): the same means. */
  buckets: Schema.Record(Schema.String, Schema.Struct({ stories: Schema.Int, length_score_mean: Schema.NullOr(Schema.Number), reward_mean: Schema.NullOr(Schema.Number) }))
})
export type EvalSummary = typeof EvalSummary.Type

const mean = (xs: ReadonlyArray<number>) => (xs.length === 0 ? null : xs.reduce((a, b) => a + b, 0) / xs.length)

export const summarizeEval = Stage.make({
  name: "summarize-eval",
  version: "1",
  inputs: { groups: Schema.Array(Group), judged: Schema.Array(Judgement) },
  output: EvalSummary,
  run: ({ groups, judged }, _p, ctx) => {
    const byId = new Map(judged.map((j) => [j.id, j]))
    const rows = groups.flatMap((g) => g.samples.map((s, i) => ({ g, s, j: byId.get(rolloutId(g.prompt_id, i))! })))
    const summary = (xs: typeof rows) => ({
      stories: xs.length,
      length_score_mean: mean(xs.map((x) => x.j.length_score)),
      reward_mean: mean(xs.flatMap((x) => (x.j.reward === null ? [] : [x.j.reward]))),
      quality_mean: mean(xs.flatMap((x) => (x.j.quality === null ? [] : [x.j.quality])))
    })
    const buckets: Record<string, ReturnType<typeof summary>> = {}
    const keys = [...new Set(rows.map((x) => Math.floor(x.g.requested_words / 100) * 100))].sort((a, b) => a - b)
    for (const b of keys) buckets[`${b}-${b + 100}`] = summary(rows.filter((x) => Math.floor(x.g.requested_words / 100) * 100 === b))
    const all = summary(rows)
    const result: EvalSummary = {
      ...all,
      words_mean: mean(rows.map((x) => x.j.words)),
      length_ratio_mean: mean(rows.map((x) => x.j.words / x.g.requested_words)),
      truncated_frac: rows.length === 0 ? null : rows.filter((x) => x.s.stop_reason === "length").length / rows.length,
      unscorable: rows.filter((x) => x.j.unscorable !== null).length,
      buckets: Object.fromEntries(Object.entries(buckets).map(([k, v]) => [k, { stories: v.stories, length_score_mean: v.length_score_mean, reward_mean: v.reward_mean }]))
    }
    return Effect.as(ctx.metric({ stories: result.stories, length_score_mean: result.length_score_mean, reward_mean: result.reward_mean, length_ratio_mean: result.length_ratio_mean }), result)
  }
})

/** Before vs after on the same held-out prompts. */
export const compareEval = Stage.make({
  name: "compare-eval",
  version: "1",
  inputs: { before: EvalSummary, after: EvalSummary },
  output: Schema.Struct({ before: EvalSummary, after: EvalSummary, delta: Schema.Record(Schema.String, Schema.NullOr(Schema.Number)) }),
  run: ({ before, after }, _p, ctx) => {
    const keys = ["length_score_mean", "reward_mean", "quality_mean", "words_mean", "length_ratio_mean", "truncated_frac"] as const
    const delta = Object.fromEntries(keys.map((k) => [k, before[k] === null || after[k] === null ? null : after[k]! - before[k]!]))
    return Effect.as(ctx.metric(Object.fromEntries(Object.entries(delta).map(([k, v]) => [`delta_${k}`, v]))), { before, after, delta })
  }
})
