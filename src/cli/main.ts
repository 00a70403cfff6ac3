/**
 * The `polaris` command line. Exit codes: 0 ok, 1 run failed, 2 usage error (bad arguments, a
 * pipeline file that does not load).
 */
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Cause, Console, Effect, Layer, Option, References } from "effect"
import { Argument, CliError, Command, Flag } from "effect/cli"
import * as ArtifactStore from "../dag/ArtifactStore.ts"
import * as Executor from "../dag/Executor.ts"
import * as Progress from "../dag/Progress.ts"
import * as RunLog from "../dag/RunLog.ts"
import * as StoreMaintenance from "../dag/StoreMaintenance.ts"
import * as Tree from "../dag/Tree.ts"
import * as Dag from "../dag/Dag.ts"
import * as Explain from "../dag/Explain.ts"
import { IngestError } from "../data/Ingest.ts"
import { ModuleError, NeedsSources } from "../dag/PipelineModule.ts"
import * as RecipeLoader from "../recipe/RecipeLoader.ts"
import { formatWarnings, resolveTarget, type Target, targetOfRun } from "./target.ts"
import * as Summary from "./summary.ts"
import * as Unscorables from "../report/Unscorables.ts"
import { dataCommand } from "./data.ts"
import { store, storeOverride } from "./flags.ts"
import { compareCommand, planCommand, resumeSweep, sweepCommand } from "./experiment.ts"
import * as Sweep from "../experiment/Sweep.ts"
import { attachTrackers, exportMetricsCommand } from "./tracking.ts"
import * as Report from "../report/Report.ts"
import { humanEvalCommand } from "./humanEval.ts"
import * as HumanEval from "../eval/HumanEval.ts"

const sets = Flag.String("set").pipe(
  Flag.withDescription("Override a recipe value, e.g. --set grpo.steps=20 (repeatable)"),
  Flag.atLeast(0)
)
const target = Argument.String("recipe").pipe(Argument.withDescription("A recipe (.yaml), or a .ts pipeline file"))
const json = Flag.Boolean("json").pipe(Flag.withDescription("Print machine-readable JSON on stdout"), Flag.withDefault(false))
const progress = Flag.Literals("progress", ["auto", "tty", "plain", "none"]).pipe(
  Flag.withDescription("Progress view: live on a terminal (auto), or plain log lines"),
  Flag.withDefault("auto" as const)
)
const force = Flag.String("force").pipe(Flag.withDescription("Re-execute this node even if cached (repeatable)"), Flag.atLeast(0))
const budgetUsd = Flag.Finite("budget-usd").pipe(
  Flag.withDescription("Cap in USD on what the run's paid calls cost, spend in earlier attempts counted (overrides the recipe's budget.usd)"),
  Flag.optional
)
const failFast = Flag.Boolean("fail-fast").pipe(Flag.withDescription("Stop all nodes at the first failure"), Flag.withDefault(false))

/** Runs a target with a progress view; prints a summary or JSON. */
const execute = (
  t: Target,
  options: { runId?: string; force: ReadonlyArray<string>; failFast: boolean; progress: Progress.Mode; json: boolean; budgetUsd: Option.Option<number> }
) =>
  Effect.gen(function*() {
    // Unset secrets do not stop the run: only a node that needs one fails (Secret.ts).
    if (t.warnings.length > 0) yield* Console.error(formatWarnings(t).trimEnd())
    const result = yield* Executor.run(t.pipeline, {
      ...(options.runId !== undefined ? { runId: options.runId } : {}),
      config: t.config,
      concurrency: t.concurrency,
      pools: t.pools,
      retries: t.retries,
      force: options.force,
      failFast: options.failFast,
      ...Option.match(Option.orElse(options.budgetUsd, () => Option.fromNullishOr(t.budgetUsd)), { onNone: () => ({}), onSome: (usd) => ({ budgetUsd: usd }) }),
      onStart: (log) => Effect.andThen(attachTrackers(log, t.recipe?.trackers, { quiet: options.json }), Effect.asVoid(Progress.attach(log, { mode: options.json ? "none" : options.progress, nodes: t.pipeline.nodes.map((n) => n.id) })))
    }).pipe(Effect.provide(Layer.merge(ArtifactStore.layer(t.store), t.layer)))
    if (options.json) yield* Console.log(JSON.stringify({ runId: result.runId, dir: result.dir, executed: result.executed, cached: result.cached, nodes: result.nodes, outputs: result.outputs }))
    // People get the headline numbers (Summary.ts); the outputs' JSON is for --json.
    else for (const line of yield* Summary.lines(result, { store: t.store, defaultStore: process.env.POLARIS_STORE ?? ".polaris" })) yield* Console.log(line)
  })

