/** A prompt's rollout group (the samples the policy wrote for it) and the sampling settings. */
import { Schema } from "effect"

export const Sample = Schema.Struct({
  tokens: Schema.Array(Schema.Int),
  logprobs: Schema.Array(Schema.Number),
  text: Schema.String,
  stop_reason: Schema.Literals(["stop", "length"])
})
export type Sample = typeof Sample.Type

/** What an engine returned for one sampling request: its n sequences (memoized as they are). */
export const Sequences = Schema.Array(Schema.Struct({
  tokens: Schema.Array(Schema.Int),
  logprobs: Schema.Array(Schema.Number),
  stop_reason: Schema.Literals(["stop", "length"])
}))

export const Group = Schema.Struct({
  prompt_id: Schema.String,
  /** The prompt as the policy and the judge read it. */
  prompt: Schema.String,
  requested_words: Schema.Int,
  prompt_tokens: Schema.Array(Schema.Int),
  samples: Schema.Array(Sample)
})
export type Group = typeof Group.Type

export const SamplingSettings = Schema.Struct({
  temperature: Schema.Number,
  top_p: Schema.Number,
  top_k: Schema.Int,
  repetition_penalty: Schema.Number,
  presence_penalty: Schema.Number,
  /** Cap on new tokens; a prompt's own cap is min(this, ceil(requested_words × tokens_per_word)). */
  max_tokens: Schema.Int,
  tokens_per_word: Schema.Number,
  /** The chat template's thinking mode (Qwen3-style `enable_thinking`); the trace is stripped before judging. */
  thinking: Schema.Boolean
})
export type SamplingSettings = typeof SamplingSettings.Type
