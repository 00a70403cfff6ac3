/**
 * Held-out evaluation by requested length (ARCHITECTURE.md §8): `eval-prompts` lays the same
 * held-out premises out at each bucket's lengths, `eval-batch` picks them, the `rollout` and
 * `judge` stages write and score the stories (memoized as in training), `summarize-eval` reduces
 * one system's stories to quality (mean and per dimension), length ratio, S_l, truncation and
 * reward per bucket with bootstrap intervals over prompts, and `evaluation` gathers every
 * system's summary with the pairwise ratings (pairwise.ts) for the report.
 */
import { Effect, Schema } from "effect"
import { initial } from "../src/data/Sampler.ts"
import { sha256 } from "../src/dag/Canonical.ts"
import { bootstrapCI } from "../src/eval/Stats.ts"
import * as Stage from "../src/dag/Stage.ts"
import { PromptWithReference } from "../src/records/PromptWithReference.ts"
import { Judgement } from "../src/records/Judgement.ts"
import { Ratings } from "../src/records/Comparison.ts"
import { Group } from "../src/records/Group.ts"
import { Batch } from "../src/records/Batch.ts"
import { rolloutId } from "./stepCandidates.ts"
import { EvalSummary, Evaluation } from "../src/records/Evaluation.ts"

/**
 * `eval-prompts`: held-out prompts per requested-length bucket. Each bucket takes the first
 * `per_bucket` held-out prompts (by id) and asks for a length drawn in [min_words, max_words]
 * (seeded per prompt, rounded to 10): the same premises at in-distribution and at
 * out-of-distribution lengths (the paper's ID / near OOD / far OOD, scaled to the recipe).
 */
export const evalPrompts = Stage.make({
  name: "eval-prompts",
  version: "1",
  inputs: { prompts: Schema.Array(PromptWithReference) },
  params: Schema.Struct({
    buckets: Schema.Array(Schema.Struct({ name: Schema.String, min_words: Schema.Number, max_words: Schema.Number })),
    per_bucket: Schema.Int,
    seed: Schema.Int
  }),
  output: Schema.Array(PromptWithReference),
  run: ({ prompts }, { buckets, per_bucket, seed }) =>
    Effect.succeed(buckets.flatMap((b) =>
      [...prompts].sort((x, y) => x.id.localeCompare(y.id)).slice(0, per_bucket).map((p) => {
        const u = parseInt(sha256(`${seed}:${b.name}:${p.id}`).slice(0, 8), 16) / 2 ** 32
        const requested = Math.max(10, Math.round((b.min_words + u * (b.max_words - b.min_words)) / 10) * 10)
        return { ...p, id: `${p.id}@${b.name}`, requested_words: requested, bucket: b.name }
      })))
})

export const evalBatch = Stage.make({
  name: "eval-batch",
  version: "1",
  inputs: { prompts: Schema.Array(PromptWithReference) },
  params: Schema.Struct({ max_prompts: Schema.Int }),
  output: Batch,
  run: ({ prompts }, { max_prompts }) =>
    Effect.succeed({ prompts: prompts.map((p) => p.id).sort().slice(0, max_prompts), sampler: initial(0) })
})

const mean = (xs: ReadonlyArray<number>) => (xs.length === 0 ? null : xs.reduce((a, b) => a + b, 0) / xs.length)

/** Mean score per rubric dimension over these verdicts. */
const dimensionMeans = (verdicts: ReadonlyArray<typeof Judgement.Type["verdicts"][number]>) => {
  const ids = [...new Set(verdicts.flatMap((v) => Object.keys(v.scores)))]
  return Object.fromEntries(ids.map((d) => [d, mean(verdicts.flatMap((v) => (typeof v.scores[d] === "number" ? [v.scores[d] as number] : [])))]))
}

