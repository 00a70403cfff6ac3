/**
 * Off-policy GRPO steps (`grpo.off_policy_steps: k`, pipelines/polaris.ts): step s samples (rollouts
 * and reference logprobs) with the policy published after step s−1−k and trains the newest one.
 * The DAG fixes which policy sampled what: with k = 1 a step's rollouts depend on the update two
 * steps back and on no later one, two runs are byte-identical, a run killed with SIGKILL and
 * resumed ends byte-identical too, and the update's metrics carry the staleness. With k = 0 the
 * DAG, keys and objects are the synchronous ones, so existing caches stay valid.
 */
import { readFileSync, rmSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { Pipeline } from "polaris"
import * as PipelineModule from "../src/dag/PipelineModule.ts"
import * as RecipeLoader from "../src/recipe/RecipeLoader.ts"
import { polaris, ROOT } from "./support/cli.ts"
import { tempDirInRepo } from "./support/store.ts"

const RECIPE = join(ROOT, "recipes", "quickstart.yaml")

/** The quickstart's pipeline, built from the recipe with `sets` applied. */
const build = (sets: ReadonlyArray<string>): Promise<Pipeline.Pipeline<any, any>> =>
  Effect.runPromise(Effect.gen(function*() {
    const { recipe } = yield* RecipeLoader.load(RECIPE, { sets, env: {} })
    return (yield* PipelineModule.load(recipe, RECIPE)).pipeline
  }))

/** Every node `id` depends on, itself excluded. */
const ancestors = (pipeline: Pipeline.Pipeline<any, any>, id: string): Set<string> => {
  const byId = new Map(pipeline.nodes.map((n) => [n.id, n]))
  const seen = new Set<string>()
  const visit = (node: string) => {
    for (const input of Pipeline.upstreamOf(byId.get(node)!)) {
      if (!seen.has(input)) {
        seen.add(input)
        visit(input)
      }
    }
  }
  visit(id)
  return seen
}

const step = (s: number) => `train/step-${String(s).padStart(3, "0")}`
const updatesAmong = (ids: Set<string>) => [...ids].filter((id) => /^train\/step-\d+\/update$/.test(id)).sort()
/** A pipeline's shape: every node's id, stage, params and input edges, in order. */
const shape = (pipeline: Pipeline.Pipeline<any, any>) => pipeline.nodes.map((n) => ({ id: n.id, stage: `${n.stage.name}@${n.stage.version}`, params: n.params, inputs: n.inputs }))

describe("grpo.off_policy_steps: the DAG", () => {
  it("k = 1: step s samples with the policy after step s-2 (the initial one for steps 0 and 1) and trains the one after step s-1", async () => {
    const pipeline = await build(["grpo.steps=5", "grpo.off_policy_steps=1"])
    const byId = new Map(pipeline.nodes.map((n) => [n.id, n]))
    for (let s = 0; s < 5; s++) {
      const published = s - 2 >= 0 ? `${step(s - 2)}/update` : "init-train"
      for (const node of ["rollout", "reference"]) {
        for (const group of ["group-0", "group-7"]) {
          expect(byId.get(`${step(s)}/${group}/${node}`)!.inputs.policy).toBe(`${step(s)}/sampling-policy`)
          // Through its policy input: the update two steps back, and none later.
          expect(updatesAmong(ancestors(pipeline, `${step(s)}/${group}/${node}`))).toEqual(Array.from({ length: Math.max(0, s - 1) }, (_, j) => `${step(j)}/update`))
        }
      }
      expect(byId.get(`${step(s)}/sampling-policy`)!.inputs).toEqual({ state: published })
      // The batch follows the previous batch, never an update.
      expect(byId.get(`${step(s)}/batch`)!.inputs.previous).toBe(s === 0 ? "sampler-start" : `${step(s - 1)}/batch`)
      const update = byId.get(`${step(s)}/update`)!
      expect(update.stage.name).toBe("off-policy-update")
      expect(update.inputs).toEqual({ batch: `${step(s)}/groups`, policy: `${step(s)}/policy`, next: `${step(s)}/batch`, sampler: `${step(s)}/sampling-policy` })
      expect(byId.get(`${step(s)}/policy`)!.inputs).toEqual({ state: s === 0 ? "init-train" : `${step(s - 1)}/update` })
    }
    expect(byId.has(`${step(1)}/sampler`)).toBe(false)
  })

  it("k = 2: step s samples with the policy after step s-3", async () => {
    const pipeline = await build(["grpo.steps=5", "grpo.off_policy_steps=2"])
    const inputs = (id: string) => pipeline.nodes.find((n) => n.id === id)!.inputs
    expect([0, 1, 2, 3, 4].map((s) => inputs(`${step(s)}/sampling-policy`).state))
      .toEqual(["init-train", "init-train", "init-train", `${step(0)}/update`, `${step(1)}/update`])
    expect(updatesAmong(ancestors(pipeline, `${step(4)}/group-3/judge`))).toEqual([`${step(0)}/update`, `${step(1)}/update`])
  })

  it("k = 0: exactly the synchronous DAG (node ids, stages, params and edges)", async () => {
    const without = await build(["grpo.steps=3"])
    const zero = await build(["grpo.steps=3", "grpo.off_policy_steps=0"])
    expect(shape(zero)).toEqual(shape(without))
    expect(zero.outputs).toEqual(without.outputs)
    const byId = new Map(zero.nodes.map((n) => [n.id, n]))
    expect(byId.get(`${step(2)}/group-0/rollout`)!.inputs.policy).toBe(`${step(2)}/policy`)
    expect(byId.get(`${step(2)}/update`)!.stage.name).toBe("update")
    expect(zero.nodes.some((n) => n.id.endsWith("/sampling-policy"))).toBe(false)
  })

  it("refuses a lag on the vllm backend, which serves one adapter at a time, naming the recipe line", async () => {
    const dir = tempDirInRepo("off-policy-vllm-")
    const file = join(dir, "vllm.yaml")
    writeFileSync(file, [
      "pipeline: polaris",
      "policy: { backend: vllm, model: Qwen/Qwen3-8B, base_url: http://localhost:1, sampler_urls: [http://localhost:2], tokenizer: ./tok }",
      "grpo:",
      "  off_policy_steps: 1",
      ""
    ].join("\n"))
    const r = await Effect.runPromise(Effect.result(RecipeLoader.load(file, { sets: [], env: {} })))
    expect(r._tag).toBe("Failure")
    const message = r._tag === "Failure" ? String((r.failure as { message: string }).message) : ""
    expect(message).toContain("vllm.yaml:4:")
    expect(message).toContain("serves one adapter at a time")
  })

  it("refuses a negative or fractional lag at the recipe", async () => {
    for (const value of ["-1", "0.5"]) {
      const r = await Effect.runPromise(Effect.result(RecipeLoader.load(RECIPE, { sets: [`grpo.off_policy_steps=${value}`], env: {} })))
      expect(r._tag).toBe("Failure")
    }
  })
})

const SMALL = ["--set", "grpo.steps=3", "--set", "grpo.groups_per_step=2", "--set", "eval.prompts_per_bucket=2"]
const LAG1 = [...SMALL, "--set", "grpo.off_policy_steps=1"]

/** Node id -> (key, object) of a `--json` summary. */
const nodesOf = (summary: any): Record<string, { key: string; object: string }> =>
  Object.fromEntries(Object.entries(summary.nodes as Record<string, { key: string; object: string }>).map(([id, n]) => [id, { key: n.key, object: n.object }]))

const runJson = async (args: ReadonlyArray<string>) => {
  const r = await polaris([...args, "--json"])
  expect(r.status, r.stderr).toBe(0)
  return JSON.parse(r.stdout)
}

/** The metrics records a run wrote for `node`. */
const metricsOf = (summary: any, node: string): Array<Record<string, unknown>> =>
  readFileSync(resolve(ROOT, summary.dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((m) => m.node === node)

describe("grpo.off_policy_steps through polaris", () => {
  it("k = 1: two runs byte-identical, a SIGKILLed run resumed byte-identical, a rerun fully cached, staleness in the update's metrics", async () => {
    const dir = tempDirInRepo("off-policy-")
    const first = await runJson(["run", RECIPE, ...LAG1, "--store", join(dir, "a")])
    const second = await runJson(["run", RECIPE, ...LAG1, "--store", join(dir, "b")])
    expect(nodesOf(second)).toEqual(nodesOf(first))
    expect(first.nodes[`${step(2)}/sampling-policy`]).toBeDefined()

    // Killed while step 0 trains (step 1 may be sampling alongside), then while step 2 judges; resumed in place.
    const killed = join(dir, "killed")
    const kills = [[`${step(0)}/update`, 200], [`${step(2)}/group-1/judge`, 0]] as const
    let run = await polaris(["run", RECIPE, ...LAG1, "--store", killed, "--progress", "plain"], { killOn: kills[0][0], delayMs: kills[0][1] })
    expect(run.signal, `${kills[0][0]} was never reached:\n${run.stderr}`).toBe("SIGKILL")
    run = await polaris(["resume", "--store", killed, "--progress", "plain"], { killOn: kills[1][0], delayMs: kills[1][1] })
    expect(run.signal, `${kills[1][0]} was never reached:\n${run.stderr}`).toBe("SIGKILL")
    run = await polaris(["resume", "--store", killed, "--progress", "plain"])
    expect(run.status, run.stderr).toBe(0)
    const rerun = await runJson(["run", RECIPE, ...LAG1, "--store", killed])
    expect(rerun.executed).toBe(0) // fully cached
    expect(nodesOf(rerun)).toEqual(nodesOf(first))

    // Step s trains the policy of version s on samples of version max(0, s-1): staleness min(s, 1).
    const versions = [0, 1, 2].map((s) => {
      const records = metricsOf(first, `${step(s)}/update`).filter((m) => "clip_frac" in m)
      expect(records).toHaveLength(1) // inner_iterations: 1
      const m = records[0]!
      expect(typeof m.clip_frac).toBe("number")
      return { step: m.step, sampler_step: m.sampler_step, staleness: m.staleness }
    })
    expect(versions).toEqual([{ step: 0, sampler_step: 0, staleness: 0 }, { step: 1, sampler_step: 0, staleness: 1 }, { step: 2, sampler_step: 1, staleness: 1 }])
    rmSync(dir, { recursive: true, force: true }) // kept when a check fails
  }, 900_000)

  it("k = 0: the same node keys and objects as a run without the key (existing caches stay valid)", async () => {
    const dir = tempDirInRepo("off-policy-0-")
    const store = join(dir, "store")
    const without = await runJson(["run", RECIPE, ...SMALL, "--store", store])
    const zero = await runJson(["run", RECIPE, ...SMALL, "--set", "grpo.off_policy_steps=0", "--store", store])
    expect(zero.executed).toBe(0)
    expect(nodesOf(zero)).toEqual(nodesOf(without))
    rmSync(dir, { recursive: true, force: true })
  }, 600_000)
})
