/**
 * Sweeps and comparison through the `polaris` command, on the quickstart reduced to 2 steps of 2
 * groups:
 * - `polaris sweep` over grpo.reference_loss × 2 seeds: every variant finishes, and a node the
 *   variants share (same key) is executed by exactly one of their runs, the others reuse it;
 * - `polaris compare` of the sweep: the differing values, each group's numbers equal to the mean
 *   of its runs' own evaluations, and the HTML page renders in headless Chromium;
 * - a sweep SIGKILLed after its first variant finished resumes with `polaris resume <sweep>`:
 *   the finished variant is not run again, and every variant ends with the outputs an
 *   uninterrupted sweep gives.
 */
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { BIN, polaris, readObject, ROOT } from "./support/cli.ts"
import { renderInChromium } from "./support/chromium.ts"
import { tempDirInRepo } from "./support/store.ts"

const RECIPE = join(ROOT, "recipes", "quickstart.yaml")
const SMALL = ["--set", "grpo.steps=2", "--set", "grpo.groups_per_step=2", "--set", "eval.prompts_per_bucket=2", "--set", "eval.buckets=[{name: id, min_words: 40, max_words: 150}]"]

const sweepState = (store: string, id: string) => JSON.parse(readFileSync(join(store, "sweeps", id, "sweep.json"), "utf8"))
const manifest = (store: string, run: string) => JSON.parse(readFileSync(join(store, "runs", run, "manifest.json"), "utf8"))
const runStarts = (store: string, run: string) =>
  readFileSync(join(store, "runs", run, "events.jsonl"), "utf8").trim().split("\n").filter((l) => JSON.parse(l).type === "run_started").length
const sweepIdOf = (stderr: string) => /sweep (\S+): \d+ variants/.exec(stderr)![1]!

