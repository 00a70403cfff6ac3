/**
 * `sample-batch`: one training step's prompts, drawn from the strata by the length-stratified
 * sampler. The sampler state is this stage's output and the next step's input (the loop state),
 * so step k's batch depends only on (seed, strata, state k): a resumed run draws the same batches.
 */
import { Effect, Schema } from "effect"
import { draw, initial } from "../src/data/Sampler.ts"
import * as Stage from "../src/dag/Stage.ts"
import { Strata } from "../src/records/Strata.ts"
import { Batch } from "../src/records/Batch.ts"

/** The sampler state before step 0, as a node (the loop's initial state). */
export const samplerStart = Stage.make({
  name: "sampler-start",
  version: "1",
  inputs: { strata: Strata },
  output: Batch,
  run: ({ strata }) => Effect.succeed({ prompts: [], sampler: initial(strata.buckets.length) })
})

export const sampleBatch = Stage.make({
  name: "sample-batch",
  version: "1",
  inputs: { strata: Strata, previous: Batch },
  params: Schema.Struct({ seed: Schema.Int, groups_per_step: Schema.Int.check(Schema.isGreaterThan(0)) }),
  output: Batch,
  run: ({ strata, previous }, { seed, groups_per_step }, ctx) => {
    const { batch, next } = draw(strata.buckets, previous.sampler, { edges: strata.edges, weights: strata.weights, groupsPerStep: groups_per_step, seed })
    return Effect.as(ctx.metric({ step: previous.sampler.step, prompts: batch.length }), { prompts: batch, sampler: next })
  }
})
