/**
 * `polaris sweep` (src/experiment/Sweep.ts), the sweep side of `polaris resume`, and
 * `polaris compare` (src/experiment/Compare.ts), `polaris plan` (src/dag/Plan.ts).
 *
 *   polaris sweep RECIPE [--grid 'KEY=[V1, V2]']... [--set KEY=VALUE]... [--store DIR] [--json]
 *   polaris compare RUN_OR_SWEEP... [--store DIR] [--out DIR] [--head-to-head] [--json]
 *   polaris plan RECIPE [--set KEY=VALUE]... [--store DIR] [--json]
 */
import { join } from "node:path"
import { Console, Effect, Layer, Option } from "effect"
import * as ArtifactStore from "../dag/ArtifactStore.ts"
import * as Plan from "../dag/Plan.ts"
import { store, storeOverride } from "./flags.ts"
import { resolveTarget } from "./target.ts"
import { Argument, Command, Flag } from "effect/cli"
import * as Compare from "../experiment/Compare.ts"
import * as HeadToHead from "../experiment/HeadToHead.ts"
import * as CompareReport from "../experiment/CompareReport.ts"
import * as Sweep from "../experiment/Sweep.ts"
import { textTable } from "../report/TextTable.ts"

/** One line per variant event, for people (stderr keeps stdout for --json). */
const printEvent = (event: Sweep.SweepEvent) =>
  Console.error(
    event._tag === "created" ? `sweep ${event.sweep}: ${event.variants} variants (state: ${event.file})`
      : event._tag === "started" ? `variant ${event.variant}: ${event.resumed ? "resuming" : "running"} as run ${event.run}`
      : event._tag === "finished" ? `variant ${event.variant}: succeeded (${event.executed} executed, ${event.cached} cached)`
      : `variant ${event.variant}: failed: ${event.error}`
  )

/** The sweep's table, its id and what to do next; fails (exit 1) when a variant failed. */
export const report = (state: Sweep.SweepState, store: string, json: boolean) =>
  Effect.gen(function*() {
    if (json) yield* Console.log(JSON.stringify(state))
    else {
      const width = Math.max(7, ...state.variants.map((v) => v.name.length))
      yield* Console.log(`sweep ${state.id}: ${state.variants.length} variants`)
      for (const v of state.variants) yield* Console.log(`  ${v.name.padEnd(width)}  ${v.status.padEnd(9)}  ${v.run ?? "-"}${v.error !== null ? `  ${v.error.split("\n")[0]}` : ""}`)
      yield* Console.log(`  compare: polaris compare ${state.id} --store ${store}`)
    }
    const failed = state.variants.filter((v) => v.status !== "succeeded")
    if (failed.length > 0) return yield* new Sweep.SweepError({ message: `${failed.length} of ${state.variants.length} variants did not succeed (polaris resume ${state.id} continues them)` })
  })

export const sweepCommand = Command.make(
  "sweep",
  {
    target: Argument.String("recipe").pipe(Argument.withDescription("A recipe (.yaml) with a `sweep:` section, or any recipe with --grid")),
    grid: Flag.String("grid").pipe(Flag.withDescription("A grid key and its values, e.g. --grid 'seed=[1, 2, 3]' (repeatable; replaces the recipe's values for that key)"), Flag.atLeast(0)),
    sets: Flag.String("set").pipe(Flag.withDescription("Override a recipe value for every variant (repeatable)"), Flag.atLeast(0)),
    store: storeOverride,
    json: Flag.Boolean("json").pipe(Flag.withDescription("Print the sweep's state as JSON on stdout"), Flag.withDefault(false))
  },
  (a) =>
    Effect.gen(function*() {
      const store = Option.getOrUndefined(a.store)
      const done = yield* Sweep.start(a.target, { sets: a.sets, grid: a.grid, store, onEvent: printEvent })
      yield* report(done.state, done.store, a.json)
    })
).pipe(
  Command.withDescription("Run every variant of a recipe (a grid and/or a list), sharing the cache and the engines' limits; resumable"),
  Command.withExamples([
    { command: "polaris sweep recipes/quickstart.yaml --grid 'grpo.reference_loss=[on_policy, luffy, sft]' --grid 'seed=[1, 2]'", description: "6 variants; data and the initial evaluation compute once" },
    { command: "polaris resume <sweep id>", description: "Continue a sweep: finished variants are not run again" }
  ])
)

/** `polaris resume ID` when ID is a sweep. */
export const resumeSweep = (store: string, id: string, json: boolean) =>
  Effect.flatMap(Sweep.resume(store, id, printEvent), (state) => report(state, store, json))

