/**
 * The state a GRPO step hands to the next (the loop state): the policy's checkpoint (a folder
 * stored by content, or a remote engine's `tinker://` path), how many steps made it, and the
 * prompt sampler's state.
 */
import { Effect, Schema } from "effect"
import { Location } from "../src/dag/Location.ts"
import * as Stage from "../src/dag/Stage.ts"
import { Batch } from "../src/records/Batch.ts"
import { type PolicyCheckpoint, PolicyState, TrainState } from "../src/records/TrainState.ts"

/**
 * Step 0: the recipe's model. A local model folder is stored by content, so every later step
 * names it by digest, never by path (its Location keys the node by content: new weights at the
 * same path are a new key, the same weights anywhere the same). A remote engine's base model
 * keeps its name.
 */
export const initTrain = Stage.make({
  name: "init-train",
  version: "2",
  inputs: { start: Batch },
  params: Schema.Struct({ model: Schema.Union([Schema.Struct({ folder: Location }), Schema.Struct({ name: Schema.String })]) }),
  output: TrainState,
  run: ({ start }, { model }, ctx) =>
    Effect.map("folder" in model ? ctx.putTree(model.folder.$path) : Effect.succeed<PolicyCheckpoint>(model.name), (initial) => ({
      policy: { checkpoint: initial, step: 0, initial },
      batch: start
    }))
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
