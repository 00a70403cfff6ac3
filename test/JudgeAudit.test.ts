/**
 * The judge audit (pipeline judge-audit): the damage transforms, the statistics pinned on a
 * hand-computed example, and the whole audit against local Gemini-protocol and OpenAI-compatible servers whose
 * judging is known: one that prefers longer stories must show length bias, one that always
 * picks the story shown first must show position bias, and two judges that rank alike agree.
 */
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { Effect } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { variants } from "../src/eval/Damage.ts"
import { pearson, spearman } from "../src/eval/JudgeAudit.ts"
import * as Rubric from "../src/engines/judge/Rubric.ts"
import { polaris, ROOT } from "./support/cli.ts"
import { startFakeGemini, type FakeServer } from "./support/fakeGemini.ts"
import { startFakeOpenAI } from "./support/fakeOpenAI.ts"
import { pairOf, storyOf, userOf } from "./support/judgePrompts.ts"
import { tempDirInRepo } from "./support/store.ts"

const STORY = "One two three four.\n\nFive six seven eight.\n\nNine ten eleven twelve.\n\nThirteen fourteen fifteen sixteen."

describe("story damage", () => {
  it("truncates by words, cuts the ending, repeats a middle paragraph, shuffles, pads without removing a word", () => {
    const v = variants(STORY, "s")
    expect(v.truncated_50).toBe("One two three four.\n\nFive six seven eight.")
    expect(v.truncated_75.split(/\s+/)).toHaveLength(12)
    expect(v.ending_cut).toBe("One two three four.\n\nFive six seven eight.\n\nNine ten eleven twelve.")
    expect(v.repeated).toBe("One two three four.\n\nFive six seven eight.\n\nNine ten eleven twelve.\n\nNine ten eleven twelve.\n\nThirteen fourteen fifteen sixteen.")
    expect(v.shuffled).not.toBe(STORY)
    expect(v.shuffled.split("\n\n").sort()).toEqual(STORY.split("\n\n").sort())
    expect(v.padded.split(/\s+/).length).toBeGreaterThan(STORY.split(/\s+/).length)
    for (const w of STORY.split(/\s+/)) expect(v.padded).toContain(w)
  })

  it("rank statistics match hand computations", () => {
    expect(pearson([[1, 2], [2, 4], [3, 6]])).toBeCloseTo(1, 12)
    // Ranks 1,2,3 against 1,3,2: Pearson of ranks = 0.5.
    expect(spearman([[10, 1], [20, 30], [30, 5]])).toBeCloseTo(0.5, 12)
  })
})

const rubric = Effect.runSync(Rubric.load(Rubric.DEFAULT_RUBRIC))
const words = (s: string) => s.split(/\s+/).filter((w) => w !== "").length
const verdictOf = (score: number) => JSON.stringify(Object.fromEntries(rubric.dimensions.map((d) => [d.id, { evidence: "e", score: d.nullable === true ? null : score }])))
/** A judge that likes length: scores grow with words, and the longer of two stories wins. */
const longer = (req: any) => {
  const user = userOf(req)
  const pair = pairOf(user)
  if (pair !== undefined) return JSON.stringify({ analysis: "the longer one", winner: words(pair[0]) >= words(pair[1]) ? "1" : "2" })
  // 500 words -> 4, 1,000 -> 5, 2,000 -> 6, 4,000 -> 7, 8,000 -> 9: a score that grows with length.
  return verdictOf(Math.max(1, Math.min(10, 1 + Math.floor(Math.log2(words(storyOf(user)) / 100) * 1.3))))
}
/** A judge that always picks the story shown first, and scores by a hash of the text. */
const first = (req: any) => {
  const user = userOf(req)
  if (pairOf(user) !== undefined) return JSON.stringify({ analysis: "the first", winner: "1" })
  const s = storyOf(user)
  return verdictOf(1 + ((s.length * 7) % 10))
}

const servers: Array<FakeServer> = []
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close()
})