export const compareCommand = Command.make(
  "compare",
  {
    ids: Argument.String("run-or-sweep").pipe(Argument.withDescription("Run ids and sweep ids (a sweep stands for its finished variants)"), Argument.atLeast(1)),
    store,
    out: Flag.String("out").pipe(Flag.withDescription("Directory for compare.html and compare.json (default: the sweep's directory for one sweep, else ./polaris-compare)"), Flag.optional),
    json: Flag.Boolean("json").pipe(Flag.withDescription("Print the comparison as JSON on stdout"), Flag.withDefault(false)),
    headToHead: Flag.Boolean("head-to-head").pipe(
      Flag.withDescription("Also judge the variants' final policies against each other (pairwise, with the first run's judge; cached like any run) and rate them on one Elo scale"),
      Flag.withDefault(false)
    )
  },
  (a) =>
    Effect.gen(function*() {
      const compared = yield* Compare.compare(a.store, a.ids)
      const c = a.headToHead ? { ...compared, head_to_head: yield* HeadToHead.run(a.store, compared.groups) } : compared
      const out = Option.getOrElse(a.out, () => (a.ids.length === 1 && Sweep.isSweep(a.store, a.ids[0]!) ? join(a.store, "sweeps", a.ids[0]!) : "polaris-compare"))
      const written = yield* CompareReport.write(c, out)
      if (a.json) return yield* Console.log(JSON.stringify(c))
      yield* Console.log(Compare.formatTable(c))
      yield* Console.log(`\n${written.htmlPath}\n${written.jsonPath}`)
    })
).pipe(
  Command.withDescription("Compare runs or sweeps: the recipe values that differ, held-out numbers with intervals over seeds and prompts, Elo, training curves"),
  Command.withExamples([
    { command: "polaris compare <sweep id>", description: "The sweep's ablation table, and compare.html in the sweep's directory" },
    { command: "polaris compare RUN_A RUN_B --out reports/", description: "Two runs side by side" },
    { command: "polaris compare <sweep id> --head-to-head", description: "Also the variants' final policies judged against each other, on one Elo scale" }
  ])
)

// Not toLocaleString: its first call loads ICU's locale data, 15 ms of a command meant to answer at once.
const thousands = (x: number) => String(Math.round(x)).replace(/\B(?=(\d{3})+(?!\d))/g, ",")

/** A plan as lines for people. */
export const formatPlan = (file: string, pipeline: string, p: Plan.PlanResult, engineNote: string | undefined): string => {
  const rows = Object.entries(p.totals).map(([engine, t]) => [engine, thousands(t.calls), thousands(t.input_tokens), thousands(t.output_tokens), `$${t.usd.toFixed(2)}`])
  const total = Object.values(p.totals).reduce((s, t) => s + t.usd, 0)
  const header = ["engine", "calls", "input tokens", "output tokens", "USD"]
  return [
    `plan for ${file} (pipeline ${pipeline}, ${p.nodes.length} nodes): ${p.counts.cached} cached, ${p.counts.run} to run, ${p.counts.after} after inputs still to compute (reused if those come out the same)`,
    ...(engineNote !== undefined ? [`  engines not started (${engineNote}): keys of nodes that use them are not checked`] : []),
    ...(rows.length > 0 ? [...textTable(header, rows, { indent: "  ", right: (i) => i > 0 }), `  estimated total: $${total.toFixed(2)} (upper bound: memo items a previous run finished are free)`] : ["  no cost estimates for this pipeline"])
  ].join("\n")
}

export const planCommand = Command.make(
  "plan",
  {
    target: Argument.String("recipe").pipe(Argument.withDescription("A recipe (.yaml), or a .ts pipeline file")),
    sets: Flag.String("set").pipe(Flag.withDescription("Override a recipe value (repeatable)"), Flag.atLeast(0)),
    store: storeOverride,
    json: Flag.Boolean("json").pipe(Flag.withDescription("Print the plan as JSON on stdout"), Flag.withDefault(false))
  },
  (a) =>
    Effect.gen(function*() {
      const store = Option.getOrUndefined(a.store)
      const t = yield* resolveTarget(a.target, { sets: a.sets, store })
      const { plan, note } = yield* Effect.scoped(Effect.gen(function*() {
        // The engines give the fingerprints keys need; one that cannot start here (a remote
        // service, a missing secret) leaves its nodes unchecked instead of failing the plan.
        const engines = yield* Effect.result(Layer.build(t.layer))
        const planned = Plan.plan(t.pipeline, t.estimate !== undefined ? { estimate: t.estimate } : {}).pipe(Effect.provide(ArtifactStore.layer(t.store)))
        return engines._tag === "Success"
          ? { plan: yield* Effect.provide(planned, engines.success), note: undefined }
          : { plan: yield* planned, note: String((engines.failure as { message?: unknown })?.message ?? engines.failure).split("\n")[0] }
      }))
      if (a.json) return yield* Console.log(JSON.stringify({ ...plan, engines_not_started: note ?? null }))
      yield* Console.log(formatPlan(a.target, t.pipeline.name, plan, note))
    })
).pipe(
  Command.withDescription("What a run would do before it runs: cached nodes, nodes to run, estimated calls, tokens and dollars per engine"),
  Command.withExamples([{ command: "polaris plan recipes/polaris-qwen3.5-9b.yaml", description: "Judge calls and dollars for the paper's run, before spending any" }])
)
