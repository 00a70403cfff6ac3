/**
 * The run report: one self-contained HTML file (inline CSS and SVG, no scripts, no network) and
 * its JSON twin with the same numbers, built from a run directory and the objects it points at.
 *
 *     runs/<id>/report.html   summary, training curves, evaluation table, sample stories
 *     runs/<id>/report.json   the same numbers, machine-readable
 *
 * Works on partial runs: whatever a section needs and the run lacks is reported "not available".
 */
import * as fs from "node:fs/promises"
import { join } from "node:path"
import { Data, Effect } from "effect"
import { objectPath, pathsOf, type StorePaths } from "../ArtifactStore.ts"
import { atomicWrite, ensureDir, readIfExists } from "../internal/files.ts"
import { readJsonl } from "../RunLog.ts"
import { barChart, escapeXml, lineChart, type Series } from "./Svg.ts"

/** The report could not be built: unknown run, unreadable files. */
export class ReportError extends Data.TaggedError("ReportError")<{ readonly runId: string; readonly reason: string }> {
  override get message() {
    return `report for run "${this.runId}": ${this.reason}`
  }
}

type Num = number | null

export interface ChartJson {
  readonly id: string
  readonly title: string
  readonly yLabel: string
  readonly series: ReadonlyArray<{ readonly name: string; readonly points: ReadonlyArray<readonly [number, number]> }>
}

/** A bootstrap 95% interval over prompts. */
export interface Interval {
  readonly low: number
  readonly high: number
}

export interface EvalCell {
  readonly stories: number | null
  readonly reward_mean: Num
  readonly length_score_mean: Num
  readonly length_ratio_mean: Num
  readonly reward_ci?: Interval | null
  readonly length_score_ci?: Interval | null
}

export interface ReportJson {
  readonly runId: string
  readonly pipeline: string | null
  readonly status: string
  readonly startedAt: string | null
  readonly durationMs: number | null
  readonly nodes: { readonly total: number; readonly byStatus: Readonly<Record<string, number>> }
  readonly steps: number
  readonly rubric: string | null
  readonly proxyJudge: boolean
  readonly training: { readonly steps: ReadonlyArray<number>; readonly charts: ReadonlyArray<ChartJson> } | null
  readonly evaluation: {
    readonly buckets: ReadonlyArray<{ readonly name: string; readonly initial: EvalCell; readonly final: EvalCell; readonly delta: EvalCell }>
    readonly overall: { readonly initial: EvalCell; readonly final: EvalCell; readonly delta: EvalCell }
    /** The `compare` node's output, as stored. */
    readonly compare: unknown
  } | null
  readonly samples: ReadonlyArray<{
    readonly id: string
    readonly prompt: string | null
    readonly requested_words: number | null
    readonly words: number
    readonly length_score: number
    readonly quality: Num
    readonly reward: Num
    readonly scores: Readonly<Record<string, number | null>>
    readonly text: string
  }>
}

type Json = Record<string, unknown>
const isObj = (x: unknown): x is Json => typeof x === "object" && x !== null && !Array.isArray(x)
const num = (x: unknown): Num => (typeof x === "number" && Number.isFinite(x) ? x : null)
const sub = (a: Num, b: Num): Num => (a === null || b === null ? null : a - b)
const mean = (xs: ReadonlyArray<number>): Num => (xs.length === 0 ? null : xs.reduce((a, b) => a + b, 0) / xs.length)

interface RunData {
  readonly runId: string
  readonly manifest: Json | undefined
  readonly metrics: ReadonlyArray<Json>
  readonly events: ReadonlyArray<Json>
  readonly config: Json | undefined
  readonly output: (node: string) => Promise<unknown>
}

const readJson = async (path: string): Promise<unknown> => {
  const bytes = await readIfExists(path)
  if (bytes === undefined) return undefined
  try {
    return JSON.parse(bytes.toString("utf8"))
  } catch {
    return undefined
  }
}

