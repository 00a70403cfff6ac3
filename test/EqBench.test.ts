/**
 * EQ-Bench Creative Writing v3, read from the benchmark's own files (../shared/benchmarks, for
 * tests only: the project does not ship them): prompt assembly checked against those files, the
 * scoring and the slop index pinned on hand-computed examples, and the whole benchmark run with
 * the embedded models as the systems and a local Gemini-protocol server as the judge.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Effect } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import * as EqBench from "../src/eval/EqBench.ts"
import { polaris, ROOT } from "./support/cli.ts"
import { startFakeGemini, type FakeServer } from "./support/fakeGemini.ts"
import { userOf } from "./support/judgePrompts.ts"
import { tempDirInRepo } from "./support/store.ts"

const DIR = join(ROOT, "..", "shared", "benchmarks", "eqbench-creative-v3")
const data = await Effect.runPromise(EqBench.load(DIR))
const raw = (name: string) => readFileSync(join(DIR, name), "utf8")

describe("EQ-Bench files", () => {
  it("items: 32 prompts x iterations, <SEED> replaced by modifier (i-1) mod n, the judge keeping the base prompt", () => {
    const prompts = JSON.parse(raw("creative_writing_prompts_v3.json"))
    const items = EqBench.items(data, 3)
    expect(items).toHaveLength(32 * 3)
    for (const item of items) {
      const p = prompts[item.prompt_id]
      expect(item.base_prompt).toBe(p.writing_prompt)
      expect(item.prompt).toBe(p.writing_prompt.replace("<SEED>", p.seed_modifiers[(item.iteration - 1) % p.seed_modifiers.length]))
      expect(item.prompt).not.toContain("<SEED>")
    }
  })

  it("the rubric prompt is the benchmark's template with its criteria as '- ' lines and the lower-is-better ones joined by ', '", () => {
    const item = EqBench.items(data, 1)[0]!
    const prompt = EqBench.judgePrompt(data, item, "THE RESPONSE")
    const criteria = raw("creative_writing_criteria.txt").split("\n").map((l) => l.trim()).filter((l) => l !== "")
    const negative = raw("negative_criteria.txt").split("\n").map((l) => l.trim()).filter((l) => l !== "")
    expect(prompt).toContain(`[PROMPT START]\n\n${item.base_prompt}\n\n[PROMPT END]`)
    expect(prompt).toContain("[TEST MODEL RESPONSE]\n\nTHE RESPONSE\n\n[TEST MODEL RESPONSE END]")
    expect(prompt).toContain(`- For these criteria, lower is better:\n${negative.join(", ")}`)
    expect(prompt.endsWith(criteria.map((c) => `- ${c}`).join("\n"))).toBe(true)
    expect(prompt).not.toMatch(/\{(writing_prompt|test_model_response|creative_writing_criteria|lower_is_better_criteria)\}/)
    const pair = EqBench.pairwisePrompt(data, item, "STORY A", "STORY B")
    expect(pair).toContain("[WRITER A0493]\nSTORY A\n[/WRITER A0493]")
    expect(pair).toContain("[WRITER A0488]\nSTORY B\n[/WRITER A0488]")
  })

  it("scores: parsed as the benchmark does, negatives inverted, above 20 dropped", () => {
    const scores = EqBench.parseScores("[Analysis]\nFine.\n[Scores]\nCoherent: 15\nMeandering: 4\nElegant Prose: [12]\nAmateurish: 25\n")
    expect(scores).toEqual({ Coherent: 15, Meandering: 4, "Elegant Prose": 12 })
    // (15 + (20 - 4) + 12) / 3
    expect(EqBench.itemScore(scores, data.negative)).toBeCloseTo((15 + 16 + 12) / 3, 12)
  })

  it("slop index: word hits once, bigram hits twice, trigram hits eight times, per thousand words", () => {
    const slop = { words: new Set(["ached"]), bigrams: new Set(["deep breath"]), trigrams: new Set(["took deep breath"]) }
    // 11 tokens; "ached" once, "deep breath" twice, "took deep breath" once -> (1 + 2·2 + 8·1) / 11 per thousand
    expect(EqBench.slopIndex("She ached. He took a deep breath, then took deep breath!", slop)).toBeCloseTo((1 + 2 * 2 + 8) / 11 * 1000, 9)
    expect(EqBench.slopIndex("", slop)).toBe(0)
    expect(EqBench.parsePairwise('{"a": "x", "writing_quality": "A0493+++", "coherence": "A0488+", "avoids_cliches": "A0493++"}')).toEqual({ a: 5, b: 1 })
  })
})

const servers: Array<FakeServer> = []
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close()
})

const criteria = raw("creative_writing_criteria.txt").split("\n").map((l) => l.trim()).filter((l) => l !== "")
/** A judge that prefers longer responses, answering in the benchmark's formats. */
const answer = (req: any) => {
  const user = userOf(req)
  if (user.includes("[WRITER A0493]")) {
    const a = /\[WRITER A0493\]\n([\s\S]*?)\n\[\/WRITER A0493\]/.exec(user)![1]!
    const b = /\[WRITER A0488\]\n([\s\S]*?)\n\[\/WRITER A0488\]/.exec(user)![1]!
    const winner = a.length >= b.length ? "A0493" : "A0488"
    return JSON.stringify({ chain_of_thought_reasoning: "r", writing_quality: `${winner}+++`, coherence: `${winner}+` })
  }
  const response = /\[TEST MODEL RESPONSE\]\n\n([\s\S]*?)\n\n\[TEST MODEL RESPONSE END\]/.exec(user)![1]!
  const score = Math.min(20, 2 + Math.floor(response.length / 40))
  return `[Analysis]\nA piece.\n\n[Scores]\n\n${criteria.map((c) => `${c}: ${score}`).join("\n\n")}`
}

