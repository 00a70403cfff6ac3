/**
 * Loop steps' metrics, for the progress view: what the nodes under `<loop>/step-NNN/` report
 * with `ctx.metric`, gathered per step; one line per step once all its nodes have settled; and
 * sparklines of a metric over the steps. Pure, like Progress's reducer, so tests pin the text.
 *
 * Any pipeline's loop works: the columns below are the POLARIS training metrics (reward, S_l,
 * length ratio, KL, loss, unscorable stories, judge, sampler and trainer spend), each shown when a step has it; a
 * step with none of them shows its first few numeric metrics instead.
 *
 * @example
 * let table = StepMetrics.plan(pipeline.nodes.map((n) => n.id))
 * table = StepMetrics.addMetric(table, "train/step-002/groups", { reward_policy_mean: 0.41 })
 * const { table: next, finished } = StepMetrics.settle(table, "train/step-002/update")
 * if (finished !== undefined) console.log(StepMetrics.line(next, finished)) // "step 3/40  reward 0.410"
 */

/** `train/step-003/group-1/judge` -> loop `train`, step 3, local id `group-1/judge` (outermost loop). */
const LOOP_STEP = /^((?:[^/]+\/)*?)step-(\d+)\/(.+)$/

/** Where a node sits in a loop, or undefined outside any. */
export const stepOf = (node: string): { readonly loop: string; readonly index: number; readonly local: string } | undefined => {
  const m = LOOP_STEP.exec(node)
  return m === null ? undefined : { loop: m[1]!.replace(/\/$/, ""), index: Number(m[2]), local: m[3]! }
}

/** One step: each node's metrics (merged, a later value winning), and how many nodes settled. */
export interface Step {
  readonly loop: string
  /** From the node ids: `step-002` is index 2, the third step. */
  readonly index: number
  /** By local id, in the order the nodes first reported. */
  readonly nodes: ReadonlyMap<string, Readonly<Record<string, number>>>
  readonly settled: number
  /** All the step's nodes settled (known only with a plan). */
  readonly done: boolean
}

/** Every step seen so far, and what the pipeline has (when the view was given its node ids). */
export interface Table {
  /** Nodes per step (`loop\0index`), from the pipeline; empty when unknown. */
  readonly planned: ReadonlyMap<string, number>
  /** Steps per loop, from the pipeline. */
  readonly loops: ReadonlyMap<string, number>
  readonly steps: ReadonlyMap<string, Step>
  /** The step that last changed, for the live view. */
  readonly latest: string | undefined
}

const keyOf = (loop: string, index: number) => `${loop}\u0000${index}`

export const empty: Table = { planned: new Map(), loops: new Map(), steps: new Map(), latest: undefined }

/** A table that knows the pipeline's steps, so a step is done when its last node settles. */
export const plan = (nodeIds: ReadonlyArray<string>): Table => {
  const planned = new Map<string, number>()
  const indices = new Map<string, Set<number>>()
  for (const id of nodeIds) {
    const at = stepOf(id)
    if (at === undefined) continue
    planned.set(keyOf(at.loop, at.index), (planned.get(keyOf(at.loop, at.index)) ?? 0) + 1)
    indices.set(at.loop, (indices.get(at.loop) ?? new Set()).add(at.index))
  }
  return { ...empty, planned, loops: new Map([...indices].map(([loop, s]) => [loop, s.size])) }
}

/** The same plan, no steps seen (a run starting again). */
export const restart = (table: Table): Table => ({ ...table, steps: new Map(), latest: undefined })

const blank = (loop: string, index: number): Step => ({ loop, index, nodes: new Map(), settled: 0, done: false })

const withStep = (table: Table, key: string, step: Step): Table => ({ ...table, steps: new Map(table.steps).set(key, step), latest: key })

/** The table after a node reported metrics; only finite numbers are kept. */
export const addMetric = (table: Table, node: string, values: Readonly<Record<string, unknown>>): Table => {
  const at = stepOf(node)
  if (at === undefined) return table
  const numbers = Object.fromEntries(Object.entries(values).filter((e): e is [string, number] => typeof e[1] === "number" && Number.isFinite(e[1])))
  if (Object.keys(numbers).length === 0) return table
  const key = keyOf(at.loop, at.index)
  const step = table.steps.get(key) ?? blank(at.loop, at.index)
  const nodes = new Map(step.nodes).set(at.local, { ...(step.nodes.get(at.local) ?? {}), ...numbers })
  return withStep(table, key, { ...step, nodes })
}