export const summarizeEval = Stage.make({
  name: "summarize-eval",
  version: "3",
  inputs: { groups: Schema.Array(Group), judged: Schema.Array(Judgement), prompts: Schema.Array(PromptWithReference) },
  output: EvalSummary,
  run: ({ groups, judged, prompts }, _p, ctx) => {
    const bucketOf = new Map(prompts.flatMap((p) => (p.bucket === undefined ? [] : [[p.id, p.bucket] as const])))
    const byId = new Map(judged.map((j) => [j.id, j]))
    const rows = groups.flatMap((g) => g.samples.map((s, i) => ({ g, s, j: byId.get(rolloutId(g.prompt_id, i))! })))
    // Intervals resample prompts (a prompt's samples stay together): the unit the paper varies.
    const ci = (xs: typeof rows, value: (x: (typeof rows)[number]) => number | null) => {
      const byPrompt = new Map<string, Array<number>>()
      for (const x of xs) {
        const v = value(x)
        if (v !== null) byPrompt.set(x.g.prompt_id, [...(byPrompt.get(x.g.prompt_id) ?? []), v])
      }
      const perPrompt = [...byPrompt.values()].map((vs) => vs.reduce((a, b) => a + b, 0) / vs.length)
      if (perPrompt.length === 0) return null
      const { low, high } = bootstrapCI(perPrompt, { seed: "eval", resamples: 1000 })
      return Number.isFinite(low) && Number.isFinite(high) ? { low, high } : null
    }
    const summary = (xs: typeof rows) => ({
      stories: xs.length,
      length_score_mean: mean(xs.map((x) => x.j.length_score)),
      reward_mean: mean(xs.flatMap((x) => (x.j.reward === null ? [] : [x.j.reward]))),
      quality_mean: mean(xs.flatMap((x) => (x.j.quality === null ? [] : [x.j.quality]))),
      length_ratio_mean: mean(xs.map((x) => x.j.words / x.g.requested_words)),
      truncated_frac: xs.length === 0 ? null : xs.filter((x) => x.s.stop_reason === "length").length / xs.length,
      length_score_ci: ci(xs, (x) => x.j.length_score),
      reward_ci: ci(xs, (x) => x.j.reward),
      quality_ci: ci(xs, (x) => x.j.quality),
      dimensions: dimensionMeans(xs.flatMap((x) => x.j.verdicts))
    })
    // Buckets: the eval prompts' own (ID / near OOD / far OOD), else hundreds of requested words.
    const nameOf = (x: (typeof rows)[number]) => {
      const named = bucketOf.get(x.g.prompt_id)
      if (named !== undefined) return named
      const lo = Math.floor(x.g.requested_words / 100) * 100
      return `${lo}-${lo + 100}`
    }
    const buckets: Record<string, ReturnType<typeof summary>> = {}
    for (const b of [...new Set(rows.map(nameOf))]) buckets[b] = summary(rows.filter((x) => nameOf(x) === b))
    const result: EvalSummary = {
      ...summary(rows),
      words_mean: mean(rows.map((x) => x.j.words)),
      unscorable: rows.filter((x) => x.j.unscorable !== null).length,
      buckets
    }
    return Effect.as(ctx.metric({ stories: result.stories, length_score_mean: result.length_score_mean, reward_mean: result.reward_mean, length_ratio_mean: result.length_ratio_mean }), result)
  }
})

/**
 * `evaluation`: the stage gathering the named systems' summaries (inputs named after the
 * systems, in order) and, with `ratings`, the pairwise ratings, into one Evaluation: the record
 * `polaris report` reads.
 */
export const collectEvaluation = (systems: ReadonlyArray<string>, options: { readonly ratings: boolean }) => {
  if (systems.includes("ratings")) throw new Error(`a system cannot be named "ratings"`)
  return Stage.make({
    name: "evaluation",
    version: "1",
    inputs: { ...Object.fromEntries(systems.map((s) => [s, EvalSummary])), ...(options.ratings ? { ratings: Ratings } : {}) } as Readonly<Record<string, typeof EvalSummary | typeof Ratings>>,
    params: Schema.Struct({ baseline: Schema.String }),
    output: Evaluation,
    run: (inputs, { baseline }, ctx) => {
      const result: Evaluation = {
        baseline,
        systems: systems.map((name) => ({ name, summary: inputs[name] as EvalSummary })),
        ratings: options.ratings ? inputs.ratings as Ratings : null
      }
      const base = result.systems.find((s) => s.name === baseline)?.summary
      return Effect.as(ctx.metric(Object.fromEntries(result.systems.flatMap(({ name, summary }) => [
        [`length_score_mean_${name}`, summary.length_score_mean],
        [`quality_mean_${name}`, summary.quality_mean],
        ...(base === undefined || name === baseline || summary.length_score_mean === null || base.length_score_mean === null
          ? [] : [[`delta_length_score_${name}`, summary.length_score_mean - base.length_score_mean]])
      ]))), result)
    }
  })
}
