/**
 * A comparison (Compare.ts) as one self-contained HTML page (inline CSS and SVG, no scripts, no
 * network) and its JSON twin: the ablation table, the per-bucket tables, the head-to-head ratings
 * when asked for, training curves overlaid.
 */
import { join } from "node:path"
import { Effect } from "effect"
import { atomicWrite } from "../dag/internal/files.ts"
import { escapeXml, lineChart } from "../report/Svg.ts"
import { type Comparison, COLUMNS, CURVES, formatInterval, HEAD_TO_HEAD_HEADER, headToHeadRows, type Metric } from "./Compare.ts"

const CSS = `body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:1200px}table{border-collapse:collapse;margin:1rem 0}
th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}
.charts{display:flex;flex-wrap:wrap;gap:1rem}.note{color:#666;font-size:.9rem}`

const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>) =>
  `<table><thead><tr>${header.map((h) => `<th>${escapeXml(h)}</th>`).join("")}</tr></thead><tbody>` +
  rows.map((r) => `<tr>${r.map((x) => `<td>${escapeXml(x)}</td>`).join("")}</tr>`).join("") +
  "</tbody></table>"

const BUCKET_METRICS: ReadonlyArray<readonly [string, Metric, number]> = [["S_l", "length_score", 1], ["reward", "reward", 3], ["length ratio", "length_ratio", 2]]

export const html = (c: Comparison): string => {
  const headline = table(
    ["variant", "seeds", ...COLUMNS.map(([t]) => t), "Elo final vs initial"],
    c.groups.map((g) => [g.name, String(g.seeds.length), ...COLUMNS.map(([, s, m, d]) => formatInterval(g.systems[s]![m].overall, d)), g.elo === null ? "n/a" : formatInterval(g.elo, 0)])
  )
  const perBucket = c.buckets.length === 0 ? "" : BUCKET_METRICS.map(([title, metric, digits]) =>
    `<h3>${escapeXml(title)} of the final policy by requested length</h3>` +
    table(["variant", ...c.buckets], c.groups.map((g) => [g.name, ...c.buckets.map((b) => formatInterval(g.systems.final![metric].buckets[b] ?? { estimate: NaN, low: NaN, high: NaN }, digits))]))
  ).join("")
  const charts = Object.keys(CURVES).map((metric) =>
    lineChart({ title: metric, xLabel: "step", yLabel: metric, series: c.groups.map((g) => ({ name: g.name, points: g.curves[metric] ?? [] })) })
  ).join("")
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>polaris compare</title><style>${CSS}</style></head><body>` +
    `<h1>Comparison of ${c.groups.length} variant${c.groups.length === 1 ? "" : "s"}</h1>` +
    `<p>What differs: ${escapeXml(c.differing.join(", ") || "nothing")}. Each cell: mean over seeds [95% interval, bootstrap over seeds and held-out prompts].</p>` +
    headline + perBucket +
    (c.head_to_head === undefined ? "" :
      `<h2>Head to head</h2><p>The final policies judged against each other by ${escapeXml(c.head_to_head.judge)} on the held-out prompts, both orders (a win when both agree), ` +
      `${c.head_to_head.comparisons} comparisons; Bradley–Terry Elo anchored on ${escapeXml(c.head_to_head.anchor)} [95% interval, bootstrap over prompts].</p>` +
      table(HEAD_TO_HEAD_HEADER, headToHeadRows(c.head_to_head))) +
    `<h2>Training curves (mean over seeds)</h2><div class="charts">${charts}</div>` +
    `<p class="note">Runs: ${escapeXml(c.groups.map((g) => `${g.name}: ${g.runs.join(", ")}`).join("; "))}</p>` +
    "</body></html>\n"
}

/** Writes `compare.html` and `compare.json` into `dir`; returns their paths. */
export const write = (c: Comparison, dir: string) =>
  Effect.promise(async () => {
    const htmlPath = join(dir, "compare.html")
    const jsonPath = join(dir, "compare.json")
    await atomicWrite(dir, htmlPath, html(c), { durable: false })
    await atomicWrite(dir, jsonPath, JSON.stringify(c, null, 2) + "\n", { durable: false })
    return { htmlPath, jsonPath }
  })
