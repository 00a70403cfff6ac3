/**
 * Recipes end to end through the `polaris` command: a recipe with a custom stage from a `.ts`
 * file runs, is cached, and re-runs only that stage when its file changes; watch mode re-runs
 * exactly the stale nodes and debounces bursts of writes.
 */
import { spawn, spawnSync } from "node:child_process"
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { allFiles, tempDirInRepo } from "./support/store.ts"

const ROOT = join(import.meta.dirname, "..")
const BIN = join(ROOT, "bin", "polaris.js")
const PIPELINE = join(ROOT, "examples", "word-stats", "pipeline.ts")

const polaris = (args: ReadonlyArray<string>) => {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: "utf8" })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

const executedNodes = (json: string) =>
  Object.entries(JSON.parse(json).nodes as Record<string, { status: string }>)
    .filter(([, n]) => n.status === "executed").map(([id]) => id).sort()

const STAGE = (comment: string, minLength: number, item = "s") => `// ${comment}
import { Effect, Schema } from "effect"
import { Stage } from "polaris"

const TextStats = Schema.Struct({ name: Schema.String, words: Schema.Number, counts: Schema.Record(Schema.String, Schema.Number) })

export const keepLong = Stage.make({
  name: "keep-long",
  version: "1",
  inputs: { stats: Schema.Array(TextStats) },
  output: Schema.Array(TextStats),
  run: ({ stats }) =>
    Effect.succeed(stats.map((${item}) => ({ ...${item}, counts: Object.fromEntries(Object.entries(${item}.counts).filter(([w]) => w.length >= ${minLength})) })))
})
`

describe("recipes with custom stages", () => {
  it("runs a custom stage, caches it, and re-runs only it when its file changes", () => {
    const dir = tempDirInRepo("custom-")
    const store = join(dir, "store")
    writeFileSync(join(dir, "stages.ts"), STAGE("version 1", 3))
    writeFileSync(join(dir, "recipe.yaml"), [
      `pipeline: ${PIPELINE}`,
      "stages:",
      "  - uses: ./stages.ts#keepLong",
      "    after: count",
      "    id: keep-long"
    ].join("\n") + "\n")
    const recipe = join(dir, "recipe.yaml")

    const first = polaris(["run", recipe, "--store", store, "--json"])
    expect(first.code, first.stderr).toBe(0)
    expect(executedNodes(first.stdout)).toContain("keep-long")
    expect(JSON.parse(first.stdout).executed).toBe(8)

    const second = polaris(["run", recipe, "--store", store, "--json"])
    expect(JSON.parse(second.stdout)).toMatchObject({ executed: 0, cached: 8 })

    // A comment changes: the code does not, and nothing runs.
    writeFileSync(join(dir, "stages.ts"), STAGE("version 2: only a comment changed", 3))
    const comment = polaris(["run", recipe, "--store", store, "--json"])
    expect(executedNodes(comment.stdout)).toEqual([])

    // The code changes, its output does not: the stage re-runs, its descendants stay cached (early cutoff).
    writeFileSync(join(dir, "stages.ts"), STAGE("version 2", 3, "stat"))
    const third = polaris(["run", recipe, "--store", store, "--json"])
    expect(executedNodes(third.stdout)).toEqual(["keep-long"])

    // Its behaviour changes: it and its descendants re-run; `count` upstream stays cached.
    writeFileSync(join(dir, "stages.ts"), STAGE("version 3", 5))
    const fourth = polaris(["run", recipe, "--store", store, "--json"])
    const ran = executedNodes(fourth.stdout)
    expect(ran).toContain("keep-long")
    expect(ran).not.toContain("count")
    expect(ran).toContain("report")

    const explained = polaris(["explain", recipe, "keep-long", "--store", store])
    expect(explained.stdout).toContain("source:")
  })

  it("reports a custom stage that is not there, or inserted after no node, with exit code 2", () => {
    const dir = tempDirInRepo("custom-bad-")
    writeFileSync(join(dir, "stages.ts"), STAGE("v", 3))
    writeFileSync(join(dir, "a.yaml"), `pipeline: ${PIPELINE}\nstages:\n  - uses: ./stages.ts#keepShort\n    after: count\n`)
    const missing = polaris(["validate", join(dir, "a.yaml")])
    expect(missing.code).toBe(2)
    expect(missing.stderr).toContain(`exports no stage "keepShort"; its stages: keepLong`)
    writeFileSync(join(dir, "b.yaml"), `pipeline: ${PIPELINE}\nstages:\n  - uses: ./stages.ts#keepLong\n    after: cuont\n`)
    const nowhere = polaris(["validate", join(dir, "b.yaml")])
    expect(nowhere.code).toBe(2)
    expect(nowhere.stderr).toContain(`has no node "cuont" (did you mean "count"?) to insert keep-long after`)
    expect(nowhere.stderr).not.toMatch(/\n\s+at /)
  })
})