const runCommand = Command.make(
  "run",
  { target, sets, store: storeOverride, force, failFast, progress, json, budgetUsd },
  (a) =>
    Effect.flatMap(resolveTarget(a.target, { sets: a.sets, store: Option.getOrUndefined(a.store) }), (t) =>
      execute(t, { force: a.force, failFast: a.failFast, progress: a.progress, json: a.json, budgetUsd: a.budgetUsd }))
).pipe(
  Command.withDescription("Run a recipe (or a .ts pipeline); cached nodes are reused, finished memo items are never repeated"),
  Command.withExamples([
    { command: "polaris run examples/word-stats/recipe.yaml", description: "Run a recipe" },
    { command: "polaris run examples/word-stats/recipe.yaml --set params.grow_steps=5", description: "Change a value for this run" },
    { command: "polaris run examples/word-stats/pipeline.ts", description: "Run a pipeline written in code" },
    { command: "polaris run recipe.yaml --force train/step-003/judge", description: "Re-execute one node" }
  ])
)

/** The run named, or the latest run in the store. */
const runOrLatest = (storeDir: string, run: Option.Option<string>) =>
  Option.isSome(run)
    ? Effect.succeed(run.value)
    : Effect.flatMap(RunLog.list(ArtifactStore.pathsOf(storeDir)), (runs) =>
      runs.length > 0 ? Effect.succeed(runs.at(-1)!) : Effect.fail(new ModuleError({ file: storeDir, reason: "no runs in this store" })))

const resumeCommand = Command.make(
  "resume",
  { run: Argument.String("run").pipe(Argument.withDescription("Run id (see `polaris status`) or sweep id; default: the latest run"), Argument.optional), store, failFast, progress, json, budgetUsd },
  (a) =>
    Effect.gen(function*() {
      if (Option.isSome(a.run) && Sweep.isSweep(a.store, a.run.value)) return yield* resumeSweep(a.store, a.run.value, a.json)
      const runId = yield* runOrLatest(a.store, a.run)
      const t = yield* targetOfRun(a.store, runId)
      yield* execute({ ...t, store: a.store }, { runId, force: [], failFast: a.failFast, progress: a.progress, json: a.json, budgetUsd: a.budgetUsd })
    })
).pipe(
  Command.withDescription("Continue a run where it stopped; finished nodes and memo items are reused"),
  Command.withExamples([
    { command: "polaris resume", description: "Resume the latest run after a crash or a failure" },
    { command: "polaris resume 20261123-190512.347-3fa9c2d1", description: "Resume a given run" }
  ])
)

