/**
 * `explain`: which key component changed between two runs, where a changed input came from, and
 * which memo items a node recomputed or reused and which components of their keys changed.
 */
import { createHash } from "node:crypto"
import { chmodSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Context, Effect, Layer, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { ArtifactStore, CacheKey, Executor, Pipeline, Stage } from "polaris"
import * as Explain from "../src/dag/Explain.ts"
import { fingerprintStage } from "../src/dag/Fingerprint.ts"
import { allFiles, runOk, tempDir } from "./support/store.ts"

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
    writeFileSync(file, 'export const variant = "A"\n')
    const before = fingerprintStage(file, new Map())
    await runOk(root, p, { runId: "run-1" })
    writeFileSync(file, 'export const variant = "B"\n')
    const after = fingerprintStage(file, new Map())
    await runOk(root, p, { runId: "run-2" })
    const e = await explain(root, "edited")
    expect(before).not.toBe(after)
    expect(e.changes).toEqual([{ component: "source", before, after }])
    expect(Explain.formatExplanation(e)).toBe(
      `node edited re-ran in run run-2 (previous: run-1):\n  source: ${short(before)} -> ${short(after)} (the code of the stage's module, a module it imports, or a value library's version changed)`
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

// ---------------------------------------------------------------------------------------------
// memo items

/** sha256 of a canonical JSON text, cut as CacheKey.keyFields cuts it (computed independently). */
const d16 = (json: string) => createHash("sha256").update(json).digest("hex").slice(0, 16)

class Scorer extends Context.Service<Scorer, { readonly fingerprint: string }>()("test/Scorer") {}

/** Texts whose verdict the stage body computed (not reused), in order. */
const computed: Array<string> = []

/** One memoized verdict per text, keyed `{ text, settings: { temperature } }`, and a summary keyed by the list. */
const scoreStories = Stage.make({
  name: "score-stories",
  version: "1",
  engines: [Scorer],
  output: Numbers,
  params: Schema.Struct({ texts: Schema.Array(Schema.String), temperature: Schema.Number }),
  run: (_, { temperature, texts }, ctx) =>
    Effect.gen(function*() {
      const verdicts = yield* Effect.forEach(texts, (text) =>
        ctx.memo("verdict", { text, settings: { temperature } }, Schema.Number, Effect.sync(() => {
          computed.push(text)
          return text.length * temperature
        }), { persistIf: (score) => score > 0 }))
      const summary = yield* ctx.memo("summary", texts, Schema.Number, Effect.sync(() => texts.length))
      return [...verdicts, summary]
    })
})

const runScoring = (root: string, runId: string, texts: ReadonlyArray<string>, temperature: number, options: { fingerprint?: string; force?: Array<string> } = {}) =>
  Effect.runPromise(
    Executor.run(Pipeline.make("scoring", (b) => ({ scores: b.node(scoreStories, { id: "score", params: { texts, temperature } }) })), {
      runId,
      ...(options.force ? { force: options.force } : {})
    }).pipe(Effect.provide(Layer.succeed(Scorer, { fingerprint: options.fingerprint ?? "scorer@1" })), Effect.provide(ArtifactStore.layer(root)))
  )

const engines = (fingerprint = "scorer@1") => ({ "test/Scorer": fingerprint })
const verdictKey = (text: string, temperature: number, fingerprint?: string) =>
  CacheKey.memoKey("score-stories", "1", "verdict", { text, settings: { temperature } }, engines(fingerprint))
const summaryKey = (texts: ReadonlyArray<string>, fingerprint?: string) => CacheKey.memoKey("score-stories", "1", "summary", texts, engines(fingerprint))

describe("explain: memo items", () => {
  it("keyFields: plain objects flattened to dotted paths two levels deep, anything else hashed whole", () => {
    expect(CacheKey.keyFields({ text: "Once.", settings: { temperature: 0.7, top: { p: 0.9 } }, tags: ["a", 1], gone: undefined, empty: {} })).toEqual({
      "key.empty": d16("{}"),
      "key.settings.temperature": d16("0.7"),
      "key.settings.top": d16(`{"p":0.9}`),
      "key.tags": d16(`["a",1]`),
      "key.text": d16(`"Once."`)
    })
    expect(CacheKey.keyFields("Once.")).toEqual({ key: d16(`"Once."`) })
    expect(CacheKey.keyFields([1, 2])).toEqual({ key: d16("[1,2]") })
    expect(CacheKey.keyFields({})).toEqual({ key: d16("{}") })
    expect(CacheKey.keyFields({ a: { b: { c: 1 } } }, 1)).toEqual({ "key.a": d16(`{"b":{"c":1}}`) })
    // Key order and -0 do not matter, as in the key itself.
    expect(CacheKey.keyFields({ b: -0, a: "x" })).toEqual(CacheKey.keyFields({ a: "x", b: 0 }))

    const before = CacheKey.memoComponents("judge", "1", "verdict", { text: "a", settings: { temperature: 0.5 } }, { J: "j@1" })
    expect(before).toEqual({
      namespace: "verdict",
      stage: "judge",
      version: "1",
      engines: { J: "j@1" },
      key: { "key.settings.temperature": d16("0.5"), "key.text": d16(`"a"`) }
    })
    const after = CacheKey.memoComponents("judge", "2", "verdict", { text: "b", settings: { temperature: 0.5 }, n: 1 }, { J: "j@2" })
    expect(CacheKey.memoDiff(before, after)).toEqual([
      { component: "version", before: "1", after: "2" },
      { component: "engines.J", before: "j@1", after: "j@2" },
      { component: "key.n", before: undefined, after: d16("1") },
      { component: "key.text", before: d16(`"a"`), after: d16(`"b"`) }
    ])
    expect(CacheKey.memoDiff(before, before)).toEqual([])
  })

  it("names the recomputed items and the changed part of their keys; reused items are counted", async () => {
    const root = tempDir()
    const texts = ["Once.", "Twice.", "Thrice."]
    computed.length = 0
    await runScoring(root, "run-1", texts, 0.5)
    const first = await explain(root, "score")
    expect(first).toMatchObject({ verdict: "first" })
    expect(first.memo).toEqual([
      { namespace: "summary", recomputed: [{ key: summaryKey(texts), stored: true, reason: "new", changes: [] }], reused: [] },
      { namespace: "verdict", recomputed: texts.map((t) => ({ key: verdictKey(t, 0.5), stored: true, reason: "new", changes: [] })), reused: [] }
    ])
    expect(Explain.formatExplanation(first)).toBe(
      `node score was executed in run run-1; no earlier run recorded a key for it: nothing to compare\n` +
        `  memo items:\n    summary: 1 recomputed (new ×1), 0 reused\n    verdict: 3 recomputed (new ×3), 0 reused`
    )

    // Cached: no memo item was touched, and the text is the node-level one alone.
    await runScoring(root, "run-2", texts, 0.5)
    const cached = await explain(root, "score")
    expect(cached).toMatchObject({ run: "run-2", verdict: "reused", memo: [] })
    expect(Explain.formatExplanation(cached)).toBe(`node score was cached in run run-2 (previous: run-1): same key ${short(cached.key)}: reused`)

    // One text changed: compared with run-2, where the node was cached (its index entry lists the
    // items). Every earlier verdict differs from the new one in key.text alone; the one the run
    // did not reuse is the one it replaced.
    computed.length = 0
    const edited = ["Once.", "Twice.", "Thrice!"]
    await runScoring(root, "run-3", edited, 0.5)
    expect(computed).toEqual(["Thrice!"])
    const one = await explain(root, "score")
    expect(one).toMatchObject({ run: "run-3", against: "run-2", verdict: "changed" })
    expect(one.memo).toEqual([
      {
        namespace: "summary",
        recomputed: [{
          key: summaryKey(edited),
          stored: true,
          reason: "changed",
          previous: summaryKey(texts),
          changes: [{ component: "key", before: d16(JSON.stringify(texts)), after: d16(JSON.stringify(edited)) }]
        }],
        reused: []
      },
      {
        namespace: "verdict",
        recomputed: [{
          key: verdictKey("Thrice!", 0.5),
          stored: true,
          reason: "changed",
          previous: verdictKey("Thrice.", 0.5),
          changes: [{ component: "key.text", before: d16(`"Thrice."`), after: d16(`"Thrice!"`) }]
        }],
        reused: [verdictKey("Once.", 0.5), verdictKey("Twice.", 0.5)]
      }
    ])
    expect(Explain.formatExplanation(one)).toBe(
      `node score re-ran in run run-3 (previous: run-2):\n` +
        `  params: {"texts":["Once.","Twice.","Thrice."]} -> {"texts":["Once.","Twice.","Thrice!"]}\n` +
        `  memo items:\n` +
        `    summary: 1 recomputed (key changed ×1), 0 reused\n` +
        `    verdict: 1 recomputed (key.text changed ×1), 2 reused`
    )

    // The temperature changed: every verdict recomputed, each compared with its own earlier item
    // (from run-3's log); the summary, keyed by the texts alone, reused.
    computed.length = 0
    await runScoring(root, "run-4", edited, 0.7)
    expect(computed).toEqual(edited)
    const all = await explain(root, "score")
    expect(all).toMatchObject({ run: "run-4", against: "run-3" })
    expect(all.memo).toEqual([
      { namespace: "summary", recomputed: [], reused: [summaryKey(edited)] },
      {
        namespace: "verdict",
        recomputed: edited.map((t) => ({
          key: verdictKey(t, 0.7),
          stored: true,
          reason: "changed",
          previous: verdictKey(t, 0.5),
          changes: [{ component: "key.settings.temperature", before: d16("0.5"), after: d16("0.7") }]
        })),
        reused: []
      }
    ])
    expect(Explain.formatExplanation(all)).toBe(
      `node score re-ran in run run-4 (previous: run-3):\n` +
        `  params: {"temperature":0.5} -> {"temperature":0.7}\n` +
        `  memo items:\n` +
        `    summary: 0 recomputed, 1 reused\n` +
        `    verdict: 3 recomputed (key.settings.temperature changed ×3), 0 reused`
    )
  })

  it("an engine's fingerprint change is `engines.<key>` for the node and for each item", async () => {
    const root = tempDir()
    const texts = ["Once.", "Twice."]
    await runScoring(root, "run-1", texts, 0.5)
    await runScoring(root, "run-2", texts, 0.5, { fingerprint: "scorer@2" })
    const e = await explain(root, "score")
    const change = [{ component: "engines.test/Scorer", before: "scorer@1", after: "scorer@2" }]
    expect(e.changes).toEqual(change)
    expect(e.memo).toEqual([
      { namespace: "summary", recomputed: [{ key: summaryKey(texts, "scorer@2"), stored: true, reason: "changed", previous: summaryKey(texts), changes: change }], reused: [] },
      {
        namespace: "verdict",
        recomputed: texts.map((t) => ({ key: verdictKey(t, 0.5, "scorer@2"), stored: true, reason: "changed", previous: verdictKey(t, 0.5), changes: change })),
        reused: []
      }
    ])
    expect(Explain.formatExplanation(e)).toBe(
      `node score re-ran in run run-2 (previous: run-1):\n` +
        `  engines.test/Scorer: scorer@1 -> scorer@2\n` +
        `  memo items:\n` +
        `    summary: 1 recomputed (engines.test/Scorer changed ×1), 0 reused\n` +
        `    verdict: 2 recomputed (engines.test/Scorer changed ×2), 0 reused`
    )
  })

  it("an item not stored (persistIf) is compared by the components its event carries, and recomputed under the same key", async () => {
    const root = tempDir()
    const texts = ["", "Once."] // the empty text scores 0: not stored
    await runScoring(root, "run-1", texts, 0.5)
    await runScoring(root, "run-2", texts, 0.7)
    const changed = await explain(root, "score")
    expect(changed.memo.find((m) => m.namespace === "verdict")).toEqual({
      namespace: "verdict",
      recomputed: texts.map((t) => ({
        key: verdictKey(t, 0.7),
        stored: t !== "",
        reason: "changed",
        previous: verdictKey(t, 0.5),
        changes: [{ component: "key.settings.temperature", before: d16("0.5"), after: d16("0.7") }]
      })),
      reused: []
    })
    expect(Explain.formatExplanation(changed).split("\n").at(-1)).toBe(`    verdict: 2 recomputed (key.settings.temperature changed ×2), 0 reused, 1 not stored`)

    computed.length = 0
    await runScoring(root, "run-3", texts, 0.7, { force: ["score"] })
    expect(computed).toEqual([""])
    const again = await explain(root, "score")
    expect(again).toMatchObject({ run: "run-3", against: "run-2", verdict: "re-executed" })
    expect(again.memo).toEqual([
      { namespace: "summary", recomputed: [], reused: [summaryKey(texts)] },
      { namespace: "verdict", recomputed: [{ key: verdictKey("", 0.7), stored: false, reason: "same-key", changes: [] }], reused: [verdictKey("Once.", 0.7)] }
    ])
    expect(Explain.formatExplanation(again)).toBe(
      `node score re-ran in run run-3 (previous: run-2): same key ${short(again.key)}; re-executed (forced, or its cached object was unusable)\n` +
        `  memo items:\n` +
        `    summary: 0 recomputed, 1 reused\n` +
        `    verdict: 1 recomputed (same key ×1), 1 reused, 1 not stored`
    )
  })

  it("memo entries written without components (older versions) are still reused; what changed is unknown", async () => {
    const root = tempDir()
    const texts = ["Once.", "Twice.", "Thrice."]
    await runScoring(root, "run-1", texts, 0.5)
    const paths = ArtifactStore.pathsOf(root)
    const files = allFiles(paths.memo)
    expect(files).toHaveLength(4)
    for (const file of files) {
      const { components, ...old } = JSON.parse(readFileSync(file, "utf8"))
      expect(components).toBeDefined()
      chmodSync(file, 0o644)
      writeFileSync(file, JSON.stringify(old))
    }
    const oldEntry = await Effect.runPromise(ArtifactStore.make(root).readMemo(verdictKey("Twice.", 0.5)))
    expect(oldEntry).toEqual({ key: verdictKey("Twice.", 0.5), object: expect.any(String), createdAt: expect.any(String) })

    computed.length = 0
    const edited = ["Once!", "Twice.", "Thrice."]
    await runScoring(root, "run-2", edited, 0.5)
    expect(computed).toEqual(["Once!"])
    const e = await explain(root, "score")
    expect(e.memo).toEqual([
      { namespace: "summary", recomputed: [{ key: summaryKey(edited), stored: true, reason: "unknown", changes: [] }], reused: [] },
      {
        namespace: "verdict",
        recomputed: [{ key: verdictKey("Once!", 0.5), stored: true, reason: "unknown", changes: [] }],
        reused: [verdictKey("Twice.", 0.5), verdictKey("Thrice.", 0.5)]
      }
    ])
    expect(Explain.formatExplanation(e).split("\n").slice(-3)).toEqual([
      "  memo items:",
      "    summary: 1 recomputed (components unknown ×1), 0 reused",
      "    verdict: 1 recomputed (components unknown ×1), 2 reused"
    ])
  })
})
