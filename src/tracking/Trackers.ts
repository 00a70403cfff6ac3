/**
 * Trackers: a run's metrics, sent where a person watches training (a recipe's `trackers:`).
 * Today one tracker, TensorBoard event files; every run also keeps `metrics.jsonl`, the record.
 *
 * A metrics record of node `train/step-003/groups`, `{ reward_policy_mean: 0.41, ... }`, becomes
 * scalars tagged `groups/reward_policy_mean` at step 3 (see {@link scalarEventOf}).
 *
 * Live, during `polaris run` / `resume` / `watch` ({@link attach}): a node's records are held
 * until it finishes and written then, so an attempt that fails or is retried, or a process
 * killed mid-node, leaves no scalars behind; the attempt that finishes writes them once. A
 * cached node's records (stored with its cache entry) are written as it is reused, except
 * on `resume` for nodes the run finished before (RunLog's `doneBefore`), which already wrote
 * theirs: a resumed run adds a new event file for its new scalars and repeats none.
 *
 * @example
 * // recipe.yaml
 * // trackers:
 * //   tensorboard: { dir: runs/tb }   # then: tensorboard --logdir runs/tb
 * yield* Executor.run(pipeline, {
 *   onStart: (log) => Effect.orDie(Effect.asVoid(Trackers.attach(log, { tensorboard: { dir: "/tmp/tb" } })))
 * })
 */
import { existsSync } from "node:fs"
import { join } from "node:path"
import { Effect, Option, Schema } from "effect"
import { StoreError, type StorePaths } from "../dag/ArtifactStore.ts"
import * as RunLog from "../dag/RunLog.ts"
import type { Trackers as TrackersSchema } from "../recipe/Recipe.ts"
import * as TensorBoard from "./TensorBoard.ts"

/** A recipe's `trackers:` section: tracker name -> its settings. */
export type Settings = typeof TrackersSchema.Type

/** What writing to a tracker can fail with. */
export type TrackerError = TensorBoard.TensorBoardError

/** An open tracker of one run: where it writes, and how. */
export interface Sink {
  readonly name: string
  readonly where: string
  readonly write: (events: ReadonlyArray<TensorBoard.ScalarEvent>) => Effect.Effect<void, TrackerError>
}

/** How each tracker opens for a run: one entry per key of `trackers:` (the compiler checks all are here). */
const openers: { readonly [K in keyof Settings]-?: (settings: NonNullable<Settings[K]>, runId: string) => Effect.Effect<Sink, TrackerError> } = {
  // One folder per run: TensorBoard shows each as a run of its own, named by its id.
  tensorboard: (settings, runId) =>
    Effect.map(TensorBoard.open(join(settings.dir, runId)), (file) => ({ name: "tensorboard", where: file.path, write: file.append }))
}

/** Opens every tracker `settings` names, for run `runId`. */
export const open = (settings: Settings | undefined, runId: string): Effect.Effect<ReadonlyArray<Sink>, TrackerError> =>
  Effect.forEach(Object.entries(settings ?? {}).filter(([, s]) => s !== undefined), ([name, s]) =>
    (openers[name as keyof Settings] as (s: unknown, runId: string) => Effect.Effect<Sink, TrackerError>)(s, runId))

/** A `step-NNN/` segment of a node id (a `Pipeline.loop` step); the last one counts. */
const STEP_SEGMENT = /(?:^|\/)step-(\d+)\//g

/**
 * The scalars of one metrics record:
 * - tag: `<path>/<metric>`, where path is the node id after its last `step-NNN/` segment
 *   (`train/step-003/group-01/judge` -> `group-01/judge`), or the whole id outside a loop;
 * - step: the record's own integer `step` field if it has one (a pretraining segment's records
 *   each name their optimizer step), else the node's `step-NNN`, else 0;
 * - values: the record's finite numbers, `step` itself excepted (it is the x axis); strings,
 *   booleans, null and non-finite numbers are left out.
 */
export const scalarEventOf = (node: string, values: Readonly<Record<string, unknown>>, wallTime: number): TensorBoard.ScalarEvent => {
  const matches = [...node.matchAll(STEP_SEGMENT)]
  const last = matches.at(-1)
  const path = last === undefined ? node : node.slice(last.index + last[0].length)
  const own = values.step
  const step = typeof own === "number" && Number.isSafeInteger(own) ? own : last !== undefined ? Number(last[1]) : 0
  const scalars: Array<TensorBoard.Scalar> = []
  for (const [name, value] of Object.entries(values)) {
    if (name === "step" || typeof value !== "number" || !Number.isFinite(value)) continue
    scalars.push({ tag: `${path}/${name}`, value })
  }
  return { step, wallTime, values: scalars }
}

const seconds = (iso: string) => Date.parse(iso) / 1000

/**
 * Opens the trackers `settings` names for `log`'s run and feeds them its metrics as nodes
 * finish ({@link follow}). A tracker that cannot be created fails here, before anything runs.
 */