const statusCommand = Command.make(
  "status",
  { run: Argument.String("run").pipe(Argument.optional), store, json },
  (a) =>
    Effect.gen(function*() {
      const paths = ArtifactStore.pathsOf(a.store)
      const summary = yield* StoreMaintenance.list(paths)
      const id = Option.getOrUndefined(a.run) ?? summary.runs.at(-1)?.id
      if (id === undefined) return yield* Console.log("no runs in " + a.store)
      if (!summary.runs.some((r) => r.id === id)) return yield* new ModuleError({ file: a.store, reason: `no run "${id}" in this store` })
      const events = yield* Effect.promise(() => RunLog.readJsonl(`${paths.runs}/${id}/events.jsonl`))
      const last = new Map<string, Record<string, unknown>>()
      for (const e of events) if (typeof e.node === "string" && String(e.type).startsWith("node_")) last.set(e.node, e)
      const counts: Record<string, number> = {}
      for (const e of last.values()) counts[String(e.type).slice(5)] = (counts[String(e.type).slice(5)] ?? 0) + 1
      const failures = [...last.values()].filter((e) => e.type === "node_failed").map((e) => ({ node: e.node, error: e.error }))
      const finished = events.findLast((e) => e.type === "run_finished")
      const status = finished?.status ?? (summary.runs.find((r) => r.id === id)?.status ?? "incomplete")
      const unscorable = yield* Unscorables.ofRun(a.store, id)
      if (a.json) return yield* Console.log(JSON.stringify({ run: id, status, nodes: counts, failures, unscorable }))
      yield* Console.log(`run ${id}: ${status}`)
      for (const [k, v] of Object.entries(counts)) yield* Console.log(`  ${k.padEnd(9)} ${v}`)
      for (const f of failures) yield* Console.log(`  failed ${f.node}: ${f.error}`)
      for (const line of Unscorables.lines(unscorable, { messages: true })) yield* Console.log(`  ${line}`)
    })
).pipe(
  Command.withDescription("Show a run's state (default: the latest run)"),
  Command.withExamples([{ command: "polaris status --json", description: "Node counts and failures of the latest run" }])
)

const reportCommand = Command.make(
  "report",
  {
    run: Argument.String("run").pipe(Argument.withDescription("Run id; default: the latest run"), Argument.optional),
    store,
    out: Flag.String("out").pipe(Flag.withDescription("Directory for report.html and report.json (default: the run's directory)"), Flag.optional)
  },
  (a) =>
    Effect.gen(function*() {
      const id = Option.getOrUndefined(a.run) ?? (yield* RunLog.list(ArtifactStore.pathsOf(a.store))).at(-1)
      if (id === undefined) return yield* new Report.ReportError({ runId: "latest", reason: `no runs in ${a.store}` })
      const r = yield* Report.writeReport(a.store, id, Option.getOrUndefined(a.out))
      yield* Console.log(r.htmlPath)
      yield* Console.log(r.jsonPath)
    })
).pipe(
  Command.withDescription("Write a self-contained HTML report (and its JSON twin) of a run: training curves, evaluation, sample stories"),
  Command.withExamples([{ command: "polaris report --out reports/", description: "Report of the latest run into reports/" }])
)

const cacheLs = Command.make("ls", { store, json }, (a) =>
  Effect.gen(function*() {
    const s = yield* StoreMaintenance.list(ArtifactStore.pathsOf(a.store))
    if (a.json) return yield* Console.log(JSON.stringify(s))
    yield* Console.log(`${s.objects.count} objects (${(s.objects.bytes / 1e6).toFixed(1)} MB), ${s.nodes} node entries, ${s.memo} memo entries`)
    for (const r of s.runs) yield* Console.log(`  ${r.id}  ${r.status.padEnd(10)} ${r.nodes} nodes  ${r.createdAt}`)
  })).pipe(
  Command.withDescription("List runs and what the store holds"),
  Command.withExamples([{ command: "polaris cache ls --store .polaris", description: "Runs, objects, node and memo entries" }])
)

const cacheVerify = Command.make(
  "verify",
  { store, json, repair: Flag.Boolean("repair").pipe(Flag.withDescription("Move corrupt objects aside so they are recomputed"), Flag.withDefault(false)) },
  (a) =>
    Effect.gen(function*() {
      const r = yield* StoreMaintenance.verify(ArtifactStore.pathsOf(a.store), { repair: a.repair })
      if (a.json) yield* Console.log(JSON.stringify(r))
      else {
        yield* Console.log(`${r.checked} objects re-hashed (${(r.bytes / 1e6).toFixed(1)} MB), ${r.corrupt.length} corrupt`)
        for (const d of r.corrupt) yield* Console.log(`  corrupt ${d}${a.repair ? " (moved aside)" : ""}`)
      }
      if (r.corrupt.length > 0 && !a.repair) return yield* Effect.fail(new StoreCorrupt({ count: r.corrupt.length }))
    })
).pipe(
  Command.withDescription("Re-hash every object; with --repair, corrupt ones are recomputed on the next run"),
  Command.withExamples([{ command: "polaris cache verify --repair", description: "Move corrupt objects aside (exit 1 without --repair if any)" }])
)

