/** Prompts in requested-length buckets: the sampler's input. */
import { Schema } from "effect"

export const Strata = Schema.Struct({
  edges: Schema.Array(Schema.Number),
  weights: Schema.Array(Schema.Number),
  names: Schema.Array(Schema.String),
  /** Prompt ids per bucket, sorted. */
  buckets: Schema.Array(Schema.Array(Schema.String)),
  outside: Schema.Number
})
export type Strata = typeof Strata.Type