/** The table after a node settled (executed, cached, failed or skipped), and the step it finished, if any. */
export const settle = (table: Table, node: string): { readonly table: Table; readonly finished: Step | undefined } => {
  const at = stepOf(node)
  if (at === undefined) return { table, finished: undefined }
  const key = keyOf(at.loop, at.index)
  const step = table.steps.get(key) ?? blank(at.loop, at.index)
  const settled = step.settled + 1
  const planned = table.planned.get(key)
  const done = planned !== undefined && settled >= planned
  const next = { ...step, settled, done }
  return { table: { ...withStep(table, key, next), latest: table.latest ?? key }, finished: done && !step.done ? next : undefined }
}

/**
 * Counts and spend add up over a step's sibling nodes (one judge per group); anything else is
 * one node's value. Either way the shallowest nodes holding the key count: the step's
 * `groups` node over the judges under `group-i/`.
 */
const ADDITIVE = /^(judge_.+|.+_cost_usd|stories|unscorable|comparisons)$/

/** The step's value of each metric, over its nodes (see {@link ADDITIVE}). */
export const values = (step: Step): Record<string, number> => {
  const out: Record<string, number> = {}
  const depthOf: Record<string, number> = {}
  for (const [local, record] of step.nodes) {
    const depth = local.split("/").length
    for (const [k, v] of Object.entries(record)) {
      const seen = depthOf[k]
      if (seen === undefined || depth < seen) {
        depthOf[k] = depth
        out[k] = v
      } else if (depth === seen) out[k] = ADDITIVE.test(k) ? out[k]! + v : v
    }
  }
  return out
}

const fixed = (digits: number) => (v: number) => v.toFixed(digits)
const usd = (v: number) => `$${v.toFixed(v >= 0.1 || v === 0 ? 2 : 3)}`

/** A column of the step line: the metric it reads and its text (undefined: not shown). */
interface Column {
  readonly key: string
  readonly show: (v: number, all: Readonly<Record<string, number>>) => string | undefined
}

/** The POLARIS training metrics (stages/hriGroups.ts, stages/update.ts, stages/judge.ts), in line order. */
const COLUMNS: ReadonlyArray<Column> = [
  { key: "reward_policy_mean", show: (v, all) => `reward ${v.toFixed(3)}${all.reward_reference_mean === undefined ? "" : ` (ref ${all.reward_reference_mean.toFixed(3)})`}` },
  { key: "reward_reference_mean", show: (v, all) => (all.reward_policy_mean === undefined ? `ref reward ${v.toFixed(3)}` : undefined) },
  { key: "length_score_mean", show: (v) => `S_l ${v.toFixed(1)}` },
  { key: "length_ratio_mean", show: (v) => `len ${v.toFixed(2)}` },
  { key: "kl", show: (v) => `KL ${v.toFixed(4)}` },
  { key: "loss", show: (v) => `loss ${v.toFixed(3)}` },
  { key: "unscorable", show: (v) => (v > 0 ? `unscorable ${v}` : undefined) },
  { key: "judge_cost_usd", show: (v) => `judge ${usd(v)}` },
  // A priced remote policy's calls (engines/PricedPolicy.ts), charged by the executor.
  { key: "sampler_cost_usd", show: (v) => `sampler ${usd(v)}` },
  { key: "trainer_cost_usd", show: (v) => `trainer ${usd(v)}` }
]

/** Bookkeeping rather than results: never shown by the generic fallback. */
const BOOKKEEPING = new Set(["step", "inner_iteration", "learning_rate"])
const GENERIC = 4

/** A number in a few characters: integers as they are, others to 3 significant digits. */
const compact = (v: number) => (Number.isInteger(v) ? String(v) : Math.abs(v) >= 1000 ? v.toFixed(0) : String(Number(v.toPrecision(3))))

