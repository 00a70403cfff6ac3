/** The embedded model between pretraining segments, and its held-out evaluation. */
import { Schema } from "effect"
import { BlobRef } from "../dag/ArtifactStore.ts"
import { ModelConfig } from "../model/Transformer.ts"

export const ModelState = Schema.Struct({
  config: ModelConfig,
  weights: BlobRef,
  optimizer: Schema.NullOr(BlobRef),
  step: Schema.Int,
  tokens: Schema.Number
})
export type ModelState = typeof ModelState.Type

export const LmEvaluation = Schema.Struct({
  heldout_nll: Schema.Number,
  heldout_perplexity: Schema.Number,
  heldout_chat_perplexity: Schema.Number,
  unigram_perplexity: Schema.Number,
  heldout_tokens: Schema.Number
})
export type LmEvaluation = typeof LmEvaluation.Type
