/**
 * The remote engines end to end: the quickstart (scaled to 2 steps) run through the `polaris`
 * command with the policy on `tinker` pointed at `polaris serve`, and with sampling on `vllm`
 * (training on the same server's Tinker routes), gives the same step metrics and the same
 * held-out evaluation as the embedded engine with the same seed, within float tolerance.
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import * as EmbeddedPolicy from "../src/engines/EmbeddedPolicy.ts"
import { serve } from "../src/serve/Server.ts"
import { polaris, readObject, ROOT } from "./support/cli.ts"
import { tempDirInRepo } from "./support/store.ts"

const MODEL = join(ROOT, "models", "story-1m")
const SMALL = ["--set", "grpo.steps=2", "--set", "grpo.groups_per_step=3", "--set", "eval.prompts_per_bucket=3", "--set", "eval.buckets=[{name: id, min_words: 40, max_words: 150}]"]

/** The metrics of the `groups` nodes (rewards, lengths, advantages) and each evaluated system's summary. */
const results = async (store: string, extra: ReadonlyArray<string>) => {
  const run = await polaris(["run", join(ROOT, "recipes", "quickstart.yaml"), ...SMALL, ...extra, "--store", store, "--json"])
  expect(run.status, run.stderr).toBe(0)
  const summary = JSON.parse(run.stdout)
  const metrics = readFileSync(join(summary.dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))
  const steps = metrics.filter((m) => /^train\/step-\d+\/groups$/.test(m.node)).sort((a, b) => a.node.localeCompare(b.node))
  const evaluation = readObject(store, summary.nodes.evaluation.object)
  const systems: Record<string, any> = Object.fromEntries(evaluation.systems.map((s: { name: string; summary: unknown }) => [s.name, s.summary]))
  return { steps, systems }
}

const close = (a: number | null, b: number | null) => (a === null || b === null ? a === b : Math.abs(a - b) <= 1e-3 * Math.max(1, Math.abs(a)))

const expectSame = (x: Awaited<ReturnType<typeof results>>, y: Awaited<ReturnType<typeof results>>) => {
  expect(y.steps).toHaveLength(x.steps.length)
  x.steps.forEach((m, i) => {
    for (const key of ["reward_policy_mean", "reward_reference_mean", "advantage_std", "words_mean", "length_score_mean", "entropy_estimate"]) {
      expect(close(m[key], y.steps[i][key]), `step ${i} ${key}: ${m[key]} vs ${y.steps[i][key]}`).toBe(true)
    }
  })
  for (const system of ["initial", "final"]) {
    for (const key of ["length_score_mean", "reward_mean", "words_mean"]) {
      expect(close(x.systems[system][key], y.systems[system][key]), `${system} ${key}`).toBe(true)
    }
  }
}

describe("remote engines against polaris serve", () => {
  it("tinker, and vllm sampling, reproduce the embedded engine's run", async () => {
    const dir = tempDirInRepo("remote-")
    const embedded = await results(join(dir, "embedded"), [])

    const start = async () => {
      const engine = await Effect.runPromise(EmbeddedPolicy.make({ checkpoint: MODEL, checkpointDir: join(dir, "served", String(Math.random()).slice(2)) }))
      return serve(engine, { modelName: "polaris/story-1m", baseCheckpoint: MODEL, longPollMs: 200 })
    }
    const remote = (server: { url: string }, backend: "tinker" | "vllm") => [
      "--set", `policy.backend=${backend}`,
      "--set", "policy.model=polaris/story-1m",
      "--set", `policy.base_url=${server.url}`,
      "--set", `policy.tokenizer=${MODEL}`,
      ...(backend === "vllm" ? ["--set", `policy.sampler_urls=[${server.url}]`] : [])
    ]

    const tinkerServer = await start()
    try {
      const tinker = await results(join(dir, "tinker"), remote(tinkerServer, "tinker"))
      expectSame(embedded, tinker)
    } finally {
      await tinkerServer.close()
    }
    const vllmServer = await start()
    try {
      const vllm = await results(join(dir, "vllm"), remote(vllmServer, "vllm"))
      expectSame(embedded, vllm)
    } finally {
      await vllmServer.close()
    }
  }, 300_000)
})
