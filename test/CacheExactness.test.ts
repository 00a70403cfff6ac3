/**
 * The cache is exact and portable (ARCHITECTURE.md §5, "Exactness rules"), shown on the reduced
 * quickstart through the `polaris` command:
 * - a store moved to another folder is fully cached there and can be extended by a step, with no
 *   earlier step executed again;
 * - two stores built on two paths (from two checkouts) hold the same keys and the same bytes,
 *   and no stored output names a path of either;
 * - a comment edit to the update stage's file executes nothing; a code edit that trains to the
 *   same weights executes the update nodes only (early cutoff: byte-identical outputs);
 * - a new premise writer samples every rollout anew, and no record keeps the old prompt text.
 * Edits happen in a copy of the project (test-artifacts/), never in the repository itself.
 */
import { cpSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { sha256 } from "../src/dag/Canonical.ts"
import { polaris, readObject, ROOT } from "./support/cli.ts"
import { startFakeOpenAI } from "./support/fakeOpenAI.ts"
import type { FakeServer } from "./support/fakeGemini.ts"
import { allFiles, tempDirInRepo } from "./support/store.ts"

const SMALL = ["--set", "grpo.steps=3", "--set", "grpo.groups_per_step=2", "--set", "eval.prompts_per_bucket=2"]

interface Summary {
  readonly executed: number
  readonly cached: number
  readonly nodes: Record<string, { readonly status: string; readonly key?: string; readonly object?: string }>
}

const dir = tempDirInRepo("exact-")
const checkout = join(dir, "checkout")
const storeA = join(dir, "a", "store")

/** `polaris run` of the quickstart from `root` on `store`, as its --json summary. */
const run = async (root: string, store: string, extra: ReadonlyArray<string> = []): Promise<Summary> => {
  const r = await polaris(["run", join(root, "recipes", "quickstart.yaml"), ...SMALL, ...extra, "--store", store, "--json"], { root })
  expect(r.status, r.stderr).toBe(0)
  return JSON.parse(r.stdout) as Summary
}
const executed = (s: Summary) => Object.entries(s.nodes).filter(([, n]) => n.status === "executed").map(([id]) => id).sort()

let first: Summary

beforeAll(async () => {
  // A second checkout of the project, in another folder: its own sources, models and corpus.
  for (const part of ["bin", "src", "stages", "pipelines", "recipes", "models", "package.json", "tsconfig.json"]) {
    cpSync(join(ROOT, part), join(checkout, part), { recursive: true })
  }
  cpSync(join(ROOT, "examples", "anthologies"), join(checkout, "examples", "anthologies"), { recursive: true })
  symlinkSync(join(ROOT, "node_modules"), join(checkout, "node_modules"))
  first = await run(checkout, storeA)
}, 600_000)

describe("an exact, portable cache (reduced quickstart)", () => {
  it("a store moved to another folder is fully cached there and extends by a step without re-running an old one", async () => {
    const moved = join(dir, "elsewhere", "moved-store")
    cpSync(storeA, moved, { recursive: true })
    const again = await run(checkout, moved)
    expect(again.executed).toBe(0)
    const longer = await run(checkout, moved, ["--set", "grpo.steps=4"])
    const ran = executed(longer)
    expect(ran.filter((id) => /^train\/step-00[0-2]\//.test(id))).toEqual([])
    const perGroup = (g: number) => ["candidates", "judge", "prompt", "reference", "rollout"].map((n) => `train/step-003/group-${g}/${n}`)
    expect(ran.filter((id) => id.startsWith("train/"))).toEqual([
      "train/step-003/batch", ...[0, 1].flatMap(perGroup), "train/step-003/groups", "train/step-003/sampler", "train/step-003/update"
    ])
  }, 600_000)

  it("two stores on two paths, from two checkouts, hold identical keys and output bytes, and no path", async () => {
    const storeB = join(dir, "b", "deeper", "other-store")
    const second = await run(ROOT, storeB)
    expect(second.executed).toBe(first.executed)
    expect(second.nodes).toEqual(first.nodes)
    // Every stored output of the run, byte for byte: the same objects in both stores.
    const objects = (store: string) => readdirSync(join(store, "objects")).flatMap((s) => readdirSync(join(store, "objects", s)))
    const inA = new Set(objects(storeA))
    expect(objects(storeB).filter((o) => !inA.has(o))).toEqual([])
    for (const [, node] of Object.entries(second.nodes)) {
      const path = (store: string) => join(store, "objects", node.object!.slice(0, 2), node.object!)
      expect(readFileSync(path(storeB)).equals(readFileSync(path(storeA)))).toBe(true)
    }
    for (const file of allFiles(join(storeB, "objects"))) {
      const bytes = readFileSync(file)
      for (const where of [storeB, storeA, ROOT, checkout]) expect(bytes.includes(where), `${file} names ${where}`).toBe(false)
    }
  }, 600_000)

  it("a comment edit to the update stage executes nothing; a code edit executes the update nodes only", async () => {
    const file = join(checkout, "stages", "update.ts")
    const original = readFileSync(file, "utf8")
    try {
      writeFileSync(file, `${original}\n// A note for readers: this comment changes no result.\n`)
      expect(executed(await run(checkout, storeA))).toEqual([])
      // The same computation written differently: the update re-runs, to byte-identical checkpoints.
      const edited = original.replace("it < p.inner_iterations; it++)", "it < p.inner_iterations; it += 1)")
      expect(edited).not.toBe(original)
      writeFileSync(file, edited)
      const after = await run(checkout, storeA)
      expect(executed(after)).toEqual(["train/step-000/update", "train/step-001/update", "train/step-002/update"])
      for (const id of ["train/step-000/update", "train/step-001/update", "train/step-002/update"]) {
        expect(after.nodes[id]!.object).toBe(first.nodes[id]!.object)
      }
    } finally {
      writeFileSync(file, original)
    }
  }, 600_000)

  it("a new premise writer samples every rollout anew; no record keeps the old prompt text", async () => {
    // An OpenAI-compatible writer whose premise names the model it was asked as.
    const writer: FakeServer = await startFakeOpenAI({
      answer: (body) => JSON.stringify({ premise: `a ${body.model} lantern found in chapter ${sha256(JSON.stringify(body.messages)).slice(0, 6)}` })
    })
    try {
      const withWriter = (model: string) => ["--set", "data.writer.backend=openai", "--set", `data.writer.model=${model}`, "--set", `data.writer.base_url=${writer.url}/v1`]
      const amber = await run(checkout, storeA, withWriter("amber"))
      const cobalt = await run(checkout, storeA, withWriter("cobalt"))
      // 3 steps × 2 groups, each group's rollouts a node of its own.
      const rollouts = Object.keys(cobalt.nodes).filter((id) => /^train\/step-\d+\/group-\d+\/rollout$/.test(id))
      expect(rollouts).toHaveLength(6)
      for (const id of rollouts) {
        expect(cobalt.nodes[id]!.status).toBe("executed")
        const groups = readObject(storeA, cobalt.nodes[id]!.object!) as Array<{ prompt: string }>
        expect(groups.length).toBe(1)
        for (const g of groups) {
          expect(g.prompt).toContain("cobalt lantern")
          expect(g.prompt).not.toContain("amber")
        }
        expect(cobalt.nodes[id]!.object).not.toBe(amber.nodes[id]!.object)
      }
      // Every group of the cobalt run was sampled, none answered from a memo of another prompt.
      const events = readFileSync(join(storeA, "runs", readdirSync(join(storeA, "runs")).sort().at(-1)!, "events.jsonl"), "utf8")
        .trim().split("\n").map((l) => JSON.parse(l) as { type: string; node?: string })
      const trainRollout = (e: { node?: string }) => e.node !== undefined && /^train\/step-\d+\/group-\d+\/rollout$/.test(e.node)
      expect(events.filter((e) => e.type === "memo_hit" && trainRollout(e))).toHaveLength(0)
      expect(events.filter((e) => e.type === "memo_stored" && trainRollout(e))).toHaveLength(6)
    } finally {
      await writer.close()
    }
  }, 600_000)
})
