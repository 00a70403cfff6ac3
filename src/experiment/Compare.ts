/**
 * Comparing runs: what differs between them and what it did. Runs (or a sweep's variants) are
 * grouped by the recipe values that differ, `seed` aside, so seeds of one setting aggregate; each
 * group gets the held-out numbers of its final policy (length score S_l, reward, quality, length
 * ratio; overall and per requested-length bucket) as a mean with a two-level bootstrap interval
 * over seeds and prompts, the same for the initial policy, its Elo against the initial policy
 * where the evaluation judged pairs, and its training curves averaged over seeds.
 *
 * Everything is read from the runs as stored: the frozen recipe (`config.json`), the manifest's
 * node outputs (`eval-final/judge`, `eval-final/rollout`, `eval-set`, `evaluation`) and
 * `metrics.jsonl`. No judge is called and nothing is recomputed; `--head-to-head` (HeadToHead.ts)
 * adds the one comparison that needs the judge: the groups' final policies against each other.
 *
 * @example
 * const comparison = yield* Compare.compare(".polaris", ["<sweep id>"])
 * console.log(Compare.formatTable(comparison))
 */
import { readFile } from "node:fs/promises"
import { join } from "node:path"
import { Data, Effect } from "effect"
import { objectPath, pathsOf } from "../dag/ArtifactStore.ts"
import { readJsonl } from "../dag/RunLog.ts"
import { hierarchicalBootstrapCI, type Interval, mean } from "../eval/Stats.ts"
import type { HeadToHead } from "./HeadToHead.ts"
import * as Sweep from "./Sweep.ts"
import { textTable } from "../report/TextTable.ts"

export class CompareError extends Data.TaggedError("CompareError")<{ readonly message: string }> {}

/** The per-story numbers compared. */
export const METRICS = ["length_score", "reward", "quality", "length_ratio"] as const
export type Metric = (typeof METRICS)[number]

/** Training curves drawn per group: metric name -> the node (local id) that records it. */
export const CURVES: Readonly<Record<string, string>> = {
  reward_policy_mean: "groups",
  reward_reference_mean: "groups",
  length_score_mean: "groups",
  length_ratio_mean: "groups",
  loss: "update"
}

type Json = Record<string, any>

/** One run as compared: its recipe values and, per system evaluated, per-prompt numbers. */
interface RunData {
  readonly id: string
  readonly label: string
  readonly values: Readonly<Record<string, string>>
  /** system -> metric -> prompt -> mean over the prompt's stories. */
  readonly prompts: Readonly<Record<string, Readonly<Record<Metric, ReadonlyMap<string, number>>>>>
  readonly bucketOf: ReadonlyMap<string, string>
  readonly elo: number | null
  readonly curves: Readonly<Record<string, ReadonlyArray<readonly [number, number]>>>
}

export interface Cell {
  readonly overall: Interval
  readonly buckets: Readonly<Record<string, Interval>>
}

export interface Group {
  /** The differing recipe values (seed aside) that define it, as `key=value`. */
  readonly name: string
  readonly values: Readonly<Record<string, string>>
  readonly runs: ReadonlyArray<string>
  readonly seeds: ReadonlyArray<string>
  /** system ("initial", "final") -> metric -> interval. */
  readonly systems: Readonly<Record<string, Readonly<Record<Metric, Cell>>>>
  /** The final policy's Elo against the initial one (mean over seeds, bootstrap over seeds). */
  readonly elo: Interval | null
  readonly curves: Readonly<Record<string, ReadonlyArray<readonly [number, number]>>>
}

export interface Comparison {
  /** The recipe keys whose values differ between the runs (seed included when it differs). */
  readonly differing: ReadonlyArray<string>
  readonly buckets: ReadonlyArray<string>
  readonly groups: ReadonlyArray<Group>
  /** The groups' final policies judged against each other (`--head-to-head`, HeadToHead.ts). */
  readonly head_to_head?: HeadToHead
}

const readJson = async (path: string): Promise<any> => JSON.parse(await readFile(path, "utf8"))

/** Dotted paths of a plain JSON tree, leaves as canonical text (lists are leaves). */
const flatten = (value: unknown, prefix = "", out: Record<string, string> = {}): Record<string, string> => {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix === "" ? k : `${prefix}.${k}`, out)
  } else out[prefix] = typeof value === "string" ? value : JSON.stringify(value)
  return out
}

// Keys that say where or how a run ran, not what it computed.
const IGNORED = /^(\$schema|store|sweep|extends|concurrency|retries)(\.|$)/

