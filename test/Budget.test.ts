/**
 * A spending cap (`budget.usd`): the judge-references pipeline judged through a local
 * Gemini-protocol server at $0.5 / $3 per million tokens. Capped at half of what the uncapped
 * run spends, the run stops cleanly before the call that would pass the cap (exit 1, naming the
 * budget; its ledger within the cap); `polaris resume --budget-usd` with a higher cap finishes
 * it, paying for no verdict twice, with the same judged output as the uncapped run.
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { Effect } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import * as Rubric from "../src/engines/judge/Rubric.ts"
import { startFakeGemini, type FakeServer } from "./support/fakeGemini.ts"
import { storyOf, userOf } from "./support/judgePrompts.ts"
import { polaris } from "./support/cli.ts"
import { judgeReferencesRecipe } from "./support/recipes.ts"
import { tempDirInRepo } from "./support/store.ts"

const rubric = Effect.runSync(Rubric.load(Rubric.DEFAULT_RUBRIC))
const answer = (req: any) =>
  JSON.stringify(Object.fromEntries(rubric.dimensions.map((d, i) => [d.id, { evidence: "e", score: d.nullable === true ? null : 1 + ((storyOf(userOf(req)).length + i) % 10) }])))

const servers: Array<FakeServer> = []
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close()
})

const env = { ...process.env, POLARIS_TEST_GEMINI_KEY: "k" }
const ledger = (store: string, run: string) =>
  readFileSync(join(store, "runs", run, "spend.jsonl"), "utf8").trim().split("\n").filter((l) => l !== "").map((l) => JSON.parse(l))
const judgeObject = (summary: any) => summary.nodes.judge.object

describe("budget", () => {
  it("stops before the call that would pass the cap; resumed with a higher cap, it finishes with the uncapped result and no verdict paid twice", async () => {
    const server = await startFakeGemini({ answer })
    servers.push(server)
    const dir = tempDirInRepo("budget-")
    const file = judgeReferencesRecipe(dir, [
      "backend: gemini", "model: gemini-3-flash-preview", `base_url: ${server.url}`, "api_key: ${POLARIS_TEST_GEMINI_KEY}",
      "max_in_flight: 4", "price_per_million: { input: 0.5, output: 3.0 }",
      // About what the local server answers (the rubric's scores and 64 thought tokens).
      "expected_output_tokens: 300"
    ])

    const free = await polaris(["run", file, "--store", join(dir, "uncapped"), "--json"], { env })
    expect(free.status, free.stderr).toBe(0)
    const uncapped = JSON.parse(free.stdout)
    const paid = ledger(join(dir, "uncapped"), uncapped.runId)
    const total = paid.reduce((s: number, l: any) => s + l.usd, 0)
    expect(paid.length).toBeGreaterThan(10)
    expect(paid.every((l: any) => l.engine === "judge" && l.node === "judge" && l.usd > 0)).toBe(true)

    const store = join(dir, "capped")
    const cap = total / 2
    const capped = await polaris(["run", file, "--store", store, "--set", `budget.usd=${cap}`, "--progress", "plain"], { env })
    expect(capped.status).toBe(1)
    expect(capped.stderr).toContain(`budget: a judge call would take the run past its cap of $${cap.toFixed(2)}`)
    const runId = /run (\S+): \d+ executed/.exec(capped.stdout + capped.stderr)?.[1] ?? JSON.parse((await polaris(["status", "--store", store, "--json"])).stdout).run
    const first = ledger(store, runId)
    const spent = first.reduce((s: number, l: any) => s + l.usd, 0)
    expect(spent).toBeLessThanOrEqual(cap)
    expect(first.length).toBeGreaterThan(0)
    expect(first.length).toBeLessThan(paid.length)

    const resumed = await polaris(["resume", runId, "--store", store, "--budget-usd", String(total * 2), "--json"], { env })
    expect(resumed.status, resumed.stderr).toBe(0)
    const after = ledger(store, runId)
    // Every verdict paid once: the two attempts together made as many paid calls as the uncapped run.
    expect(after.length).toBe(paid.length)
    expect(after.reduce((s: number, l: any) => s + l.usd, 0)).toBeCloseTo(total, 9)
    expect(judgeObject(JSON.parse(resumed.stdout))).toBe(judgeObject(uncapped))
  }, 300_000)
})
