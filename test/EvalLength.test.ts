/**
 * `eval-length` through the `polaris` command (recipes/eval-length.yaml, scaled down):
 *
 * - any engine is a system: the shipped model served over the vLLM protocol by `polaris serve`
 *   (`backend: vllm` without a trainer) writes exactly the stories the embedded engine writes, so
 *   the two summaries agree and every pairwise comparison is a tie (Elo 1000 each);
 * - with a remote judge (a local Gemini server): comparisons whose calls fail are recorded
 *   unscorable (no win, no loss) and judged again, alone, by the next run; adding a system (an
 *   ONNX export) judges only the new system's stories and comparisons; a rerun makes no call.
 */
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { Effect } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import * as EmbeddedPolicy from "../src/engines/EmbeddedPolicy.ts"
import * as Rubric from "../src/engines/judge/Rubric.ts"
import * as Checkpoint from "../src/model/Checkpoint.ts"
import { serve } from "../src/serve/Server.ts"
import { polaris, readObject, ROOT } from "./support/cli.ts"
import { type FakeServer, startFakeGemini } from "./support/fakeGemini.ts"
import { pairOf, storyOf, userOf } from "./support/judgePrompts.ts"
import { anyFileContains, tempDirInRepo } from "./support/store.ts"

const RECIPE = join(ROOT, "recipes", "eval-length.yaml")
const BASE = join(ROOT, "models", "story-1m")
const TUNED = join(ROOT, "models", "story-1m-polaris")
const SMALL = ["--set", "eval.prompts_per_bucket=2", "--set", "eval.bootstrap=200"]
const rubric = Effect.runSync(Rubric.load(Rubric.DEFAULT_RUBRIC))

const evaluationOf = (store: string, summary: any) => readObject(store, summary.nodes.evaluation.object)
const run = async (args: ReadonlyArray<string>, env?: NodeJS.ProcessEnv) => {
  const r = await polaris(["run", RECIPE, ...SMALL, ...args, "--json", "--progress", "none"], env === undefined ? {} : { env })
  expect(r.status, r.stderr).toBe(0)
  return JSON.parse(r.stdout)
}

let closers: Array<() => Promise<void>> = []
afterEach(async () => {
  await Promise.all(closers.map((c) => c()))
  closers = []
})

