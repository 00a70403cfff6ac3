/**
 * A judge node's spend metrics count its own calls only. A step's groups are judged by several
 * nodes at once (and a sweep's variants share one judge), so a difference of the judge's running
 * totals would also count the neighbours' calls; memoized verdicts reused cost nothing.
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { Effect, Layer, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { Pipeline, Stage } from "polaris"
import * as Judges from "../src/engines/judge/Judges.ts"
import { Judge, type JudgeShape } from "../src/engines/judge/Judge.ts"
import { Candidate } from "../src/records/Judgement.ts"
import { judge } from "../stages/judge.ts"
import * as ArtifactStore from "../src/dag/ArtifactStore.ts"
import * as Executor from "../src/dag/Executor.ts"
import { tempDir } from "./support/store.ts"

const given = Stage.make({ name: "given-candidates", version: "1", params: Schema.Struct({ value: Schema.Array(Candidate) }), output: Schema.Array(Candidate), run: (_, { value }) => Effect.succeed(value) })
const stories = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i}`, prompt: "Write a 20-word story about a fox.", text: `The fox ${prefix} number ${i} ran through the snow and found a warm den by the river at dusk.`, requested_words: 20 }))

// The proxy judge, each verdict priced at one cent and taking 2 calls (one failed attempt).
const priced = Layer.effect(Judge, Effect.map(Judge, (j): JudgeShape => ({
  ...j,
  local: false,
  score: (item) => Effect.map(Effect.andThen(Effect.sleep("5 millis"), j.score(item)), (v) => ({ ...v, cost_usd: 0.01, calls: 2 }))
}))).pipe(Layer.provide(Judges.proxy()))

const pipeline = Pipeline.make("spend", (b) => {
  const params = { samples: 1, length_factor: "none" as const, concurrency: 2 }
  return {
    a: b.node(judge, { id: "judge-a", inputs: { stories: b.node(given, { id: "a", params: { value: stories("a", 3) } }) }, params }),
    b: b.node(judge, { id: "judge-b", inputs: { stories: b.node(given, { id: "b", params: { value: stories("b", 5) } }) }, params })
  }
})

const runOk = (root: string, p: typeof pipeline, options: Executor.RunOptions) =>
  Effect.runPromise(Executor.run(p, options).pipe(Effect.provide(Layer.merge(ArtifactStore.layer(root), priced))))

const metricsOf = (dir: string, node: string) =>
  readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((m) => m.node === node)

describe("judge spend per node", () => {
  it("two judge nodes at once each report their own calls and cost; reused verdicts cost nothing", async () => {
    const root = tempDir()
    const first = await runOk(root, pipeline, { concurrency: { judge: 2 } })
    // Both nodes judged at the same time (the judge resource takes 2).
    const a = metricsOf(first.dir, "judge-a")[0]!
    const b = metricsOf(first.dir, "judge-b")[0]!
    expect([a.judge_calls, a.judge_failed_calls, a.judge_cost_usd]).toEqual([6, 3, expect.closeTo(0.03, 9)])
    expect([b.judge_calls, b.judge_failed_calls, b.judge_cost_usd]).toEqual([10, 5, expect.closeTo(0.05, 9)])
    // Forced to run again: every verdict comes from the memo, no call is made or paid.
    const again = await runOk(root, pipeline, { force: ["judge-a"] })
    expect(metricsOf(again.dir, "judge-a")[0]).toMatchObject({ judge_calls: 0, judge_cost_usd: 0 })
  })
})