const loadRun = async (paths: StorePaths, runId: string): Promise<RunData> => {
  const dir = join(paths.runs, runId)
  const stat = await fs.stat(dir).catch(() => undefined)
  if (runId.includes("/") || runId.includes("\\") || stat === undefined || !stat.isDirectory()) throw new ReportError({ runId, reason: `no such run in ${paths.runs}` })
  const manifest = await readJson(join(dir, "manifest.json"))
  const config = await readJson(join(dir, "config.json"))
  const nodes = isObj(manifest) && isObj(manifest.nodes) ? manifest.nodes : {}
  return {
    runId,
    manifest: isObj(manifest) ? manifest : undefined,
    metrics: await readJsonl(join(dir, "metrics.jsonl")),
    events: await readJsonl(join(dir, "events.jsonl")),
    config: isObj(config) ? config : undefined,
    output: async (node) => {
      const entry = nodes[node]
      if (!isObj(entry) || typeof entry.object !== "string" || !/^[0-9a-f]{8,}$/.test(entry.object)) return undefined
      return readJson(objectPath(paths, entry.object))
    }
  }
}

/** Metrics per node: records of one node merged in order (a later value wins). */
const metricsByNode = (metrics: ReadonlyArray<Json>): Map<string, Json> => {
  const out = new Map<string, Json>()
  for (const m of metrics) if (typeof m.node === "string") out.set(m.node, { ...(out.get(m.node) ?? {}), ...m })
  return out
}

const STEP = /^train\/step-(\d+)\/([^/]+)$/

const trainingCharts = (metrics: ReadonlyArray<Json>): { steps: Array<number>; charts: Array<ChartJson> } => {
  const byNode = metricsByNode(metrics)
  const perStep = new Map<number, Map<string, Json>>()
  for (const [node, m] of byNode) {
    const match = STEP.exec(node)
    if (match === null) continue
    const step = Number(match[1])
    const stage = match[2]!
    if (!perStep.has(step)) perStep.set(step, new Map())
    perStep.get(step)!.set(stage, m)
  }
  const steps = [...perStep.keys()].sort((a, b) => a - b)
  const series = (name: string, stage: string, key: string): Series => ({
    name,
    points: steps.flatMap((s) => {
      const v = num(perStep.get(s)?.get(stage)?.[key])
      return v === null ? [] : [[s, v] as const]
    })
  })
  const charts: Array<ChartJson> = []
  const add = (id: string, title: string, yLabel: string, ss: ReadonlyArray<Series>) => {
    const kept = ss.filter((s) => s.points.length > 0)
    if (kept.length > 0) charts.push({ id, title, yLabel, series: kept.map((s) => ({ name: s.name, points: s.points.map(([x, y]) => [x, y] as const) })) })
  }
  add("reward", "Reward: policy vs human reference", "mean reward", [
    series("policy", "groups", "reward_policy_mean"),
    series("reference", "groups", "reward_reference_mean")
  ])
  const ratioKeys = new Set<string>()
  for (const s of steps) for (const k of Object.keys(perStep.get(s)?.get("groups") ?? {})) if (k.startsWith("length_ratio@")) ratioKeys.add(k)
  const sortedRatio = [...ratioKeys].sort((a, b) => Number(a.slice(13)) - Number(b.slice(13)) || a.localeCompare(b))
  add("length-ratio", "Length ratio (words / requested) per requested-length bucket", "length ratio", [
    series("all", "groups", "length_ratio_mean"),
    ...sortedRatio.map((k) => {
      const lo = Number(k.slice(13))
      return series(Number.isFinite(lo) ? `${lo}-${lo + 100} words` : k.slice(13), "groups", k)
    })
  ])
  add("length-score", "Length score S_l", "S_l (0-100)", [series("S_l", "groups", "length_score_mean")])
  add("kl-clip", "KL to the reference policy and clip fraction", "value", [series("KL", "update", "kl"), series("clip fraction", "update", "clip_frac")])
  add("grad-norm", "Gradient norm and loss", "value", [series("grad norm", "update", "grad_norm"), series("loss", "update", "loss")])
  let cum = 0
  const costPoints: Array<readonly [number, number]> = []
  for (const s of steps) {
    const v = num(perStep.get(s)?.get("judge")?.judge_cost_usd)
    if (v === null) continue
    cum += v
    costPoints.push([s, cum])
  }
  add("judge-cost", "Judge cost, cumulative", "USD", [{ name: "cumulative cost", points: costPoints }])
  add("entropy", "Sampling entropy estimate", "nats / token", [series("entropy", "groups", "entropy_estimate")])
  add("diagnostics", "Group diagnostics", "value", [
    series("zero-std groups (fraction)", "groups", "frac_zero_std_groups"),
    series("reward-length correlation", "groups", "reward_length_corr")
  ])
  return { steps, charts }
}

