/** A human reference story laid out as a reply, with its teacher-forced logprobs. */
import { Schema } from "effect"

export const Reference = Schema.Struct({
  prompt_id: Schema.String,
  prompt_tokens: Schema.Array(Schema.Int),
  tokens: Schema.Array(Schema.Int),
  /** Teacher-forced logprobs of `tokens` under the policy of the step. */
  logprobs: Schema.Array(Schema.Number),
  text: Schema.String,
  /** True when the story was longer than the cap and was cut. */
  truncated: Schema.Boolean
})
export type Reference = typeof Reference.Type
