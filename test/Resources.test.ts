/**
 * Resources are real (issue 16 point 4): sampling nodes run as `sampler`, updates as `trainer`,
 * and which of them may run at once is the policy backend's (Policies.POOLS): the embedded engine
 * is one CPU resource, whose cores samplers take one each and a trainer all at once; a remote (or
 * simulated) sampler and trainer are two. A node's resource, set at wiring time, is not in its cache key.
 */
import { readFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { Effect, Layer, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { Pipeline, Stage } from "polaris"
import { resolveTarget } from "../src/cli/target.ts"
import * as ArtifactStore from "../src/dag/ArtifactStore.ts"
import * as Executor from "../src/dag/Executor.ts"
import * as Policies from "../src/engines/Policies.ts"
import { PolicyEngine, type PolicyEngineShape } from "../src/engines/PolicyEngine.ts"
import { ROOT } from "./support/cli.ts"
import { runOk, tempDir } from "./support/store.ts"

interface Interval {
  readonly what: string
  readonly from: number
  readonly to: number
}

const overlaps = (a: Interval, b: Interval) => a.from < b.to && b.from < a.to

/** Pairs (one of `as`, one of `bs`) whose intervals overlap. */
const overlapping = (as: ReadonlyArray<Interval>, bs: ReadonlyArray<Interval>) => as.flatMap((a) => bs.filter((b) => overlaps(a, b)).map((b) => [a.what, b.what]))

describe("executor: shared pools", () => {
  const recorder = () => {
    const intervals: Array<Interval> = []
    const timed = (what: string) =>
      Effect.gen(function*() {
        const from = performance.now()
        yield* Effect.sleep(30)
        intervals.push({ what, from, to: performance.now() })
      })
    return { intervals, timed }
  }
  const build = (timed: (what: string) => Effect.Effect<void>) => {
    // One stage body, resource "policy" as declared; its nodes get theirs at wiring time.
    const work = Stage.make({ name: "work", version: "1", resource: "policy", output: Schema.Number, params: Schema.Struct({ i: Schema.Number, kind: Schema.String }), run: (_, { i, kind }) => Effect.as(timed(`${kind}-${i}`), i) })
    return Pipeline.make("pools", (b) => {
      const out: Record<string, Pipeline.NodeRef<number>> = {}
      for (let i = 0; i < 3; i++) {
        out[`s${i}`] = b.node(work, { id: `sample-${i}`, params: { i, kind: "sample" }, resource: "sampler" })
        out[`t${i}`] = b.node(work, { id: `train-${i}`, params: { i, kind: "train" }, resource: "trainer" })
      }
      return out
    })
  }
  const split = (intervals: ReadonlyArray<Interval>) => [intervals.filter((i) => i.what.startsWith("sample")), intervals.filter((i) => i.what.startsWith("train"))] as const

  it("by default samplers take one slot each of the policy pool, side by side; a trainer takes the whole pool and runs beside nothing", async () => {
    const r = recorder()
    await runOk(tempDir(), build(r.timed), { concurrency: { policy: 2 } })
    const [sampling, training] = split(r.intervals)
    expect(r.intervals).toHaveLength(6)
    expect(overlapping(sampling, sampling).filter(([a, b]) => a !== b).length).toBeGreaterThan(0)
    expect(overlapping(training, [...sampling, ...training]).filter(([a, b]) => a !== b)).toEqual([])
  })

  it("a policy pool of one slot runs one node at a time", async () => {
    const r = recorder()
    await runOk(tempDir(), build(r.timed), { concurrency: { policy: 1 } })
    const sorted = [...r.intervals].sort((a, b) => a.from - b.from)
    expect(sorted).toHaveLength(6)
    for (let i = 1; i < sorted.length; i++) expect(sorted[i]!.from).toBeGreaterThanOrEqual(sorted[i - 1]!.to)
  })

  it("a node's duration is the time it held the slot; the time it queued behind the others is its waitedMs", async () => {
    const r = recorder()
    const root = tempDir()
    const result = await runOk(root, build(r.timed), { concurrency: { policy: 1 } })
    const events = readFileSync(join(result.dir, "events.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))
    const finished = events.filter((e) => e.type === "node_finished")
    const run = events.find((e) => e.type === "run_finished")
    expect(finished).toHaveLength(6)
    // Run one at a time, the nodes' durations fit in the run's; counted from when each was ready
    // (all at once), they would add up to about 1 + 2 + ... + 6 of them.
    expect(finished.reduce((s, e) => s + e.durationMs, 0)).toBeLessThanOrEqual(run.durationMs)
    expect(finished.filter((e) => e.waitedMs > 0).length).toBeGreaterThan(0)
  })

  it("with pools of their own, sampling and training nodes run at once; sampling nodes side by side (a server batches them), training one at a time", async () => {
    const r = recorder()
    await runOk(tempDir(), build(r.timed), { pools: Policies.POOLS.simulated })
    const [sampling, training] = split(r.intervals)
    expect(overlapping(sampling, training).length).toBeGreaterThan(0)
    expect(overlapping(sampling, sampling).filter(([a, b]) => a !== b).length).toBeGreaterThan(0)
    expect(overlapping(training, training).filter(([a, b]) => a !== b)).toEqual([])
  })

  it("`concurrency` limits a pool: one sampler slot runs one sampling node at a time", async () => {
    const r = recorder()
    await runOk(tempDir(), build(r.timed), { pools: Policies.POOLS.simulated, concurrency: { sampler: 1 } })
    const [sampling] = split(r.intervals)
    expect(overlapping(sampling, sampling).filter(([a, b]) => a !== b)).toEqual([])
  })

  it("a node's resource is not in its key: the same node under another resource is a cache hit", async () => {
    const root = tempDir()
    const stage = Stage.make({ name: "keyed", version: "1", resource: "policy", output: Schema.Number, run: () => Effect.succeed(7) })
    const first = await runOk(root, Pipeline.make("a", (b) => ({ out: b.node(stage, { id: "n" }) })))
    const second = await runOk(root, Pipeline.make("a", (b) => ({ out: b.node(stage, { id: "n", resource: "trainer" }) })), { pools: Policies.POOLS.tinker })
    expect(first.nodes.n!.status).toBe("executed")
    expect(second.nodes.n).toEqual({ ...first.nodes.n, status: "cached" })
  })
})

describe("the polaris pipeline: sampler and trainer resources by policy backend", () => {
  it("wires rollouts and reference logprobs as sampler, updates as trainer; embedded samplers share the cores and a trainer takes them all, remote and simulated get two pools", async () => {
    const quickstart = await Effect.runPromise(resolveTarget(resolve(ROOT, "recipes/quickstart.yaml"), { sets: ["grpo.steps=2", "grpo.off_policy_steps=1"] }))
    const byId = new Map(quickstart.pipeline.nodes.map((n) => [n.id, n]))
    for (const id of ["train/step-001/group-0/rollout", "train/step-001/group-7/reference", "eval-final/rollout"]) expect(Pipeline.resourceOf(byId.get(id)!)).toBe("sampler")
    expect(Pipeline.resourceOf(byId.get("train/step-001/update")!)).toBe("trainer")
    expect(Pipeline.resourceOf(byId.get("train/step-001/group-3/judge")!)).toBe("judge")
    expect(quickstart.pools).toEqual({ sampler: "policy", trainer: { pool: "policy", whole: true } })
    const simulated = await Effect.runPromise(resolveTarget(resolve(ROOT, "recipes/polaris-simulated.yaml"), { sets: ["grpo.steps=2"] }))
    expect(simulated.pools).toEqual({ sampler: "sampler", trainer: "trainer" })
    expect(Policies.POOLS.tinker).toEqual(Policies.POOLS.vllm)
  }, 60_000)

  /**
   * The simulated recipe, k = 1, 3 steps, run in-process under `pools`, with every engine call
   * timed: sampling calls (`sample`, `logprobs`) against training calls (`forwardBackward`,
   * `optimStep`).
   */
  const runSimulated = async (pools: Executor.Pools) => {
    const t = await Effect.runPromise(resolveTarget(resolve(ROOT, "recipes/polaris-simulated.yaml"), {
      sets: ["grpo.steps=3", "grpo.off_policy_steps=1", "eval.prompts_per_bucket=1", "policy.time_scale=0.0005", "judge.time_scale=0.0005"],
      store: tempDir()
    }))
    const calls: Array<Interval> = []
    const timed = <A, E>(what: string, effect: Effect.Effect<A, E>) =>
      Effect.suspend(() => {
        const from = performance.now()
        return Effect.tap(effect, () => Effect.sync(() => calls.push({ what, from, to: performance.now() })))
      })
    const wrap = (e: PolicyEngineShape): PolicyEngineShape => ({
      ...e,
      sample: (...args) => timed("sample", e.sample(...args)),
      logprobs: (...args) => timed("logprobs", e.logprobs(...args)),
      forwardBackward: (...args) => timed("forwardBackward", e.forwardBackward(...args)),
      optimStep: (...args) => timed("optimStep", e.optimStep(...args))
    })
    // The recipe's engines, its PolicyEngine replaced by the timed one (the later layer wins).
    const timedEngine = Layer.effect(PolicyEngine, Effect.gen(function*() { return wrap(yield* PolicyEngine) })).pipe(Layer.provide(t.layer))
    await Effect.runPromise(Executor.run(t.pipeline, { config: t.config, concurrency: t.concurrency, pools }).pipe(
      Effect.provide(Layer.mergeAll(ArtifactStore.layer(t.store), t.layer, timedEngine))
    ) as Effect.Effect<unknown, unknown, never>)
    const sampling = calls.filter((c) => c.what === "sample" || c.what === "logprobs")
    const training = calls.filter((c) => c.what === "forwardBackward" || c.what === "optimStep")
    expect(sampling.length).toBeGreaterThan(0)
    expect(training.length).toBeGreaterThan(0)
    return overlapping(sampling, training)
  }

  it("k = 1 on the simulated engine: step s+1's sampling runs while step s trains", async () => {
    expect((await runSimulated(Policies.POOLS.simulated)).length).toBeGreaterThan(0)
  }, 120_000)

  it("k = 1 under the embedded engine's pools: no sampling call ever overlaps a training call", async () => {
    expect(await runSimulated(Policies.POOLS.embedded)).toEqual([])
  }, 120_000)

  it("streaming within a step: a group is judged as soon as its own samples are done, while slower groups still sample", async () => {
    const t = await Effect.runPromise(resolveTarget(resolve(ROOT, "recipes/polaris-simulated.yaml"), {
      sets: ["grpo.steps=1", "policy.time_scale=0.004", "judge.time_scale=0.004"],
      store: tempDir()
    }))
    // Step 0 up to its groups node: what the update would wait for.
    const byId = new Map(t.pipeline.nodes.map((n) => [n.id, n]))
    const needed = new Set<string>()
    const visit = (id: string): void => void (needed.has(id) || (needed.add(id), Pipeline.upstreamOf(byId.get(id)!).forEach(visit)))
    visit("train/step-000/groups")
    const upToGroups = { ...t.pipeline, nodes: t.pipeline.nodes.filter((n) => needed.has(n.id)), outputs: { groups: "train/step-000/groups" } }
    const result = await Effect.runPromise(Executor.run(upToGroups, { config: t.config, concurrency: t.concurrency, pools: t.pools }).pipe(
      Effect.provide(Layer.merge(ArtifactStore.layer(t.store), t.layer))
    ) as Effect.Effect<Executor.RunResult, unknown, never>)
    const events = readFileSync(join(result.dir, "events.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))
    const at = (type: string, pattern: RegExp) => events.filter((e) => e.type === type && pattern.test(e.node)).map((e) => Date.parse(e.at))
    const firstJudge = Math.min(...at("node_started", /^train\/step-000\/group-\d\/judge$/))
    const lastRollout = Math.max(...at("node_finished", /^train\/step-000\/group-\d\/rollout$/))
    // References of 1-4k words: the shortest group's rollouts end long before the longest's.
    expect(firstJudge).toBeLessThan(lastRollout)
  }, 120_000)
})
