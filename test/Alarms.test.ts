/**
 * Reward-hacking alarms (src/eval/Alarms.ts, stages/rewardAlarms.ts): the values pinned on a
 * hand-computed step; then a run whose judge (a local Gemini-protocol server) scores longer
 * stories higher drives the reward-length correlation over its threshold, and the warning
 * appears in the live view, the run summary and the report; with `stop: true` the run stops
 * before the step trains and continues, with nothing finished repeated, once stopping is off.
 */
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Effect } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { tripped, values } from "../src/eval/Alarms.ts"
import * as Rubric from "../src/engines/judge/Rubric.ts"
import { polaris, ROOT } from "./support/cli.ts"
import { startFakeGemini, type FakeServer } from "./support/fakeGemini.ts"
import { storyOf, userOf } from "./support/judgePrompts.ts"
import { tempDirInRepo } from "./support/store.ts"

describe("alarm values", () => {
  it("are computed as defined, and trip only above their thresholds", () => {
    const v = values({
      rewardLengthCorr: 0.8,
      // Gaps: 0.9 - 0.5 = 0.4 and 0.3 - 0.6 = -0.3 -> mean 0.05; the second group also has spread.
      groups: [{ rollouts: [0.9, 0.1, null], reference: 0.5 }, { rollouts: [0.3, 0.3], reference: 0.6 }, { rollouts: [0.2, 0.2], reference: 0.2 }],
      stories: 10,
      unscorable: 1,
      lengthRatio: 1.4,
      firstLengthRatio: 1.0
    })
    expect(v.reward_length_corr).toBe(0.8)
    expect(v.best_vs_reference).toBeCloseTo((0.4 - 0.3 + 0) / 3, 12)
    expect(v.zero_spread).toBeCloseTo(1 / 3, 12)
    expect(v.unscorable_rate).toBe(0.1)
    expect(v.length_ratio_drift).toBeCloseTo(0.4, 12)
    expect(tripped(v, { reward_length_corr: 0.5, unscorable_rate: 0.1, length_ratio_drift: 0.3 }).map((t) => t.alarm)).toEqual(["reward_length_corr", "length_ratio_drift"])
  })
})

const rubric = Effect.runSync(Rubric.load(Rubric.DEFAULT_RUBRIC))
// Longer stories score higher on every dimension: a judge with a length bias.
const byLength = (req: any) => {
  const words = storyOf(userOf(req)).split(/\s+/).filter((w) => w !== "").length
  const score = Math.max(1, Math.min(10, 1 + Math.floor(words / 12)))
  return JSON.stringify(Object.fromEntries(rubric.dimensions.map((d) => [d.id, { evidence: "e", score: d.nullable === true ? null : score }])))
}

const servers: Array<FakeServer> = []
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close()
})

const recipe = (dir: string, url: string, stop: boolean) => {
  const file = join(dir, `recipe-${stop}.yaml`)
  writeFileSync(file, [
    `extends: ${join(ROOT, "recipes", "quickstart.yaml")}`,
    "grpo: { steps: 2, groups_per_step: 2 }",
    "eval: { prompts_per_bucket: 1, buckets: [{ name: id, min_words: 40, max_words: 150 }], pairwise: false }",
    "reward: { length_factor: none }",
    "judge:",
    "  backend: gemini",
    "  model: gemini-3-flash-preview",
    `  base_url: ${url}`,
    "  api_key: ${POLARIS_TEST_GEMINI_KEY}",
    `alarms: { reward_length_corr: 0.3, stop: ${stop} }`
  ].join("\n") + "\n")
  return file
}
const env = { ...process.env, POLARIS_TEST_GEMINI_KEY: "k" }

describe("a judge that rewards length", () => {
  it("trips the reward-length alarm: in the live view, the summary and the report", async () => {
    const server = await startFakeGemini({ answer: byLength })
    servers.push(server)
    const dir = tempDirInRepo("alarms-")
    const store = join(dir, "store")
    const r = await polaris(["run", recipe(dir, server.url, false), "--store", store, "--progress", "plain"], { env })
    expect(r.status, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/step 1\/2 .*⚠ reward_length_corr 0\.\d+/)
    expect(r.stdout).toContain("warning: reward-hacking alarms tripped")
    expect(r.stdout).toMatch(/reward_length_corr \(correlation of reward with story length\): steps? 1/)
    const runId = /run (\S+): \d+ executed/.exec(r.stdout)![1]!
    const out = join(dir, "report")
    expect((await polaris(["report", runId, "--store", store, "--out", out])).status).toBe(0)
    const report = JSON.parse(readFileSync(join(out, "report.json"), "utf8"))
    expect(report.alarms.length).toBeGreaterThan(0)
    expect(report.alarms.every((t: any) => t.alarm === "reward_length_corr" && t.value > 0.3)).toBe(true)
    expect(readFileSync(join(out, "report.html"), "utf8")).toContain('data-alarm="reward_length_corr"')
  }, 300_000)

  it("with stop: true, stops before the step trains; with stopping off, continues without repeating finished work", async () => {
    const server = await startFakeGemini({ answer: byLength })
    servers.push(server)
    const dir = tempDirInRepo("alarms-stop-")
    const store = join(dir, "store")
    const stopped = await polaris(["run", recipe(dir, server.url, true), "--store", store, "--progress", "plain"], { env })
    expect(stopped.status).toBe(1)
    expect(stopped.stderr).toContain("reward-hacking alarm: reward_length_corr")
    expect(stopped.stderr).toMatch(/train\/step-000\/update skipped/)
    const verdicts = server.calls.length
    const resumed = await polaris(["run", recipe(dir, server.url, false), "--store", store, "--progress", "plain"], { env })
    expect(resumed.status, resumed.stderr).toBe(0)
    // Step 0's stories were judged once: only step 1's and the evaluation's are new.
    expect(resumed.stderr).not.toMatch(/train\/step-000\/group-\d\/rollout started/)
    expect(server.calls.length).toBeGreaterThan(verdicts)
  }, 300_000)
})
