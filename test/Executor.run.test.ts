/** Scheduling limits, memo semantics, loops, run records and stale locks. */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Deferred, Effect, Layer, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { ArtifactStore, Executor, Pipeline, Retry, RunLog, Stage } from "polaris"
import { runOk, runOn, tempDir } from "./support/store.ts"

/** Records how many bodies of each resource class run at once. */
const gauge = () => {
  const inFlight = new Map<string, number>()
  const peak = new Map<string, number>()
  const enter = (r: string) => {
    const n = (inFlight.get(r) ?? 0) + 1
    inFlight.set(r, n)
    peak.set(r, Math.max(peak.get(r) ?? 0, n))
  }
  const leave = (r: string) => inFlight.set(r, (inFlight.get(r) ?? 1) - 1)
  return { peak, timed: (r: string) => Effect.acquireUseRelease(Effect.sync(() => enter(r)), () => Effect.sleep(20), () => Effect.sync(() => leave(r))) }
}

describe("scheduling", () => {
  it("runs independent nodes in parallel within each resource class's limit", async () => {
    const g = gauge()
    const work = (resource: string) =>
      Stage.make({ name: `work-${resource}`, version: "1", resource, output: Schema.Number, params: Schema.Struct({ i: Schema.Number }), run: (_, { i }) => Effect.as(g.timed(resource), i) })
    const judge = work("judge")
    const policy = work("policy")
    const pipeline = Pipeline.make("limits", (b) => {
      const out: Record<string, Pipeline.NodeRef<number>> = {}
      for (let i = 0; i < 12; i++) out[`j${i}`] = b.node(judge, { id: `judge-${i}`, params: { i } })
      for (let i = 0; i < 4; i++) out[`p${i}`] = b.node(policy, { id: `update-${i}`, params: { i } })
      return out
    })
    const result = await runOk(tempDir(), pipeline, { concurrency: { judge: 3 } })
    expect(result.executed).toBe(16)
    expect(g.peak.get("judge")).toBe(3)
    expect(g.peak.get("policy")).toBe(1)
  })
})

describe("memo", () => {
  const Item = Schema.Struct({ n: Schema.Number, ok: Schema.Boolean })
  const calls: Array<number> = []
  const flaky = new Set<number>()
  const scoreAll = Stage.make({
    name: "score-all",
    version: "1",
    output: Schema.Array(Item),
    params: Schema.Struct({ items: Schema.Array(Schema.Number) }),
    run: ({}, { items }, ctx) =>
      Effect.forEach(items, (n) =>
        ctx.memo("score", n, Item, Effect.suspend(() => {
          calls.push(n)
          if (flaky.has(n)) return Effect.fail(new Retry.PermanentError({ message: `item ${n} failed` }))
          return Effect.succeed({ n, ok: n % 5 !== 0 })
        }), { persistIf: (v) => v.ok }))
  })
  const pipeline = (items: ReadonlyArray<number>) => Pipeline.make("memo", (b) => ({ out: b.node(scoreAll, { id: "score", params: { items } }) }))

  it("never stores a failure, nor a value persistIf rejects, and reuses items across nodes", async () => {
    const root = tempDir()
    flaky.add(3)
    calls.length = 0
    const failed = await runOn(root, pipeline([1, 2, 3, 4]))
    expect(failed._tag).toBe("Failure")
    flaky.clear()
    calls.length = 0
    await runOk(root, pipeline([1, 2, 3, 4]))
    // Items run in order: 1 and 2 were stored, 3 failed (not stored), 4 never started.
    expect(calls).toEqual([3, 4])
    calls.length = 0
    // A different node (other params) asks for 1..5: only 5 is new; 5 is rejected by persistIf...
    await runOk(root, pipeline([1, 2, 3, 4, 5]))
    expect(calls).toEqual([5])
    calls.length = 0
    // ...so it is asked again next time, while 10 joins it.
    await runOk(root, pipeline([5, 10, 1]))
    expect(calls).toEqual([5, 10])
  })
})

