/** `explain`: which key component changed between two runs, and where a changed input came from. */
import { createHash } from "node:crypto"
import { chmodSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Effect, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { ArtifactStore, Pipeline, Stage } from "polaris"
import * as Explain from "../src/dag/Explain.ts"
import { runOk, tempDir } from "./support/store.ts"

const Numbers = Schema.Array(Schema.Number)
const items = Stage.make({
  name: "items",
  version: "1",
  output: Numbers,
  params: Schema.Struct({ n: Schema.Number }),
  run: (_, { n }) => Effect.succeed(Array.from({ length: n }, (_, i) => i + 1))
})
const tag = Stage.make({
  name: "tag",
  version: "1",
  output: Schema.String,
  params: Schema.Struct({ label: Schema.String }),
  run: (_, { label }) => Effect.succeed(label)
})
const init = Stage.make({ name: "init", version: "1", output: Schema.Number, run: () => Effect.succeed(0) })
const judge = Stage.make({
  name: "judge",
  version: "1",
  inputs: { items: Numbers },
  output: Numbers,
  params: Schema.Struct({ salt: Schema.String }),
  run: ({ items }, { salt }) => Effect.succeed(items.map((x) => x * salt.length))
})
const update = Stage.make({
  name: "update",
  version: "1",
  inputs: { state: Schema.Number, scores: Numbers },
  output: Schema.Number,
  run: ({ state, scores }) => Effect.succeed(state + scores.reduce((a, b) => a + b, 0))
})

const pipeline = (n: number, salt: (k: number) => string) =>
  Pipeline.make("explained", (b) => {
    const xs = b.node(items, { id: "items", params: { n } })
    const final = b.loop("train", {
      steps: 2,
      init: b.node(init, { id: "init" }),
      body: (s, state, k) => {
        const scores = s.node(judge, { id: "judge", inputs: { items: xs }, params: { salt: salt(k) } })
        return s.node(update, { id: "update", inputs: { state, scores } })
      }
    })
    return { final, tag: b.node(tag, { id: "tag", params: { label: "x" } }) }
  })

const explain = (root: string, node: string, options: Explain.ExplainOptions = {}) =>
  Effect.runPromise(Explain.explain(ArtifactStore.pathsOf(root), node, options))

const short = (digest: string | undefined) => `${digest!.slice(0, 12)}…`

describe("explain", () => {
  it("names the changed param, the changed input and the node feeding it, and what was reused", async () => {
    const root = tempDir()
    const salt = (k: number) => `s${k + 3}`
    const first = await runOk(root, pipeline(3, salt), { runId: "run-1" })
    const second = await runOk(root, pipeline(4, salt), { runId: "run-2" })

    const changed = await explain(root, "items")
    expect(changed).toMatchObject({ node: "items", run: "run-2", against: "run-1", status: "executed", verdict: "changed" })
    expect(changed.key).toBe(second.nodes["items"]!.key)
    expect(changed.previousKey).toBe(first.nodes["items"]!.key)
    expect(changed.changes).toEqual([{ component: "params", before: '{"n":3}', after: '{"n":4}' }])
    expect(Explain.formatExplanation(changed)).toBe(`node items re-ran in run run-2 (previous: run-1):\n  params: {"n":3} -> {"n":4}`)

    const before = first.nodes["items"]!.object
    const after = second.nodes["items"]!.object
    const child = await explain(root, "train/step-001/judge")
    expect(child.changes).toEqual([{ component: "inputs.items", before, after, from: { node: "items", status: "executed" } }])
    expect(Explain.formatExplanation(child)).toBe(
      `node train/step-001/judge re-ran in run run-2 (previous: run-1):\n  inputs.items: ${short(before)} -> ${short(after)} (from node items, which re-ran)`
    )

    // Two changed inputs; the state comes from the step before, found by its output digest.
    const grandchild = await explain(root, "train/step-001/update")
    expect(grandchild.changes.map((c) => [c.component, c.from])).toEqual([
      ["inputs.scores", { node: "train/step-001/judge", status: "executed" }],
      ["inputs.state", { node: "train/step-000/update", status: "executed" }]
    ])

    // With the pipeline at hand its wiring names the feeding node.
    const wired = await explain(root, "train/step-001/update", { pipeline: pipeline(4, salt) })
    expect(wired.changes.map((c) => c.from?.node)).toEqual(["train/step-001/judge", "train/step-000/update"])

    const same = await explain(root, "tag")
    expect(same).toMatchObject({ run: "run-2", against: "run-1", status: "cached", verdict: "reused", changes: [] })
    expect(same.key).toBe(same.previousKey)
    expect(Explain.formatExplanation(same)).toBe(`node tag was cached in run run-2 (previous: run-1): same key ${short(same.key)}: reused`)
  })

  it("shows only the params keys that differ, and compares with any run asked for", async () => {
    const root = tempDir()
    await runOk(root, pipeline(3, (k) => `s${k + 3}`), { runId: "run-1" })
    await runOk(root, pipeline(4, (k) => `s${k + 3}`), { runId: "run-2" })
    await runOk(root, pipeline(4, (k) => (k === 1 ? "s5" : `s${k + 3}`)), { runId: "run-3" })

    const judged = await explain(root, "train/step-001/judge")
    expect(judged).toMatchObject({ run: "run-3", against: "run-2", verdict: "changed" })
    expect(Explain.formatExplanation(judged)).toBe(`node train/step-001/judge re-ran in run run-3 (previous: run-2):\n  params: {"salt":"s4"} -> {"salt":"s5"}`)

    // items was cached in run-3 under the key run-2 made; against run-1 its key differs.
    const old = await explain(root, "items", { run: "run-3", against: "run-1" })
    expect(old).toMatchObject({ run: "run-3", against: "run-1", status: "cached", verdict: "changed" })
    expect(Explain.formatExplanation(old)).toBe(
      `node items was cached in run run-3, under another key than in run run-1 (an earlier result was reused):\n  params: {"n":3} -> {"n":4}`
    )
    expect(await explain(root, "items", { run: "run-2" })).toMatchObject({ run: "run-2", against: "run-1", status: "executed" })
    expect(await explain(root, "items", { run: "run-1" })).toMatchObject({ against: undefined, verdict: "first", changes: [] })
  })

  it("a stage whose source file changed: the change is `source`", async () => {
    const root = tempDir()
    const file = join(root, "stage-module.ts")
    const edited = Stage.make({
      name: "edited",
      version: "1",
      source: file,
      inputs: { xs: Numbers },
      output: Numbers,
      run: ({ xs }) => Effect.succeed(xs.map((x) => x + 1))
    })
    const p = Pipeline.make("edit", (b) => ({ out: b.node(edited, { id: "edited", inputs: { xs: b.node(items, { id: "items", params: { n: 2 } }) } }) }))
    writeFileSync(file, "// version A\n")
    await runOk(root, p, { runId: "run-1" })
    writeFileSync(file, "// version B\n")
    await runOk(root, p, { runId: "run-2" })
    const sha = (text: string) => createHash("sha256").update(text).digest("hex")
    const e = await explain(root, "edited")
    expect(e.changes).toEqual([{ component: "source", before: sha("// version A\n"), after: sha("// version B\n") }])
    expect(Explain.formatExplanation(e)).toBe(
      `node edited re-ran in run run-2 (previous: run-1):\n  source: ${short(sha("// version A\n"))} -> ${short(sha("// version B\n"))} (the stage's source file changed)`
    )
  })

  it("same key, executed again: forced, or a corrupt object named from the run's events", async () => {
    const root = tempDir()
    const p = pipeline(3, (k) => `s${k}`)
    const first = await runOk(root, p, { runId: "run-1" })
    await runOk(root, p, { runId: "run-2", force: ["tag"] })
    const forced = await explain(root, "tag")
    expect(forced).toMatchObject({ run: "run-2", status: "executed", verdict: "re-executed", changes: [], notes: [] })
    expect(Explain.formatExplanation(forced)).toBe(
      `node tag re-ran in run run-2 (previous: run-1): same key ${short(forced.key)}; re-executed (forced, or its cached object was unusable)`
    )

    const digest = first.nodes["tag"]!.object!
    const path = ArtifactStore.objectPath(ArtifactStore.pathsOf(root), digest)
    chmodSync(path, 0o644)
    writeFileSync(path, `${readFileSync(path, "utf8")} `)
    await runOk(root, p, { runId: "run-3" })
    const corrupt = await explain(root, "tag")
    expect(corrupt).toMatchObject({ run: "run-3", against: "run-2", verdict: "re-executed", notes: [`its cached object ${short(digest)} was corrupt`] })
    expect(Explain.formatExplanation(corrupt)).toBe(
      `node tag re-ran in run run-3 (previous: run-2): same key ${short(corrupt.key)}; re-executed because its cached object ${short(digest)} was corrupt`
    )
  })

  it("a key whose index entry is gone: the key changed, the components are unknown", async () => {
    const root = tempDir()
    const first = await runOk(root, pipeline(3, (k) => `s${k}`), { runId: "run-1" })
    await runOk(root, pipeline(4, (k) => `s${k}`), { runId: "run-2" })
    const oldKey = first.nodes["items"]!.key!
    rmSync(ArtifactStore.nodeEntryPath(ArtifactStore.pathsOf(root), oldKey))
    const e = await explain(root, "items")
    expect(e).toMatchObject({ verdict: "unknown", changes: [], previousKey: oldKey })
    expect(Explain.formatExplanation(e)).toBe(
      `node items re-ran in run run-2 (previous: run-1): key ${short(oldKey)} -> ${short(e.key)}\n` +
        `  the index entry of key ${short(oldKey)} is gone (removed by cache gc?), so the changed components are unknown`
    )
  })

  it("fails on an unknown node, suggesting the ids that look like it", async () => {
    const root = tempDir()
    await runOk(root, pipeline(3, (k) => `s${k}`), { runId: "run-1" })
    const error = await Effect.runPromise(Effect.flip(Explain.explain(ArtifactStore.pathsOf(root), "judge", {})))
    expect(error._tag).toBe("StoreError")
    expect(error.message).toContain(`no run has a node "judge"; did you mean train/step-000/judge, train/step-001/judge?`)
    const noRun = await Effect.runPromise(Effect.flip(Explain.explain(ArtifactStore.pathsOf(root), "items", { run: "run-9" })))
    expect(noRun.message).toContain(`run "run-9" has no readable manifest`)
  })
})