interface Summary {
  readonly stories?: unknown
  readonly reward_ci?: unknown
  readonly length_score_ci?: unknown
  readonly reward_mean?: unknown
  readonly length_score_mean?: unknown
  readonly length_ratio_mean?: unknown
  readonly buckets?: unknown
}

/** Length ratio per bucket, from an evaluation's rollout groups, judgements and prompts. */
const ratioPerBucket = (groups: unknown, judged: unknown, prompts: unknown): Map<string, number> => {
  const out = new Map<string, number>()
  if (!Array.isArray(groups) || !Array.isArray(judged)) return out
  const bucketOf = new Map<string, string>()
  if (Array.isArray(prompts)) for (const p of prompts) if (isObj(p) && typeof p.id === "string" && typeof p.bucket === "string") bucketOf.set(p.id, p.bucket)
  const words = new Map<string, number>()
  for (const j of judged) if (isObj(j) && typeof j.id === "string" && typeof j.words === "number") words.set(j.id, j.words)
  const ratios = new Map<string, Array<number>>()
  for (const g of groups) {
    if (!isObj(g) || typeof g.prompt_id !== "string" || typeof g.requested_words !== "number" || !Array.isArray(g.samples)) continue
    const lo = Math.floor(g.requested_words / 100) * 100
    const name = bucketOf.get(g.prompt_id) ?? `${lo}-${lo + 100}`
    g.samples.forEach((_s, i) => {
      const w = words.get(`${g.prompt_id}#${i}`)
      if (w !== undefined) ratios.set(name, [...(ratios.get(name) ?? []), w / (g.requested_words as number)])
    })
  }
  for (const [k, xs] of ratios) {
    const m = mean(xs)
    if (m !== null) out.set(k, m)
  }
  return out
}

const cellOf = (s: unknown, ratio: Num): EvalCell => {
  const o: Summary = isObj(s) ? s : {}
  const interval = (v: unknown): Interval | null =>
    isObj(v) && typeof v.low === "number" && typeof v.high === "number" ? { low: v.low, high: v.high } : null
  return {
    stories: num(o.stories),
    reward_mean: num(o.reward_mean),
    length_score_mean: num(o.length_score_mean),
    length_ratio_mean: ratio,
    reward_ci: interval(o.reward_ci),
    length_score_ci: interval(o.length_score_ci)
  }
}
const deltaOf = (a: EvalCell, b: EvalCell): EvalCell => ({
  stories: null,
  reward_mean: sub(b.reward_mean, a.reward_mean),
  length_score_mean: sub(b.length_score_mean, a.length_score_mean),
  length_ratio_mean: sub(b.length_ratio_mean, a.length_ratio_mean)
})

const bucketOrder = (names: ReadonlyArray<string>, config: Json | undefined): Array<string> => {
  const recipe = isObj(config?.recipe) ? config.recipe : undefined
  const evalCfg = isObj(recipe?.eval) ? recipe.eval : undefined
  const declared = Array.isArray(evalCfg?.buckets) ? evalCfg.buckets.flatMap((b) => (isObj(b) && typeof b.name === "string" ? [b.name] : [])) : []
  const rank = (n: string) => {
    const i = declared.indexOf(n)
    return i >= 0 ? i : declared.length + (Number.parseFloat(n) || 0) / 1e9
  }
  return [...names].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b, "en", { numeric: true }))
}

const evaluation = async (run: RunData): Promise<ReportJson["evaluation"]> => {
  const compare = await run.output("compare")
  if (!isObj(compare) || !isObj(compare.before) || !isObj(compare.after)) return null
  const before = compare.before as Json
  const after = compare.after as Json
  const prompts = await run.output("eval-set")
  const ratioBefore = ratioPerBucket(await run.output("eval-initial/rollout"), await run.output("eval-initial/judge"), prompts)
  const ratioAfter = ratioPerBucket(await run.output("eval-final/rollout"), await run.output("eval-final/judge"), prompts)
  const bb = isObj(before.buckets) ? before.buckets : {}
  const ab = isObj(after.buckets) ? after.buckets : {}
  const names = bucketOrder([...new Set([...Object.keys(bb), ...Object.keys(ab)])], run.config)
  const buckets = names.map((name) => {
    const initial = cellOf(bb[name], ratioBefore.get(name) ?? null)
    const final = cellOf(ab[name], ratioAfter.get(name) ?? null)
    return { name, initial, final, delta: deltaOf(initial, final) }
  })
  const initial = cellOf(before, num(before.length_ratio_mean))
  const final = cellOf(after, num(after.length_ratio_mean))
  return { buckets, overall: { initial, final, delta: deltaOf(initial, final) }, compare }
}

