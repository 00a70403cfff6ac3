/** The state a GRPO step hands to the next: the policy's checkpoint and the sampler state. */
import { Schema } from "effect"
import { TreeRef } from "../dag/Tree.ts"
import { Batch } from "./Batch.ts"

/**
 * Where a policy's weights are: a checkpoint folder stored in the artifact store by content (a
 * local engine's), or what a remote engine names it by (the `tinker://` path it returned, or the
 * base model's name). Never a local path: a store moved elsewhere resolves every checkpoint.
 */
export const PolicyCheckpoint = Schema.Union([TreeRef, Schema.String])
export type PolicyCheckpoint = typeof PolicyCheckpoint.Type

export const PolicyState = Schema.Struct({
  /** Checkpoint the engine loads before using the policy (`PolicyEngine.load`). */
  checkpoint: PolicyCheckpoint,
  /** Optimizer steps taken since the initial model. */
  step: Schema.Int,
  /** The initial model (the reference of the KL term). */
  initial: PolicyCheckpoint,
  /**
   * Where the sampler holds these weights when the engine's `publish` said (Tinker's
   * sampler_weights path), so sampling names them without loading anything into the trainer;
   * absent for engines that sample a checkpoint by loading it (the embedded one).
   */
  sampler: Schema.optionalKey(Schema.String)
})
export type PolicyState = typeof PolicyState.Type

export const TrainState = Schema.Struct({ policy: PolicyState, batch: Batch })
export type TrainState = typeof TrainState.Type
