/** The state a GRPO step hands to the next: the policy's checkpoint and the sampler state. */
import { Schema } from "effect"
import { Batch } from "./Batch.ts"

export const PolicyState = Schema.Struct({
  /** Checkpoint the engine loads before using the policy (`PolicyEngine.load`). */
  checkpoint: Schema.String,
  /** Optimizer steps taken since the initial model. */
  step: Schema.Int,
  /** The initial model (the reference of the KL term). */
  initial: Schema.String
})
export type PolicyState = typeof PolicyState.Type

export const TrainState = Schema.Struct({ policy: PolicyState, batch: Batch })
export type TrainState = typeof TrainState.Type