describe("durable writes", () => {
  it("a dependent runs while its input is still being stored, and is indexed only after it", async () => {
    const root = tempDir()
    const store = ArtifactStore.make(root)
    // The first node's index entry is held back until the second node's body has run: an
    // executor that waits for an input's durable write before starting its dependents never
    // opens the gate (the wait gives up after a while, and the order below then shows it).
    const gate = Deferred.makeUnsafe<void>()
    const order: Array<string> = []
    let first = true
    const held: ArtifactStore.ArtifactStore["Service"] = {
      ...store,
      writeNode: (entry) =>
        Effect.suspend(() => {
          const wait = first ? Deferred.await(gate).pipe(Effect.timeout("5 seconds"), Effect.ignore) : Effect.void
          first = false
          return Effect.andThen(wait, Effect.andThen(store.writeNode(entry), Effect.sync(() => order.push(`indexed ${entry.key}`))))
        })
    }
    const a = Stage.make({ name: "a", version: "1", output: Schema.Number, run: () => Effect.succeed(2) })
    const b = Stage.make({
      name: "b",
      version: "1",
      inputs: { x: Schema.Number },
      output: Schema.Number,
      run: ({ x }) => Effect.andThen(Effect.sync(() => order.push("b ran")), Effect.as(Deferred.succeed(gate, undefined), x * 3))
    })
    const pipeline = Pipeline.make("durable", (p) => {
      const x = p.node(a, { id: "a" })
      return { y: p.node(b, { id: "b", inputs: { x } }) }
    })
    const result = await Effect.runPromise(Executor.run(pipeline).pipe(Effect.provide(Layer.succeed(ArtifactStore.ArtifactStore, held))))
    expect(result.outputs.y).toBe(6)
    expect(order).toEqual(["b ran", `indexed ${result.nodes.a!.key}`, `indexed ${result.nodes.b!.key}`])
    expect(Object.keys(result.nodes)).toEqual(["a", "b"])
    // The next run finds both indexed.
    expect((await runOk(root, pipeline)).cached).toBe(2)
  })
})

describe("loops", () => {
  const State = Schema.Struct({ step: Schema.Number, value: Schema.Number })
  const init = Stage.make({ name: "init", version: "1", output: State, run: () => Effect.succeed({ step: 0, value: 1 }) })
  const step = Stage.make({
    name: "step",
    version: "1",
    inputs: { state: State },
    output: State,
    params: Schema.Struct({ lr: Schema.Number }),
    run: ({ state }, { lr }, ctx) =>
      Effect.as(ctx.metric({ step: state.step + 1, value: state.value * lr }), { step: state.step + 1, value: state.value * lr })
  })
  const training = (steps: number, lr: number) =>
    Pipeline.make("train", (b) => ({
      final: b.loop("train", { steps, init: b.node(init, { id: "init" }), body: (s, state) => s.node(step, { id: "update", inputs: { state }, params: { lr } }) })
    }))

  it("unrolls one sub-DAG per step, carrying state; more steps reuse the earlier ones", async () => {
    const root = tempDir()
    const three = await runOk(root, training(3, 2))
    expect(three.outputs.final).toEqual({ step: 3, value: 8 })
    expect(Object.keys(three.nodes)).toEqual(["init", "train/step-000/update", "train/step-001/update", "train/step-002/update"])
    const five = await runOk(root, training(5, 2))
    expect(five.outputs.final).toEqual({ step: 5, value: 32 })
    expect(five.executed).toBe(2)
    expect(five.cached).toBe(4)
  })

  it("writes the run record: frozen config, manifest, events, and metrics replayed for cached steps", async () => {
    const root = tempDir()
    await runOk(root, training(2, 3))
    const result = await runOk(root, training(3, 3), { config: { grpo: { steps: 3, lr: 3 } } })
    const config = JSON.parse(readFileSync(join(result.dir, "config.json"), "utf8"))
    expect(config).toEqual({ grpo: { lr: 3, steps: 3 } })
    const manifest = JSON.parse(readFileSync(join(result.dir, "manifest.json"), "utf8")) as RunLog.Manifest
    expect(manifest.status).toBe("succeeded")
    expect(manifest.nodes["train/step-002/update"]).toMatchObject({ status: "executed", stage: "step", key: result.nodes["train/step-002/update"]!.key })
    expect(manifest.nodes["train/step-000/update"]!.status).toBe("cached")
    const metrics = await RunLog.readJsonl(join(result.dir, "metrics.jsonl"))
    expect(metrics.map((m) => [m.node, m.value])).toEqual([
      ["train/step-000/update", 3],
      ["train/step-001/update", 9],
      ["train/step-002/update", 27]
    ])
    const events = await RunLog.readJsonl(join(result.dir, "events.jsonl"))
    expect(events[0]).toMatchObject({ type: "run_started", pipeline: "train", nodes: 4, resumed: false })
    expect(events.at(-1)).toMatchObject({ type: "run_finished", status: "succeeded", executed: 1, cached: 3 })
  })

  it("a resumed run continues in the same directory and does not repeat its metrics", async () => {
    const root = tempDir()
    const first = await runOk(root, training(2, 2), { runId: "r1" })
    const again = await runOk(root, training(2, 2), { runId: "r1" })
    expect(again.dir).toBe(first.dir)
    const metrics = await RunLog.readJsonl(join(first.dir, "metrics.jsonl"))
    expect(metrics).toHaveLength(2)
    const events = await RunLog.readJsonl(join(first.dir, "events.jsonl"))
    expect(events.filter((e) => e.type === "run_started").map((e) => e.resumed)).toEqual([false, true])
  })
})