const cacheGc = Command.make(
  "gc",
  {
    store,
    json,
    apply: Flag.Boolean("apply").pipe(Flag.withDescription("Really delete (the default is a dry run)"), Flag.withDefault(false)),
    keep: Flag.String("keep").pipe(Flag.withDescription("Keep only these runs (repeatable); default: all runs"), Flag.atLeast(0))
  },
  (a) =>
    Effect.gen(function*() {
      const r = yield* StoreMaintenance.gc(ArtifactStore.pathsOf(a.store), { dryRun: !a.apply, ...(a.keep.length > 0 ? { keepRuns: a.keep } : {}) })
      if (a.json) return yield* Console.log(JSON.stringify(r))
      const verb = r.dryRun ? "would remove" : "removed"
      yield* Console.log(`${verb}: ${r.removed.objects.count} objects (${(r.removed.objects.bytes / 1e6).toFixed(1)} MB), ${r.removed.nodes.count} node entries, ${r.removed.memo.count} memo entries, ${r.removedRuns.length} runs, ${r.removed.folders.count} laid-out or scratch folders (${(r.removed.folders.bytes / 1e6).toFixed(1)} MB)`)
      yield* Console.log(`kept: ${r.keptRuns.length} runs, ${r.kept.objects.count} objects (${(r.kept.objects.bytes / 1e6).toFixed(1)} MB)`)
      if (r.dryRun) yield* Console.log("dry run: nothing was deleted; pass --apply to delete")
    })
).pipe(
  // With --apply, a run in flight makes gc fail with StoreInUse, printed as `polaris: cache gc refused: run <id> (pid <pid> on <host>) ...`, exit 1.
  Command.withDescription("Delete what kept runs cannot reach (dry run unless --apply; refused while a run writes to the store)"),
  Command.withExamples([
    { command: "polaris cache gc", description: "Show what would be deleted" },
    { command: "polaris cache gc --keep RUN_ID --apply", description: "Keep one run's artifacts, delete the rest" }
  ])
)

const cacheExport = Command.make(
  "export",
  {
    store,
    tree: Argument.String("tree").pipe(Argument.withDescription("A stored folder's digest: the `$tree` of a checkpoint in a run's output (8 digits or more)")),
    out: Flag.String("out").pipe(Flag.withDescription("The folder to write (new or empty)"))
  },
  (a) =>
    Effect.gen(function*() {
      const ref = yield* Tree.exportTo(ArtifactStore.make(a.store), a.tree, a.out)
      yield* Console.log(`${a.out}: ${ref.$tree}, ${(ref.bytes / 1e6).toFixed(1)} MB`)
    })
).pipe(
  Command.withDescription("Copy a stored folder (a trained checkpoint) out of the store"),
  Command.withExamples([{ command: "polaris cache export 9f2c41d0 --out models/my-polaris", description: "The checkpoint a run's `final:` output names as `$tree`" }])
)

const validateCommand = Command.make("validate", { target, sets, json }, (a) =>
  Effect.gen(function*() {
    const t = yield* resolveTarget(a.target, { sets: a.sets })
    // Unset secrets are warnings (stderr), not errors: a recipe can be checked without them.
    if (t.warnings.length > 0) yield* Console.error(formatWarnings(t).trimEnd())
    if (a.json) return yield* Console.log(JSON.stringify({ ok: true, pipeline: t.pipeline.name, nodes: t.pipeline.nodes.length, warnings: t.warnings.map(RecipeLoader.formatError) }))
    yield* Console.log(`ok: pipeline ${t.pipeline.name}, ${t.pipeline.nodes.length} nodes${t.warnings.length > 0 ? ` (${t.warnings.length} warning${t.warnings.length === 1 ? "" : "s"})` : ""}`)
  })).pipe(
    Command.withDescription("Check a recipe (syntax, schema, pipeline, custom stages) without running anything; unset secret variables are warnings"),
    Command.withExamples([{ command: "polaris validate recipes/polaris-qwen3.5-9b.yaml", description: "Errors come as file:line:col: key: message" }])
  )

