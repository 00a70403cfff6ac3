/**
 * The run report: one self-contained HTML file (inline CSS and SVG, no scripts, no network) and
 * its JSON twin with the same numbers, built from a run directory and the objects it points at.
 *
 *     runs/<id>/report.html   summary, unscorable items, training curves, evaluation by
 *                             requested length, pairwise ratings, sample stories, and the
 *                             verdicts of a judge-only run (Judged.ts)
 *     runs/<id>/report.json   the same numbers, machine-readable
 *
 * Works on partial runs: whatever a section needs and the run lacks is reported "not available".
 */
import * as fs from "node:fs/promises"
import { join } from "node:path"
import { Data, Effect, Option, Schema } from "effect"
import { Evaluation, type EvalSummary } from "../records/Evaluation.ts"
import type { Ratings, SystemRating } from "../records/Comparison.ts"
import { objectPath, pathsOf, type StorePaths } from "../dag/ArtifactStore.ts"
import { atomicWrite, ensureDir, readIfExists } from "../dag/internal/files.ts"
import { readJsonl } from "../dag/RunLog.ts"
import * as Alarms from "../eval/Alarms.ts"
import { EqSummary, summaryRows } from "../records/EqBench.ts"
import { AuditReport, auditRows } from "../records/JudgeAudit.ts"
import * as Judged from "./Judged.ts"
import { barChart, escapeXml, lineChart, type Series } from "./Svg.ts"
import * as Unscorables from "./Unscorables.ts"

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

/** One system's numbers over some stories (a requested-length bucket, or all of them). */
export interface EvalCell {
  /** Stories (null for a bucket the system has no stories in). */
  readonly stories: number | null
  /** The judge's normalised quality Q_norm (0-1). */
  readonly quality_mean: Num
  readonly quality_ci: Interval | null
  /** LongWriter's length score S_l (0-100). */
  readonly length_score_mean: Num
  readonly length_score_ci: Interval | null
  /** Words written / words requested. */
  readonly length_ratio_mean: Num
  /** Share of stories cut by the token cap. */
  readonly truncated_frac: Num
  /** Q_norm times the length factor. */
  readonly reward_mean: Num
  readonly reward_ci: Interval | null
  /** Mean score per rubric dimension. */
  readonly dimensions: Readonly<Record<string, Num>>
}

/** A system's numbers minus the baseline's. */
export interface EvalDelta {
  readonly quality_mean: Num
  readonly length_score_mean: Num
  readonly length_ratio_mean: Num
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
  /** The judge audit's numbers (pipeline judge-audit), null for other runs. */
  readonly audit: AuditReport | null
  /** EQ-Bench's summary (pipeline eqbench), null for other runs. */
  readonly eqbench: EqSummary | null
  /** The blinded human evaluation (src/eval/HumanEval.ts `HumanEvalResult`), null without one. */
  readonly humanEval: Json | null
  /** Reward-hacking alarms that tripped (src/eval/Alarms.ts); null when the run had none configured. */
  readonly alarms: ReadonlyArray<Alarms.Trip> | null
  /** What the run's paid calls cost (its ledger): in all, and per engine (judge, sampler, trainer). */
  readonly spend: { readonly usd: number; readonly calls: number; readonly byEngine: Readonly<Record<string, number>> }
  /**
   * The `evaluation` node's numbers (null when the run has none):
   *
   *     baseline      the system the others are compared with
   *     bucketNames   the requested-length buckets, in the recipe's order (eval.buckets)
   *     systems       in the evaluation's order, each { name, overall: EvalCell, buckets: [{ name,
   *                   ...EvalCell }] (bucketNames' order), unscorable, delta: EvalDelta vs the
   *                   baseline overall and per bucket (null for the baseline) }
   *     ratings       the pairwise ratings as stored (null when pairwise judging was off)
   */
  readonly evaluation: {
    readonly baseline: string
    readonly bucketNames: ReadonlyArray<string>
    readonly systems: ReadonlyArray<{
      readonly name: string
      readonly overall: EvalCell
      readonly buckets: ReadonlyArray<{ readonly name: string } & EvalCell>
      readonly unscorable: number
      readonly delta: { readonly overall: EvalDelta; readonly buckets: ReadonlyArray<{ readonly name: string } & EvalDelta> } | null
    }>
    readonly ratings: Ratings | null
  } | null
  /** The system whose stories `samples` are (the last one evaluated that is not the baseline). */
  readonly samplesFrom: string | null
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
  /** Nodes with unscorable items, with their counts by reason (Unscorables.ts). */
  readonly unscorable: ReadonlyArray<Unscorables.NodeUnscorables>
  /** Verdicts of judge nodes outside training and evaluation (a judge-only run; Judged.ts). */
  readonly judged: ReadonlyArray<Judged.JudgedJson>
}

