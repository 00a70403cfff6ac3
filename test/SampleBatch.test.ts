/** The sampler as loop state: batches per step, the same after a resume, cached per step. */
import { Effect, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { Pipeline, Stage } from "polaris"
import { sampleBatch, samplerStart } from "../stages/sampleBatch.ts"
import { Strata } from "../src/records/Strata.ts"
import { runOk, tempDir } from "./support/store.ts"

const strata = Stage.make({
  name: "fixed-strata",
  version: "1",
  output: Strata,
  run: () =>
    Effect.succeed({
      edges: [0, 1000, 2000],
      weights: [1, 3],
      names: ["0-1000", "1000-2000"],
      buckets: [Array.from({ length: 10 }, (_, i) => `short-${i}`), Array.from({ length: 30 }, (_, i) => `long-${String(i).padStart(2, "0")}`)],
      outside: 0
    })
})

const collect = Stage.make({
  name: "collect",
  version: "1",
  inputs: { last: Schema.Struct({ prompts: Schema.Array(Schema.String), sampler: Schema.Unknown }) },
  output: Schema.Number,
  run: ({ last }) => Effect.succeed(last.prompts.length)
})

const training = (steps: number, seed = 5) =>
  Pipeline.make("sampling", (b) => {
    const s = b.node(strata, { id: "strata" })
    const last = b.loop("train", {
      steps,
      init: b.node(samplerStart, { id: "sampler", inputs: { strata: s } }),
      body: (step, previous) => step.node(sampleBatch, { id: "batch", inputs: { strata: s, previous }, params: { seed, groups_per_step: 4 } })
    })
    return { n: b.node(collect, { id: "collect", inputs: { last } }) }
  })

const batches = (result: { nodes: Record<string, { object?: string }> }) =>
  Object.keys(result.nodes).filter((id) => id.endsWith("/batch")).sort().map((id) => result.nodes[id]!.object)

describe("sample-batch", () => {
  it("draws one batch per step, and extending the run re-uses the earlier steps exactly", async () => {
    const root = tempDir()
    const five = await runOk(root, training(5))
    const eight = await runOk(root, training(8))
    expect(eight.executed).toBe(3 + 1) // three new steps, and the collector of the new last state
    expect(batches(eight).slice(0, 5)).toEqual(batches(five))
    // In a fresh store, the same 8 steps give byte-identical batches.
    const fresh = await runOk(tempDir(), training(8))
    expect(batches(fresh)).toEqual(batches(eight))
    // Another seed, other batches.
    const other = await runOk(tempDir(), training(8, 6))
    expect(batches(other)).not.toEqual(batches(eight))
  })
})