const schemaCommand = Command.make("schema", {}, () => Console.log(JSON.stringify(RecipeLoader.jsonSchema(), null, 2))).pipe(
  Command.withDescription("Print the recipe JSON Schema (for editors with the YAML language server)"),
  Command.withExamples([{ command: "polaris schema > recipe.schema.json", description: "Then add `# yaml-language-server: $schema=recipe.schema.json` to a recipe" }])
)

const dagCommand = Command.make(
  "dag",
  { target, sets, format: Flag.Literals("format", ["text", "mermaid", "dot"]).pipe(Flag.withDescription("Output format"), Flag.withDefault("text" as const)) },
  (a) => Effect.flatMap(resolveTarget(a.target, { sets: a.sets }), (t) => Console.log(Dag.render(t.pipeline, a.format)))
).pipe(
  Command.withDescription("Show the pipeline a recipe builds"),
  Command.withExamples([{ command: "polaris dag recipe.yaml --format mermaid", description: "A Mermaid flowchart" }])
)

const explainCommand = Command.make(
  "explain",
  {
    target,
    node: Argument.String("node").pipe(Argument.withDescription("Node id, e.g. train/step-003/judge")),
    sets,
    store: storeOverride,
    run: Flag.String("run").pipe(Flag.withDescription("The run to explain (default: the latest with this node)"), Flag.optional),
    json
  },
  (a) =>
    Effect.gen(function*() {
      const t = yield* resolveTarget(a.target, { sets: a.sets, store: Option.getOrUndefined(a.store) })
      const run = Option.getOrUndefined(a.run)
      const e = yield* Explain.explain(ArtifactStore.pathsOf(t.store), a.node, run !== undefined ? { run } : {})
      yield* Console.log(a.json ? JSON.stringify(e) : Explain.formatExplanation(e))
    })
).pipe(
  Command.withDescription("Why a node re-ran: which part of its cache key changed since the previous run, and which memo items it recomputed and why"),
  Command.withExamples([{ command: "polaris explain recipe.yaml train/step-003/judge", description: "e.g. params.salt changed; verdict: 3 recomputed (key.text changed ×3), 45 reused" }])
)

const watchCommand = Command.make(
  "watch",
  { target, sets, store: storeOverride, progress, json },
  // Loaded here: the file watcher is only for this command.
  (a) => Effect.flatMap(Effect.promise(() => import("./watch.ts")), ({ watch }) => watch(a.target, { sets: a.sets, store: Option.getOrUndefined(a.store), progress: a.progress, json: a.json }))
).pipe(
  Command.withDescription("Re-run a recipe whenever it, the files it extends, its stage modules or its data change; only stale nodes run"),
  Command.withExamples([{ command: "polaris watch examples/word-stats/recipe.yaml", description: "Edit the recipe in another window and watch it re-run" }])
)