const samples = async (run: RunData, count = 3): Promise<ReportJson["samples"]> => {
  const judged = await run.output("eval-final/judge")
  if (!Array.isArray(judged)) return []
  const groups = await run.output("eval-final/rollout")
  const texts = new Map<string, { text: string; prompt: string | null; requested: number | null }>()
  if (Array.isArray(groups)) {
    for (const g of groups) {
      if (!isObj(g) || typeof g.prompt_id !== "string" || !Array.isArray(g.samples)) continue
      g.samples.forEach((s, i) => {
        if (isObj(s) && typeof s.text === "string") {
          texts.set(`${g.prompt_id}#${i}`, { text: s.text, prompt: typeof g.prompt === "string" ? g.prompt : null, requested: num(g.requested_words) })
        }
      })
    }
  }
  // One story per bucket first (the part of the id after '@'), then the rest, in id order.
  const rows = judged.filter((j): j is Json => isObj(j) && typeof j.id === "string" && texts.has(j.id))
  rows.sort((a, b) => String(a.id).localeCompare(String(b.id)))
  const bucket = (id: string) => id.replace(/#\d+$/, "").split("@").at(-1) ?? ""
  const seen = new Set<string>()
  const order = bucketOrder([...new Set(rows.map((r) => bucket(String(r.id))))], run.config)
  const firsts = rows
    .filter((r) => !seen.has(bucket(String(r.id))) && seen.add(bucket(String(r.id))) !== undefined)
    .sort((a, b) => order.indexOf(bucket(String(a.id))) - order.indexOf(bucket(String(b.id))))
  const picked = [...firsts, ...rows.filter((r) => !firsts.includes(r))].slice(0, count)
  return picked.map((j) => {
    const t = texts.get(String(j.id))!
    const verdict = Array.isArray(j.verdicts) ? j.verdicts.find(isObj) : undefined
    const scores: Record<string, number | null> = {}
    if (isObj(verdict?.scores)) for (const [k, v] of Object.entries(verdict.scores)) scores[k] = num(v)
    return {
      id: String(j.id),
      prompt: t.prompt,
      requested_words: t.requested,
      words: num(j.words) ?? 0,
      length_score: num(j.length_score) ?? 0,
      quality: num(j.quality),
      reward: num(j.reward),
      scores,
      text: t.text
    }
  })
}

/** The rubric fingerprint the judge used (`id@version:digest`), from any judged story. */
const rubricOf = async (run: RunData): Promise<string | null> => {
  for (const node of ["eval-final/judge", "eval-initial/judge", ...Object.keys(isObj(run.manifest?.nodes) ? run.manifest.nodes : {}).filter((n) => n.endsWith("/judge"))]) {
    const judged = await run.output(node)
    if (!Array.isArray(judged)) continue
    for (const j of judged) {
      if (!isObj(j) || !Array.isArray(j.verdicts)) continue
      const v = j.verdicts.find(isObj)
      if (v !== undefined && typeof v.rubric === "string") return v.rubric
    }
  }
  return null
}

const toJson = async (run: RunData): Promise<ReportJson> => {
  const nodes = isObj(run.manifest?.nodes) ? run.manifest.nodes : {}
  const byStatus: Record<string, number> = {}
  for (const n of Object.values(nodes)) {
    const s = isObj(n) && typeof n.status === "string" ? n.status : "unknown"
    byStatus[s] = (byStatus[s] ?? 0) + 1
  }
  const stepIds = new Set(Object.keys(nodes).flatMap((id) => {
    const m = STEP.exec(id)
    return m === null ? [] : [Number(m[1])]
  }))
  const started = run.events.find((e) => e.type === "run_started")
  const finished = run.events.findLast((e) => e.type === "run_finished")
  const training = trainingCharts(run.metrics)
  const rubric = await rubricOf(run)
  return {
    runId: run.runId,
    pipeline: typeof run.manifest?.pipeline === "string" ? run.manifest.pipeline : typeof started?.pipeline === "string" ? started.pipeline : null,
    status: typeof finished?.status === "string" ? finished.status : typeof run.manifest?.status === "string" ? run.manifest.status : "incomplete",
    startedAt: typeof run.events[0]?.at === "string" ? run.events[0].at : null,
    durationMs: num(finished?.durationMs),
    nodes: { total: Object.keys(nodes).length, byStatus },
    steps: stepIds.size,
    rubric,
    proxyJudge: rubric !== null && rubric.startsWith("proxy"),
    training: training.charts.length > 0 ? training : null,
    evaluation: await evaluation(run),
    samples: await samples(run)
  }
}

// ---------------------------------------------------------------------------------------------
// HTML

const fmt = (v: Num, digits: number, signed = false): string =>
  v === null ? "–" : `${signed && v > 0 ? "+" : ""}${v.toFixed(digits)}`

const td = (v: Num, digits: number, signed = false, ci?: Interval | null) =>
  `<td class="num${signed ? (v === null || v === 0 ? "" : v > 0 ? " up" : " down") : ""}"${v === null ? "" : ` data-value="${escapeXml(String(v))}"`}>${escapeXml(fmt(v, digits, signed))}${
    ci === undefined || ci === null ? "" : `<br><small class="ci">[${escapeXml(fmt(ci.low, digits, false))}, ${escapeXml(fmt(ci.high, digits, false))}]</small>`
  }</td>`

const CSS = `
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.92rem}th,td{border:1px solid #ddd;padding:.25rem .55rem}
th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}td.up{color:#05703a}td.down{color:#a3261b}
.charts{display:flex;flex-wrap:wrap;gap:1rem}.chart{border:1px solid #eee}
.na{color:#888;font-style:italic}.story{border:1px solid #ddd;border-radius:4px;padding:.6rem 1rem;margin:1rem 0}
.story pre{white-space:pre-wrap;font-family:Georgia,serif;font-size:.95rem;background:#fafafa;padding:.6rem;max-height:28rem;overflow:auto}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.5rem .8rem;font-size:.9rem}
.meta td:first-child{font-weight:600}
`

const na = (what: string) => `<p class="na">${escapeXml(what)}: not available.</p>`

const summaryHtml = (r: ReportJson) => {
  const rows: Array<[string, string]> = [
    ["Run", r.runId],
    ["Pipeline", r.pipeline ?? "unknown"],
    ["Status", r.status],
    ["Started", r.startedAt ?? "unknown"],
    ["Duration", r.durationMs === null ? "unknown" : `${(r.durationMs / 1000).toFixed(1)} s`],
    ["Nodes", `${r.nodes.total} (${Object.entries(r.nodes.byStatus).map(([k, v]) => `${v} ${k}`).join(", ") || "none"})`],
    ["Training steps", String(r.steps)],
    ["Judge rubric", r.rubric ?? "unknown"]
  ]
  return `<table class="meta">${rows.map(([k, v]) => `<tr><td>${escapeXml(k)}</td><td>${escapeXml(v)}</td></tr>`).join("")}</table>`
}

const trainingHtml = (r: ReportJson) =>
  r.training === null
    ? na("Training metrics")
    : `<div class="charts">${r.training.charts.map((ch) => lineChart({ title: ch.title, series: ch.series, xLabel: "step", yLabel: ch.yLabel })).join("")}</div>`

const evaluationHtml = (r: ReportJson) => {
  const e = r.evaluation
  if (e === null) return na("Evaluation (the `compare` node)")
  const cols = [...e.buckets.map((b) => ({ name: b.name, initial: b.initial, final: b.final, delta: b.delta })), { name: "overall", ...e.overall }]
  const head1 = `<tr><th rowspan="2">Policy</th>${cols.map((c) => `<th colspan="3">${escapeXml(c.name)}${c.initial.stories !== null ? ` <small>(n=${c.initial.stories})</small>` : ""}</th>`).join("")}</tr>`
  const head2 = `<tr>${cols.map(() => "<th>Reward</th><th>S<sub>l</sub></th><th>Length ratio</th>").join("")}</tr>`
  const row = (label: string, pick: (c: (typeof cols)[number]) => EvalCell, signed: boolean, cls: string) =>
    `<tr class="${cls}"><th>${escapeXml(label)}</th>${cols.map((c) => {
      const v = pick(c)
      return td(v.reward_mean, 3, signed, v.reward_ci) + td(v.length_score_mean, 1, signed, v.length_score_ci) + td(v.length_ratio_mean, 2, signed)
    }).join("")}</tr>`
  const table = `<table class="eval">${head1}${head2}${row("Initial policy", (c) => c.initial, false, "initial")}${row("Final policy", (c) => c.final, false, "final")}${row("Δ (final − initial)", (c) => c.delta, true, "delta")}</table>`
  const groups = e.buckets.map((b) => ({ label: b.name, values: [b.initial.reward_mean, b.final.reward_mean] }))
  const sl = e.buckets.map((b) => ({ label: b.name, values: [b.initial.length_score_mean, b.final.length_score_mean] }))
  const charts = `<div class="charts">${barChart({ title: "Reward per requested-length bucket", groups, seriesNames: ["initial", "final"], yLabel: "mean reward" })}${barChart({ title: "Length score S_l per requested-length bucket", groups: sl, seriesNames: ["initial", "final"], yLabel: "S_l (0-100)" })}</div>`
  return table + "<p>Reward is Q<sub>norm</sub> · L (the judge's normalised quality times the length factor); S<sub>l</sub> is LongWriter's length score (0–100); length ratio is words written / words requested. Brackets: bootstrap 95% intervals over prompts.</p>" + charts
}

const samplesHtml = (r: ReportJson) =>
  r.samples.length === 0
    ? na("Sample stories from the final evaluation")
    : r.samples.map((s) =>
      `<div class="story"><h3>${escapeXml(s.id)}</h3>` +
      (s.prompt === null ? "" : `<p><strong>Prompt:</strong> ${escapeXml(s.prompt)}</p>`) +
      `<p>${s.requested_words === null ? "" : `Requested ${s.requested_words} words; `}wrote ${s.words} words · S<sub>l</sub> ${fmt(s.length_score, 1)} · quality ${fmt(s.quality, 3)} · reward ${fmt(s.reward, 3)}</p>` +
      (Object.keys(s.scores).length === 0 ? "" : `<table><tr>${Object.keys(s.scores).map((k) => `<th>${escapeXml(k)}</th>`).join("")}</tr><tr>${Object.values(s.scores).map((v) => td(v, 0)).join("")}</tr></table>`) +
      `<pre>${escapeXml(s.text)}</pre></div>`
    ).join("")

const toHtml = (r: ReportJson): string =>
  `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeXml(`polaris report: ${r.runId}`)}</title><style>${CSS}</style></head>
<body>
<h1>polaris run report</h1>
<h2>Run summary</h2>
${summaryHtml(r)}
<h2>Training curves</h2>
${trainingHtml(r)}
<h2>Evaluation: initial vs final policy</h2>
${evaluationHtml(r)}
<h2>Sample stories (final policy)</h2>
${samplesHtml(r)}
${r.proxyJudge ? `<p class="note">Note: these scores come from the proxy judge (rubric <code>${escapeXml(r.rubric ?? "")}</code>), which measures text statistics (variety, repetition, sentence rhythm, prompt coverage, endings), not literary quality.</p>` : ""}
</body></html>
`

/** Builds the report of run `runId` in the store at `storeRoot`: the JSON and the HTML. */
export const buildReport = (storeRoot: string, runId: string): Effect.Effect<{ json: ReportJson; html: string }, ReportError> =>
  Effect.tryPromise({
    try: async () => {
      const json = await toJson(await loadRun(pathsOf(storeRoot), runId))
      return { json, html: toHtml(json) }
    },
    catch: (cause) => (cause instanceof ReportError ? cause : new ReportError({ runId, reason: cause instanceof Error ? cause.message : String(cause) }))
  })

/** Writes `report.html` and `report.json` (default: into the run's directory). */
export const writeReport = (
  storeRoot: string,
  runId: string,
  outDir?: string
): Effect.Effect<{ htmlPath: string; jsonPath: string }, ReportError> =>
  Effect.flatMap(buildReport(storeRoot, runId), ({ json, html }) =>
    Effect.tryPromise({
      try: async () => {
        const paths = pathsOf(storeRoot)
        const dir = outDir ?? join(paths.runs, runId)
        await ensureDir(dir)
        const htmlPath = join(dir, "report.html")
        const jsonPath = join(dir, "report.json")
        await atomicWrite(dir, htmlPath, html)
        await atomicWrite(dir, jsonPath, JSON.stringify(json, null, 2) + "\n")
        return { htmlPath, jsonPath }
      },
      catch: (cause) => new ReportError({ runId, reason: cause instanceof Error ? cause.message : String(cause) })
    }))
