/**
 * `polaris plan`: before a run, what is cached and what would run, and the calls, tokens and
 * dollars per engine by the pipeline's estimates; after the run, everything cached and nothing to
 * pay. Judge calls are counted independently here from the recipe's shape.
 */
import { join } from "node:path"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { prepareDataset } from "../src/data/Dataset.ts"
import { ingestAll } from "../src/data/Ingest.ts"
import { polaris, ROOT } from "./support/cli.ts"
import { tempDirInRepo } from "./support/store.ts"

const RECIPE = join(ROOT, "recipes", "quickstart.yaml")
// 2 steps of 2 groups of 4 (3 rollouts + the reference), 2 judge samples per story, one eval bucket of 2 prompts.
const SMALL = [
  "--set", "grpo.steps=2", "--set", "grpo.groups_per_step=2", "--set", "grpo.group_size=4", "--set", "judge.samples=2",
  "--set", "eval.prompts_per_bucket=2", "--set", "eval.buckets=[{name: id, min_words: 40, max_words: 150}]"
]

describe("polaris plan", () => {
  it("counts what would run and what it costs; after the run, everything is cached", async () => {
    const store = join(tempDirInRepo("plan-"), "store")
    const before = await polaris(["plan", RECIPE, ...SMALL, "--store", store, "--json"])
    expect(before.status, before.stderr).toBe(0)
    const p = JSON.parse(before.stdout)
    expect(p.counts.cached).toBe(0)
    expect(p.counts.run + p.counts.after).toBe(p.nodes.length)
    const judge = p.totals["judge (proxy, free)"]
    // Training: 2 steps × 2 groups × 4 stories × 2 judge samples; evaluation: 2 systems × 2 prompts × 2 stories × 2 judge samples; pairwise: 2 prompts × 2 stories × 2 orders.
    expect(judge.calls).toBe(2 * 2 * 4 * 2 + 2 * 2 * 2 * 2 + 2 * 2 * 2)
    expect(judge.usd).toBe(0)
    expect(p.totals["trainer (embedded, local)"].calls).toBe(2)

    const text = await polaris(["plan", RECIPE, ...SMALL, "--store", store])
    expect(text.status, text.stderr).toBe(0)
    expect(text.stdout).toMatch(/0 cached, \d+ to run/)
    expect(text.stdout).toContain("judge (proxy, free)")

    const run = await polaris(["run", RECIPE, ...SMALL, "--store", store, "--json"])
    expect(run.status, run.stderr).toBe(0)
    const after = JSON.parse((await polaris(["plan", RECIPE, ...SMALL, "--store", store, "--json"])).stdout)
    expect(after.counts).toEqual({ cached: p.nodes.length, run: 0, after: 0 })
    expect(after.totals).toEqual({})
  }, 300_000)

  it("prices a paid judge from the recipe: dollars are its tokens at price_per_million", async () => {
    const store = join(tempDirInRepo("plan-priced-"), "store")
    const priced = ["--set", "judge={backend: openai, model: judge-1, base_url: 'http://127.0.0.1:9/v1', price_per_million: {input: 0.5, output: 3}}"]
    const r = await polaris(["plan", RECIPE, ...priced, ...SMALL, "--store", store, "--json"])
    expect(r.status, r.stderr).toBe(0)
    const t = JSON.parse(r.stdout).totals["judge (openai judge-1)"]
    expect(t.calls).toBe(2 * 2 * 4 * 2 + 2 * 2 * 2 * 2 + 2 * 2 * 2)
    expect(t.output_tokens).toBeGreaterThan(0)
    expect(t.usd).toBeCloseTo((t.input_tokens * 0.5 + t.output_tokens * 3) / 1e6, 9)
  }, 120_000)

  it("estimates an LLM writer from the corpus: one call per story it would read, at its price", async () => {
    const store = join(tempDirInRepo("plan-writer-"), "store")
    const writer = ["--set", "data.writer={backend: openai, model: w-1, base_url: 'http://127.0.0.1:9/v1', price_per_million: {input: 1, output: 2}}"]
    const r = await polaris(["plan", RECIPE, ...writer, ...SMALL, "--store", store, "--json"])
    expect(r.status, r.stderr).toBe(0)
    const p = JSON.parse(r.stdout)
    const t = p.totals["writer (openai w-1)"]
    // The quickstart's corpus as its data nodes read it: stories of 500-12,000 words, 10% held out by id.
    const { train, heldout } = prepareDataset(await Effect.runPromise(ingestAll([join(ROOT, "examples", "anthologies")])), { min_words: 500, max_words: 12000, heldout_fraction: 0.1 })
    expect(t.calls).toBe(train.length + heldout.length)
    // Excerpt mode: every story (>= 500 words) is read as its first 150 words.
    expect(t.input_tokens).toBe(Math.round(train.length * (100 + 150 * 1.33)) + Math.round(heldout.length * (100 + 150 * 1.33)))
    expect(t.usd).toBeCloseTo((t.input_tokens * 1 + t.output_tokens * 2) / 1e6, 9)
    expect(p.nodes.find((n: any) => n.id.endsWith("derive-heldout-prompts")).estimates[0].calls).toBe(heldout.length)
  }, 120_000)
})
