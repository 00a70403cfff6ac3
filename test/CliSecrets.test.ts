/**
 * Recipes without their secrets, through the `polaris` command: `validate` warns about each unset
 * variable by name and exits 0; `run` warns, runs what needs no secret, and fails a node only when
 * it would call the engine that needs one, naming the variable; a cached result is reused without it.
 */
import { join } from "node:path"
import { Effect } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import * as Rubric from "../src/engines/judge/Rubric.ts"
import { startFakeGemini, type FakeServer } from "./support/fakeGemini.ts"
import { polaris, ROOT } from "./support/cli.ts"
import { judgeReferencesRecipe } from "./support/recipes.ts"
import { tempDirInRepo } from "./support/store.ts"

const rubric = Effect.runSync(Rubric.load(Rubric.DEFAULT_RUBRIC))
/** A well-formed verdict: every dimension scored 7. */
const answer = () => JSON.stringify(Object.fromEntries(rubric.dimensions.map((d) => [d.id, { evidence: "fine", score: d.nullable === true ? null : 7 }])))

/** The environment without the variables the recipes (and this test) name. */
const bare = (): NodeJS.ProcessEnv => {
  const { GEMINI_API_KEY: _g, TINKER_API_KEY: _t, POLARIS_TEST_JUDGE_KEY: _k, POLARIS_STORE: _s, ...env } = process.env
  return env
}

let servers: Array<FakeServer> = []
afterEach(async () => {
  await Promise.all(servers.map((s) => s.close()))
  servers = []
})

describe("secrets that are not set", () => {
  it("validate: a warning naming each unset variable at its recipe line, exit 0", async () => {
    const cases = [
      ["polaris-qwen3.5-9b.yaml", [
        "warning: recipes/polaris-qwen3.5-9b.yaml:33:14: data.writer.api_key: environment variable GEMINI_API_KEY is not set; nodes that need it fail until it is set",
        "warning: recipes/polaris-qwen3.5-9b.yaml:53:12: judge.api_key: environment variable GEMINI_API_KEY is not set; nodes that need it fail until it is set"
      ]],
      // It extends the qwen recipe: its own secret and the two it inherits, each where it is written.
      ["polaris-hosted-tinker.yaml", [
        "warning: recipes/polaris-hosted-tinker.yaml:14:12: policy.api_key: environment variable TINKER_API_KEY is not set; nodes that need it fail until it is set",
        "warning: recipes/polaris-qwen3.5-9b.yaml:33:14: data.writer.api_key: environment variable GEMINI_API_KEY is not set; nodes that need it fail until it is set",
        "warning: recipes/polaris-qwen3.5-9b.yaml:53:12: judge.api_key: environment variable GEMINI_API_KEY is not set; nodes that need it fail until it is set"
      ]]
    ] as const
    for (const [file, warnings] of cases) {
      const r = await polaris(["validate", join("recipes", file)], { env: bare() })
      expect(r.status, r.stderr).toBe(0)
      expect(r.stdout).toMatch(new RegExp(`^ok: pipeline polaris, \\d+ nodes \\(${warnings.length} warnings?\\)\\n$`))
      expect(r.stderr.trimEnd().split("\n")).toEqual(warnings)
      const json = await polaris(["validate", join("recipes", file), "--json"], { env: bare() })
      expect(json.status).toBe(0)
      expect(JSON.parse(json.stdout)).toMatchObject({ ok: true, pipeline: "polaris", warnings: warnings.map((w) => w.slice("warning: ".length)) })
    }
    // With the variables set: no warning.
    const set = await polaris(["validate", "recipes/polaris-qwen3.5-9b.yaml"], { env: { ...bare(), GEMINI_API_KEY: "k" } })
    expect(set.stderr).not.toContain("warning")
  }, 120_000)

  it("run: only the node that calls the judge fails, naming the variable; with the key it runs; cached, it needs no key", async () => {
    const server = await startFakeGemini({ answer })
    servers.push(server)
    const dir = tempDirInRepo("secrets-")
    const store = join(dir, "store")
    const file = judgeReferencesRecipe(dir, ["backend: gemini", "model: gemini-3-flash-preview", `base_url: ${server.url}`, "api_key: ${POLARIS_TEST_JUDGE_KEY}", "attempts: 1"])

    const without = await polaris(["run", file, "--store", store, "--progress", "plain"], { env: bare() })
    expect(without.status).toBe(1)
    expect(without.stderr).toContain(`warning: ${file.startsWith(ROOT) ? file.slice(ROOT.length + 1) : file}:11:12: judge.api_key: environment variable POLARIS_TEST_JUDGE_KEY is not set; nodes that need it fail until it is set`)
    expect(without.stderr).toContain(`node "judge" (stage judge) failed: MissingSecret: environment variable POLARIS_TEST_JUDGE_KEY is not set (needed by engine polaris/Judge); set it, then \`polaris resume\``)
    expect(server.calls).toHaveLength(0) // no call was made with a stand-in key
    // Everything before the judge ran.
    const status = JSON.parse((await polaris(["status", "--store", store, "--json"], { env: bare() })).stdout)
    expect(status.failures).toEqual([{ node: "judge", error: expect.stringContaining("POLARIS_TEST_JUDGE_KEY") }])
    expect(status.nodes.finished).toBeGreaterThanOrEqual(4)

    const resumed = await polaris(["resume", "--store", store, "--progress", "none"], { env: { ...bare(), POLARIS_TEST_JUDGE_KEY: "k" } })
    expect(resumed.status, resumed.stderr).toBe(0)
    expect(resumed.stderr).not.toContain("warning")
    const calls = server.calls.length
    expect(calls).toBeGreaterThan(0)

    // The judge's results are cached: no key needed to run it again (a warning says it is unset).
    const cached = await polaris(["run", file, "--store", store, "--progress", "none"], { env: bare() })
    expect(cached.status, cached.stderr).toBe(0)
    expect(cached.stdout).toMatch(/: 0 executed, \d+ cached/)
    expect(cached.stderr).toContain("POLARIS_TEST_JUDGE_KEY is not set")
    expect(server.calls).toHaveLength(calls)
  }, 180_000)
})
