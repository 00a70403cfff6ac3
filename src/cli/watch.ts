/**
 * `polaris watch`: re-validate and re-run a recipe whenever it, a file it extends, its pipeline
 * or custom stage modules, or its input data change. The cache does the work: only stale nodes
 * run again. A change during a run interrupts it cleanly (locks released, nothing half-stored:
 * stores are atomic); a burst of changes is debounced into one re-run.
 */
import { resolve } from "node:path"
import { watch as chokidar } from "chokidar"
import { Console, Deferred, Effect, Fiber, Layer } from "effect"
import * as ArtifactStore from "../dag/ArtifactStore.ts"
import * as Executor from "../dag/Executor.ts"
import * as Progress from "../dag/Progress.ts"
import { formatWarnings, resolveTarget, type Target, type TargetOptions } from "./target.ts"
import { attachTrackers } from "./tracking.ts"

/** Settings of a watch session. */
export interface WatchOptions extends TargetOptions {
  /** Quiet time after the last change before a re-run (default 200 ms). */
  readonly debounceMs?: number
  readonly progress: Progress.Mode
  /** One JSON line per cycle on stdout instead of human summaries. */
  readonly json: boolean
}

/** Files and folders a target depends on: its source files and the recipe's data paths. */
const watchedPaths = (file: string, t: Target | undefined): ReadonlyArray<string> => {
  const paths = new Set<string>([resolve(file)])
  for (const f of t?.files ?? []) paths.add(f)
  for (const d of t?.recipe?.data?.anthologies ?? []) paths.add(d) // absolute: the loader anchors recipe paths
  return [...paths]
}

/** Runs until interrupted (Ctrl-C). */
export const watch = (file: string, options: WatchOptions) =>
  Effect.gen(function*() {
    const watcher = chokidar([], { ignoreInitial: true, atomic: 50 })
    yield* Effect.addFinalizer(() => Effect.promise(() => watcher.close()))
    // Each burst of changes completes the current signal and installs the next one at once, so a
    // change arriving while a cycle restarts is never lost.
    let current = Deferred.makeUnsafe<void>()
    let timer: NodeJS.Timeout | undefined
    watcher.on("all", () => {
      clearTimeout(timer)
      timer = setTimeout(() => {
        const fired = current
        current = Deferred.makeUnsafe<void>()
        Deferred.doneUnsafe(fired, Effect.void)
      }, options.debounceMs ?? 200)
    })
    let watching = new Set<string>()
    for (let cycle = 1; ; cycle++) {
      const changed = current
      const report = (summary: Record<string, unknown>, human: string) =>
        options.json ? Console.log(JSON.stringify({ cycle, ...summary })) : Console.log(human)
      const target = yield* Effect.result(resolveTarget(file, options))
      const t = target._tag === "Success" ? target.success : undefined
      if (t !== undefined && t.warnings.length > 0) yield* Console.error(formatWarnings(t).trimEnd())
      const paths = watchedPaths(file, t)
      const fresh = paths.filter((p) => !watching.has(p))
      if (fresh.length > 0) watcher.add(fresh)
      watching = new Set([...watching, ...paths])
      const run = t === undefined
        ? report({ status: "invalid", error: String((target as { failure: { message: string } }).failure.message) }, String((target as { failure: { message: string } }).failure.message))
        : Executor.run(t.pipeline, {
          config: t.config,
          concurrency: t.concurrency,
          pools: t.pools,
          retries: t.retries,
          onStart: (log) => Effect.andThen(attachTrackers(log, t.recipe?.trackers, { quiet: options.json }), Effect.asVoid(Progress.attach(log, { mode: options.json ? "none" : options.progress, nodes: t.pipeline.nodes.map((n) => n.id) })))
        }).pipe(
          Effect.provide(Layer.merge(ArtifactStore.layer(t.store), t.layer)),
          Effect.matchEffect({
            onSuccess: (r) => report({ status: "succeeded", runId: r.runId, executed: r.executed, cached: r.cached, nodes: r.nodes }, `run ${r.runId}: ${r.executed} executed, ${r.cached} cached`),
            onFailure: (e) => report({ status: "failed", error: e.message }, e.message)
          })
        )
      const fiber = yield* Effect.forkChild(run)
      const winner = yield* Effect.raceFirst(Effect.as(Fiber.join(fiber), "finished" as const), Effect.as(Deferred.await(changed), "changed" as const))
      if (winner === "finished") yield* Deferred.await(changed)
      else {
        yield* Fiber.interrupt(fiber)
        yield* report({ status: "interrupted" }, "change detected: interrupted the run")
      }
      if (!options.json) yield* Console.log(`change detected: re-running ${file}`)
    }
  }).pipe(Effect.scoped)
