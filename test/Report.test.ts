/**
 * `polaris report` on a tiny quickstart run: one self-contained HTML file (inline SVG, no scripts,
 * no URLs) whose evaluation and Elo tables carry the `evaluation` node's numbers, HTML-escaped
 * sample stories, and a JSON twin with the same numbers. An unknown run exits 1.
 */
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { escapeXml } from "../src/report/Svg.ts"
import { polaris, readObject, ROOT } from "./support/cli.ts"
import { renderInChromium } from "./support/chromium.ts"
import { tempDirInRepo } from "./support/store.ts"

const RECIPE = join(ROOT, "recipes", "quickstart.yaml")
const SMALL = ["--set", "grpo.steps=2", "--set", "grpo.groups_per_step=2", "--set", "eval.prompts_per_bucket=2", "--set", "eval.checkpoints=[1]"]

/** The HTML's full-precision value in a table cell, as written in `data-value`. */
const cell = (v: number | null) => (v === null ? undefined : `data-value="${escapeXml(String(v))}"`)

describe("polaris report", () => {
  it("writes a self-contained HTML report and its JSON twin with the evaluation node's numbers", async () => {
    const store = tempDirInRepo("report-")
    const run = await polaris(["run", RECIPE, ...SMALL, "--store", store, "--json", "--progress", "none"])
    expect(run.status, run.stderr).toBe(0)
    const summary = JSON.parse(run.stdout)

    const out = join(store, "out")
    const report = await polaris(["report", "--store", store, "--out", out])
    expect(report.status, report.stderr).toBe(0)
    const [htmlPath, jsonPath] = report.stdout.trim().split("\n")
    expect(htmlPath).toBe(join(out, "report.html"))
    expect(jsonPath).toBe(join(out, "report.json"))
    expect(readdirSync(out).sort()).toEqual(["report.html", "report.json"])
    const html = readFileSync(htmlPath!, "utf8")
    const json = JSON.parse(readFileSync(jsonPath!, "utf8"))

    // Self-contained: inline SVG and CSS, no scripts, no external resources.
    expect(html).toContain("<svg")
    expect(html).toContain("<style>")
    expect(html).not.toMatch(/<script/i)
    expect(html).not.toMatch(/https?:\/\//)
    expect(html).not.toMatch(/<link|<img|@import|url\(/i)

    // The run summary.
    expect(json.runId).toBe(summary.runId)
    expect(json.pipeline).toBe("polaris")
    expect(json.status).toBe("succeeded")
    expect(json.steps).toBe(2)
    expect(json.proxyJudge).toBe(true)
    expect(html).toContain("proxy judge")
    expect(json.training.charts.map((c: { id: string }) => c.id)).toEqual(expect.arrayContaining(["reward", "length-ratio", "length-score", "grad-norm"]))

    // The evaluation tables: the `evaluation` node's numbers, per system, per bucket and overall.
    const evaluation = readObject(store, summary.nodes.evaluation.object)
    // The initial policy, the checkpoint of step 1 (eval.checkpoints), the final policy.
    expect(evaluation.systems.map((s: { name: string }) => s.name)).toEqual(["initial", "step-1", "final"])
    expect(readObject(store, summary.nodes["step-1-policy"].object).step).toBe(1)
    expect(json.evaluation.baseline).toBe("initial")
    expect(json.evaluation.bucketNames).toEqual(["id", "near-ood", "far-ood"])
    expect(Object.keys(evaluation.systems[0].summary.buckets).sort()).toEqual(["far-ood", "id", "near-ood"])
    const section = (cls: string) => {
      const start = html.indexOf(`<table class="${cls}">`)
      expect(start, cls).toBeGreaterThanOrEqual(0)
      return html.slice(start, html.indexOf("</table>", start))
    }
    const rowOf = (table: string, attrs: string) => {
      const start = table.indexOf(`<tr ${attrs}>`)
      expect(start, attrs).toBeGreaterThanOrEqual(0)
      return table.slice(start, table.indexOf("</tr>", start))
    }
    const KEYS = ["stories", "quality_mean", "quality_ci", "length_score_mean", "length_score_ci", "length_ratio_mean", "truncated_frac", "reward_mean", "reward_ci"] as const
    const table = section("eval")
    const detail = section("eval-detail")
    evaluation.systems.forEach(({ name, summary: s }: { name: string; summary: any }, i: number) => {
      const mine = json.evaluation.systems[i]
      expect(mine.name).toBe(name)
      const row = rowOf(table, `class="system" data-system="${name}"`)
      for (const [got, want, bucket] of [
        ...json.evaluation.bucketNames.map((b: string, j: number) => [mine.buckets[j], s.buckets[b], b]),
        [mine.overall, s, "overall"]
      ]) {
        if (bucket !== "overall") expect(got.name).toBe(bucket)
        for (const k of KEYS) expect(got[k], `${name} ${bucket} ${k}`).toEqual(want[k])
        for (const v of [want.quality_mean, want.length_score_mean, want.length_ratio_mean]) if (v !== null) expect(row).toContain(cell(v))
        const d = rowOf(detail, `data-system="${name}" data-bucket="${bucket}"`)
        for (const v of [want.quality_mean, want.reward_mean, want.length_score_mean, want.length_ratio_mean, want.truncated_frac]) if (v !== null) expect(d).toContain(cell(v))
      }
      expect(mine.overall.dimensions).toEqual(s.dimensions)
      for (const [j, b] of json.evaluation.bucketNames.entries()) expect(mine.buckets[j].dimensions).toEqual(s.buckets[b].dimensions)
    })
    // The delta row: final minus initial, for the same columns.
    const [initial, , final] = evaluation.systems.map((s: { summary: any }) => s.summary)
    expect(json.evaluation.systems[0].delta).toBeNull()
    const delta = json.evaluation.systems[2].delta
    for (const k of ["quality_mean", "length_score_mean", "length_ratio_mean"] as const) {
      expect(delta.overall[k]).toBeCloseTo(final[k] - initial[k], 12)
      expect(rowOf(table, `class="delta" data-system="final"`)).toContain(cell(delta.overall[k]))
    }
    const dimensions = section("dimensions")
    for (const d of Object.keys(final.dimensions)) {
      const row = rowOf(dimensions, `data-dimension="${escapeXml(d)}"`)
      for (const s of evaluation.systems) for (const v of [s.summary.dimensions[d], ...Object.values<any>(s.summary.buckets).map((b) => b.dimensions[d])]) if (v !== null) expect(row).toContain(cell(v))
    }

    // The pairwise ratings: the stored ratings, both systems, the baseline at exactly 1000.
    expect(json.evaluation.ratings).toEqual(evaluation.ratings)
    const ratings = evaluation.ratings
    expect(ratings.systems.map((s: { name: string }) => s.name).sort()).toEqual(["final", "initial", "step-1"])
    expect(ratings.systems.find((s: { name: string }) => s.name === "initial").rating).toBe(1000)
    const elo = section("elo")
    expect(rowOf(elo, `data-system="initial"`)).toContain('data-value="1000"')
    for (const s of ratings.systems) {
      const row = rowOf(elo, `data-system="${s.name}"`)
      expect(row).toContain(cell(s.rating))
      if (s.vs_baseline !== null) {
        expect(row).toContain(cell(s.vs_baseline.rate))
        expect(row).toContain(`${s.vs_baseline.wins} / ${s.vs_baseline.ties} / ${s.vs_baseline.losses}`)
      }
    }
    expect(html).toContain(`${ratings.comparisons} comparisons scored, ${ratings.unscorable} unscorable`)
    const perBucket = section("elo-buckets")
    for (const [b, r] of Object.entries<any>(ratings.buckets)) {
      expect(perBucket).toContain(`<th>${escapeXml(b)} <small>`)
      for (const s of r.systems) expect(rowOf(perBucket, `data-system="${s.name}"`)).toContain(cell(s.rating))
    }

    // Sample stories, from the system under test: text HTML-escaped, with rubric scores and word counts.
    expect(json.samplesFrom).toBe("final")
    expect(html).toContain("Sample stories (written by final)")
    expect(json.samples.length).toBeGreaterThan(0)
    for (const s of json.samples) {
      expect(html).toContain(`<pre>${escapeXml(s.text)}</pre>`)
      expect(Object.keys(s.scores).length).toBeGreaterThan(0)
      expect(html).toContain(`wrote ${s.words} words`)
    }
    const stories = [...html.matchAll(/<pre>([\s\S]*?)<\/pre>/g)].map((m) => m[1]!)
    for (const text of stories) expect(text).not.toMatch(/[<>"']|&(?!(amp|lt|gt|quot|#39);)/)

    // It renders in headless Chromium (Debian's `chromium`) without console errors; the screenshot
    // is kept in test-artifacts/ for a look.
    renderInChromium(htmlPath!, "report-screenshot", "1280,2400")

    // Default: into the run directory; an unknown run exits 1.
    const again = await polaris(["report", summary.runId, "--store", store])
    expect(again.status, again.stderr).toBe(0)
    expect(again.stdout.trim().split("\n")[0]).toBe(join(store, "runs", summary.runId, "report.html"))
    const unknown = await polaris(["report", "no-such-run", "--store", store])
    expect(unknown.status).toBe(1)
    expect(unknown.stderr).toContain("no-such-run")
  }, 120_000)
})