/** The fields of a step's line, e.g. `["reward 0.412 (ref 0.523)", "S_l 61.2", ...]`; empty without metrics. */
export const fields = (step: Step): Array<string> => {
  const all = values(step)
  const known = COLUMNS.flatMap((c) => (all[c.key] === undefined ? [] : [c.show(all[c.key]!, all)]).filter((f): f is string => f !== undefined))
  // A tripped alarm (`alarm:<name>`, stages/rewardAlarms.ts) is always shown, with its value.
  const alarms = Object.entries(all).filter(([k]) => k.startsWith("alarm:")).map(([k, v]) => `⚠ ${k.slice("alarm:".length)} ${compact(v)}`)
  if (COLUMNS.some((c) => all[c.key] !== undefined)) return [...known, ...alarms]
  return Object.entries(all).filter(([k]) => !BOOKKEEPING.has(k)).slice(0, GENERIC).map(([k, v]) => `${k} ${compact(v)}`)
}

/** `step 3/40` (`train step 3/40` when the pipeline has several loops); 1-based, as people count. */
export const label = (table: Table, step: Step): string => {
  const of = table.loops.get(step.loop)
  const loops = new Set([...table.loops.keys(), ...[...table.steps.values()].map((s) => s.loop)])
  return `${loops.size > 1 && step.loop !== "" ? `${step.loop} ` : ""}step ${step.index + 1}${of === undefined ? "" : `/${of}`}`
}

/** The step's line, e.g. `step 3/40  reward 0.412 (ref 0.523)  S_l 61.2  len 0.93  loss 0.121  judge $0.00`; undefined without metrics. */
export const line = (table: Table, step: Step): string | undefined => {
  const f = fields(step)
  return f.length === 0 ? undefined : [label(table, step), ...f].join("  ")
}

const BLOCKS = "▁▂▃▄▅▆▇█"

/** `▁▃▅█`: each value's height between the series' min and max (a flat series sits mid-height). */
export const sparkline = (xs: ReadonlyArray<number>): string => {
  const lo = Math.min(...xs)
  const hi = Math.max(...xs)
  return xs.map((x) => BLOCKS[hi === lo ? 3 : Math.round(((x - lo) / (hi - lo)) * (BLOCKS.length - 1))]).join("")
}

/** The metrics the live view draws over the steps, when the steps have them. */
const TRENDS: ReadonlyArray<{ readonly key: string; readonly label: string; readonly show: (v: number) => string }> = [
  { key: "reward_policy_mean", label: "reward", show: fixed(3) },
  { key: "length_score_mean", label: "S_l", show: fixed(1) },
  { key: "loss", label: "loss", show: fixed(3) }
]

/** Sparklines over the last `points` steps. */
const POINTS = 24

/** The steps of the latest loop with metrics, in step order. */
const recent = (table: Table): Array<Step> => {
  const latest = table.latest === undefined ? undefined : table.steps.get(table.latest)
  if (latest === undefined) return []
  return [...table.steps.values()].filter((s) => s.loop === latest.loop && s.nodes.size > 0).sort((a, b) => a.index - b.index)
}

/**
 * The live view's trend line over the latest loop's steps: `reward ▁▃▅▆█ 0.412  S_l ▂▄▆▇█ 61.2`
 * (the last value after each sparkline); undefined until a step has metrics.
 */
export const trend = (table: Table): string | undefined => {
  const steps = recent(table).slice(-POINTS)
  const series = steps.map(values)
  const known = TRENDS.filter((t) => series.some((v) => v[t.key] !== undefined))
  const chosen = known.length > 0
    ? known
    : [...new Set(series.flatMap((v) => Object.keys(v)))].filter((k) => !BOOKKEEPING.has(k)).slice(0, 2).map((key) => ({ key, label: key, show: compact }))
  const parts = chosen.flatMap((t) => {
    const xs = series.flatMap((v) => (v[t.key] === undefined ? [] : [v[t.key]!]))
    return xs.length === 0 ? [] : [`${t.label} ${sparkline(xs)} ${t.show(xs.at(-1)!)}`]
  })
  return parts.length === 0 ? undefined : parts.join("  ")
}

/** The lines of the latest `count` steps with metrics; a step still running ends in `…`. */
export const latestLines = (table: Table, count: number): Array<string> =>
  recent(table).slice(-count).flatMap((s) => {
    const l = line(table, s)
    return l === undefined ? [] : [s.done || table.planned.size === 0 ? l : `${l} …`]
  })
