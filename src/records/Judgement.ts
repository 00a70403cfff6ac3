/** Stories to judge and the judge's findings about them (a verdict, or why none). */
import { Schema } from "effect"
import { Verdict } from "../engines/judge/Judge.ts"

/** A story to judge: the prompt it answers and the length that prompt asked for. */
export const Candidate = Schema.Struct({
  id: Schema.String,
  prompt: Schema.String,
  text: Schema.String,
  requested_words: Schema.Int
})
export type Candidate = typeof Candidate.Type

/** Why a story has no score. */
export const Unscorable = Schema.Struct({ reason: Schema.String, message: Schema.String, calls: Schema.Number })

export const Judgement = Schema.Struct({
  id: Schema.String,
  /** Words after stripping thinking. */
  words: Schema.Int,
  /** LongWriter S_l, 0..100. */
  length_score: Schema.Number,
  /** Mean normalised quality over the verdicts (0..1); null when unscorable. */
  quality: Schema.NullOr(Schema.Number),
  /** Q_norm · L; null when unscorable. */
  reward: Schema.NullOr(Schema.Number),
  verdicts: Schema.Array(Verdict),
  unscorable: Schema.NullOr(Unscorable)
})
export type Judgement = typeof Judgement.Type
