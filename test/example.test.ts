/**
 * Keeps the docs true: the word-stats example runs as documented, executing every node on a
 * fresh store and none on the second run, with the same printed result.
 */
import { execFile } from "node:child_process"
import { readdirSync } from "node:fs"
import { join } from "node:path"
import { promisify } from "node:util"
import { describe, expect, it } from "vitest"
import { RunLog } from "polaris"
import { tempDir } from "./support/store.ts"

const ROOT = join(import.meta.dirname, "..")
const EXAMPLE = join(ROOT, "examples", "word-stats", "pipeline.ts")

const runExample = async (store: string) => {
  const { stdout, stderr } = await promisify(execFile)(process.execPath, ["--import", "tsx", EXAMPLE, store], { cwd: ROOT })
  const counts = /^nodes: (\d+), executed: (\d+), cached: (\d+) \(run \S+\)$/m.exec(stdout)
  if (counts === null) throw new Error(`no counts line in the example's output:\n${stdout}\n${stderr}`)
  const [nodes, executed, cached] = counts.slice(1, 4).map(Number) as [number, number, number]
  return { nodes, executed, cached, report: stdout.slice(0, counts.index) }
}

describe("examples/word-stats", () => {
  it("executes all 7 nodes on a fresh store, then none, printing the same report", async () => {
    const store = tempDir("polaris-example-")
    const first = await runExample(store)
    expect(first).toMatchObject({ nodes: 7, executed: 7, cached: 0 })
    expect(first.report).toContain("mansfield-garden-party         134")
    expect(first.report).toMatch(/vocabulary of 14 words covers 33\.1% of the text/)
    // The pretend rating service fails once; the stage's Retry.backoff schedule retries it.
    const [runId] = readdirSync(join(store, "runs"))
    const events = await RunLog.readJsonl(join(store, "runs", runId!, "events.jsonl"))
    expect(events.filter((e) => e.type === "node_retry").map((e) => [e.node, e.attempt])).toEqual([["rate", 1]])
    expect(events.filter((e) => e.type === "memo_stored")).toHaveLength(3)

    const second = await runExample(store)
    expect(second).toMatchObject({ nodes: 7, executed: 0, cached: 7 })
    expect(second.report).toBe(first.report)
  })
})

describe("examples/embedded-model", () => {
  it("samples two stories from the shipped model, reproduces their logprobs, and takes a step", async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", join(ROOT, "examples", "embedded-model", "story.ts")], { cwd: ROOT })
    const stories = [...stdout.matchAll(/^--- (\d+) tokens, stopped by (stop|length)$/gm)]
    expect(stories).toHaveLength(2)
    const gap = /max \|Δ logprob\| = (\S+)$/m.exec(stdout)
    expect(Number(gap?.[1])).toBeLessThan(1e-4)
    expect(stdout).toMatch(/optimizer step 1$/m)
  }, 60_000)
})
