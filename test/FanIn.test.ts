/**
 * Fan-in inputs: an array input wired to a list of nodes gets their outputs in list order; the
 * key holds their digests in that order, so a changed element re-runs the node, an element that
 * re-ran to the same bytes does not (early cutoff), and a reordered list is another input. A
 * producer whose output does not fit the array's element schema fails at the junction, naming
 * the nodes.
 */
import { Effect, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { Pipeline, Stage } from "polaris"
import * as Dag from "../src/dag/Dag.ts"
import { runOk, runOn, tempDir } from "./support/store.ts"

const constant = Stage.make({ name: "constant", version: "1", params: Schema.Struct({ value: Schema.Number, salt: Schema.optionalKey(Schema.String) }), output: Schema.Number, run: (_, { value }) => Effect.succeed(value) })
const text = Stage.make({ name: "text", version: "1", output: Schema.String, run: () => Effect.succeed("not a number") })
let sums = 0
const concat = Stage.make({
  name: "concat",
  version: "1",
  inputs: { parts: Schema.Array(Schema.Number) },
  output: Schema.String,
  run: ({ parts }) => Effect.sync(() => (sums++, parts.join(",")))
})

const pipeline = (values: ReadonlyArray<number>, salt = "") =>
  Pipeline.make("fan-in", (b) => {
    const parts = values.map((value, i) => b.node(constant, { id: `part-${i}`, params: { value, salt } }))
    return { joined: b.node(concat, { id: "joined", inputs: { parts } }) }
  })

describe("fan-in inputs", () => {
  it("passes the outputs in list order and keys the node by their digests in that order", async () => {
    const root = tempDir()
    sums = 0
    const first = await runOk(root, pipeline([1, 2, 3]))
    expect(first.outputs.joined).toBe("1,2,3")
    // An element that re-runs to the same bytes: the fan-in node stays cached (early cutoff).
    const salted = await runOk(root, pipeline([1, 2, 3], "s"))
    expect(salted.nodes["part-0"]!.status).toBe("executed")
    expect(salted.nodes.joined).toEqual({ ...first.nodes.joined, status: "cached" })
    // A changed element, or the same elements in another order: a new key.
    const changed = await runOk(root, pipeline([1, 5, 3]))
    expect(changed.outputs.joined).toBe("1,5,3")
    const reordered = await runOk(root, pipeline([3, 2, 1]))
    expect(reordered.outputs.joined).toBe("3,2,1")
    expect(new Set([first, changed, reordered].map((r) => r.nodes.joined!.key)).size).toBe(3)
    expect(sums).toBe(3)
    // An empty list is an empty array.
    expect((await runOk(root, pipeline([]))).outputs.joined).toBe("")
  })

  it("checks each element against the array's element schema at the junction", async () => {
    const bad = Pipeline.make("fan-in-bad", (b) => {
      const parts = [b.node(constant, { id: "n", params: { value: 1 } }), b.node(text, { id: "t" }) as unknown as Pipeline.NodeRef<number>]
      return { joined: b.node(concat, { id: "joined", inputs: { parts } }) }
    })
    const exit = await runOn(tempDir(), bad)
    expect(exit._tag).toBe("Failure")
    expect(String(exit._tag === "Failure" ? exit.cause : "")).toContain(`input "parts" from nodes "n", "t" does not match its schema`)
  })

  it("shows every element in the DAG listing and as one edge each", () => {
    const p = pipeline([1, 2])
    expect(Dag.render(p, "text")).toContain("<- parts: [part-0, part-1]")
    expect(Dag.render(p, "dot")).toContain(`"part-1" -> "joined" [label="parts"];`)
  })
})