describe("polaris sweep and compare", () => {
  const dir = tempDirInRepo("sweep-")
  const store = join(dir, "store")
  let sweepId = ""

  it("runs every variant, each shared node once; compare shows what differs with the runs' own numbers, in a page Chromium renders", async () => {
    const r = await polaris(["sweep", RECIPE, "--grid", "grpo.reference_loss=[on_policy, luffy]", "--grid", "seed=[1, 2]", ...SMALL, "--store", store])
    expect(r.status, r.stderr).toBe(0)
    sweepId = sweepIdOf(r.stderr)
    const state = sweepState(store, sweepId)
    expect(state.variants.map((v: any) => [v.name, v.status])).toEqual([
      ["grpo.reference_loss=on_policy,seed=1", "succeeded"], ["grpo.reference_loss=on_policy,seed=2", "succeeded"],
      ["grpo.reference_loss=luffy,seed=1", "succeeded"], ["grpo.reference_loss=luffy,seed=2", "succeeded"]
    ])
    // Every key that several variants' runs hold was executed by exactly one of them.
    const byKey = new Map<string, Array<string>>()
    for (const v of state.variants) {
      for (const [id, n] of Object.entries(manifest(store, v.run).nodes as Record<string, any>)) byKey.set(n.key, [...(byKey.get(n.key) ?? []), `${v.name}:${id}:${n.status}`])
    }
    const shared = [...byKey.values()].filter((xs) => xs.length > 1)
    expect(shared.length).toBeGreaterThan(20) // data, prompts, the initial policy's evaluation...
    for (const xs of shared) expect(xs.filter((x) => x.endsWith(":executed")), xs.join("\n")).toHaveLength(1)
    expect(byKey.size).toBeLessThan(state.variants.reduce((n: number, v: any) => n + Object.keys(manifest(store, v.run).nodes).length, 0))

    // compare: grouped by reference_loss, 2 seeds each; numbers are the mean of the runs' own evaluations.
    const c = await polaris(["compare", sweepId, "--store", store, "--json"])
    expect(c.status, c.stderr).toBe(0)
    const comparison = JSON.parse(c.stdout)
    expect(comparison.differing).toEqual(["grpo.reference_loss", "seed"])
    expect(comparison.groups.map((g: any) => [g.name, g.seeds])).toEqual([["grpo.reference_loss=on_policy", ["1", "2"]], ["grpo.reference_loss=luffy", ["1", "2"]]])
    for (const g of comparison.groups) {
      const own = g.runs.map((run: string) => {
        const m = manifest(store, run)
        const evaluation = readObject(store, m.nodes[m.outputs.evaluation].object)
        return Object.fromEntries(evaluation.systems.map((s: any) => [s.name, s.summary]))
      })
      for (const [system, metric, field] of [["final", "length_score", "length_score_mean"], ["final", "reward", "reward_mean"], ["initial", "quality", "quality_mean"], ["final", "length_ratio", "length_ratio_mean"]] as const) {
        const cell = g.systems[system][metric].overall
        expect(cell.estimate).toBeCloseTo(own.reduce((s: number, o: any) => s + o[system][field], 0) / own.length, 9)
        expect(cell.low).toBeLessThanOrEqual(cell.estimate)
        expect(cell.high).toBeGreaterThanOrEqual(cell.estimate)
      }
      // The per-bucket cells are the runs' own per-bucket numbers, averaged over seeds.
      const bucket = Object.keys(own[0].final.buckets)[0]!
      expect(g.systems.final.length_score.buckets[bucket].estimate).toBeCloseTo(own.reduce((s: number, o: any) => s + o.final.buckets[bucket].length_score_mean, 0) / own.length, 9)
      expect(g.curves.reward_policy_mean.map((p: any) => p[0])).toEqual([0, 1])
    }
    const table = await polaris(["compare", sweepId, "--store", store])
    expect(table.status, table.stderr).toBe(0)
    expect(table.stdout).toContain("differing: grpo.reference_loss, seed")
    expect(table.stdout).toMatch(/grpo\.reference_loss=luffy\s+2\s+\d/)
    const html = join(store, "sweeps", sweepId, "compare.html")
    expect(readFileSync(html, "utf8")).toContain("grpo.reference_loss=on_policy")
    renderInChromium(html, "compare-screenshot", "1280,1800")
  }, 600_000)

  it("a sweep killed after its first variant finished resumes the rest; the finished one is not run again", async () => {
    const killedStore = join(dir, "killed")
    const args = [BIN, "sweep", RECIPE, "--grid", "seed=[1, 2]", "--set", "grpo.reference_loss=luffy", "--set", "sweep.concurrency=1", ...SMALL, "--store", killedStore]
    const killed = await new Promise<{ signal: string | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] })
      let stderr = ""
      child.stderr.on("data", (d) => {
        stderr += d
        if (/: succeeded \(/.test(stderr)) child.kill("SIGKILL")
      })
      child.on("exit", (_, signal) => resolve({ signal, stderr }))
    })
    expect(killed.signal, killed.stderr).toBe("SIGKILL")
    const id = sweepIdOf(killed.stderr)
    const before = sweepState(killedStore, id)
    const finished = before.variants.filter((v: any) => v.status === "succeeded")
    expect(finished.map((v: any) => v.name)).toEqual(["seed=1"])
    expect(before.variants[1].status).toMatch(/pending|running/)

    const resumed = await polaris(["resume", id, "--store", killedStore])
    expect(resumed.status, resumed.stderr).toBe(0)
    expect(resumed.stderr).not.toContain("variant seed=1:")
    const after = sweepState(killedStore, id)
    expect(after.variants.map((v: any) => v.status)).toEqual(["succeeded", "succeeded"])
    expect(after.variants[0].run).toBe(finished[0].run)
    expect(runStarts(killedStore, finished[0].run)).toBe(1)

    // The same outputs as the uninterrupted sweep's luffy variants, node for node.
    const clean = sweepState(store, sweepId)
    for (const seed of [1, 2]) {
      const a = manifest(store, clean.variants.find((v: any) => v.name === `grpo.reference_loss=luffy,seed=${seed}`).run).nodes
      const b = manifest(killedStore, after.variants.find((v: any) => v.name === `seed=${seed}`).run).nodes
      expect(Object.fromEntries(Object.entries(b).map(([k, n]: [string, any]) => [k, n.object]))).toEqual(Object.fromEntries(Object.entries(a).map(([k, n]: [string, any]) => [k, n.object])))
    }
  }, 600_000)
})
