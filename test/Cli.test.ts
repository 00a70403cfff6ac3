/** The `polaris` command: exit codes, summaries, resume, cache commands, no stack traces. */
import { spawnSync } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { tempDir } from "./support/store.ts"

const ROOT = join(import.meta.dirname, "..")
const FIXTURE = "test/fixtures/cli-pipeline.ts"

const polaris = (args: ReadonlyArray<string>, env: Record<string, string> = {}) => {
  const r = spawnSync(process.execPath, [join(ROOT, "bin", "polaris.js"), ...args], { cwd: ROOT, env: { ...process.env, ...env }, encoding: "utf8" })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

describe("polaris CLI", () => {
  it("runs a pipeline file, then reuses everything; --json reports it", () => {
    const store = tempDir()
    const first = polaris(["run", FIXTURE, "--store", store, "--json"])
    expect(first.code, first.stderr).toBe(0)
    expect(JSON.parse(first.stdout)).toMatchObject({ executed: 3, cached: 0 })
    const second = polaris(["run", FIXTURE, "--store", store, "--progress", "plain"])
    expect(second.code).toBe(0)
    expect(second.stdout).toMatch(/0 executed, 3 cached/)
    expect(second.stderr).toMatch(/words cached/)
  })

  it("exits 1 on a failed run, naming node, cause and log; resume continues the same run", () => {
    const store = tempDir()
    const failed = polaris(["run", FIXTURE, "--store", store, "--progress", "none"], { POLARIS_TEST_FAIL: "1" })
    expect(failed.code).toBe(1)
    expect(failed.stderr).toContain(`node "check" (stage check) failed: PermanentError: the check was told to fail`)
    expect(failed.stderr).toMatch(/log: .*events\.jsonl/)
    expect(failed.stderr).not.toMatch(/\n\s+at /) // no stack trace
    const runId = /run (\S+) failed/.exec(failed.stderr)![1]!
    const status = polaris(["status", runId, "--store", store, "--json"])
    expect(JSON.parse(status.stdout)).toMatchObject({ run: runId, status: "failed", failures: [{ node: "check" }] })
    const resumed = polaris(["resume", runId, "--store", store, "--json"])
    expect(resumed.code, resumed.stderr).toBe(0)
    expect(JSON.parse(resumed.stdout)).toMatchObject({ runId, executed: 1, cached: 2 })
  })

  it("exits 2 on usage errors and unloadable pipelines", () => {
    const store = tempDir()
    expect(polaris(["run", "--bogus"]).code).toBe(2)
    const missing = polaris(["run", "does-not-exist.ts", "--store", store])
    expect(missing.code).toBe(2)
    expect(missing.stderr).toContain("does-not-exist.ts")
    const notAPipeline = polaris(["run", "test/support/store.ts", "--store", store])
    expect(notAPipeline.code).toBe(2)
    expect(notAPipeline.stderr).toContain("exports no pipeline")
  })

  it("cache ls, verify and gc (a dry run by default)", () => {
    const store = tempDir()
    polaris(["run", FIXTURE, "--store", store, "--progress", "none"])
    const ls = polaris(["cache", "ls", "--store", store, "--json"])
    expect(JSON.parse(ls.stdout)).toMatchObject({ nodes: 3, memo: 8 })
    const verify = polaris(["cache", "verify", "--store", store, "--json"])
    expect(JSON.parse(verify.stdout)).toMatchObject({ corrupt: [] })
    const gc = polaris(["cache", "gc", "--store", store])
    expect(gc.stdout).toContain("dry run: nothing was deleted")
  })
})

describe("polaris CLI with recipes", () => {
  it("validate: ok, or positioned errors and exit 2", () => {
    const ok = polaris(["validate", "examples/word-stats/with-custom-stage.yaml"])
    expect(ok.code, ok.stderr).toBe(0)
    expect(ok.stdout).toContain("ok: pipeline word-stats, 8 nodes")
    const bad = polaris(["validate", "examples/word-stats/recipe.yaml", "--set", "params=3", "--set", "seed=x"])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain("--set seed=x: seed: Expected an integer")
  })

  it("schema prints the shipped JSON Schema", () => {
    const r = polaris(["schema"])
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toEqual(JSON.parse(readFileSync(join(ROOT, "recipes", "recipe.schema.json"), "utf8")))
  })

  it("dag renders the recipe's graph, custom stage included, as mermaid", () => {
    const r = polaris(["dag", "examples/word-stats/with-custom-stage.yaml", "--format", "mermaid"])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout.startsWith("flowchart TD")).toBe(true)
    expect(r.stdout).toContain("count -->|stats| dropShortWords")
  })
})

describe("polaris data split", () => {
  it("lists the stories of an anthology file, as text or JSON", () => {
    const text = polaris(["data", "split", "examples/anthologies/pg2776-ohenry-the-four-million.txt"])
    expect(text.code, text.stderr).toBe(0)
    expect(text.stdout).toContain("25 stories")
    expect(text.stdout).toContain("THE GIFT OF THE MAGI")
    const json = JSON.parse(polaris(["data", "split", "examples/anthologies/pg710-london-love-of-life.txt", "--json"]).stdout)
    expect(json).toHaveLength(8)
    expect(json[0]).toMatchObject({ anthology: "pg710-london-love-of-life", title: expect.any(String), words: expect.any(Number) })
    const missing = polaris(["data", "split", "nope.txt"])
    expect(missing.code).toBe(2)
    expect(missing.stderr).toContain("nope.txt")
  })
})

describe("shipped recipes", () => {
  it("validate, and render the POLARIS data graph as mermaid", () => {
    const ok = polaris(["validate", "recipes/polaris-data.yaml"])
    expect(ok.code, ok.stderr).toBe(0)
    const dag = polaris(["dag", "recipes/polaris-data.yaml", "--format", "mermaid"])
    expect(dag.stdout).toContain("split_stories -->|stories| dataset")
    expect(dag.stdout).toContain("train -->|stories| derive_prompts")
  })

  it("every recipe in recipes/ validates (secrets from the environment)", () => {
    const files = readdirSync(join(ROOT, "recipes")).filter((f) => f.endsWith(".yaml"))
    expect(files.length).toBeGreaterThanOrEqual(5)
    for (const f of files) {
      const r = polaris(["validate", join("recipes", f)], { GEMINI_API_KEY: "k", TINKER_API_KEY: "k" })
      expect(r.code, `${f}: ${r.stderr}`).toBe(0)
    }
  }, 180_000)
})

describe("polaris data stats", () => {
  it("summarises a recipe's dataset: anthologies, buckets, sample prompts", () => {
    const store = tempDir()
    const r = polaris(["data", "stats", "recipes/polaris-data.yaml", "--store", store])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/stories: \d+ train, \d+ held out/)
    expect(r.stdout).toContain("pg2814-joyce-dubliners")
    expect(r.stdout).toMatch(/1000-2000\s+\d+\s+weight 1/)
    expect(r.stdout).toMatch(/Write a \d+-word story about /)
    const json = JSON.parse(polaris(["data", "stats", "recipes/polaris-data.yaml", "--store", store, "--json"]).stdout)
    expect(json.report.input).toBe(231)
    expect(json.anthologies).toHaveLength(12)
    const notData = polaris(["data", "stats", "examples/word-stats/recipe.yaml", "--store", store])
    expect(notData.code).toBe(2)
    expect(notData.stderr).toContain(`has no "dataset" output`)
  }, 60_000)
})
