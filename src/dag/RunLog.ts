/**
 * A run's directory: the frozen resolved config, an append-only JSONL event log, the manifest
 * (node -> key -> artifact) and the metrics. Everything a person or a tool needs to know what
 * happened, and what `resume` and `cache gc` read back.
 *
 *     runs/<run-id>/config.json     the resolved config, secrets masked
 *     runs/<run-id>/events.jsonl    one event per line, appended, never rewritten
 *     runs/<run-id>/manifest.json   node id -> { stage, key, object, status }
 *     runs/<run-id>/metrics.jsonl   metrics records of the run's nodes
 *
 * A crash can cut the last line of a JSONL file short; readers skip such a line and the next
 * writer starts on a fresh line.
 */
import { randomBytes } from "node:crypto"
import * as fsSync from "node:fs"
import * as fs from "node:fs/promises"
import { join } from "node:path"
import { Effect, Schema } from "effect"
import { type MemoComponents, StoreError, type StorePaths } from "./ArtifactStore.ts"
import { canonicalJson } from "./Canonical.ts"
import { atomicWrite, ensureDir, readIfExists } from "./internal/files.ts"

/** Everything the event log records. `node` is a node id; `key` a node or memo key. */
export type RunEvent =
  | { readonly type: "run_started"; readonly pipeline: string; readonly nodes: number; readonly resumed: boolean }
  | { readonly type: "run_finished"; readonly status: "succeeded" | "failed"; readonly executed: number; readonly cached: number; readonly failed: number; readonly durationMs: number }
  | { readonly type: "node_started"; readonly node: string; readonly stage: string; readonly key: string }
  | { readonly type: "node_cached"; readonly node: string; readonly key: string; readonly object: string }
  /** `durationMs`: the time the node held its resource's slot (its attempts); `waitedMs`: queued for the slot, or between attempts, and encoding its output. The event comes once the output is stored and indexed, which its dependents do not wait for. */
  | { readonly type: "node_finished"; readonly node: string; readonly key: string; readonly object: string; readonly durationMs: number; readonly waitedMs?: number }
  | { readonly type: "node_failed"; readonly node: string; readonly error: string }
  /** `because`: the upstream node that failed, or "budget" for a node a spent budget kept from starting. */
  | { readonly type: "node_skipped"; readonly node: string; readonly because: string }
  | { readonly type: "node_retry"; readonly node: string; readonly attempt: number; readonly error: string }
  | { readonly type: "corrupt_object"; readonly node: string; readonly object: string; readonly detail: string }
  | { readonly type: "missing_object"; readonly node: string; readonly object: string; readonly detail: string }
  | { readonly type: "lock_wait"; readonly node: string; readonly key: string; readonly holder: string }
  | { readonly type: "lock_broken"; readonly node: string; readonly key: string; readonly holder: string }
  // `namespace` and the unstored item's key `components` are absent in logs of older versions.
  | { readonly type: "memo_hit"; readonly node: string; readonly key: string; readonly namespace?: string }
  | { readonly type: "memo_stored"; readonly node: string; readonly key: string; readonly object: string; readonly namespace?: string }
  | { readonly type: "memo_unstored"; readonly node: string; readonly key: string; readonly namespace?: string; readonly components?: MemoComponents }
  | { readonly type: "progress"; readonly node: string; readonly done: number; readonly total: number }
  | { readonly type: "log"; readonly node: string; readonly message: string }

/** An event as written: with its time. */
export type LoggedEvent = RunEvent & { readonly at: string }

/** A metrics record as written to metrics.jsonl (`{ node, key, ...values }`), with its time. */
export interface MetricRecord {
  readonly node: string
  readonly key: string
  readonly values: Readonly<Record<string, unknown>>
  readonly at: string
}

/** The manifest's record of one node. */
export const ManifestNode = Schema.Struct({
  stage: Schema.String,
  key: Schema.optionalKey(Schema.String),
  object: Schema.optionalKey(Schema.String),
  status: Schema.Literals(["pending", "executed", "cached", "failed", "skipped"])
})
export type ManifestNode = typeof ManifestNode.Type

export const Manifest = Schema.Struct({
  runId: Schema.String,
  pipeline: Schema.String,
  status: Schema.Literals(["running", "succeeded", "failed"]),
  nodes: Schema.Record(Schema.String, ManifestNode),
  outputs: Schema.Record(Schema.String, Schema.String)
})
export type Manifest = typeof Manifest.Type

/** Reads a JSONL file, skipping lines a crash cut short. */
export const readJsonl = async (path: string): Promise<Array<Record<string, unknown>>> => {
  const text = (await readIfExists(path))?.toString("utf8") ?? ""
  const out: Array<Record<string, unknown>> = []
  for (const line of text.split("\n")) {
    if (line.length === 0) continue
    try {
      out.push(JSON.parse(line))
    } catch {
      // a torn last line from a crash
    }
  }
  return out
}

