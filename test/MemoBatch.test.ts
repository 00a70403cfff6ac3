/**
 * memoBatch: requests memoized one by one, the missing requests computed in one call, in order;
 * equal keys are one item (a batch that names an item twice must not wait on its own lock).
 */
import { Effect, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { memoBatch, Pipeline, Stage } from "polaris"
import { runOk, tempDir } from "./support/store.ts"

const calls: Array<ReadonlyArray<string>> = []

const squares = Stage.make({
  name: "memo-batch-squares",
  version: "1",
  params: Schema.Struct({ keys: Schema.Array(Schema.String) }),
  output: Schema.Array(Schema.String),
  run: (_, { keys }, ctx) =>
    memoBatch(ctx, "item", keys.map((k) => ({ k })), Schema.String, (missing) =>
      Effect.sync(() => {
        calls.push(missing.map((r) => r.k))
        return missing.map((r) => `${r.k}!`)
      }))
})

const pipeline = (keys: ReadonlyArray<string>) => Pipeline.make("memo-batch", (b) => ({ out: b.node(squares, { id: "squares", params: { keys } }) }))

describe("memoBatch", () => {
  it("computes the missing items in one call, reuses stored ones, and handles a key named twice", async () => {
    const root = tempDir()
    calls.length = 0
    const first = await runOk(root, pipeline(["a", "b", "a", "c"]))
    expect(first.outputs).toEqual({ out: ["a!", "b!", "a!", "c!"] })
    expect(calls).toEqual([["a", "b", "c"]])
    // A new node (other params) that shares items: only the new one is computed.
    const second = await runOk(root, pipeline(["c", "d", "a"]))
    expect(second.outputs).toEqual({ out: ["c!", "d!", "a!"] })
    expect(calls).toEqual([["a", "b", "c"], ["d"]])
  })
})