/** Starts `polaris watch` and collects its JSON cycle lines. */
const startWatch = (recipe: string, store: string) => {
  const child = spawn(process.execPath, [BIN, "watch", recipe, "--store", store, "--json"], { cwd: ROOT })
  const cycles: Array<Record<string, any>> = []
  let buffer = ""
  child.stdout.on("data", (d) => {
    buffer += d
    const lines = buffer.split("\n")
    buffer = lines.pop()!
    for (const line of lines) if (line.startsWith("{")) cycles.push(JSON.parse(line))
  })
  const until = async (status: string, n: number, ms = 30_000) => {
    const t0 = Date.now()
    while (cycles.filter((c) => c.status === status).length < n) {
      if (Date.now() - t0 > ms) throw new Error(`waited for ${n} x ${status}; got ${JSON.stringify(cycles.map((c) => c.status))}`)
      await new Promise((r) => setTimeout(r, 50))
    }
    return cycles.filter((c) => c.status === status)[n - 1]!
  }
  return { child, cycles, until }
}

describe("polaris watch", () => {
  it("interrupts a run that became stale, cleanly, and runs the new version", async () => {
    const dir = tempDirInRepo("watch-slow-")
    const recipe = join(dir, "recipe.yaml")
    const side = join(dir, "side.log")
    const write = (label: string) =>
      writeFileSync(recipe, `pipeline: ${join(ROOT, "test", "fixtures", "slow-pipeline.ts")}\nparams:\n  label: ${label}\n  sleep_ms: 3000\n  side: ${side}\n`)
    write("first")
    const w = startWatch(recipe, join(dir, "store"))
    try {
      const t0 = Date.now()
      while (!existsSync(side) || !readFileSync(side, "utf8").includes("start first")) {
        if (Date.now() - t0 > 20_000) throw new Error("the slow stage never started")
        await new Promise((r) => setTimeout(r, 50))
      }
      write("second")
      await w.until("interrupted", 1)
      const done = await w.until("succeeded", 1)
      expect(done.executed).toBe(2)
      expect(readFileSync(side, "utf8")).toBe("start first\nstart second\nfinish second\n")
      // No lock left behind: neither a key lock nor the run's own (locks/runs/).
      expect(allFiles(join(dir, "store", "locks"))).toEqual([])
    } finally {
      w.child.kill("SIGTERM")
    }
  }, 60_000)

  it("re-runs exactly the stale nodes on an edit, and once for a burst of writes", async () => {
    const dir = tempDirInRepo("watch-")
    const recipe = join(dir, "recipe.yaml")
    const write = (steps: number) => writeFileSync(recipe, `pipeline: ${PIPELINE}\nparams:\n  grow_steps: ${steps}\n`)
    write(3)
    const { child, cycles, until: untilStatus } = startWatch(recipe, join(dir, "store"))
    const until = (n: number) => untilStatus("succeeded", n)
    try {
      const first = await until(1)
      expect(first.executed).toBe(7)

      write(4)
      const second = await until(2)
      expect(executedNodes(JSON.stringify(second))).toEqual(["grow/step-003/grow", "report"])

      // Five writes within 100 ms: one re-run.
      for (let i = 0; i < 5; i++) {
        write(i % 2 === 0 ? 5 : 4)
        await new Promise((r) => setTimeout(r, 20))
      }
      const third = await until(3)
      await new Promise((r) => setTimeout(r, 1500))
      expect(cycles.filter((c) => c.status === "succeeded")).toHaveLength(3)
      expect(third.executed).toBe(2) // the last write asked for 5 steps: step 004 and the report
    } finally {
      child.kill("SIGTERM")
    }
    expect(readFileSync(recipe, "utf8")).toContain("grow_steps: 5")
  }, 60_000)
})