type Json = Record<string, unknown>
const isObj = (x: unknown): x is Json => typeof x === "object" && x !== null && !Array.isArray(x)
const num = (x: unknown): Num => (typeof x === "number" && Number.isFinite(x) ? x : null)
const sub = (a: Num, b: Num): Num => (a === null || b === null ? null : a - b)

interface RunData {
  readonly runId: string
  readonly manifest: Json | undefined
  readonly metrics: ReadonlyArray<Json>
  readonly events: ReadonlyArray<Json>
  readonly config: Json | undefined
  /** The run's ledger of paid calls (`spend.jsonl`: node, engine, usd), every attempt's. */
  readonly spend: ReadonlyArray<Json>
  /** `polaris human-eval import`'s result (`human-eval.json`), if any. */
  readonly humanEval: Json | undefined
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
    spend: await readJsonl(join(dir, "spend.jsonl")),
    humanEval: ((h) => (isObj(h) ? h : undefined))(await readJson(join(dir, "human-eval.json"))),
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

// Any node of a training step (`train/step-003/group-1/judge` included).
const IN_STEP = /^train\/step-(\d+)\//

const trainingCharts = (metrics: ReadonlyArray<Json>, spend: ReadonlyArray<Json>): { steps: Array<number>; charts: Array<ChartJson> } => {
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
  // Spend per step and engine, from the ledger: every paid call under the step of its node.
  const spentAt = new Map<string, Map<number, number>>()
  for (const l of spend) {
    const m = IN_STEP.exec(String(l.node))
    const usd = num(l.usd)
    if (m === null || usd === null || typeof l.engine !== "string") continue
    const byStep = spentAt.get(l.engine) ?? new Map<number, number>()
    byStep.set(Number(m[1]), (byStep.get(Number(m[1])) ?? 0) + usd)
    spentAt.set(l.engine, byStep)
  }
  add("spend", "Spend per engine, cumulative over steps", "USD", [...spentAt].sort(([a], [b]) => a.localeCompare(b)).map(([engine, byStep]) => {
    let cum = 0
    return { name: engine, points: steps.map((s) => [s, (cum += byStep.get(s) ?? 0)] as const) }
  }))
  add("entropy", "Sampling entropy estimate", "nats / token", [series("entropy", "groups", "entropy_estimate")])
  add("alarms", "Reward-hacking alarm values (their thresholds in the recipe's alarms:)", "value", Alarms.ALARMS.map((a) => series(a, "alarms", `alarm_${a}`)))
  add("diagnostics", "Group diagnostics", "value", [
    series("zero-std groups (fraction)", "groups", "frac_zero_std_groups"),
    series("reward-length correlation", "groups", "reward_length_corr")
  ])
  return { steps, charts }
}

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

// The `evaluation` node's output is decoded with its own schema: an older or partial run whose
// record does not match is reported "not available" rather than misread.
const decodeEvaluation = Schema.decodeUnknownOption(Evaluation)

const EMPTY: EvalCell = {
  stories: null,
  quality_mean: null,
  quality_ci: null,
  length_score_mean: null,
  length_score_ci: null,
  length_ratio_mean: null,
  truncated_frac: null,
  reward_mean: null,
  reward_ci: null,
  dimensions: {}
}

const cellOf = (s: EvalCell): EvalCell => ({
  stories: s.stories,
  quality_mean: s.quality_mean,
  quality_ci: s.quality_ci,
  length_score_mean: s.length_score_mean,
  length_score_ci: s.length_score_ci,
  length_ratio_mean: s.length_ratio_mean,
  truncated_frac: s.truncated_frac,
  reward_mean: s.reward_mean,
  reward_ci: s.reward_ci,
  dimensions: s.dimensions
})

const deltaOf = (base: EvalCell, c: EvalCell): EvalDelta => ({
  quality_mean: sub(c.quality_mean, base.quality_mean),
  length_score_mean: sub(c.length_score_mean, base.length_score_mean),
  length_ratio_mean: sub(c.length_ratio_mean, base.length_ratio_mean)
})

const evaluationJson = (e: Evaluation, config: Json | undefined): NonNullable<ReportJson["evaluation"]> => {
  const bucketNames = bucketOrder([...new Set(e.systems.flatMap((s) => Object.keys(s.summary.buckets)))], config)
  const columns = (s: EvalSummary) => ({
    overall: cellOf(s),
    buckets: bucketNames.map((name) => {
      const b = s.buckets[name]
      return { name, ...(b === undefined ? EMPTY : cellOf(b)) }
    })
  })
  const base = e.systems.find((s) => s.name === e.baseline)
  const baseColumns = base === undefined ? undefined : columns(base.summary)
  return {
    baseline: e.baseline,
    bucketNames,
    systems: e.systems.map(({ name, summary }) => {
      const own = columns(summary)
      return {
        name,
        ...own,
        unscorable: summary.unscorable,
        delta: baseColumns === undefined || name === e.baseline ? null : {
          overall: deltaOf(baseColumns.overall, own.overall),
          buckets: own.buckets.map((b, i) => ({ name: b.name, ...deltaOf(baseColumns.buckets[i]!, b) }))
        }
      }
    }),
    ratings: e.ratings
  }
}

/** The system whose stories the report shows: the last one not the baseline (the one under test). */
const sampleSystem = (e: Evaluation | null, run: RunData): string | null => {
  if (e !== null) return (e.systems.findLast((s) => s.name !== e.baseline) ?? e.systems.at(-1))?.name ?? null
  // A run stopped before `evaluation`: the last system judged so far.
  const judged = Object.keys(isObj(run.manifest?.nodes) ? run.manifest.nodes : {}).flatMap((id) => /^eval-(.+)\/judge$/.exec(id)?.[1] ?? [])
  return judged.at(-1) ?? null
}

const samples = async (run: RunData, system: string | null, count = 3): Promise<ReportJson["samples"]> => {
  if (system === null) return []
  const judged = await run.output(`eval-${system}/judge`)
  if (!Array.isArray(judged)) return []
  const groups = await run.output(`eval-${system}/rollout`)
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
  for (const node of Object.keys(isObj(run.manifest?.nodes) ? run.manifest.nodes : {}).filter((n) => n === "judge" || n.endsWith("/judge"))) {
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
  const training = trainingCharts(run.metrics, run.spend)
  const rubric = await rubricOf(run)
  const evaluation = Option.getOrNull(decodeEvaluation(await run.output("evaluation")))
  const samplesFrom = sampleSystem(evaluation, run)
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
    spend: spendOf(run.spend),
    evaluation: evaluation === null ? null : evaluationJson(evaluation, run.config),
    samplesFrom,
    samples: await samples(run, samplesFrom),
    unscorable: await Unscorables.find(run.metrics, run.output),
    humanEval: run.humanEval ?? null,
    audit: Option.getOrNull(Schema.decodeUnknownOption(AuditReport)(await run.output("audit"))),
    eqbench: Option.getOrNull(Schema.decodeUnknownOption(EqSummary)(await run.output("eqbench"))),
    alarms: run.metrics.some((m) => typeof m.node === "string" && /\/alarms$/.test(m.node)) ? Alarms.tripsIn(run.metrics) : null,
    judged: await Judged.ofNodes(Object.entries(nodes).map(([id, n]) => ({ id, stage: isObj(n) && typeof n.stage === "string" ? n.stage : "" })), run.output)
  }
}

/** The ledger's totals. */
const spendOf = (ledger: ReadonlyArray<Json>): ReportJson["spend"] => {
  const byEngine: Record<string, number> = {}
  let usd = 0
  let calls = 0
  for (const l of ledger) {
    const x = num(l.usd)
    if (x === null || typeof l.engine !== "string") continue
    byEngine[l.engine] = (byEngine[l.engine] ?? 0) + x
    usd += x
    calls++
  }
  return { usd, calls, byEngine }
}

// ---------------------------------------------------------------------------------------------
// HTML

const fmt = (v: Num, digits: number, signed = false): string =>
  v === null ? "–" : `${signed && v > 0 ? "+" : ""}${v.toFixed(digits)}`

/** A number's cell: shown rounded (as a percent with `pct`), at full precision in `data-value`. */
const td = (v: Num, digits: number, signed = false, ci?: Interval | null, pct = false) => {
  const shown = (x: Num, sign: boolean) => escapeXml(pct && x !== null ? `${fmt(x * 100, digits, sign)}%` : fmt(x, digits, sign))
  return `<td class="num${signed ? (v === null || v === 0 ? "" : v > 0 ? " up" : " down") : ""}"${v === null ? "" : ` data-value="${escapeXml(String(v))}"`}>${shown(v, signed)}${
    ci === undefined || ci === null ? "" : `<br><small class="ci">[${shown(ci.low, false)}, ${shown(ci.high, false)}]</small>`
  }</td>`
}

const CSS = `
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.92rem}th,td{border:1px solid #ddd;padding:.25rem .55rem}
th{background:#f5f5f5}table.eval{font-size:.85rem}small.ci{white-space:nowrap;color:#555}td.num{text-align:right;font-variant-numeric:tabular-nums}td.up{color:#05703a}td.down{color:#a3261b}
.charts{display:flex;flex-wrap:wrap;gap:1rem}.chart{border:1px solid #eee}
.na{color:#888;font-style:italic}.story{border:1px solid #ddd;border-radius:4px;padding:.6rem 1rem;margin:1rem 0}
.story pre{white-space:pre-wrap;font-family:Georgia,serif;font-size:.95rem;background:#fafafa;padding:.6rem;max-height:28rem;overflow:auto}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.5rem .8rem;font-size:.9rem}
.meta td:first-child{font-weight:600}
.wide{overflow-x:auto}table.verdicts{font-size:.8rem}span.unscorable{color:#a3261b}
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
    ["Judge rubric", r.rubric ?? "unknown"],
    ["Spend", r.spend.calls === 0 ? "no paid calls" : `$${r.spend.usd.toFixed(4)} over ${r.spend.calls} paid calls (${Object.entries(r.spend.byEngine).map(([e, u]) => `${e} $${u.toFixed(4)}`).join(", ")})`]
  ]
  return `<table class="meta">${rows.map(([k, v]) => `<tr><td>${escapeXml(k)}</td><td>${escapeXml(v)}</td></tr>`).join("")}</table>`
}

const auditHtml = (a: AuditReport) =>
  `<p>The judge (${escapeXml(a.judges.join(" and "))}) on ${a.stories} held-out human stories and their damaged and padded versions; each value with its 95% bootstrap interval over stories.</p>` +
  `<table class="audit"><tr><th>Measure</th><th>What it is</th><th>Value [95%]</th></tr>${
    auditRows(a).map(([m, what, v]) => `<tr><th>${escapeXml(m)}</th><td>${escapeXml(what)}</td><td class="num">${escapeXml(v)}</td></tr>`).join("")
  }</table>`

const eqbenchHtml = (s: EqSummary) => {
  const { header, rows } = summaryRows(s)
  return `<p>EQ-Bench Creative Writing v3: ${s.items} items per system, scored with the benchmark's rubric (lower-is-better criteria inverted) and its pairwise prompt against ${escapeXml(s.baseline)}, both orders; 95% bootstrap intervals.</p>` +
    `<table class="eqbench"><tr>${header.map((h) => `<th>${escapeXml(h)}</th>`).join("")}</tr>${
      rows.map(([name, ...cells]) => `<tr><th>${escapeXml(name!)}</th>${cells.map((c) => `<td class="num">${escapeXml(c)}</td>`).join("")}</tr>`).join("")
    }</table>`
}