describe("locks", () => {
  it("breaks a stale lock left by a dead process and computes the node", async () => {
    const root = tempDir()
    const leaf = Stage.make({ name: "leaf", version: "1", output: Schema.String, run: () => Effect.succeed("done") })
    const pipeline = Pipeline.make("stale", (b) => ({ out: b.node(leaf, { id: "leaf" }) }))
    // Learn the node's key, then forget the result and plant a lock held by a pid that is not alive.
    const first = await runOk(root, pipeline)
    const key = first.nodes["leaf"]!.key!
    const paths = ArtifactStore.pathsOf(root)
    writeFileSync(ArtifactStore.nodeEntryPath(paths, key), "")
    mkdirSync(paths.locks, { recursive: true })
    const { hostname } = await import("node:os")
    writeFileSync(join(paths.locks, `${key}.lock`), JSON.stringify({ pid: 2 ** 22 + 12345, host: hostname(), nonce: "dead" }))
    const second = await runOk(root, pipeline)
    expect(second.nodes["leaf"]!.status).toBe("executed")
    const events = await RunLog.readJsonl(join(second.dir, "events.jsonl"))
    expect(events.some((e) => e.type === "lock_broken" && e.key === key)).toBe(true)
  })
})

describe("pipeline construction", () => {
  const leaf = Stage.make({ name: "leaf", version: "1", output: Schema.Number, params: Schema.Struct({ n: Schema.Number }), run: (_, { n }) => Effect.succeed(n) })
  it("reports duplicate ids, bad params and nodes that feed no output", () => {
    expect(() => Pipeline.make("dup", (b) => ({ a: b.node(leaf, { id: "x", params: { n: 1 } }), b: b.node(leaf, { id: "x", params: { n: 2 } }) }))).toThrow(/duplicate node id "x"/)
    expect(() => Pipeline.make("bad", (b) => ({ a: b.node(leaf, { id: "x", params: { n: "one" as unknown as number } }) }))).toThrow(/node "x" \(stage leaf\): bad params/)
    expect(() => Pipeline.make("orphan", (b) => (b.node(leaf, { id: "lost", params: { n: 1 } }), { a: b.node(leaf, { id: "x", params: { n: 1 } }) }))).toThrow(/lost feed no output/)
  })
})

