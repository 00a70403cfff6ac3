/**
 * A remote policy engine's calls are priced (`policy.price_per_million`) and charged to the
 * node that makes them: the ledger holds them under `sampler` and `trainer`, the metrics as each
 * node's `sampler_cost_usd` and `trainer_cost_usd`, a cap stops the run
 * before the call that would pass it, and a resume under a higher cap finishes with the uncapped
 * result, paying no call twice. The simulated engine stands in for Tinker (same calls, no GPU).
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { Budget } from "polaris"
import { expectedSampleUsd, forcedUsd, priced, sampleUsd, trainUsd } from "../src/engines/PricedPolicy.ts"
import type { PolicyEngineShape } from "../src/engines/PolicyEngine.ts"
import { defaultSamplingParams } from "../src/model/Sampling.ts"
import { polaris } from "./support/cli.ts"
import { tempDir, tempDirInRepo } from "./support/store.ts"

const PRICE = { prefill: 0.1, sample: 0.4, train: 0.3 }
const params = { ...defaultSamplingParams, maxTokens: 10 }

describe("priced policy calls", () => {
  it("cost tokens at the prices: prompts once per request, sampled tokens, teacher-forced and trained tokens", () => {
    const requests = [{ prompt: [1, 2, 3], n: 2, params }, { prompt: [4], n: 1, params }]
    const result = [[{ tokens: [5, 6], logprobs: [0, 0], stopReason: "stop" as const }, { tokens: [7], logprobs: [0], stopReason: "stop" as const }], [{ tokens: [8, 9, 10], logprobs: [0, 0, 0], stopReason: "stop" as const }]]
    // (3 + 1) prompt tokens at 0.1, (2 + 1 + 3) sampled at 0.4, per million.
    expect(sampleUsd(requests, result, PRICE)).toBeCloseTo((4 * 0.1 + 6 * 0.4) / 1e6, 15)
    // Expected: max_tokens (10) for each of the 3 sequences.
    expect(expectedSampleUsd(requests, PRICE)).toBeCloseTo((4 * 0.1 + 30 * 0.4) / 1e6, 15)
    expect(forcedUsd([{ prompt: [1, 2], completion: [3, 4, 5] }], PRICE)).toBeCloseTo((5 * 0.1) / 1e6, 15)
    expect(trainUsd([{ modelInput: [1, 2, 3, 4] }, { modelInput: [5] }], PRICE)).toBeCloseTo((5 * 0.3) / 1e6, 15)
  })

  it("charge the current node's budget, and nothing outside a node", async () => {
    const engine = { sample: (rs: ReadonlyArray<any>) => Effect.succeed(rs.map(() => [{ tokens: [1, 2], logprobs: [0, 0], stopReason: "stop" }])) } as unknown as PolicyEngineShape
    const p = priced(engine, PRICE)
    const requests = [{ prompt: [1], n: 1, params }]
    await Effect.runPromise(p.sample(requests)) // no Charge: free
    const ledger = join(tempDir("priced-"), "spend.jsonl")
    const budget = await Effect.runPromise(Budget.open(ledger, 1))
    await Effect.runPromise(p.sample(requests).pipe(Effect.provideService(Budget.Charge, { charge: (c, call, actual) => budget.charge({ node: "n", ...c }, call, actual) })))
    const lines = readFileSync(ledger, "utf8").trim().split("\n").map((l) => JSON.parse(l))
    expect(lines).toEqual([expect.objectContaining({ node: "n", engine: "sampler", usd: (0.1 + 2 * 0.4) / 1e6 })])
  })
})

const SETS = ["--set", "grpo.steps=2", "--set", "eval.prompts_per_bucket=1", "--set", "policy.time_scale=0.0002", "--set", "judge.time_scale=0.0002",
  "--set", "policy.price_per_million={prefill: 0.1, sample: 0.4, train: 0.3}"]
const ledgerOf = (store: string, run: string) => readFileSync(join(store, "runs", run, "spend.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))

describe("a run with a priced remote policy", () => {
  it("records sampler and trainer spend per node; a cap stops it before the call that would pass it; a resume pays no call twice", async () => {
    const dir = tempDirInRepo("policy-spend-")
    const free = await polaris(["run", "recipes/polaris-simulated.yaml", ...SETS, "--store", join(dir, "uncapped"), "--json"])
    expect(free.status, free.stderr).toBe(0)
    const uncapped = JSON.parse(free.stdout)
    const paid = ledgerOf(join(dir, "uncapped"), uncapped.runId)
    const byEngine = (ls: ReadonlyArray<any>, engine: string) => ls.filter((l) => l.engine === engine)
    expect(byEngine(paid, "sampler").length).toBeGreaterThan(0)
    expect(byEngine(paid, "trainer").length).toBeGreaterThan(0)
    expect(byEngine(paid, "sampler").some((l) => /^train\/step-000\/group-\d+\/rollout$/.test(l.node))).toBe(true)
    expect(byEngine(paid, "trainer").every((l) => /\/update$/.test(l.node))).toBe(true)
    const total = paid.reduce((s, l) => s + l.usd, 0)
    // The metrics: each node's <engine>_cost_usd is what the ledger holds under it.
    const metrics = readFileSync(join(dir, "uncapped", "runs", uncapped.runId, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))
    for (const engine of ["sampler", "trainer"]) {
      const perNode = new Map<string, number>()
      for (const l of byEngine(paid, engine)) perNode.set(l.node, (perNode.get(l.node) ?? 0) + l.usd)
      const reported = metrics.filter((m) => typeof m[`${engine}_cost_usd`] === "number")
      expect(reported.map((m) => m.node).sort()).toEqual([...perNode.keys()].sort())
      for (const m of reported) expect(m[`${engine}_cost_usd`]).toBeCloseTo(perNode.get(m.node)!, 15)
    }

    const store = join(dir, "capped")
    const cap = total / 2
    const capped = await polaris(["run", "recipes/polaris-simulated.yaml", ...SETS, "--store", store, "--budget-usd", String(cap), "--progress", "plain"])
    expect(capped.status).toBe(1)
    expect(capped.stderr).toMatch(/budget: a (sampler|trainer|judge) call would take the run past its cap/)
    const runId = JSON.parse((await polaris(["status", "--store", store, "--json"])).stdout).run
    const first = ledgerOf(store, runId)
    expect(first.reduce((s: number, l: any) => s + l.usd, 0)).toBeLessThanOrEqual(cap)

    const resumed = await polaris(["resume", runId, "--store", store, "--budget-usd", String(total * 2), "--json"])
    expect(resumed.status, resumed.stderr).toBe(0)
    const after = ledgerOf(store, runId)
    expect(after.length).toBe(paid.length)
    expect(after.reduce((s: number, l: any) => s + l.usd, 0)).toBeCloseTo(total, 9)
    const final = (r: any) => r.nodes["train/step-001/update"].object
    expect(final(JSON.parse(resumed.stdout))).toBe(final(uncapped))

    // The report shows the ledger: totals per engine, and each engine's spend over the steps.
    const out = join(dir, "report")
    expect((await polaris(["report", uncapped.runId, "--store", join(dir, "uncapped"), "--out", out])).status).toBe(0)
    const report = JSON.parse(readFileSync(join(out, "report.json"), "utf8"))
    for (const engine of ["judge", "sampler", "trainer"]) {
      expect(report.spend.byEngine[engine]).toBeCloseTo(byEngine(paid, engine).reduce((s, l) => s + l.usd, 0), 12)
    }
    const chart = report.training.charts.find((c: any) => c.id === "spend")
    const inSteps = (engine: string) => byEngine(paid, engine).filter((l) => /^train\/step-/.test(l.node)).reduce((s, l) => s + l.usd, 0)
    expect(chart.series.find((x: any) => x.name === "trainer").points.at(-1)[1]).toBeCloseTo(inSteps("trainer"), 12)
    expect(chart.series.find((x: any) => x.name === "sampler").points.at(-1)[1]).toBeCloseTo(inSteps("sampler"), 12)
  }, 300_000)
})