const serveCommand = Command.make(
  "serve",
  {
    model: Flag.String("model").pipe(Flag.withDescription("The checkpoint folder to serve"), Flag.withDefault("models/story-1m")),
    name: Flag.String("name").pipe(Flag.withDescription("The model's name in both APIs (default: polaris/<folder name>)"), Flag.optional),
    host: Flag.String("host").pipe(Flag.withDescription("Interface to listen on"), Flag.withDefault("127.0.0.1")),
    port: Flag.Int("port").pipe(Flag.withDescription("Port (0: any free port)"), Flag.withDefault(8000)),
    store: Flag.String("store").pipe(Flag.withDescription("Where save_weights writes checkpoints"), Flag.withDefault(".polaris/checkpoints"))
  },
  (a) =>
    Effect.gen(function*() {
      // Loaded here, not at start-up: onnxruntime and the protocol modules only when serving.
      const [EmbeddedPolicy, { serve }] = yield* Effect.promise(() => Promise.all([import("../engines/EmbeddedPolicy.ts"), import("../serve/Server.ts")]))
      const engine = yield* EmbeddedPolicy.make({ checkpoint: a.model, checkpointDir: a.store })
      const modelName = Option.getOrElse(a.name, () => `polaris/${a.model.replace(/\/+$/, "").split("/").at(-1)}`)
      const server = yield* Effect.promise(() => serve(engine, { host: a.host, port: a.port, modelName, checkpointDir: a.store, baseCheckpoint: a.model }))
      yield* Console.log(`serving ${modelName} at ${server.url} (Tinker: ${server.url}/api/v1, OpenAI: ${server.url}/v1)`)
      const signal = yield* Effect.callback<string>((resume) => {
        const stop = (s: string) => () => resume(Effect.succeed(s))
        process.once("SIGINT", stop("SIGINT"))
        process.once("SIGTERM", stop("SIGTERM"))
      })
      yield* Console.log(`${signal}: stopping`)
      yield* Effect.promise(() => server.close())
    })
).pipe(
  Command.withDescription("Serve a model over the Tinker training API and the vLLM OpenAI completions API"),
  Command.withExamples([{ command: "polaris serve --model models/story-1m --port 8000", description: "Tinker at /api/v1, completions at /v1" }])
)

class StoreCorrupt extends Error {
  constructor(readonly props: { count: number }) {
    super(`${props.count} corrupt object(s); run with --repair`)
  }
}

const cacheCommand = Command.make("cache").pipe(
  Command.withDescription("Inspect and maintain the artifact store"),
  Command.withSubcommands([cacheLs, cacheVerify, cacheGc, cacheExport])
)

const polaris = Command.make("polaris").pipe(
  Command.withDescription("POLARIS pipelines: cached, resumable GRPO for long-form story writing"),
  Command.withSubcommands([runCommand, sweepCommand, compareCommand, planCommand, resumeCommand, statusCommand, reportCommand, validateCommand, dagCommand, explainCommand, watchCommand, schemaCommand, cacheCommand, dataCommand, serveCommand, exportMetricsCommand, humanEvalCommand])
)

const exitCodeOf = (cause: Cause.Cause<unknown>): number => {
  const reason = cause.reasons[0]
  const error = reason?._tag === "Fail" ? reason.error : undefined
  if (CliError.isCliError(error) || error instanceof ModuleError || error instanceof RecipeLoader.RecipeErrors || error instanceof IngestError) return 2
  if (error instanceof Sweep.SweepError && error.usage === true) return 2
  if (error instanceof HumanEval.HumanEvalError) return 2
  return 1
}

// Warnings and logs go to stderr: stdout carries only what a command prints (`--json` readers parse it).
const program = Command.run(polaris, { version: "0.1.0" }).pipe(Effect.provideService(References.LogToStderr, true), Effect.provide(NodeServices.layer))

/**
 * Runs the command line in `process.argv` and sets `process.exitCode`. Inside the prebuilt
 * command, resolves to "needs-sources" when the recipe needs a module the bundle does not carry
 * (nothing was done yet): `bin/polaris.js` then runs the full bundle, or the TypeScript sources.
 */
export const main = (): Promise<"done" | "needs-sources"> =>
  Effect.runPromiseExit(program).then((exit) => {
    if (exit._tag === "Success") return "done"
    const reason = exit.cause.reasons[0]
    const error = reason?._tag === "Fail" ? reason.error : reason?._tag === "Die" ? reason.defect : undefined
    if (error instanceof NeedsSources) return "needs-sources"
    // The CLI module already printed its own usage errors; everything else gets one clear line, no stack.
    if (error instanceof RecipeLoader.RecipeErrors) process.stderr.write(`${error.message}\n`)
    else if (!CliError.isCliError(error)) process.stderr.write(`polaris: ${error instanceof Error || (typeof error === "object" && error !== null && "message" in error) ? (error as Error).message : String(error)}\n`)
    process.exitCode = exitCodeOf(exit.cause)
    return "done"
  })
