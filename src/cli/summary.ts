/**
 * What `polaris run` and `resume` print on stdout when a run succeeded (without `--json`): its
 * headline numbers, not the raw JSON of its outputs (`--json` carries those).
 *
 *   - an output that is text (a report meant for people) as it is;
 *   - an evaluation (records/Evaluation.ts): S_l, reward and length ratio of each system, the
 *     baseline first (`initial → final` after training);
 *   - a list of judged stories (records/Judgement.ts): how many were scored, and their means;
 *   - a policy state (records/TrainState.ts): its step and where its checkpoint is;
 *   - anything else: its size, and the stored folders it names, with the command to export one;
 *
 * then the unscorable items per node with their reasons, the run's counts and folder, and the
 * `polaris report` command to run next.
 */
import { join } from "node:path"
import { Effect, Option, Schema } from "effect"
import type { RunResult } from "../dag/Executor.ts"
import { Judgement } from "../records/Judgement.ts"
import { Evaluation } from "../records/Evaluation.ts"
import { PolicyState } from "../records/TrainState.ts"
import * as Unscorables from "../report/Unscorables.ts"
import * as Alarms from "../eval/Alarms.ts"
import { EqSummary, summaryRows } from "../records/EqBench.ts"
import { AuditReport, auditRows } from "../records/JudgeAudit.ts"
import { readJsonl } from "../dag/RunLog.ts"
import { textTable } from "../report/TextTable.ts"

/** Text longer than this is left in the store, as before. */
const MAX_TEXT = 4000

const decodeEvaluation = Schema.decodeUnknownOption(Evaluation)
const decodeJudged = Schema.decodeUnknownOption(Schema.Array(Judgement))
const decodeState = Schema.decodeUnknownOption(Schema.Struct({ policy: PolicyState }))

type Num = number | null
const mean = (xs: ReadonlyArray<number>): Num => (xs.length === 0 ? null : xs.reduce((a, b) => a + b, 0) / xs.length)
const fmt = (v: Num, digits: number) => (v === null ? "–" : v.toFixed(digits))
const signed = (v: Num, digits: number) => (v === null ? "–" : `${v >= 0 ? "+" : ""}${v.toFixed(digits)}`)
const size = (text: string) => (text.length < 1000 ? `${text.length} B` : `${(text.length / 1000).toFixed(1)} kB`)

/** The headline rows of an evaluation: each system's value, baseline first, and last minus baseline. */
const evaluationLines = (name: string, e: Evaluation): Array<string> => {
  const base = e.systems.find((s) => s.name === e.baseline)
  const systems = base === undefined ? e.systems : [base, ...e.systems.filter((s) => s !== base)]
  const stories = [...new Set(systems.map((s) => s.summary.stories))]
  const rows: ReadonlyArray<readonly [string, (s: Evaluation["systems"][number]["summary"]) => Num, number]> = [
    ["S_l", (s) => s.length_score_mean, 1],
    ["reward", (s) => s.reward_mean, 3],
    ["length ratio", (s) => s.length_ratio_mean, 2]
  ]
  const head = `${name} (held-out prompts): ${systems.map((s) => s.name).join(" → ")}, ${stories.length === 1 ? `${stories[0]} stories each` : `${stories.join(", ")} stories`}`
  const table = rows.map(([label, pick, digits]) => ({ label, digits, values: systems.map((s) => pick(s.summary)) }))
  // Each system's column right-aligned over the rows, so the arrows line up.
  const widths = systems.map((_, i) => Math.max(...table.map((r) => fmt(r.values[i]!, r.digits).length)))
  return [head, ...table.map(({ label, digits, values }) => {
    const delta = systems.length > 1 && values[0] !== null && values.at(-1) !== null ? `   ${signed(values.at(-1)! - values[0]!, digits)}` : ""
    return `  ${label.padEnd(13)}${values.map((v, i) => fmt(v, digits).padStart(widths[i]!)).join(" → ")}${delta}`
  })]
}

/** `judged: 51 stories, 44 scored: quality 0.612  S_l 88.0  reward 0.523; 7 unscorable`. */
const judgedLine = (name: string, judged: ReadonlyArray<Judgement>): string => {
  const scored = judged.filter((j) => j.unscorable === null && j.quality !== null)
  const q = mean(scored.map((j) => j.quality!))
  const r = mean(scored.flatMap((j) => (j.reward === null ? [] : [j.reward])))
  const sl = mean(judged.map((j) => j.length_score))
  const unscorable = judged.length - scored.length
  return `${name}: ${judged.length} stories, ${scored.length} scored: quality ${fmt(q, 3)}  S_l ${fmt(sl, 1)}  reward ${fmt(r, 3)}${unscorable > 0 ? `; ${unscorable} unscorable` : ""}`
}

