/**
 * Asynchronous GRPO at paper scale (issue 16): wall time per training step of the polaris
 * pipeline on the simulated engines (recipes/polaris-simulated.yaml: 8 groups × 6, stories of
 * 1–4k words, Qwen3.5-9B on 4×A100 and Gemini 3 Flash latencies, src/engines/SimulatedLatency.ts)
 * with `grpo.off_policy_steps` k = 0, 1 and 2, side by side in one process, each in a fresh store.
 *
 * Per k: the data and initial nodes (everything the first step needs that is not a step) run
 * first, untimed; then the training steps alone (no evaluation) run under the recipe's resource
 * pools (sampler and trainer apart, Policies.POOLS) and are timed: wall time, and this process's
 * CPU time (`process.cpuUsage`, user + system) as a share of it. The process is the whole driver:
 * executor, store, run log, stages' own work (prompts, rewards, advantages, datums) and the
 * simulated engines' made-up outputs; the engines' GPU time is the simulated sleeping.
 *
 * Times are compressed by `time_scale` 0.02 (the recipe's 1000× would make the driver's fixed CPU cost
 * look 1000× bigger than it is); the table gives the measured wall per step and the same in
 * paper time (÷ time_scale). The driver share is given as measured, and at paper scale (its CPU
 * seconds per step over the paper-time step): CPU does not scale with `time_scale`.
 *
 *   npm run bench -- async        (about 7 minutes, mostly sleeping; not in the default run)
 *   POLARIS_BENCH_QUICK=1 ...     4 steps at a 10× smaller time scale, only to check that the code runs
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Layer } from "effect"
import { resolveTarget } from "../src/cli/target.ts"
import * as ArtifactStore from "../src/dag/ArtifactStore.ts"
import * as Executor from "../src/dag/Executor.ts"
import { type Pipeline, upstreamOf } from "../src/dag/Pipeline.ts"
import { fmt, ROOT } from "./measure.ts"
import { markdownTable } from "./table.ts"

const RECIPE = join(ROOT, "recipes", "polaris-simulated.yaml")
const LAGS = [0, 1, 2] as const

export interface AsyncOptions {
  readonly steps?: number
  readonly timeScale?: number
  readonly log: (line: string) => void
}

interface LagResult {
  readonly k: number
  readonly wallMs: number
  readonly cpuMs: number
  /** Mean per step, in paper seconds, from the nodes' spans in the event log. */
  readonly sampling: number
  readonly judging: number
  /** Sampling and judging together, first rollout started to last judging finished (they overlap: streaming). */
  readonly samplingJudging: number
  readonly training: number
  /** Steady-state ms per step: between the updates of step k and the last step, per step (the pipeline's fill left out). */
  readonly steadyMs: number
}

/** The nodes `ids` need, themselves included, in the pipeline's order. */
const closure = (pipeline: Pipeline<any, any>, ids: ReadonlyArray<string>): Pipeline<any, any>["nodes"] => {
  const byId = new Map(pipeline.nodes.map((n) => [n.id, n]))
  const needed = new Set<string>()
  const visit = (id: string) => {
    if (needed.has(id)) return
    needed.add(id)
    for (const dep of upstreamOf(byId.get(id)!)) visit(dep)
  }
  for (const id of ids) visit(id)
  return pipeline.nodes.filter((n) => needed.has(n.id))
}

/** The same pipeline cut to `nodes`, with `outputs`. */
const cut = (pipeline: Pipeline<any, any>, nodes: Pipeline<any, any>["nodes"], outputs: ReadonlyArray<string>): Pipeline<any, any> => ({
  ...pipeline,
  nodes,
  outputs: Object.fromEntries(outputs.map((id) => [id, id]))
})

/**
 * Mean per step of the span (first start to last finish, ms) of the step's nodes whose local id
 * is in `locals`: a span, not a sum, since nodes sharing a pool wait for each other.
 */
