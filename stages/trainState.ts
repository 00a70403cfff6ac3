/**
 * The state a GRPO step hands to the next (the loop state): where the policy's weights and
 * optimizer state are (a checkpoint folder, or a `tinker://` path on a remote trainer), how many
 * steps made them, and the prompt sampler's state.
 */
import { Effect, Schema } from "effect"
import * as Stage from "../src/dag/Stage.ts"
import { Batch } from "../src/records/Batch.ts"
import { PolicyState, TrainState } from "../src/records/TrainState.ts"

/** Step 0: the recipe's model (its content digest is a param, so new weights at the same path are a new key). */
export const initTrain = Stage.make({
  name: "init-train",
  version: "1",
  inputs: { start: Batch },
  params: Schema.Struct({ model: Schema.String, digest: Schema.String }),
  output: TrainState,
  run: ({ start }, { model }) => Effect.succeed({ policy: { checkpoint: model, step: 0, initial: model }, batch: start })
})

/** The policy of a train state (a projection, so the stages that use it key on it alone). */
export const policyOf = Stage.make({
  name: "policy-of",
  version: "1",
  inputs: { state: TrainState },
  output: PolicyState,
  run: ({ state }) => Effect.succeed(state.policy)
})

/** The sampler state of a train state, as the `previous` batch of `sample-batch`. */
export const batchOf = Stage.make({
  name: "batch-of",
  version: "1",
  inputs: { state: TrainState },
  output: Batch,
  run: ({ state }) => Effect.succeed(state.batch)
})