describe("eval-length", () => {
  it("evaluates a model served over the vLLM protocol exactly as the embedded engine runs it", async () => {
    const dir = tempDirInRepo("eval-vllm-")
    const engine = await Effect.runPromise(EmbeddedPolicy.make({ checkpoint: BASE, checkpointDir: join(dir, "served") }))
    const server = await serve(engine, { modelName: "polaris/story-1m", baseCheckpoint: BASE })
    closers.push(() => server.close())
    const store = join(dir, "store")
    const key = "vllm-key-never-stored-5e1d"
    const summary = await run([
      "--store", store,
      "--set", "eval.systems.1.name=served",
      "--set", `eval.systems.1.policy={backend: vllm, model: polaris/story-1m, sampler_urls: [${server.url}], tokenizer: ${BASE}, api_key: '\${POLARIS_TEST_VLLM_KEY}'}`
    ], { ...process.env, POLARIS_TEST_VLLM_KEY: key })
    // The served system's key is in no file of the store (node keys, frozen config, outputs).
    expect(anyFileContains(store, key)).toBe(false)
    const evaluation = evaluationOf(store, summary)
    expect(evaluation.systems.map((s: any) => s.name)).toEqual(["story-1m", "served"])
    const [embedded, served] = evaluation.systems.map((s: any) => s.summary)
    expect(embedded.stories).toBe(3 * 2 * 2) // 3 buckets x 2 prompts x 2 stories
    expect(Object.keys(embedded.buckets).sort()).toEqual(["far-ood", "id", "near-ood"])
    for (const key of ["length_score_mean", "quality_mean", "length_ratio_mean", "truncated_frac"]) {
      expect(served[key], key).toBeCloseTo(embedded[key], 9)
      for (const b of Object.keys(embedded.buckets)) expect(served.buckets[b][key], `${b} ${key}`).toBeCloseTo(embedded.buckets[b][key], 9)
    }
    expect(served.words_mean).toBe(embedded.words_mean)
    // The same texts: the proxy judge calls every comparison a tie, in both orders.
    const ratings = evaluation.ratings
    expect(ratings.comparisons).toBe(12)
    expect(ratings.position_consistency).toBe(1)
    expect(ratings.systems.map((s: any) => [s.name, s.rating])).toEqual([["served", 1000], ["story-1m", 1000]])
    expect(ratings.systems.find((s: any) => s.name === "served").vs_baseline).toMatchObject({ wins: 0, ties: 12, losses: 0, rate: 0.5 })

    // The report of an evaluation-only run: no training curves, both systems, the Elo table.
    const report = await polaris(["report", "--store", store])
    expect(report.status, report.stderr).toBe(0)
    const [htmlPath, jsonPath] = report.stdout.trim().split("\n")
    const json = JSON.parse(readFileSync(jsonPath!, "utf8"))
    expect(json.pipeline).toBe("eval-length")
    expect(json.training).toBeNull()
    expect(json.evaluation.systems.map((s: any) => s.name)).toEqual(["story-1m", "served"])
    expect(json.evaluation.ratings).toEqual(ratings)
    expect(json.samplesFrom).toBe("served")
    expect(readFileSync(htmlPath!, "utf8")).toContain("Pairwise preference (Elo)")
  }, 180_000)

  it("with a remote judge: unscorable comparisons are retried alone, and a new system costs only its own calls", async () => {
    const dir = tempDirInRepo("eval-judge-")
    let pairsFail = true
    // Verdicts: scores from the story's length. Preferences: the longer story (by position), or
    // malformed while `pairsFail`: every attempt fails and the comparison is unscorable.
    const answer = (req: any) => {
      const user = userOf(req)
      const pair = pairOf(user)
      if (pair !== undefined) {
        if (pairsFail) return "{\"analysis\": \"cut off"
        const [one, two] = pair
        return JSON.stringify({ analysis: `${one.length} vs ${two.length} characters`, winner: one.length === two.length ? "tie" : one.length > two.length ? "1" : "2" })
      }
      const story = storyOf(user)
      return JSON.stringify(Object.fromEntries(rubric.dimensions.map((d, i) => [d.id, { evidence: "e", score: 1 + ((story.length + i) % 10) }])))
    }
    const server: FakeServer = await startFakeGemini({ answer, requireKey: "k-eval" })
    closers.push(() => server.close())
    const env = { ...process.env, POLARIS_TEST_KEY: "k-eval" }
    const store = join(dir, "store")
    const judge = [
      "--store", store,
      "--set", "judge={backend: gemini, model: gemini-3-flash-preview, api_key: '${POLARIS_TEST_KEY}', rubric: story-quality, attempts: 2, timeout_s: 5, max_in_flight: 8}",
      "--set", `judge.base_url=${server.url}`
    ]
    const calls = () => {
      const pairs = server.calls.filter((c) => pairOf(userOf(c.body)) !== undefined).length
      return { pairs, verdicts: server.calls.length - pairs }
    }

    const first = await run(judge, env)
    const stories = 2 * 12 // two systems, 12 stories each
    // 12 comparisons x 2 orders x 2 attempts at most: a comparison stops at its first failed order.
    expect(calls().verdicts).toBe(stories)
    expect(calls().pairs).toBeGreaterThanOrEqual(12 * 2)
    expect(calls().pairs).toBeLessThanOrEqual(12 * 2 * 2)
    const failed = evaluationOf(store, first).ratings
    expect(failed).toMatchObject({ comparisons: 0, unscorable: 12, position_consistency: null })
    expect(readObject(store, first.nodes.pairwise.object).every((c: any) => c.unscorable?.reason === "Malformed" && c.ab === null)).toBe(true)

    pairsFail = false
    server.reset()
    const second = await run(judge, env)
    expect(calls()).toEqual({ verdicts: 0, pairs: 12 * 2 }) // only the comparisons, once per order
    const ratings = evaluationOf(store, second).ratings
    expect(ratings).toMatchObject({ comparisons: 12, unscorable: 0 })
    // The server prefers the longer text in either order, so both orders agree unless lengths tie.
    const comparisons = readObject(store, second.nodes.pairwise.object)
    for (const c of comparisons) expect(c.ab).toBe(c.ba)
    expect(ratings.position_consistency).toBe(1)
    const tuned = ratings.systems.find((s: any) => s.name === "story-1m-polaris")
    expect(tuned.vs_baseline.wins + tuned.vs_baseline.ties + tuned.vs_baseline.losses).toBe(12)
    expect(ratings.systems.find((s: any) => s.name === "story-1m").rating).toBe(1000)

    // A third system, the tuned model as an inference-only ONNX export: it writes the same
    // stories as story-1m-polaris, so every new comparison against the baseline repeats an
    // existing one's texts. Only its stories are new to the judge; its comparisons hit the memo.
    const onnx = join(dir, "onnx")
    await Checkpoint.exportOnnx(onnx, await Checkpoint.read(TUNED))
    expect(existsSync(join(onnx, "model.onnx"))).toBe(true)
    server.reset()
    const three = ["--set", `eval.systems=[{name: story-1m, policy: {backend: embedded, model: ${BASE}}}, {name: story-1m-polaris, policy: {backend: embedded, model: ${TUNED}}}, {name: onnx, policy: {backend: embedded, model: ${onnx}}}]`]
    const third = await run([...judge, ...three], env)
    const n3 = calls()
    expect(n3.verdicts).toBeLessThanOrEqual(12) // its 12 stories at most (equal texts share a verdict)
    expect(n3.pairs).toBeLessThanOrEqual(12 * 2)
    const after = evaluationOf(store, third)
    expect(after.systems.map((s: any) => s.name)).toEqual(["story-1m", "story-1m-polaris", "onnx"])
    expect(after.ratings.comparisons).toBe(24)
    for (const node of ["eval-story-1m/rollout", "eval-story-1m/judge", "eval-story-1m-polaris/judge"]) expect(third.nodes[node].status, node).toBe("cached")

    server.reset()
    await run([...judge, ...three], env)
    expect(calls()).toEqual({ verdicts: 0, pairs: 0 })
    expect(readFileSync(join(store, "runs", third.runId, "config.json"), "utf8")).not.toContain("k-eval")
  }, 300_000)

  it("with the batch judge, each stage sends its judgements as one job, not jobs of max_in_flight", async () => {
    const dir = tempDirInRepo("eval-batch-")
    const answer = (req: any) => {
      if (pairOf(userOf(req)) !== undefined) return JSON.stringify({ analysis: "a", winner: "tie" })
      return JSON.stringify(Object.fromEntries(rubric.dimensions.map((d) => [d.id, { evidence: "e", score: 5 }])))
    }
    const server = await startFakeGemini({ answer, requireKey: "k-batch", batchPolls: 1 })
    closers.push(() => server.close())
    const store = join(dir, "store")
    const summary = await run([
      "--store", store,
      "--set", "judge={backend: gemini, model: gemini-3-flash-preview, api_key: '${POLARIS_TEST_KEY}', rubric: story-quality, batch: true, batch_poll_s: 0.05, max_in_flight: 2}",
      "--set", `judge.base_url=${server.url}`
    ], { ...process.env, POLARIS_TEST_KEY: "k-batch" })
    const jobs = server.calls.filter((c) => c.method === "POST" && /:batchGenerateContent$/.test(c.path)).map((c: any) => c.body.batch.inputConfig.requests.requests.length)
    // Two judge nodes of 12 stories and 24 ordered comparisons: at most one job per stage
    // (in practice one job: the stages submit within the same collection window), where jobs of
    // max_in_flight would make many small ones, each waiting for the last.
    expect(jobs.reduce((a: number, b: number) => a + b, 0)).toBe(2 * 12 + 24)
    expect(jobs.length).toBeLessThanOrEqual(3)
    expect(server.calls.some((c) => /:generateContent$/.test(c.path))).toBe(false)
    expect(evaluationOf(store, summary).ratings).toMatchObject({ comparisons: 12, unscorable: 0 })
  }, 120_000)
})
