/**
 * `polaris compare --head-to-head`: two variants' final policies judged against each other on
 * the held-out prompts both were asked (proxy judge, offline), rated on one scale anchored on the
 * first; asked again, every comparison is cached.
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { polaris } from "./support/cli.ts"
import { tempDirInRepo } from "./support/store.ts"

const SMALL = ["--set", "grpo.steps=1", "--set", "grpo.groups_per_step=1", "--set", "eval.prompts_per_bucket=2", "--set", "eval.buckets=[{name: id, min_words: 40, max_words: 150}]"]

describe("compare --head-to-head", () => {
  it("rates the variants' final policies against each other from the judge's own verdicts, and asks the judge once", async () => {
    const store = tempDirInRepo("h2h-")
    const ids: Array<string> = []
    for (const lr of ["0.0003", "0.003"]) {
      const r = await polaris(["run", "recipes/quickstart.yaml", ...SMALL, "--set", `grpo.learning_rate=${lr}`, "--store", store, "--json"])
      expect(r.status, r.stderr).toBe(0)
      ids.push(JSON.parse(r.stdout).runId)
    }
    const out = join(store, "report")
    const first = await polaris(["compare", ...ids, "--store", store, "--head-to-head", "--out", out, "--json"])
    expect(first.status, first.stderr).toBe(0)
    const h2h = JSON.parse(first.stdout).head_to_head
    expect(h2h.judge).toBe("proxy")
    expect(h2h.anchor).toBe("grpo.learning_rate=0.0003")
    expect(h2h.groups.map((g: any) => g.name).sort()).toEqual(["grpo.learning_rate=0.0003", "grpo.learning_rate=0.003"])
    // 2 prompts x 2 samples, each judged in both orders.
    expect(h2h.comparisons + h2h.unscorable).toBe(4)
    // The anchor is fixed on the scale; the other is rated from the judge's verdicts against it.
    const anchor = h2h.groups.find((g: any) => g.name === h2h.anchor)
    expect(anchor.vs_anchor).toBeNull()
    expect([anchor.rating_ci.low, anchor.rating_ci.high]).toEqual([anchor.rating, anchor.rating])
    const other = h2h.groups.find((g: any) => g.name !== h2h.anchor)
    const { wins, ties, losses } = other.vs_anchor
    expect(wins + ties + losses).toBe(h2h.comparisons)
    expect(Math.sign(other.rating - anchor.rating)).toBe(Math.sign(wins - losses))
    const events = readFileSync(join(store, "runs", h2h.run, "events.jsonl"), "utf8")
    expect(events).toContain('"node":"seed-1/pairwise"')
    expect(readFileSync(join(out, "compare.html"), "utf8")).toContain("Head to head")

    const again = await polaris(["compare", ...ids, "--store", store, "--head-to-head", "--out", out, "--json"])
    const second = JSON.parse(again.stdout).head_to_head
    expect(second.groups).toEqual(h2h.groups)
    const manifest = JSON.parse(readFileSync(join(store, "runs", second.run, "manifest.json"), "utf8"))
    expect(Object.values(manifest.nodes).every((n: any) => n.status === "cached")).toBe(true)
  }, 300_000)

  it("refuses one variant, naming why", async () => {
    const store = tempDirInRepo("h2h-one-")
    const r = await polaris(["run", "recipes/quickstart.yaml", ...SMALL, "--store", store, "--json"])
    const id = JSON.parse(r.stdout).runId
    const c = await polaris(["compare", id, "--store", store, "--head-to-head", "--out", join(store, "report")])
    expect(c.status).not.toBe(0)
    expect(c.stderr).toContain("head to head needs at least two variants")
  }, 300_000)
})