/** Stored folders (`{ $tree }`) anywhere in a value, with their paths. */
const treesIn = (value: unknown, path = ""): Array<{ readonly path: string; readonly tree: string }> => {
  if (Array.isArray(value)) return value.flatMap((v, i) => treesIn(v, `${path}[${i}]`))
  if (typeof value !== "object" || value === null) return []
  const tree = (value as { $tree?: unknown }).$tree
  if (typeof tree === "string") return [{ path, tree }]
  return Object.entries(value).flatMap(([k, v]) => treesIn(v, path === "" ? k : `${path}.${k}`))
}

const exportHint = (tree: string) => `npx polaris cache export ${tree.slice(0, 12)} --out DIR`

/** The lines for one output of the pipeline. */
export const outputLines = (name: string, value: unknown): Array<string> => {
  if (typeof value === "string") return value.length <= MAX_TEXT ? [`${name}:`, value, ""] : [`${name}: ${size(value)} of text, in the store`]
  const evaluation = decodeEvaluation(value)
  if (Option.isSome(evaluation) && evaluation.value.systems.length > 0) return evaluationLines(name, evaluation.value)
  const judged = decodeJudged(value)
  if (Option.isSome(judged) && judged.value.length > 0) return [judgedLine(name, judged.value)]
  const audit = Schema.decodeUnknownOption(AuditReport)(value)
  if (Option.isSome(audit)) {
    const rows = auditRows(audit.value)
    const width = Math.max(...rows.map((r) => r[0].length))
    return [`${name}: the judge (${audit.value.judges.join(" and ")}) on ${audit.value.stories} held-out stories, 95% intervals over stories:`, ...rows.map(([m, , v]) => `  ${m.padEnd(width)}  ${v}`)]
  }
  const eq = Schema.decodeUnknownOption(EqSummary)(value)
  if (Option.isSome(eq)) {
    const { header, rows } = summaryRows(eq.value)
    return [`${name}: EQ-Bench Creative Writing v3, ${eq.value.items} items per system, 95% intervals:`, ...textTable(header, rows, { indent: "  " })]
  }
  const state = decodeState(value)
  if (Option.isSome(state)) {
    const { step, checkpoint } = state.value.policy
    const where = typeof checkpoint === "string" ? checkpoint : `${checkpoint.$tree.slice(0, 12)} (${exportHint(checkpoint.$tree)})`
    return [`${name}: the policy after ${step} step${step === 1 ? "" : "s"}, checkpoint ${where}`]
  }
  const text = JSON.stringify(value) ?? "undefined"
  const trees = treesIn(value)
  const what = Array.isArray(value) ? `${value.length} items` : typeof value === "object" && value !== null ? "a record" : "a value"
  return [`${name}: ${what}, ${size(text)} (--json prints it)`, ...trees.map((t) => `  stored folder ${t.path === "" ? "" : `${t.path} `}${t.tree.slice(0, 12)}: ${exportHint(t.tree)}`)]
}

/** The command that renders the run's report (`--store` only when the store is not the default). */
export const reportCommand = (runId: string, store: string, defaultStore: string): string =>
  `npx polaris report ${runId}${store === defaultStore ? "" : ` --store ${store}`}`

/**
 * The whole summary of a finished run, line by line.
 *
 * @example
 * for (const line of yield* Summary.lines(result, { store: ".polaris", defaultStore: ".polaris" })) yield* Console.log(line)
 */
export const lines = (result: RunResult<unknown>, options: { readonly store: string; readonly defaultStore: string }): Effect.Effect<Array<string>> =>
  Effect.gen(function*() {
    const out: Array<string> = []
    for (const [name, value] of Object.entries(result.outputs as Record<string, unknown>)) out.push(...outputLines(name, value))
    const unscorable = yield* Unscorables.ofRun(options.store, result.runId)
    const total = Unscorables.total(unscorable)
    if (total !== undefined) out.push(`unscorable: ${total}`, ...Unscorables.lines(unscorable).map((l) => `  ${l}`))
    const trips = Alarms.tripsIn(yield* Effect.promise(() => readJsonl(join(result.dir, "metrics.jsonl"))))
    if (trips.length > 0) out.push("warning: reward-hacking alarms tripped", ...Alarms.summaryLines(trips).map((l) => `  ${l}`))
    out.push(`run ${result.runId}: ${result.executed} executed, ${result.cached} cached`, `  ${result.dir}`)
    out.push(`next: ${reportCommand(result.runId, options.store, options.defaultStore)}   (writes the run's report.html)`)
    return out
  })