describe("junctions and engines", () => {
  it("descendants see the stored value, fresh or cached (fields outside the schema are dropped)", async () => {
    const Narrow = Schema.Struct({ x: Schema.Number })
    const wide = Stage.make({ name: "wide", version: "1", output: Narrow, run: () => Effect.succeed({ x: 1, extra: "hidden" } as { x: number }) })
    const seen: Array<unknown> = []
    const look = Stage.make({ name: "look", version: "1", inputs: { v: Narrow }, output: Schema.Number, run: ({ v }) => Effect.sync(() => (seen.push(v), v.x)) })
    const pipeline = Pipeline.make("narrow", (b) => ({ out: b.node(look, { id: "look", inputs: { v: b.node(wide, { id: "wide" }) } }) }))
    await runOk(tempDir(), pipeline)
    expect(seen).toEqual([{ x: 1 }])
  })

  it("checks a value at a junction whose schemas differ, naming both ends", async () => {
    const producer = Stage.make({ name: "producer", version: "1", output: Schema.Array(Schema.Number), run: () => Effect.succeed([1, -2]) })
    const Positive = Schema.Array(Schema.Number.check(Schema.isGreaterThan(0)))
    const consumer = Stage.make({ name: "consumer", version: "1", inputs: { xs: Positive }, output: Schema.Number, run: ({ xs }) => Effect.succeed(xs.length) })
    const exit = await runOn(tempDir(), Pipeline.make("junction", (b) => ({ out: b.node(consumer, { id: "consumer", inputs: { xs: b.node(producer, { id: "producer" }) } }) })))
    expect(exit._tag).toBe("Failure")
    expect(String(exit._tag === "Failure" ? exit.cause : "")).toMatch(/input "xs" from node "producer" does not match its schema/)
  })

  it("puts engine fingerprints in node and memo keys, and fails clearly when an engine is missing", async () => {
    const { Context, Layer } = await import("effect")
    class Judge extends Context.Service<Judge, { readonly fingerprint: string; readonly score: (s: string) => number }>()("test/Judge") {}
    const calls: Array<string> = []
    const judged = Stage.make({
      name: "judged",
      version: "1",
      engines: [Judge],
      output: Schema.Number,
      run: (_, __, ctx) =>
        Effect.gen(function*() {
          const judge = yield* Judge
          return yield* ctx.memo("score", "story", Schema.Number, Effect.sync(() => (calls.push(judge.fingerprint), judge.score("story"))))
        })
    })
    const pipeline = Pipeline.make("judged", (b) => ({ out: b.node(judged, { id: "judge" }) }))
    const root = tempDir()
    const withJudge = (fingerprint: string) => Layer.succeed(Judge, { fingerprint, score: (s: string) => s.length })
    const { ArtifactStore: AS, Executor } = await import("polaris")
    const runWith = (fingerprint: string) =>
      Effect.runPromise(Executor.run(pipeline, {}).pipe(Effect.provide(Layer.merge(AS.layer(root), withJudge(fingerprint)))))
    const a = await runWith("model-a@rubric-1")
    const again = await runWith("model-a@rubric-1")
    const b = await runWith("model-b@rubric-1")
    expect(calls).toEqual(["model-a@rubric-1", "model-b@rubric-1"])
    expect(again.nodes["judge"]!.status).toBe("cached")
    expect(a.nodes["judge"]!.key).not.toBe(b.nodes["judge"]!.key)

    const missing = await Effect.runPromiseExit(Executor.run(pipeline as unknown as Pipeline.Pipeline<never>, {}).pipe(Effect.provide(AS.layer(root))))
    expect(String(missing._tag === "Failure" ? missing.cause : "")).toMatch(/needs engine "test\/Judge", which was not provided/)
  })

  it("rejects unknown params and two different stages sharing a name", () => {
    const leaf = Stage.make({ name: "leaf", version: "1", output: Schema.Number, run: () => Effect.succeed(1) })
    const other = Stage.make({ name: "leaf", version: "1", output: Schema.Number, run: () => Effect.succeed(2) })
    expect(() => Pipeline.make("typo", (b) => ({ a: b.node(leaf, { id: "a", params: { typo: 1 } as {} }) }))).toThrow(/bad params/)
    expect(() => Pipeline.make("twins", (b) => ({ a: b.node(leaf, { id: "a" }), b: b.node(other, { id: "b" }) }))).toThrow(/another stage is also named "leaf"/)
  })
})