const humanEvalHtml = (r: ReportJson) => {
  const h = r.humanEval
  if (h === null) return "<p>None imported (<code>polaris human-eval export</code>, then <code>import</code>; docs/evaluation.md).</p>"
  const [x, y] = Array.isArray(h.systems) ? h.systems : ["?", "?"]
  const row = (name: string, value: unknown, agreement?: number, kappa?: number) => {
    const rate = isObj(value) ? value : undefined
    return `<tr><th>${escapeXml(name)}</th>${td(num(rate?.rate), 1, false, rate === undefined ? null : { low: num(rate.low) ?? NaN, high: num(rate.high) ?? NaN }, true)}` +
      `<td class="num">${rate === undefined ? "–" : `${rate.wins}/${rate.ties}/${rate.losses}`}</td>${td(agreement ?? null, 1, false, undefined, true)}${td(kappa ?? null, 2)}</tr>`
  }
  const annotators = Array.isArray(h.annotators) ? h.annotators : []
  return `<p>Win rate of <b>${escapeXml(String(x))}</b> against <b>${escapeXml(String(y))}</b>, ties counted half, 95% interval over prompts; the judge's verdicts on the same pairs beside them.</p>` +
    `<table class="human"><tr><th>Rater</th><th>Win rate</th><th>W/T/L</th><th>Agrees with the judge</th><th>Kappa with the judge</th></tr>${
      annotators.map((a: Json) => row(String(a.name), a.rate, num(a.judgeAgreement) ?? undefined, num(a.judgeKappa) ?? undefined)).join("")
    }${row("pooled", h.pooled)}${h.judge === null ? "" : row("the judge", h.judge)}</table>` +
    (Array.isArray(h.kappa) && h.kappa.length > 0 ? `<p>Agreement between annotators (Cohen's kappa): ${h.kappa.map((k: Json) => `${escapeXml(String(k.a))} / ${escapeXml(String(k.b))}: ${fmt(num(k.kappa), 2)} over ${k.pairs} pairs`).join("; ")}.</p>` : "")
}