/** Opens a JSONL file for appending; starts a fresh line if a crash left a torn one. */
const openAppend = (path: string): number => {
  const fd = fsSync.openSync(path, "a+")
  const size = fsSync.fstatSync(fd).size
  if (size > 0) {
    const last = Buffer.alloc(1)
    fsSync.readSync(fd, last, 0, 1, size - 1)
    if (last[0] !== 0x0a) fsSync.writeSync(fd, "\n")
  }
  return fd
}

/**
 * A new run id: time of creation (to the millisecond) plus random hex, e.g.
 * `20261123-190512.347-3fa9c2d1`. Sorts by time; two runs started at once (two processes, say)
 * never share a directory.
 */
export const newRunId = (now = new Date()): string => {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 19)
  return `${stamp}-${randomBytes(4).toString("hex")}`
}

/** An open run directory. */
export interface RunLog {
  readonly runId: string
  readonly dir: string
  readonly eventsFile: string
  readonly resumed: boolean
  /** Keys of nodes this run already recorded as done (so a resume does not repeat their metrics). */
  readonly doneBefore: ReadonlyMap<string, string>
  readonly emit: (event: RunEvent) => Effect.Effect<void>
  readonly metric: (node: string, key: string, values: Readonly<Record<string, unknown>>) => Effect.Effect<void>
  readonly writeManifest: (manifest: Manifest) => Effect.Effect<void, StoreError>
  readonly subscribe: (listener: (event: LoggedEvent) => void) => void
  /** Hands each metrics record to `listener` as it is written (live trackers: src/tracking/Trackers.ts). */
  readonly subscribeMetrics: (listener: (record: MetricRecord) => void) => void
  readonly close: Effect.Effect<void>
}

/**
 * Opens the run `runId` in the store (creating it, or continuing it when it exists). The
 * config is frozen on creation; a resumed run keeps its original config.
 */
export const open = (paths: StorePaths, runId: string, config: unknown): Effect.Effect<RunLog, StoreError> =>
  Effect.tryPromise({
    try: async () => {
      const dir = join(paths.runs, runId)
      const configFile = join(dir, "config.json")
      const eventsFile = join(dir, "events.jsonl")
      await ensureDir(dir)
      const resumed = (await readIfExists(configFile)) !== undefined
      if (!resumed) await atomicWrite(paths.tmp, configFile, JSON.stringify(JSON.parse(canonicalJson(config, "mask")), null, 2) + "\n")
      const doneBefore = new Map<string, string>()
      if (resumed) {
        for (const e of await readJsonl(eventsFile)) {
          if ((e.type === "node_finished" || e.type === "node_cached") && typeof e.node === "string") doneBefore.set(e.node, String(e.key))
        }
      }
      const events = openAppend(eventsFile)
      const metrics = openAppend(join(dir, "metrics.jsonl"))
      const listeners: Array<(event: LoggedEvent) => void> = []
      const metricListeners: Array<(record: MetricRecord) => void> = []
      const log: RunLog = {
        runId,
        dir,
        eventsFile,
        resumed,
        doneBefore,
        emit: (event) =>
          Effect.sync(() => {
            const logged = { at: new Date().toISOString(), ...event } as LoggedEvent
            fsSync.writeSync(events, JSON.stringify(logged) + "\n")
            for (const l of listeners) l(logged)
          }),
        metric: (node, key, values) =>
          Effect.sync(() => {
            fsSync.writeSync(metrics, JSON.stringify({ node, key, ...values }) + "\n")
            if (metricListeners.length > 0) {
              const record: MetricRecord = { node, key, values, at: new Date().toISOString() }
              for (const l of metricListeners) l(record)
            }
          }),
        writeManifest: (manifest) =>
          Effect.tryPromise({
            try: () => atomicWrite(paths.tmp, join(dir, "manifest.json"), JSON.stringify(manifest, null, 1) + "\n", { durable: false }),
            catch: (cause) => new StoreError({ op: "write", path: join(dir, "manifest.json"), cause })
          }),
        subscribe: (listener) => {
          listeners.push(listener)
        },
        subscribeMetrics: (listener) => {
          metricListeners.push(listener)
        },
        close: Effect.sync(() => {
          fsSync.fsyncSync(events)
          fsSync.closeSync(events)
          fsSync.closeSync(metrics)
        })
      }
      return log
    },
    catch: (cause) => new StoreError({ op: "open run", path: join(paths.runs, runId), cause })
  })

/** Run ids in the store, oldest first. */
export const list = (paths: StorePaths): Effect.Effect<ReadonlyArray<string>, StoreError> =>
  Effect.tryPromise({
    try: async () => (await fs.readdir(paths.runs).catch(() => [] as Array<string>)).sort(),
    catch: (cause) => new StoreError({ op: "list", path: paths.runs, cause })
  })

/** The frozen config of a run. */
export const readConfig = (paths: StorePaths, runId: string): Effect.Effect<unknown, StoreError> => {
  const path = join(paths.runs, runId, "config.json")
  return Effect.tryPromise({
    try: async () => {
      const bytes = await readIfExists(path)
      if (bytes === undefined) throw new Error(`no run "${runId}" in ${paths.runs}`)
      return JSON.parse(bytes.toString("utf8")) as unknown
    },
    catch: (cause) => new StoreError({ op: "read", path, cause })
  })
}
