/** A flipped byte in a stored object is detected, reported, recomputed, and the run succeeds. */
import { chmodSync, readFileSync, writeFileSync } from "node:fs"
import { Effect, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { ArtifactStore, Pipeline, RunLog, Stage } from "polaris"
import { runOk, tempDir } from "./support/store.ts"

let bodies = 0
const make = Stage.make({
  name: "make",
  version: "1",
  output: Schema.Array(Schema.String),
  run: () => Effect.sync(() => (bodies++, ["alpha", "beta", "gamma"]))
})
const upper = Stage.make({
  name: "upper",
  version: "1",
  inputs: { words: Schema.Array(Schema.String) },
  output: Schema.Array(Schema.String),
  run: ({ words }) => Effect.sync(() => (bodies++, words.map((w) => w.toUpperCase())))
})
const pipeline = Pipeline.make("corrupt", (b) => {
  const words = b.node(make, { id: "make" })
  return { out: b.node(upper, { id: "upper", inputs: { words } }) }
})

const flipByte = (path: string, at: number) => {
  chmodSync(path, 0o644)
  const bytes = readFileSync(path)
  bytes[at] = bytes[at]! ^ 0xff
  writeFileSync(path, bytes)
}

describe("corruption", () => {
  it("detects a flipped byte, recomputes the node, and succeeds with the right output", async () => {
    const root = tempDir()
    const first = await runOk(root, pipeline)
    const digest = first.nodes["make"]!.object!
    flipByte(ArtifactStore.objectPath(ArtifactStore.pathsOf(root), digest), 3)

    bodies = 0
    const second = await runOk(root, pipeline)
    expect(second.outputs).toEqual({ out: ["ALPHA", "BETA", "GAMMA"] })
    expect(second.nodes["make"]!.status).toBe("executed")
    expect(second.nodes["make"]!.object).toBe(digest)
    // Same bytes again: `upper` is cut off and stays cached.
    expect(second.nodes["upper"]!.status).toBe("cached")
    expect(bodies).toBe(1)

    const events = await RunLog.readJsonl(`${second.dir}/events.jsonl`)
    const corrupt = events.filter((e) => e.type === "corrupt_object")
    expect(corrupt).toHaveLength(1)
    expect(corrupt[0]!.object).toBe(digest)
    // The bad copy is kept aside for inspection, the good one is back in place.
    const restored = readFileSync(ArtifactStore.objectPath(ArtifactStore.pathsOf(root), digest))
    expect(restored.toString()).toBe('["alpha","beta","gamma"]')
  })

  it("treats a truncated object (a torn non-atomic write) like any corruption", async () => {
    const root = tempDir()
    const first = await runOk(root, pipeline)
    const path = ArtifactStore.objectPath(ArtifactStore.pathsOf(root), first.nodes["upper"]!.object!)
    chmodSync(path, 0o644)
    writeFileSync(path, readFileSync(path).subarray(0, 5))
    const second = await runOk(root, pipeline)
    expect(second.nodes["upper"]!.status).toBe("executed")
    expect(second.outputs).toEqual({ out: ["ALPHA", "BETA", "GAMMA"] })
  })

  it("ignores an unreadable index entry and recomputes", async () => {
    const root = tempDir()
    const first = await runOk(root, pipeline)
    const entry = ArtifactStore.nodeEntryPath(ArtifactStore.pathsOf(root), first.nodes["upper"]!.key!)
    writeFileSync(entry, '{"key": "trunc')
    const second = await runOk(root, pipeline)
    expect(second.nodes["upper"]!.status).toBe("executed")
    expect(second.outputs).toEqual({ out: ["ALPHA", "BETA", "GAMMA"] })
  })
})
