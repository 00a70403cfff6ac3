/** A system's evaluation summary by requested-length bucket, and an evaluation of several systems. */
import { Schema } from "effect"
import { Interval, Ratings } from "./Comparison.ts"

/** A bootstrap 95% interval over prompts (null without data). */
const CI = Schema.NullOr(Interval)

/** Mean score per rubric dimension (null where no verdict scored it). */
const Dimensions = Schema.Record(Schema.String, Schema.NullOr(Schema.Number))

const BucketSummary = Schema.Struct({
  stories: Schema.Int,
  length_score_mean: Schema.NullOr(Schema.Number),
  reward_mean: Schema.NullOr(Schema.Number),
  quality_mean: Schema.NullOr(Schema.Number),
  length_ratio_mean: Schema.NullOr(Schema.Number),
  truncated_frac: Schema.NullOr(Schema.Number),
  length_score_ci: CI,
  reward_ci: CI,
  quality_ci: CI,
  dimensions: Dimensions
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
  length_score_ci: CI,
  reward_ci: CI,
  quality_ci: CI,
  /** Mean score per rubric dimension over every verdict (null where no verdict scored it). */
  dimensions: Dimensions,
  /** Per requested-length bucket (the eval prompts' own, else hundreds of words). */
  buckets: Schema.Record(Schema.String, BucketSummary)
})
export type EvalSummary = typeof EvalSummary.Type

/** What an evaluation found: each system's summary, and the pairwise ratings when judged. */
export const Evaluation = Schema.Struct({
  baseline: Schema.String,
  systems: Schema.Array(Schema.Struct({ name: Schema.String, summary: EvalSummary })),
  ratings: Schema.NullOr(Ratings)
})
export type Evaluation = typeof Evaluation.Type