const alarmsHtml = (r: ReportJson) =>
  r.alarms === null
    ? "<p>Not configured (a recipe's <code>alarms:</code> sets thresholds; docs/evaluation.md).</p>"
    : r.alarms.length === 0
    ? "<p>None tripped.</p>"
    : `<p class="note">Warning: ${r.alarms.length} alarm${r.alarms.length === 1 ? "" : "s"} tripped; the rewards of these steps may reward the judge's biases rather than the task.</p>` +
      `<table class="alarms"><tr><th>Step</th><th>Alarm</th><th>What it watches</th><th>Value</th></tr>${
        r.alarms.map((t) => `<tr data-alarm="${escapeXml(t.alarm)}"><td class="num">${t.step === null ? escapeXml(t.node) : t.step + 1}</td><td>${escapeXml(t.alarm)}</td><td>${escapeXml(Alarms.DESCRIPTIONS[t.alarm])}</td>${td(t.value, 3)}</tr>`).join("")
      }</table>`

const unscorableHtml = (r: ReportJson) =>
  r.unscorable.length === 0
    ? "<p>None.</p>"
    : `<p>Items a judge could not score after its retries: they carry no reward (never a score of 0) and are judged again by the next run.</p>` +
      `<table class="unscorable"><tr><th>Node</th><th>Unscorable</th><th>Reason</th><th>Count</th><th>First message</th></tr>${
        Unscorables.collapse(r.unscorable).flatMap((n) => n.reasons.map((x, i) =>
          `<tr data-node="${escapeXml(n.node)}" data-reason="${escapeXml(x.reason)}">${i === 0 ? `<th rowspan="${n.reasons.length}">${escapeXml(n.node)}</th><td class="num" rowspan="${n.reasons.length}">${n.unscorable} of ${n.items}</td>` : ""}` +
          `<td>${escapeXml(x.reason)}</td><td class="num">${x.count}</td><td><small>${escapeXml(x.message.split("\n")[0] ?? "")}</small></td></tr>`)).join("")
      }</table>`

