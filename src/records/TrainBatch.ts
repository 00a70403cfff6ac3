/** The datums of one GRPO update, Tinker-aligned, with the step's metrics. */
import { Schema } from "effect"

/** A Tinker-aligned datum (see PolicyEngine.ts), stored as plain arrays. */
export const DatumRecord = Schema.Struct({
  model_input: Schema.Array(Schema.Int),
  target_tokens: Schema.Array(Schema.Int),
  weights: Schema.optionalKey(Schema.Array(Schema.Number)),
  logprobs: Schema.optionalKey(Schema.Array(Schema.Number)),
  advantages: Schema.optionalKey(Schema.Array(Schema.Number))
})
export type DatumRecord = typeof DatumRecord.Type

export const TrainBatch = Schema.Struct({
  /** Datums of the `ppo` loss (rollouts; the reference when `on_policy`). */
  ppo: Schema.Array(DatumRecord),
  /** Datums of the `cross_entropy` loss (the reference when `luffy` or `sft`). */
  cross_entropy: Schema.Array(DatumRecord),
  /** The aggregation factor c_i of each `ppo` datum (the KL term is scaled like the loss). */
  scales: Schema.Array(Schema.Number),
  /** Where each `ppo` datum's completion starts (index into its per-token arrays). */
  starts: Schema.Array(Schema.Int),
  metrics: Schema.Record(Schema.String, Schema.NullOr(Schema.Number))
})
export type TrainBatch = typeof TrainBatch.Type
