/**
 * `polaris report` on a tiny quickstart run: one self-contained HTML file (inline SVG, no scripts,
 * no URLs) whose evaluation table carries the `compare` node's numbers, HTML-escaped sample
 * stories, and a JSON twin with the same numbers. An unknown run exits 1.
 */
import { spawnSync } from "node:child_process"
import { readdirSync, readFileSync, statSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { escapeXml } from "../src/report/Svg.ts"
import { polaris, readObject, ROOT } from "./support/cli.ts"
import { tempDirInRepo } from "./support/store.ts"

const RECIPE = join(ROOT, "recipes", "quickstart.yaml")
const SMALL = ["--set", "grpo.steps=2", "--set", "grpo.groups_per_step=2", "--set", "eval.prompts_per_bucket=2"]

/** The HTML's full-precision value in a table cell, as written in `data-value`. */
const cell = (v: number | null) => (v === null ? undefined : `data-value="${escapeXml(String(v))}"`)

describe("polaris report", () => {
  it("writes a self-contained HTML report and its JSON twin with the compare node's numbers", async () => {
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

    // The evaluation table: the compare node's numbers, before and after, per bucket and overall.
    const compareObject: string = summary.nodes.compare.object
    const compare = readObject(store, compareObject)
    expect(json.evaluation.compare).toEqual(compare)
    const buckets = Object.keys(compare.before.buckets)
    expect(json.evaluation.buckets.map((b: { name: string }) => b.name)).toEqual(["id", "near-ood", "far-ood"])
    expect(buckets.sort()).toEqual(["far-ood", "id", "near-ood"])
    const table = html.slice(html.indexOf('<table class="eval">'), html.indexOf("</table>", html.indexOf('<table class="eval">')))
    const rowOf = (cls: string) => table.slice(table.indexOf(`<tr class="${cls}">`), table.indexOf("</tr>", table.indexOf(`<tr class="${cls}">`)))
    for (const [side, row] of [["before", "initial"], ["after", "final"]] as const) {
      const tr = rowOf(row)
      for (const b of json.evaluation.buckets) {
        const c = compare[side].buckets[b.name]
        expect(b[row].reward_mean).toBe(c.reward_mean)
        expect(b[row].length_score_mean).toBe(c.length_score_mean)
        for (const v of [c.reward_mean, c.length_score_mean]) if (v !== null) expect(tr).toContain(cell(v))
      }
      for (const k of ["reward_mean", "length_score_mean", "length_ratio_mean"] as const) {
        expect(json.evaluation.overall[row][k]).toBe(compare[side][k])
        if (compare[side][k] !== null) expect(tr).toContain(cell(compare[side][k]))
      }
    }
    for (const k of ["reward_mean", "length_score_mean", "length_ratio_mean"] as const) {
      expect(json.evaluation.overall.delta[k]).toBeCloseTo(compare.delta[k], 12)
    }

    // Sample stories: text HTML-escaped, with rubric scores and word counts.
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
    const shot = join(ROOT, "test-artifacts", "report-screenshot.png")
    const browser = spawnSync("chromium", [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run", `--user-data-dir=${tempDirInRepo("chromium-")}`, "--enable-logging=stderr", "--v=0",
      `--screenshot=${shot}`, "--window-size=1280,2400", `file://${htmlPath}`
    ], { encoding: "utf8", timeout: 60_000 })
    expect(browser.error, "Debian's chromium must be installed (apt-get install chromium)").toBeUndefined()
    expect(browser.status, browser.stderr).toBe(0)
    expect(statSync(shot).size).toBeGreaterThan(20_000)
    expect(browser.stderr).not.toMatch(/CONSOLE\(\d+\)|Uncaught/)

    // Default: into the run directory; an unknown run exits 1.
    const again = await polaris(["report", summary.runId, "--store", store])
    expect(again.status, again.stderr).toBe(0)
    expect(again.stdout.trim().split("\n")[0]).toBe(join(store, "runs", summary.runId, "report.html"))
    const unknown = await polaris(["report", "no-such-run", "--store", store])
    expect(unknown.status).toBe(1)
    expect(unknown.stderr).toContain("no-such-run")
  }, 120_000)
})