const trainingHtml = (r: ReportJson) =>
  r.training === null
    ? na(r.steps === 0 ? "Training metrics (this run has no training steps)" : "Training metrics")
    : `<div class="charts">${r.training.charts.map((ch) => lineChart({ title: ch.title, series: ch.series, xLabel: "step", yLabel: ch.yLabel })).join("")}</div>`

const evaluationHtml = (r: ReportJson) => {
  const e = r.evaluation
  if (e === null) return na("Evaluation (the `evaluation` node)")
  const named = (name: string) => `${escapeXml(name)}${name === e.baseline ? " <small>(baseline)</small>" : ""}`
  const cols = [...e.bucketNames, "overall"]
  const n = (c: EvalCell) => (c.stories === null ? "" : ` <small>(n=${c.stories})</small>`)
  const first = e.systems[0]
  const head1 = `<tr><th rowspan="2">System</th>${cols.map((c, i) => `<th colspan="3">${escapeXml(c)}${first === undefined ? "" : n(first.buckets[i] ?? first.overall)}</th>`).join("")}</tr>`
  const head2 = `<tr>${cols.map(() => "<th>Quality</th><th>S<sub>l</sub></th><th>Length ratio</th>").join("")}</tr>`
  const rows = e.systems.map((s) => {
    const cells = [...s.buckets, s.overall].map((c) => td(c.quality_mean, 3, false, c.quality_ci) + td(c.length_score_mean, 1, false, c.length_score_ci) + td(c.length_ratio_mean, 2))
    const delta = s.delta === null ? "" : `<tr class="delta" data-system="${escapeXml(s.name)}"><th>Δ vs ${escapeXml(e.baseline)}</th>${
      [...s.delta.buckets, s.delta.overall].map((d) => td(d.quality_mean, 3, true) + td(d.length_score_mean, 1, true) + td(d.length_ratio_mean, 2, true)).join("")
    }</tr>`
    return `<tr class="system" data-system="${escapeXml(s.name)}"><th>${named(s.name)}</th>${cells.join("")}</tr>${delta}`
  })
  const table = `<table class="eval">${head1}${head2}${rows.join("")}</table>`
  const detailRows = e.systems.flatMap((s) =>
    [...s.buckets, { ...s.overall, name: "overall" }].map((c, i) =>
      `<tr data-system="${escapeXml(s.name)}" data-bucket="${escapeXml(c.name)}">${i === 0 ? `<th rowspan="${s.buckets.length + 1}">${named(s.name)}</th>` : ""}<td>${escapeXml(c.name)}</td>` +
      `<td class="num">${c.stories ?? "–"}</td>${td(c.quality_mean, 3, false, c.quality_ci)}${td(c.reward_mean, 3, false, c.reward_ci)}${td(c.length_score_mean, 1, false, c.length_score_ci)}` +
      `${td(c.length_ratio_mean, 2)}${td(c.truncated_frac, 0, false, null, true)}</tr>`))
  const detail = `<table class="eval-detail"><tr><th>System</th><th>Bucket</th><th>n</th><th>Quality</th><th>Reward</th><th>S<sub>l</sub></th><th>Length ratio</th><th>Truncated</th></tr>${detailRows.join("")}</table>`
  // Per system: each bucket, then overall (where a dimension holds up as requests grow longer).
  const dimensionIds = [...new Set(e.systems.flatMap((s) => Object.keys(s.overall.dimensions)))]
  const cellsOf = (s: (typeof e.systems)[number]) => [...s.buckets, { ...s.overall, name: "overall" }]
  const dimensions = dimensionIds.length === 0
    ? na("Scores per rubric dimension")
    : `<table class="dimensions"><tr><th rowspan="2">Dimension</th>${e.systems.map((s) => `<th colspan="${s.buckets.length + 1}">${named(s.name)}</th>`).join("")}</tr>` +
      `<tr>${e.systems.map((s) => cellsOf(s).map((c) => `<th>${escapeXml(c.name)}</th>`).join("")).join("")}</tr>${
        dimensionIds.map((d) => `<tr data-dimension="${escapeXml(d)}"><th>${escapeXml(d)}</th>${e.systems.map((s) => cellsOf(s).map((c) => td(c.dimensions[d] ?? null, 2)).join("")).join("")}</tr>`).join("")
      }</table>`
  const seriesNames = e.systems.map((s) => s.name)
  const chart = (title: string, yLabel: string, pick: (c: EvalCell) => Num) =>
    barChart({ title, yLabel, seriesNames, groups: e.bucketNames.map((label, i) => ({ label, values: e.systems.map((s) => pick(s.buckets[i]!)) })) })
  const charts = `<div class="charts">${chart("Quality per requested-length bucket", "mean quality (0-1)", (c) => c.quality_mean)}${chart("Length score S_l per requested-length bucket", "S_l (0-100)", (c) => c.length_score_mean)}</div>`
  return table +
    "<p>Quality is the judge's normalised score Q<sub>norm</sub> (0–1); S<sub>l</sub> is LongWriter's length score (0–100); length ratio is words written / words requested; reward is Q<sub>norm</sub> · L (quality times the length factor); truncated stories hit the token cap. Brackets: bootstrap 95% intervals over prompts.</p>" +
    charts + "<h3>Per system and bucket</h3>" + detail + "<h3>Mean score per rubric dimension</h3>" + dimensions
}