const perStep = (events: ReadonlyArray<any>, locals: ReadonlyArray<string>, steps: number) => {
  const spans = new Map<string, { from: number; to: number }>()
  for (const e of events) {
    if ((e.type !== "node_started" && e.type !== "node_finished") || !/^train\/step-\d+\//.test(e.node) || !locals.includes(e.node.split("/").at(-1))) continue
    const step = e.node.split("/")[1]
    const at = Date.parse(e.at)
    const span = spans.get(step) ?? { from: Infinity, to: -Infinity }
    spans.set(step, e.type === "node_started" ? { ...span, from: Math.min(span.from, at) } : { ...span, to: Math.max(span.to, at) })
  }
  return [...spans.values()].reduce((n, s) => n + (s.to - s.from), 0) / steps
}

/** ms per step between the update of step `from` finishing and the last update finishing. */
const steady = (events: ReadonlyArray<any>, from: number, steps: number) => {
  const finished = (s: number) => Date.parse(events.find((e) => e.type === "node_finished" && e.node === `train/step-${String(s).padStart(3, "0")}/update`).at)
  return (finished(steps - 1) - finished(from)) / (steps - 1 - from)
}

const runLag = async (k: number, steps: number, timeScale: number, log: (line: string) => void): Promise<LagResult> => {
  const store = mkdtempSync(join(tmpdir(), "polaris-bench-async-"))
  try {
    const t = await Effect.runPromise(resolveTarget(RECIPE, {
      sets: [`grpo.steps=${steps}`, `grpo.off_policy_steps=${k}`, `policy.time_scale=${timeScale}`, `judge.time_scale=${timeScale}`],
      store
    }))
    const updates = t.pipeline.nodes.filter((n) => /^train\/step-\d+\/update$/.test(n.id)).map((n) => n.id)
    const train = closure(t.pipeline, [updates.at(-1)!])
    const prepared = train.filter((n) => !n.id.startsWith("train/"))
    const services = Layer.merge(ArtifactStore.layer(t.store), t.layer)
    const go = (pipeline: Pipeline<any, any>) =>
      Effect.runPromise(Executor.run(pipeline, { config: t.config, concurrency: t.concurrency, pools: t.pools }).pipe(Effect.provide(services)) as Effect.Effect<Executor.RunResult, unknown, never>)
    await go(cut(t.pipeline, prepared, prepared.filter((p) => train.some((n) => n.id.startsWith("train/") && upstreamOf(n).includes(p.id))).map((n) => n.id)))
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    const result = await go(cut(t.pipeline, train, [updates.at(-1)!]))
    const wallMs = performance.now() - t0
    const cpu = process.cpuUsage(cpu0)
    const events = readFileSync(join(result.dir, "events.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))
    const paper = (ms: number) => ms / 1000 / timeScale
    const r: LagResult = {
      k,
      wallMs,
      cpuMs: (cpu.user + cpu.system) / 1000,
      sampling: paper(perStep(events, ["rollout", "reference"], steps)),
      judging: paper(perStep(events, ["judge"], steps)),
      samplingJudging: paper(perStep(events, ["rollout", "reference", "judge"], steps)),
      training: paper(perStep(events, ["update"], steps)),
      steadyMs: steady(events, k, steps)
    }
    log(`async: k = ${k}: ${steps} steps in ${fmt(wallMs / 1000, 1)} s (${fmt(paper(wallMs / steps))} paper s per step), driver CPU ${fmt(r.cpuMs / 1000, 2)} s`)
    return r
  } finally {
    rmSync(store, { recursive: true, force: true })
  }
}

/** Runs k = 0, 1, 2 and returns the markdown section. */
export const run = async (options: AsyncOptions): Promise<{ readonly markdown: string; readonly results: ReadonlyArray<LagResult> }> => {
  const quick = process.env.POLARIS_BENCH_QUICK === "1"
  const steps = options.steps ?? (quick ? 4 : 6)
  const timeScale = options.timeScale ?? (quick ? 0.002 : 0.02)
  options.log(`async: polaris-simulated, ${steps} steps per k, time_scale ${timeScale}`)
  const results: Array<LagResult> = []
  for (const k of LAGS) results.push(await runLag(k, steps, timeScale, options.log))
  const base = results[0]!
  const rows = results.map((r) => {
    const step = r.wallMs / steps
    const paperStep = step / 1000 / timeScale
    return [
      `k = ${r.k}`,
      fmt(step / 1000, 2),
      fmt(paperStep),
      fmt(paperStep / 60, 1),
      r.k === 0 ? "1.00×" : `${fmt(base.wallMs / r.wallMs, 2)}×`,
      fmt(r.steadyMs / 1000 / timeScale),
      r.k === 0 ? "1.00×" : `${fmt(base.steadyMs / r.steadyMs, 2)}×`,
      `${fmt((100 * r.cpuMs) / r.wallMs, 1)}%`,
      `${fmt((100 * (r.cpuMs / 1000 / steps)) / paperStep, 3)}%`
    ]
  })
  const k1 = results[1]!
  const k2 = results[2]!
  const markdown = [
    `The polaris pipeline on the simulated engines (\`recipes/polaris-simulated.yaml\`: 8 groups × 6, references of 1–4k words, rollouts up to 14,336 tokens; latencies of Qwen3.5-9B on 4×A100 and Gemini 3 Flash, \`src/engines/SimulatedLatency.ts\`), ${steps} training steps per k, each k in a fresh store, one process, time compressed by \`time_scale: ${timeScale}\`. Sampler and trainer are separate resources (the simulated backend's pools). Only the training steps are timed (data preparation runs first, untimed; no evaluation). Speed-up = wall(k = 0) / wall(k). Driver CPU = this process's user + system CPU over the timed run: as measured, and at paper scale (the same CPU seconds per step over the paper-time step).`,
    "",
    markdownTable(["lag", "wall per step (s)", "paper s per step", "paper min per step", "speed-up vs k = 0", "steady paper s per step", "steady speed-up", "driver CPU / wall (measured)", "driver CPU / wall (paper scale)"], rows, ["l", "r", "r", "r", "r", "r", "r", "r", "r"]),
    "",
    `Wall per step: the whole timed run over its ${steps} steps, pipeline fill and drain included (k steps of sampling before the first overlap). Steady: from the update of step k finishing to the last update finishing, per step: the rate of a long run (the paper's 160 steps), fill left out.`,
    "",
    `k = 1 / k = 0 wall time: ${fmt(k1.wallMs / base.wallMs, 2)} (${fmt(base.wallMs / k1.wallMs, 2)}× faster; steady ${fmt(base.steadyMs / k1.steadyMs, 2)}×); k = 2 / k = 0: ${fmt(k2.wallMs / base.wallMs, 2)} (${fmt(base.wallMs / k2.wallMs, 2)}× faster; steady ${fmt(base.steadyMs / k2.steadyMs, 2)}×). Targets (issue 16): k = 1 at least 1.6× faster; driver share below 2%.`,
    "",
    `Where a synchronous step's time goes (k = 0, mean spans per step, paper seconds, from the nodes' start and finish times in the event log): sampling (rollouts + reference logprobs) ${fmt(base.sampling)} s, judging ${fmt(base.judging)} s (from the first group's judging to the last's: each group is judged once its own samples are done, so most of it overlaps sampling), sampling and judging together ${fmt(base.samplingJudging)} s, training (update) ${fmt(base.training)} s. Overlapping a step's sampling and judging with the previous step's training hides the shorter of the two: about ${fmt((base.samplingJudging + base.training) / Math.max(base.samplingJudging, base.training), 2)}× (a rough bound: the next step's sampling can also start under this step's judging tail).`
  ].join("\n")
  return { markdown, results }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  run({ log: console.log }).then((r) => console.log(r.markdown))
}