const recipeFor = (dir: string, url: string, extra: ReadonlyArray<string> = [], judge: ReadonlyArray<string> = ["  backend: gemini", "  model: gemini-3-flash-preview"]) => {
  const file = join(dir, "audit.yaml")
  writeFileSync(file, [
    `extends: ${join(ROOT, "recipes", "judge-audit.yaml")}`,
    "judge:",
    ...judge,
    `  base_url: ${url}`,
    "  api_key: ${POLARIS_TEST_GEMINI_KEY}",
    "audit:",
    "  stories: 8",
    "  samples: 2",
    ...extra
  ].join("\n") + "\n")
  return file
}
const env = { ...process.env, POLARIS_TEST_GEMINI_KEY: "k" }
const run = async (file: string, store: string) => {
  const r = await polaris(["run", file, "--store", store, "--json"], { env })
  expect(r.status, r.stderr).toBe(0)
  return JSON.parse(r.stdout).outputs.audit
}

describe("polaris run recipes/judge-audit.yaml", () => {
  it("shows a judge that prefers longer stories as length bias, and truncation as damage", async () => {
    const server = await startFakeGemini({ answer: longer })
    servers.push(server)
    const dir = tempDirInRepo("audit-long-")
    const a = await run(recipeFor(dir, server.url), join(dir, "store"))
    expect(a.stories).toBe(8)
    expect(a.length.padded_win_rate.estimate).toBe(1)
    expect(a.length.padded_gain.estimate).toBeGreaterThanOrEqual(0)
    expect(a.length.quality_length_r.estimate).toBeGreaterThan(0.5)
    expect(a.damage.truncated_50.lower.estimate).toBeGreaterThan(0.5)
    expect(a.damage.truncated_50.drop.estimate).toBeGreaterThan(0)
    // Both orders chose the same (longer) story: consistent, no position bias.
    expect(a.position.consistency.estimate).toBe(1)
    expect(a.position.first_chosen.estimate).toBe(0.5)
    // A deterministic server: no test-retest noise.
    expect(a.retest.samples).toBe(2)
    expect(a.retest.quality_sd.estimate).toBeCloseTo(0, 12)
  }, 300_000)

  it("shows a judge that always picks the first story as position bias; a second judge's agreement is measured", async () => {
    const server = await startFakeGemini({ answer: first })
    const other = await startFakeGemini({ answer: first })
    servers.push(server, other)
    const dir = tempDirInRepo("audit-first-")
    const a = await run(recipeFor(dir, server.url, [
      "  second_judge:",
      "    backend: gemini",
      "    model: gemini-3-pro-preview",
      `    base_url: ${other.url}`,
      "    api_key: ${POLARIS_TEST_GEMINI_KEY}"
    ]), join(dir, "store"))
    expect(a.position.first_chosen.estimate).toBe(1)
    expect(a.position.consistency.estimate).toBe(0)
    expect(a.length.padded_win_rate.estimate).toBe(0.5)
    // The second judge scores exactly as the first: rank correlation 1.
    expect(a.agreement.stories).toBe(8)
    expect(a.agreement.spearman.estimate).toBeCloseTo(1, 12)
    expect(a.judges).toHaveLength(2)
    expect(other.calls.length).toBeGreaterThan(0)
  }, 300_000)

  it("audits an OpenAI-compatible judge the same way: one that picks the second story and scores with noise shows both", async () => {
    // Each call's score moves by the number of calls made so far (mod 3): the same story judged
    // twice gets different scores, which is what test-retest noise measures.
    let calls = 0
    const second = (req: any) => {
      const user = userOf(req)
      if (pairOf(user) !== undefined) return JSON.stringify({ analysis: "the second", winner: "2" })
      return verdictOf(4 + (calls++ % 3))
    }
    const server = await startFakeOpenAI({ answer: second })
    servers.push(server)
    const dir = tempDirInRepo("audit-openai-")
    const a = await run(recipeFor(dir, `${server.url}/v1`, [], ["  backend: openai", "  model: Qwen/Qwen3-8B"]), join(dir, "store"))
    expect(a.stories).toBe(8)
    expect(a.position.first_chosen.estimate).toBe(0)
    expect(a.position.consistency.estimate).toBe(0)
    expect(a.retest.quality_sd.estimate).toBeGreaterThan(0)
    expect(server.calls.length).toBe(calls + a.stories * 2)
  }, 300_000)
})