const pairwiseHtml = (r: ReportJson) => {
  const e = r.evaluation
  const ratings = e?.ratings ?? null
  if (e === null || ratings === null) return na("Pairwise ratings")
  const rating = (s: SystemRating | undefined) => (s === undefined ? td(null, 0) : td(s.rating, 0, false, s.rating_ci))
  const rows = ratings.systems.map((s) => {
    const v = s.vs_baseline
    return `<tr data-system="${escapeXml(s.name)}"><th>${escapeXml(s.name)}${s.name === ratings.baseline ? " <small>(baseline)</small>" : ""}</th>${rating(s)}` +
      `${td(v?.rate ?? null, 0, false, v?.rate_ci, true)}<td class="num">${v === null ? "–" : `${v.wins} / ${v.ties} / ${v.losses}`}</td></tr>`
  })
  const table = `<table class="elo"><tr><th>System</th><th>Elo (Bradley-Terry, ${escapeXml(ratings.baseline)} = 1000) [95% CI]</th><th>Win rate vs ${escapeXml(ratings.baseline)} [95% CI]</th><th>W / T / L</th></tr>${rows.join("")}</table>`
  const consistency = ratings.position_consistency === null ? "–" : `${fmt(ratings.position_consistency * 100, 0)}%`
  const summary = `<p>${ratings.comparisons} comparisons scored, ${ratings.unscorable} unscorable; position consistency ${consistency} (the share of comparisons whose two orders agree).</p>`
  const buckets = e.bucketNames.filter((b) => ratings.buckets[b] !== undefined)
  const perBucket = buckets.length === 0 ? "" :
    `<h3>Elo per requested-length bucket</h3><table class="elo-buckets"><tr><th>System</th>${buckets.map((b) => `<th>${escapeXml(b)} <small>(${ratings.buckets[b]!.comparisons} comparisons)</small></th>`).join("")}</tr>${
      ratings.systems.map((s) => `<tr data-system="${escapeXml(s.name)}"><th>${escapeXml(s.name)}</th>${buckets.map((b) => rating(ratings.buckets[b]!.systems.find((x) => x.name === s.name))).join("")}</tr>`).join("")
    }</table>`
  return "<p>Each pair of stories for the same prompt is judged in both orders, and a win counts only when the two orders agree (otherwise a tie); the intervals resample prompts (bootstrap 95%).</p>" +
    table + summary + perBucket
}

const samplesHtml = (r: ReportJson) =>
  r.samples.length === 0
    ? na("Sample stories from the evaluation")
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
<h2>Unscorable items</h2>
${unscorableHtml(r)}
${r.audit === null ? "" : `<h2>Judge audit</h2>${auditHtml(r.audit)}`}
${r.eqbench === null ? "" : `<h2>EQ-Bench Creative Writing v3</h2>${eqbenchHtml(r.eqbench)}`}
<h2>Reward-hacking alarms</h2>
${alarmsHtml(r)}
<h2>Blinded human evaluation</h2>
${humanEvalHtml(r)}
${r.judged.length === 0 ? "" : `<h2>Verdicts</h2>\n${Judged.toHtml(r.judged)}\n`}<h2>Training curves</h2>
${trainingHtml(r)}
<h2>Evaluation by requested length</h2>
${evaluationHtml(r)}
<h2>Pairwise preference (Elo)</h2>
${pairwiseHtml(r)}
<h2>${escapeXml(r.samplesFrom === null ? "Sample stories" : `Sample stories (written by ${r.samplesFrom})`)}</h2>
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
