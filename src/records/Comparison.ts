/** Pairwise comparisons of two systems' stories and the ratings made from them. */
import { Schema } from "effect"
import { Preference } from "../engines/judge/Judge.ts"
import { Unscorable } from "./Judgement.ts"

/** A verdict about systems (never positions): system a, system b, or a tie. */
export const SystemVerdict = Schema.Literals(["a", "b", "tie"])

/** One dual-position comparison of stories `sample` of systems `a` and `b` on one prompt. */
export const Comparison = Schema.Struct({
  prompt_id: Schema.String,
  /** The eval prompt's requested-length bucket (null for prompts without one). */
  bucket: Schema.NullOr(Schema.String),
  sample: Schema.Int,
  a: Schema.String,
  b: Schema.String,
  /** a's story shown first. */
  ab: Schema.NullOr(SystemVerdict),
  /** b's story shown first. */
  ba: Schema.NullOr(SystemVerdict),
  /** The judge's two answers, a-first then b-first (empty when unscorable). */
  preferences: Schema.Array(Preference),
  unscorable: Schema.NullOr(Unscorable)
})
export type Comparison = typeof Comparison.Type

/** A bootstrap 95% interval over prompts. */
export const Interval = Schema.Struct({ low: Schema.Number, high: Schema.Number })

/** A system's rating and its record against the baseline. */
export const SystemRating = Schema.Struct({
  name: Schema.String,
  /** Bradley-Terry on the Elo scale; the baseline is 1000 exactly. */
  rating: Schema.Number,
  rating_ci: Interval,
  /** Against the baseline (null for the baseline itself, or when the two never met). */
  vs_baseline: Schema.NullOr(Schema.Struct({ wins: Schema.Int, ties: Schema.Int, losses: Schema.Int, rate: Schema.Number, rate_ci: Interval }))
})
export type SystemRating = typeof SystemRating.Type

export const Ratings = Schema.Struct({
  baseline: Schema.String,
  /** Scored comparisons (each: both orders). */
  comparisons: Schema.Int,
  unscorable: Schema.Int,
  /** Share of comparisons whose two orders agree (null without any). */
  position_consistency: Schema.NullOr(Schema.Number),
  systems: Schema.Array(SystemRating),
  /** The same per requested-length bucket. */
  buckets: Schema.Record(Schema.String, Schema.Struct({ comparisons: Schema.Int, position_consistency: Schema.NullOr(Schema.Number), systems: Schema.Array(SystemRating) }))
})
export type Ratings = typeof Ratings.Type