describe("polaris run (pipeline eqbench)", () => {
  it("generates every prompt with each system, judges with the benchmark's prompts, rates the systems", async () => {
    expect(existsSync(DIR)).toBe(true)
    const server = await startFakeGemini({ answer })
    servers.push(server)
    const dir = tempDirInRepo("eqbench-")
    const recipe = join(dir, "recipe.yaml")
    writeFileSync(recipe, [
      `extends: ${join(ROOT, "examples", "eqbench", "recipe.yaml")}`,
      `eqbench: { dir: ${DIR}, iterations: 1, max_tokens: 48 }`,
      "judge:",
      `  base_url: ${server.url}`,
      "  api_key: ${POLARIS_TEST_GEMINI_KEY}"
    ].join("\n") + "\n")
    const r = await polaris(["run", recipe, "--store", join(dir, "store"), "--json"], { env: { ...process.env, POLARIS_TEST_GEMINI_KEY: "k" } })
    expect(r.status, r.stderr).toBe(0)
    const summary = JSON.parse(r.stdout).outputs.eqbench
    expect(summary.items).toBe(32)
    expect(summary.systems.map((s: any) => s.name)).toEqual(["base", "polaris"])
    for (const s of summary.systems) {
      expect(s.scored).toBe(32)
      expect(s.rubric_score.estimate).toBeGreaterThan(0)
      expect(s.rubric_score.estimate).toBeLessThanOrEqual(100)
      expect(s.slop_index).toBeGreaterThanOrEqual(0)
    }
    expect(summary.systems[0].elo.estimate).toBe(1000)
    expect(summary.systems[1].win_rate.estimate).toBeGreaterThanOrEqual(0)
    // The judge read the benchmark's prompts: 32 rubric prompts per system and 2 orders per pair.
    const users = server.calls.map((c: any) => userOf(c.body))
    expect(users.filter((u) => u.includes("[TEST MODEL RESPONSE]"))).toHaveLength(64)
    expect(users.filter((u) => u.includes("[WRITER A0493]"))).toHaveLength(64)
    expect(users.every((u) => !u.includes("{writing_prompt}"))).toBe(true)
    // Again without --json: nothing runs, no call is made, and the summary is a table of the same numbers.
    const again = await polaris(["run", recipe, "--store", join(dir, "store")], { env: { ...process.env, POLARIS_TEST_GEMINI_KEY: "k" } })
    expect(again.status, again.stderr).toBe(0)
    expect(server.calls).toHaveLength(users.length)
    expect(again.stdout).toMatch(/run \S+: 0 executed/)
    expect(again.stdout).toContain("eqbench: EQ-Bench Creative Writing v3, 32 items per system")
    const polarisRow = again.stdout.split("\n").find((l) => l.trimStart().startsWith("polaris "))!
    expect(polarisRow).toContain(`${summary.systems[1].rubric_score.estimate.toFixed(1)} [`)
    expect(polarisRow).toContain(summary.systems[1].slop_index.toFixed(1))
    const runId = /run (\S+): 0 executed/.exec(again.stdout)![1]!
    const out = join(dir, "report")
    expect((await polaris(["report", runId, "--store", join(dir, "store"), "--out", out])).status).toBe(0)
    expect(JSON.parse(readFileSync(join(out, "report.json"), "utf8")).eqbench).toEqual(summary)
    expect(readFileSync(join(out, "report.html"), "utf8")).toContain(`<table class="eqbench">`)
  }, 600_000)
})