export const attach = (
  log: Pick<RunLog.RunLog, "runId" | "subscribe" | "subscribeMetrics">,
  settings: Settings | undefined,
  options: FollowOptions = {}
): Effect.Effect<ReadonlyArray<Sink>, TrackerError> =>
  Effect.tap(open(settings, log.runId), (sinks) => Effect.sync(() => follow(log, sinks, options)))

export interface FollowOptions {
  /** Told once per tracker that fails to write; that tracker gets nothing more (default: a line on stderr). */
  readonly onError?: (error: TrackerError) => void
}

/**
 * Feeds `sinks` the metrics records of `log` as its nodes finish (see the module comment). A
 * sink that fails is reported once and left out from then on: training goes on, and
 * `metrics.jsonl` still holds every record (`polaris export-metrics` rebuilds the files).
 */
export const follow = (log: Pick<RunLog.RunLog, "subscribe" | "subscribeMetrics">, sinks: ReadonlyArray<Sink>, options: FollowOptions = {}): void => {
  if (sinks.length === 0) return
  const onError = options.onError ?? ((e: TrackerError) => process.stderr.write(`polaris: ${e.message}; writing to it stopped (metrics.jsonl has every record)\n`))
  const live = new Set(sinks)
  const write = (events: ReadonlyArray<TensorBoard.ScalarEvent>) => {
    if (!events.some((e) => e.values.length > 0)) return
    for (const sink of live) {
      const exit = Effect.runSyncExit(sink.write(events))
      if (exit._tag === "Failure") {
        live.delete(sink)
        const reason = exit.cause.reasons[0]
        if (reason?._tag === "Fail") onError(reason.error)
      }
    }
  }
  // Records of the nodes executing now, written when the node finishes.
  const pending = new Map<string, Array<TensorBoard.ScalarEvent>>()
  log.subscribe((event) => {
    switch (event.type) {
      case "node_started":
      case "node_retry": // the next attempt emits its records again
        pending.set(event.node, [])
        return
      case "node_failed":
        pending.delete(event.node)
        return
      case "node_finished": {
        const held = pending.get(event.node)
        pending.delete(event.node)
        if (held !== undefined) write(held)
        return
      }
    }
  })
  log.subscribeMetrics((record) => {
    const event = scalarEventOf(record.node, record.values, seconds(record.at))
    const held = pending.get(record.node)
    // A node not executing here is being reused from the cache: its records are final.
    if (held !== undefined) held.push(event)
    else write([event])
  })
}

/** What {@link exportRun} wrote. */
export interface Exported {
  readonly sinks: ReadonlyArray<Sink>
  readonly records: number
  readonly scalars: number
}

const MetricLine = Schema.Struct({ node: Schema.String })
const NodeDone = Schema.Struct({ type: Schema.Literals(["node_finished", "node_cached"]), node: Schema.String, at: Schema.String })

/**
 * Writes the metrics of run `runId` (its `metrics.jsonl`) to the trackers `settings` names, in
 * new files beside any the run wrote live: for a run made without trackers, or to rebuild them
 * (into a fresh directory, or the scalars appear twice). Each record is stamped with the time
 * its node last finished (events.jsonl), or now.
 *
 * @example
 * yield* Trackers.exportRun(ArtifactStore.pathsOf(".polaris"), runId, { tensorboard: { dir: "tb" } })
 */
export const exportRun = (paths: StorePaths, runId: string, settings: Settings): Effect.Effect<Exported, TrackerError | StoreError> =>
  Effect.gen(function*() {
    const dir = join(paths.runs, runId)
    const read = (file: string) =>
      Effect.tryPromise({
        try: async () => {
          if (!existsSync(join(dir, "config.json"))) throw new Error(`no run "${runId}" in ${paths.runs}`)
          return RunLog.readJsonl(join(dir, file))
        },
        catch: (cause) => new StoreError({ op: "read", path: join(dir, file), cause })
      })
    const doneAt = new Map<string, number>()
    for (const line of yield* read("events.jsonl")) {
      const done = Schema.decodeUnknownOption(NodeDone)(line)
      if (Option.isSome(done)) doneAt.set(done.value.node, seconds(done.value.at))
    }
    const now = Date.now() / 1000
    const events: Array<TensorBoard.ScalarEvent> = []
    const seen = new Set<string>()
    for (const line of yield* read("metrics.jsonl")) {
      const record = Schema.decodeUnknownOption(MetricLine)(line)
      if (Option.isNone(record)) continue
      // A record repeated whole (same node, key and values) is an attempt that failed, was
      // retried or was killed, then ran again: written once, as the live trackers do.
      const text = JSON.stringify(line)
      if (seen.has(text)) continue
      seen.add(text)
      const { node: _, key: __, ...values } = line
      events.push(scalarEventOf(record.value.node, values, doneAt.get(record.value.node) ?? now))
    }
    const sinks = yield* open(settings, runId)
    for (const sink of sinks) yield* sink.write(events)
    return { sinks, records: events.length, scalars: events.reduce((n, e) => n + e.values.length, 0) }
  })
