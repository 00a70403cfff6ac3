/**
 * Trackers on the command line: the recipe's `trackers:` attached to `run` / `resume` / `watch`,
 * and `polaris export-metrics`, which writes an existing run's metrics.jsonl to a tracker.
 *
 *   polaris export-metrics [RUN] --tensorboard DIR [--store DIR]
 */
import { Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { store } from "./flags.ts"
import { resolve } from "node:path"
import * as ArtifactStore from "../dag/ArtifactStore.ts"
import * as RunLog from "../dag/RunLog.ts"
import { ModuleError } from "../dag/PipelineModule.ts"
import * as Trackers from "../tracking/Trackers.ts"

/**
 * The recipe's trackers, opened for the run `log` starts, with a line on stderr saying where
 * each writes. A tracker that cannot be created stops the command before anything runs.
 */
export const attachTrackers = (log: RunLog.RunLog, settings: Trackers.Settings | undefined, options: { readonly quiet: boolean }) =>
  Trackers.attach(log, settings).pipe(
    Effect.tap((sinks) => (options.quiet ? Effect.void : Effect.forEach(sinks, (s) => Console.error(`${s.name}: ${s.where}`), { discard: true }))),
    Effect.orDie,
    Effect.asVoid
  )

export const exportMetricsCommand = Command.make(
  "export-metrics",
  {
    run: Argument.String("run").pipe(Argument.withDescription("Run id; default: the latest run"), Argument.optional),
    store,
    tensorboard: Flag.String("tensorboard").pipe(Flag.withDescription("TensorBoard log directory: event files go to DIR/<run id>/"))
  },
  (a) =>
    Effect.gen(function*() {
      const paths = ArtifactStore.pathsOf(a.store)
      const runId = Option.isSome(a.run) ? a.run.value : (yield* RunLog.list(paths)).at(-1)
      if (runId === undefined) return yield* new ModuleError({ file: a.store, reason: "no runs in this store" })
      const r = yield* Trackers.exportRun(paths, runId, { tensorboard: { dir: resolve(a.tensorboard) } })
      for (const s of r.sinks) yield* Console.log(s.where)
      yield* Console.error(`run ${runId}: ${r.records} metrics records, ${r.scalars} scalars (tensorboard --logdir ${a.tensorboard})`)
    })
).pipe(
  Command.withDescription("Write a run's metrics (metrics.jsonl) as TensorBoard event files"),
  Command.withExamples([{ command: "polaris export-metrics --tensorboard runs/tb", description: "The latest run, then: tensorboard --logdir runs/tb" }])
)
