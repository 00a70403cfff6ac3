/** One training step's prompts and the sampler state after drawing them (the loop state). */
import { Schema } from "effect"
import { SamplerState } from "../data/Sampler.ts"

export const Batch = Schema.Struct({
  /** Prompt ids of this step, `groups_per_step` of them. */
  prompts: Schema.Array(Schema.String),
  /** The sampler state after this step. */
  sampler: SamplerState
})
export type Batch = typeof Batch.Type