/** The run ids behind `ids` (a sweep stands for its variants that have a run). */
const expand = (store: string, ids: ReadonlyArray<string>) =>
  Effect.forEach(ids, (id) =>
    Sweep.isSweep(store, id)
      ? Effect.map(Sweep.read(store, id), (s) => s.variants.filter((v) => v.run !== null && v.status === "succeeded").map((v) => ({ run: v.run!, label: v.name })))
      : Effect.succeed([{ run: id, label: id }])).pipe(Effect.map((xs) => xs.flat()))

const loadRun = (store: string, run: string, label: string) =>
  Effect.tryPromise({
    try: async (): Promise<RunData> => {
      const paths = pathsOf(store)
      const dir = join(paths.runs, run)
      const config = await readJson(join(dir, "config.json"))
      const manifest = await readJson(join(dir, "manifest.json"))
      const object = async (node: string): Promise<any> => {
        const digest = manifest.nodes?.[node]?.object
        return typeof digest === "string" ? readJson(objectPath(paths, digest)) : undefined
      }
      const bucketOf = new Map<string, string>()
      for (const p of ((await object("eval-set")) ?? []) as Array<Json>) if (typeof p.bucket === "string") bucketOf.set(p.id, p.bucket)
      const prompts: Record<string, Record<Metric, Map<string, number>>> = {}
      for (const system of ["initial", "final"]) {
        const judged = (await object(`eval-${system}/judge`)) as Array<Json> | undefined
        const groups = (await object(`eval-${system}/rollout`)) as Array<Json> | undefined
        if (judged === undefined || groups === undefined) continue
        const requested = new Map(groups.map((g) => [g.prompt_id as string, g.requested_words as number]))
        const per: Record<Metric, Map<string, Array<number>>> = { length_score: new Map(), reward: new Map(), quality: new Map(), length_ratio: new Map() }
        for (const j of judged) {
          const prompt = String(j.id).replace(/#[^#]*$/, "")
          const push = (m: Metric, x: unknown) => typeof x === "number" && Number.isFinite(x) && per[m].set(prompt, [...(per[m].get(prompt) ?? []), x])
          push("length_score", j.length_score)
          push("reward", j.reward)
          push("quality", j.quality)
          const words = requested.get(prompt)
          if (words !== undefined && words > 0) push("length_ratio", j.words / words)
        }
        prompts[system] = Object.fromEntries(METRICS.map((m) => [m, new Map([...per[m]].map(([p, xs]) => [p, mean(xs)]))])) as Record<Metric, Map<string, number>>
      }
      const evaluation = await object(manifest.outputs?.evaluation ?? "evaluation")
      const elo = (evaluation?.ratings?.systems as Array<Json> | undefined)?.find((s) => s.name === "final")?.rating ?? null
      const metrics = await readJsonl(join(dir, "metrics.jsonl"))
      const curves: Record<string, Array<[number, number]>> = {}
      for (const [metric, local] of Object.entries(CURVES)) {
        const points = new Map<number, number>()
        for (const r of metrics) {
          const m = /^train\/step-(\d+)\/(.+)$/.exec(String(r.node))
          if (m === null || m[2] !== local || typeof r[metric] !== "number") continue
          points.set(Number(m[1]), r[metric] as number) // the last record of a step wins (inner iterations)
        }
        curves[metric] = [...points].sort((a, b) => a[0] - b[0])
      }
      return { id: run, label, values: flatten(config.recipe ?? { pipeline: config.pipelineFile }), prompts, bucketOf, elo, curves }
    },
    catch: (e) => new CompareError({ message: `run ${run} in ${store}: ${e instanceof Error ? e.message : String(e)}` })
  })

/** Compares the runs `ids` names (run ids and sweep ids) in `store`. */
export const compare = (store: string, ids: ReadonlyArray<string>): Effect.Effect<Comparison, CompareError | Sweep.SweepError> =>
  Effect.gen(function*() {
    const named = yield* expand(store, ids)
    if (named.length === 0) return yield* new CompareError({ message: "no finished runs to compare" })
    const runs = yield* Effect.forEach(named, (r) => loadRun(store, r.run, r.label))
    const keys = [...new Set(runs.flatMap((r) => Object.keys(r.values)))].filter((k) => !IGNORED.test(k)).sort()
    const differing = keys.filter((k) => new Set(runs.map((r) => r.values[k] ?? "(unset)")).size > 1)
    const defining = differing.filter((k) => k !== "seed")
    const byGroup = new Map<string, Array<RunData>>()
    for (const r of runs) {
      const name = defining.map((k) => `${k}=${r.values[k] ?? "(unset)"}`).join(", ") || "all runs"
      byGroup.set(name, [...(byGroup.get(name) ?? []), r])
    }
    const buckets = [...new Set(runs.flatMap((r) => [...r.bucketOf.values()]))]
    const groups = [...byGroup].map(([name, members]): Group => {
      const cell = (system: string, metric: Metric, bucket?: string): Interval =>
        hierarchicalBootstrapCI(
          members.map((r) => [...(r.prompts[system]?.[metric] ?? new Map<string, number>())].filter(([p]) => bucket === undefined || r.bucketOf.get(p) === bucket).map(([, x]) => x)),
          { seed: `compare:${name}:${system}:${metric}:${bucket ?? ""}` }
        )
      const systems = Object.fromEntries(["initial", "final"].map((system) => [system, Object.fromEntries(METRICS.map((m) => [m, {
        overall: cell(system, m),
        buckets: Object.fromEntries(buckets.map((b) => [b, cell(system, m, b)]))
      } satisfies Cell]))])) as Group["systems"]
      const elos = members.map((r) => r.elo).filter((x): x is number => x !== null)
      const curves = Object.fromEntries(Object.keys(CURVES).map((metric) => {
        const steps = new Map<number, Array<number>>()
        for (const r of members) for (const [s, y] of r.curves[metric] ?? []) steps.set(s, [...(steps.get(s) ?? []), y])
        return [metric, [...steps].sort((a, b) => a[0] - b[0]).map(([s, ys]) => [s, mean(ys)] as const)]
      }))
      return {
        name,
        values: Object.fromEntries(defining.map((k) => [k, members[0]!.values[k] ?? "(unset)"])),
        runs: members.map((r) => r.id),
        seeds: members.map((r) => r.values.seed ?? "(unset)"),
        systems,
        elo: elos.length > 0 ? hierarchicalBootstrapCI(elos.map((e) => [e]), { seed: `compare:${name}:elo` }) : null,
        curves
      }
    })
    return { differing, buckets, groups }
  })

const fmt = (x: number, digits: number) => (Number.isFinite(x) ? x.toFixed(digits) : "n/a")
export const formatInterval = (i: Interval, digits = 2) => Number.isFinite(i.estimate) ? `${fmt(i.estimate, digits)} [${fmt(i.low, digits)}, ${fmt(i.high, digits)}]` : "n/a"

/** The headline columns: (title, system, metric, digits). */
export const COLUMNS: ReadonlyArray<readonly [string, string, Metric, number]> = [
  ["S_l final", "final", "length_score", 1],
  ["S_l initial", "initial", "length_score", 1],
  ["reward final", "final", "reward", 3],
  ["reward initial", "initial", "reward", 3],
  ["length ratio final", "final", "length_ratio", 2],
  ["quality final", "final", "quality", 3]
]

/** The comparison as a plain-text table for the terminal. */
export const formatTable = (c: Comparison): string => {
  const header = ["variant", "seeds", ...COLUMNS.map(([t]) => t), "Elo final vs initial"]
  const rows = c.groups.map((g) => [
    g.name,
    String(g.seeds.length),
    ...COLUMNS.map(([, system, metric, digits]) => formatInterval(g.systems[system]![metric].overall, digits)),
    g.elo === null ? "n/a" : formatInterval(g.elo, 0)
  ])
  return [
    `differing: ${c.differing.join(", ") || "nothing"}  (mean [95% interval over seeds and prompts])`,
    ...textTable(header, rows),
    ...(c.head_to_head === undefined ? [] : ["", ...formatHeadToHead(c.head_to_head)])
  ].join("\n")
}

/** The head-to-head table: Elo on one scale, win rate against the anchor (ties half). */
export const headToHeadRows = (h: HeadToHead): Array<Array<string>> =>
  h.groups.map((g) => [
    g.name,
    `${fmt(g.rating, 0)} [${fmt(g.rating_ci.low, 0)}, ${fmt(g.rating_ci.high, 0)}]`,
    g.vs_anchor === null ? "anchor" : `${g.vs_anchor.wins}/${g.vs_anchor.ties}/${g.vs_anchor.losses}`,
    g.vs_anchor === null ? "" : `${fmt(g.vs_anchor.rate, 2)} [${fmt(g.vs_anchor.rate_ci.low, 2)}, ${fmt(g.vs_anchor.rate_ci.high, 2)}]`
  ])
export const HEAD_TO_HEAD_HEADER = ["variant", "Elo [95%]", "wins/ties/losses vs anchor", "win rate vs anchor"]

const formatHeadToHead = (h: HeadToHead): Array<string> => {
  return [
    `head to head: final policies judged against each other by ${h.judge}, ${h.comparisons} comparisons over ${h.pairings} seed pairing${h.pairings === 1 ? "" : "s"}` +
    `${h.unscorable > 0 ? ` (${h.unscorable} unscorable)` : ""}, position consistency ${h.position_consistency === null ? "n/a" : fmt(h.position_consistency, 2)}; Elo anchored on ${h.anchor} (run ${h.run})`,
    ...textTable(HEAD_TO_HEAD_HEADER, headToHeadRows(h))
  ]
}
