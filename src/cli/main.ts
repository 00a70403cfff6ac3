/**
 * The `polaris` command line. Exit codes: 0 ok, 1 run failed, 2 usage error (bad arguments, a
 * pipeline file that does not load).
 */
import { NodeServices } from "@effect/platform-node"
import { Cause, Console, Effect, Layer, Option } from "effect"
import { Argument, CliError, Command, Flag } from "effect/cli"
import * as ArtifactStore from "../ArtifactStore.ts"
import * as Executor from "../Executor.ts"
import * as Progress from "../Progress.ts"
import * as RunLog from "../RunLog.ts"
import * as StoreMaintenance from "../StoreMaintenance.ts"
import { loadPipeline, PipelineLoadError } from "./loadPipeline.ts"

const store = Flag.String("store").pipe(
  Flag.withDescription("Artifact store directory (runs, cache, memo)"),
  Flag.withDefault(".polaris")
)
const json = Flag.Boolean("json").pipe(Flag.withDescription("Print machine-readable JSON on stdout"), Flag.withDefault(false))
const progress = Flag.Literals("progress", ["auto", "tty", "plain", "none"]).pipe(
  Flag.withDescription("Progress view: live on a terminal (auto), or plain log lines"),
  Flag.withDefault("auto" as const)
)
const force = Flag.String("force").pipe(Flag.withDescription("Re-execute this node even if cached (repeatable)"), Flag.atLeast(0))
const failFast = Flag.Boolean("fail-fast").pipe(Flag.withDescription("Stop all nodes at the first failure"), Flag.withDefault(false))

/** Runs a loaded pipeline with a progress view; prints a summary or JSON. */
const execute = (
  file: string,
  options: { store: string; runId?: string; force: ReadonlyArray<string>; failFast: boolean; progress: Progress.Mode; json: boolean }
) =>
  Effect.gen(function*() {
    const loaded = yield* loadPipeline(file)
    const result = yield* Executor.run(loaded.pipeline, {
      ...(options.runId !== undefined ? { runId: options.runId } : {}),
      config: { pipelineFile: loaded.file },
      force: options.force,
      failFast: options.failFast,
      onStart: (log) => Effect.asVoid(Progress.attach(log, { mode: options.json ? "none" : options.progress }))
    }).pipe(Effect.provide(Layer.merge(ArtifactStore.layer(options.store), loaded.layer)))
    if (options.json) yield* Console.log(JSON.stringify({ runId: result.runId, dir: result.dir, executed: result.executed, cached: result.cached, nodes: result.nodes }))
    else {
      // Outputs meant for people (text, small records) are shown; big ones stay in the store.
      for (const [name, value] of Object.entries(result.outputs as Record<string, unknown>)) {
        const text = typeof value === "string" ? value : JSON.stringify(value)
        if (text.length <= 4000) yield* Console.log(`${name}:\n${text}\n`)
      }
      yield* Console.log(`run ${result.runId}: ${result.executed} executed, ${result.cached} cached\n  ${result.dir}`)
    }
  })

const runCommand = Command.make(
  "run",
  { pipeline: Argument.String("pipeline").pipe(Argument.withDescription("A .ts file exporting a pipeline")), store, force, failFast, progress, json },
  (a) => execute(a.pipeline, { store: a.store, force: a.force, failFast: a.failFast, progress: a.progress, json: a.json })
).pipe(
  Command.withDescription("Run a pipeline; cached nodes are reused, finished memo items are never repeated"),
  Command.withExamples([
    { command: "polaris run examples/word-stats/pipeline.ts", description: "Run a pipeline written in code" },
    { command: "polaris run pipeline.ts --force train/step-003/judge", description: "Re-execute one node" }
  ])
)

