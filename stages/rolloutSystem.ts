/**
 * `rollout-system`: the groups of `rollout` from one of several engines (evaluating models
 * against each other): `system` names its engine in the PolicyEngines registry. `model` (the
 * policy section without secrets, local files by content) is a param so the node re-runs when
 * the model changes; each group's memo key carries the engine's fingerprint as its checkpoint.
 */
import { Effect, Schema } from "effect"
import * as Stage from "../src/dag/Stage.ts"
import { PolicyEngines } from "../src/engines/PolicyEngines.ts"
import { Group, SamplingSettings } from "../src/records/Group.ts"
import { PromptWithReference } from "../src/records/PromptWithReference.ts"
import { sampleGroups } from "./rollout.ts"

export const rolloutSystem = Stage.make({
  name: "rollout-system",
  version: "1",
  resource: "policy",
  inputs: { prompts: Schema.Array(PromptWithReference) },
  params: Schema.Struct({ system: Schema.String, model: Schema.Record(Schema.String, Schema.Unknown), group_size: Schema.Int, seed: Schema.Int, sampling: SamplingSettings }),
  output: Schema.Array(Group),
  run: ({ prompts }, { system, group_size, seed, sampling }, ctx) =>
    Effect.gen(function*() {
      const engine = yield* (yield* PolicyEngines).get(system)
      return yield* sampleGroups(engine, ctx, { prompts, checkpoint: engine.fingerprint, step: 0, group_size, seed, sampling })
    })
})