const resumeCommand = Command.make(
  "resume",
  { run: Argument.String("run").pipe(Argument.withDescription("Run id (see `polaris status`)")), store, failFast, progress, json },
  (a) =>
    Effect.gen(function*() {
      const config = (yield* RunLog.readConfig(ArtifactStore.pathsOf(a.store), a.run)) as { pipelineFile?: string }
      if (typeof config.pipelineFile !== "string") return yield* new PipelineLoadError({ file: a.run, reason: "run has no pipeline file in its config" })
      yield* execute(config.pipelineFile, { store: a.store, runId: a.run, force: [], failFast: a.failFast, progress: a.progress, json: a.json })
    })
).pipe(
  Command.withDescription("Continue a run where it stopped; finished nodes and memo items are reused"),
  Command.withExamples([{ command: "polaris resume 20261123-190512-3fa9c2d1", description: "Resume after a crash" }])
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
      const events = yield* Effect.promise(() => RunLog.readJsonl(`${paths.runs}/${id}/events.jsonl`))
      const last = new Map<string, Record<string, unknown>>()
      for (const e of events) if (typeof e.node === "string" && String(e.type).startsWith("node_")) last.set(e.node, e)
      const counts: Record<string, number> = {}
      for (const e of last.values()) counts[String(e.type).slice(5)] = (counts[String(e.type).slice(5)] ?? 0) + 1
      const failures = [...last.values()].filter((e) => e.type === "node_failed").map((e) => ({ node: e.node, error: e.error }))
      const finished = events.findLast((e) => e.type === "run_finished")
      const status = finished?.status ?? (summary.runs.find((r) => r.id === id)?.status ?? "incomplete")
      if (a.json) return yield* Console.log(JSON.stringify({ run: id, status, nodes: counts, failures }))
      yield* Console.log(`run ${id}: ${status}`)
      for (const [k, v] of Object.entries(counts)) yield* Console.log(`  ${k.padEnd(9)} ${v}`)
      for (const f of failures) yield* Console.log(`  failed ${f.node}: ${f.error}`)
    })
).pipe(Command.withDescription("Show a run's state (default: the latest run)"))

const cacheLs = Command.make("ls", { store, json }, (a) =>
  Effect.gen(function*() {
    const s = yield* StoreMaintenance.list(ArtifactStore.pathsOf(a.store))
    if (a.json) return yield* Console.log(JSON.stringify(s))
    yield* Console.log(`${s.objects.count} objects (${(s.objects.bytes / 1e6).toFixed(1)} MB), ${s.nodes} node entries, ${s.memo} memo entries`)
    for (const r of s.runs) yield* Console.log(`  ${r.id}  ${r.status.padEnd(10)} ${r.nodes} nodes  ${r.createdAt}`)
  })).pipe(Command.withDescription("List runs and what the store holds"))

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
).pipe(Command.withDescription("Re-hash every object; with --repair, corrupt ones are recomputed on the next run"))

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
      yield* Console.log(`${verb}: ${r.removed.objects.count} objects (${(r.removed.objects.bytes / 1e6).toFixed(1)} MB), ${r.removed.nodes.count} node entries, ${r.removed.memo.count} memo entries, ${r.removedRuns.length} runs`)
      yield* Console.log(`kept: ${r.keptRuns.length} runs, ${r.kept.objects.count} objects (${(r.kept.objects.bytes / 1e6).toFixed(1)} MB)`)
      if (r.dryRun) yield* Console.log("dry run: nothing was deleted; pass --apply to delete")
    })
).pipe(Command.withDescription("Delete what kept runs cannot reach (dry run unless --apply)"))

class StoreCorrupt extends Error {
  constructor(readonly props: { count: number }) {
    super(`${props.count} corrupt object(s); run with --repair`)
  }
}

const cacheCommand = Command.make("cache").pipe(
  Command.withDescription("Inspect and maintain the artifact store"),
  Command.withSubcommands([cacheLs, cacheVerify, cacheGc])
)

const polaris = Command.make("polaris").pipe(
  Command.withDescription("POLARIS pipelines: cached, resumable GRPO for long-form story writing"),
  Command.withSubcommands([runCommand, resumeCommand, statusCommand, cacheCommand])
)

const exitCodeOf = (cause: Cause.Cause<unknown>): number => {
  const reason = cause.reasons[0]
  const error = reason?._tag === "Fail" ? reason.error : undefined
  if (CliError.isCliError(error) || error instanceof PipelineLoadError) return 2
  return 1
}

const program = Command.run(polaris, { version: "0.1.0" }).pipe(Effect.provide(NodeServices.layer))

Effect.runPromiseExit(program).then((exit) => {
  if (exit._tag === "Success") return
  const reason = exit.cause.reasons[0]
  const error = reason?._tag === "Fail" ? reason.error : reason?._tag === "Die" ? reason.defect : undefined
  // The CLI module already printed its own usage errors; everything else gets one clear line, no stack.
  if (!CliError.isCliError(error)) process.stderr.write(`polaris: ${error instanceof Error || (typeof error === "object" && error !== null && "message" in error) ? (error as Error).message : String(error)}\n`)
  process.exitCode = exitCodeOf(exit.cause)
})
