/**
 * Why a node re-ran: compares the node's key in one run with its key in an earlier run, and
 * names the components that changed (stage, version, source, params, an input's digest, an
 * engine's fingerprint). It reads only the run directories and the node index, so it works on
 * any past run without the pipeline's code. The body of `polaris explain`.
 *
 * An input changes because the node feeding it produced other bytes; each `inputs.x` change
 * names that upstream node and what it did in the run, so the chain can be followed back to
 * the change that started it.
 *
 * For a node that executed, it also says which memo items it recomputed and which it reused,
 * per namespace, and for each recomputed item which components of its key changed, compared
 * with the nearest item (fewest differing components) that the node used in the earlier run.
 *
 * @example
 * const e = yield* Explain.explain(ArtifactStore.pathsOf(".polaris"), "train/step-003/judge", {})
 * console.log(Explain.formatExplanation(e))
 * // node train/step-003/judge re-ran in run 20261123-190512.347-3fa9c2d1 (previous: 20261123-181002.120-77b0e1aa):
 * //   params: {"salt":"s3"} -> {"salt":"s4"}
 * //   inputs.items: 3fa9c2d1e0b7… -> 77b0e1aa41c2… (from node items, which re-ran)
 * //   memo items:
 * //     verdict: 3 recomputed (key.text changed ×3), 45 reused
 */
import { join } from "node:path"
import { Effect, Schema } from "effect"
import { make as makeStore, type NodeEntry, StoreError, type StorePaths } from "./ArtifactStore.ts"
import * as CacheKey from "./CacheKey.ts"
import { readIfExists } from "./internal/files.ts"
import { memoItems, type MemoNamespace, type MemoReason, type MemoRecomputed } from "./internal/memoItems.ts"
import type { Pipeline } from "./Pipeline.ts"
import * as RunLog from "./RunLog.ts"

/** What a node's key did between the two runs. */
export type Verdict =
  /** No earlier run recorded a key for the node: nothing to compare with. */
  | "first"
  /** The node has no key in the run (it failed, was skipped, or the run stopped first). */
  | "no-key"
  /** Same key as before: the stored output was reused. */
  | "reused"
  /** Same key as before, yet executed: forced, or its cached object was unusable. */
  | "re-executed"
  /** The key differs; `changes` names the components. */
  | "changed"
  /** The key differs, but an index entry is gone (cache gc), so the components are unknown. */
  | "unknown"

/** The node that feeds an input, and what it did in the explained run. */
export interface InputSource {
  readonly node: string
  readonly status: RunLog.ManifestNode["status"]
}

/** A changed key component; for an `inputs.x` change, also the node feeding `x`. */
export interface Change extends CacheKey.KeyChange {
  readonly from?: InputSource
}

export type { MemoNamespace, MemoReason, MemoRecomputed } from "./internal/memoItems.ts"

/** Why a node ran as it did in `run`, compared with `against`. */
export interface Explanation {
  readonly node: string
  readonly run: string
  /** The earlier run compared with; undefined when there is none. */
  readonly against: string | undefined
  readonly status: RunLog.ManifestNode["status"]
  readonly key: string | undefined
  readonly previousKey: string | undefined
  readonly verdict: Verdict
  readonly changes: ReadonlyArray<Change>
  /** Details for `re-executed` (the run's corrupt/missing-object events) and `unknown`. */
  readonly notes: ReadonlyArray<string>
  /** The node's memo items in the run, per namespace in name order; empty when it used none (e.g. it was cached). */
  readonly memo: ReadonlyArray<MemoNamespace>
}

/** Which runs to compare. Both default as described at {@link explain}. */
export interface ExplainOptions {
  /** The run to explain; default the latest run whose manifest has the node. */
  readonly run?: string
  /** The run to compare with; default the latest earlier run that recorded a key for the node. */
  readonly against?: string
  /**
   * The pipeline, when at hand: its wiring names the node feeding each input exactly.
   * Without it the feeding node is found by its output digest in the run's manifest.
   */
  readonly pipeline?: Pipeline<any, any>
}

const decodeManifest = Schema.decodeUnknownOption(Schema.fromJsonString(RunLog.Manifest))

const fail = (path: string, message: string) => new StoreError({ op: "explain", path, cause: new Error(message) })

/** A run's manifest, or undefined when it has none (yet) or it cannot be read. */
const readManifest = (paths: StorePaths, runId: string): Effect.Effect<RunLog.Manifest | undefined, StoreError> => {
  const path = join(paths.runs, runId, "manifest.json")
  return Effect.tryPromise({
    try: async () => {
      const bytes = await readIfExists(path)
      if (bytes === undefined) return undefined
      const decoded = decodeManifest(bytes.toString("utf8"))
      return decoded._tag === "Some" ? decoded.value : undefined
    },
    catch: (cause) => new StoreError({ op: "read", path, cause })
  })
}

/** Up to five node ids of `manifest` that look like `node` (for a helpful error). */
const lookalikes = (manifest: RunLog.Manifest | undefined, node: string): string => {
  const ids = Object.keys(manifest?.nodes ?? {}).filter((id) => id.endsWith(`/${node}`) || id.includes(node))
  return ids.length === 0 ? "" : `; did you mean ${ids.slice(0, 5).join(", ")}${ids.length > 5 ? ", ..." : ""}?`
}

const commonPrefix = (a: string, b: string) => {
  let i = 0
  while (i < a.length && i < b.length && a[i] === b[i]) i++
  return i
}

/**
 * The node feeding input `name` of `node`. With the pipeline it is its wiring. Otherwise: a
 * node of the run whose output is the input's new digest, preferring one whose output in the
 * earlier run was the old digest, then the one nearest to `node` in scope.
 */
const sourceOf = (
  node: string,
  name: string,
  change: CacheKey.KeyChange,
  current: RunLog.Manifest,
  previous: RunLog.Manifest | undefined,
  pipeline: Pipeline<any, any> | undefined
): InputSource | undefined => {
  const statusOf = (id: string): InputSource | undefined => {
    const entry = current.nodes[id]
    return entry === undefined ? undefined : { node: id, status: entry.status }
  }
  const wired = pipeline?.nodes.find((n) => n.id === node)?.inputs[name]
  // A list (fan-in) is sourced by its first element that re-ran, else its first.
  if (typeof wired === "string") return statusOf(wired)
  if (wired !== undefined) return statusOf(wired.find((id) => current.nodes[id]?.status === "executed") ?? wired[0]!)
  if (change.after === undefined) return undefined
  const candidates = Object.entries(current.nodes).filter(([, n]) => n.object === change.after).map(([id]) => id)
  const agreeing = candidates.filter((id) => change.before !== undefined && previous?.nodes[id]?.object === change.before)
  const pool = (agreeing.length > 0 ? agreeing : candidates).filter((id) => id !== node)
  const best = pool.sort((a, b) => commonPrefix(b, node) - commonPrefix(a, node) || a.localeCompare(b))[0]
  return best === undefined ? undefined : statusOf(best)
}

/** The run's corrupt/missing-object events for `node`, as short lines, without repeats. */
const unusableObjects = (paths: StorePaths, runId: string, node: string): Effect.Effect<ReadonlyArray<string>, StoreError> => {
  const path = join(paths.runs, runId, "events.jsonl")
  return Effect.tryPromise({
    try: async () =>
      (await RunLog.readJsonl(path))
        .filter((e) => (e.type === "corrupt_object" || e.type === "missing_object") && e.node === node)
        .map((e) => `its cached object ${short(String(e.object))} was ${e.type === "corrupt_object" ? "corrupt" : "missing"}`)
        .filter((line, i, all) => all.indexOf(line) === i),
    catch: (cause) => new StoreError({ op: "read", path, cause })
  })
}

/**
 * Explains why `node` ran as it did. By default the run explained is the latest (in run id
 * order, as {@link RunLog.list}) whose manifest has the node, and it is compared with the most
 * recent earlier run whose manifest recorded a key for the node. Fails with StoreError when
 * a named run or the node cannot be found.
 *
 * @example
 * const e = yield* Explain.explain(paths, "train/step-003/judge", { against: "20261123-181002.120-77b0e1aa" })
 * e.changes // [{ component: "params", before: '{"salt":"s3"}', after: '{"salt":"s4"}' }]
 */
export const explain = (paths: StorePaths, node: string, options: ExplainOptions = {}): Effect.Effect<Explanation, StoreError> =>
  Effect.gen(function*() {
    const runs = yield* RunLog.list(paths)

    // The run to explain.
    let run: string | undefined
    let current: RunLog.Manifest | undefined
    if (options.run !== undefined) {
      run = options.run
      current = yield* readManifest(paths, run)
      if (current === undefined) return yield* fail(join(paths.runs, run), `run "${run}" has no readable manifest`)
      if (current.nodes[node] === undefined) {
        return yield* fail(join(paths.runs, run), `run "${run}" has no node "${node}"${lookalikes(current, node)}`)
      }
    } else {
      let newest: RunLog.Manifest | undefined
      for (const id of [...runs].reverse()) {
        const manifest = yield* readManifest(paths, id)
        newest ??= manifest
        if (manifest?.nodes[node] !== undefined) {
          run = id
          current = manifest
          break
        }
      }
      if (run === undefined || current === undefined) {
        return yield* fail(paths.runs, `no run has a node "${node}"${lookalikes(newest, node)}`)
      }
    }
    const record = current.nodes[node]!

    // The run to compare with.
    let against: string | undefined
    let previous: RunLog.Manifest | undefined
    if (options.against !== undefined) {
      against = options.against
      previous = yield* readManifest(paths, against)
      if (previous?.nodes[node]?.key === undefined) {
        return yield* fail(join(paths.runs, against), `run "${against}" recorded no key for node "${node}"`)
      }
    } else {
      const position = runs.indexOf(run)
      const earlier = position < 0 ? runs.filter((id) => id < run!) : runs.slice(0, position)
      for (const id of [...earlier].reverse()) {
        const manifest = yield* readManifest(paths, id)
        if (manifest?.nodes[node]?.key !== undefined) {
          against = id
          previous = manifest
          break
        }
      }
    }

    const key = record.key
    const previousKey = previous?.nodes[node]?.key
    const store = makeStore(paths.root)
    const previousEntry = previousKey === undefined ? undefined : yield* store.readNode(previousKey)
    const memo = yield* memoItems(paths, store, node, run, against, previousEntry)
    const base = { node, run, against, status: record.status, key, previousKey, memo }
    if (key === undefined) return { ...base, verdict: "no-key", changes: [], notes: [] } satisfies Explanation
    if (previousKey === undefined) return { ...base, verdict: "first", changes: [], notes: [] } satisfies Explanation
    if (key === previousKey) {
      if (record.status !== "executed") return { ...base, verdict: "reused", changes: [], notes: [] } satisfies Explanation
      const notes = yield* unusableObjects(paths, run, node)
      return { ...base, verdict: "re-executed", changes: [], notes } satisfies Explanation
    }

    const entries: ReadonlyArray<NodeEntry | undefined> = [previousEntry, yield* store.readNode(key)]
    const [before, after] = entries
    if (before === undefined || after === undefined) {
      const gone = [before === undefined ? previousKey : undefined, after === undefined ? key : undefined].filter((k) => k !== undefined)
      const notes = gone.map((k) => `the index entry of key ${short(k)} is gone (removed by cache gc?), so the changed components are unknown`)
      return { ...base, verdict: "unknown", changes: [], notes } satisfies Explanation
    }
    const changes = CacheKey.diff(before.components, after.components).map((change): Change => {
      if (!change.component.startsWith("inputs.")) return change
      const from = sourceOf(node, change.component.slice("inputs.".length), change, current, previous, options.pipeline)
      return from === undefined ? change : { ...change, from }
    })
    return { ...base, verdict: "changed", changes, notes: [] } satisfies Explanation
  })

// ---------------------------------------------------------------------------------------------
// formatting

const DIGEST = /^[0-9a-f]{16,}$/

/** A digest cut to 12 characters; other strings as they are. */
const short = (value: string | undefined): string =>
  value === undefined ? "(none)" : DIGEST.test(value) ? `${value.slice(0, 12)}…` : value

const parseObject = (json: string | undefined): Record<string, unknown> | undefined => {
  if (json === undefined) return undefined
  try {
    const value: unknown = JSON.parse(json)
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}

/** Only the keys that differ of two canonical params objects: `{"salt":"s3"} -> {"salt":"s4"}`. */
const paramsDelta = (before: string | undefined, after: string | undefined): string => {
  const a = parseObject(before)
  const b = parseObject(after)
  if (a === undefined || b === undefined) return `${before ?? "(none)"} -> ${after ?? "(none)"}`
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()
  const differing = keys.filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]))
  const pick = (o: Record<string, unknown>) => JSON.stringify(Object.fromEntries(differing.filter((k) => k in o).map((k) => [k, o[k]])))
  return `${pick(a)} -> ${pick(b)}`
}

const statusPhrase: Record<RunLog.ManifestNode["status"], string> = {
  executed: "which re-ran",
  cached: "cached in this run",
  failed: "which failed",
  skipped: "which was skipped",
  pending: "which did not finish"
}

const changeLine = (c: Change): string => {
  if (c.component === "params") return `params: ${paramsDelta(c.before, c.after)}`
  const line = `${c.component}: ${short(c.before)} -> ${short(c.after)}`
  if (c.component === "source") return `${line} (the code of the stage's module, a module it imports, or a value library's version changed)`
  if (!c.component.startsWith("inputs.")) return line
  if (c.before === undefined) return `${line} (a new input${c.from ? `, from node ${c.from.node}` : ""})`
  if (c.after === undefined) return `${line} (input removed)`
  return c.from === undefined ? line : `${line} (from node ${c.from.node}, ${statusPhrase[c.from.status]})`
}

/** How each reason reads in a namespace's line. */
const reasonLabel: Record<MemoReason, (r: MemoRecomputed) => string> = {
  changed: (r) => `${r.changes.map((c) => c.component).join(", ")} changed`,
  new: () => "new",
  unknown: () => "components unknown",
  "same-key": () => "same key"
}

/** `verdict: 3 recomputed (key.text changed ×3), 45 reused`, commonest reason first. */
const memoLine = (m: MemoNamespace): string => {
  const counts = new Map<string, number>()
  for (const r of m.recomputed) {
    const label = reasonLabel[r.reason](r)
    counts.set(label, (counts.get(label) ?? 0) + 1)
  }
  const reasons = [...counts].sort(([a, x], [b, y]) => y - x || a.localeCompare(b)).map(([label, n]) => `${label} ×${n}`)
  const unstored = m.recomputed.filter((r) => !r.stored).length
  return `${m.namespace}: ${m.recomputed.length} recomputed${reasons.length > 0 ? ` (${reasons.join("; ")})` : ""}, ` +
    `${m.reused.length} reused${unstored > 0 ? `, ${unstored} not stored` : ""}`
}

/**
 * A human-readable explanation: a heading line, then one indented line per changed
 * component (params show only the keys that differ; digests are cut to 12 characters),
 * then, when the node used memo items in the run, one line per namespace.
 */
export const formatExplanation = (e: Explanation): string => {
  const previous = `(previous: ${e.against})`
  const ran = e.status === "executed" ? "re-ran" : `was ${e.status}`
  const lines: Array<string> = []
  switch (e.verdict) {
    case "no-key":
      lines.push(`node ${e.node} has no key in run ${e.run} (it was ${e.status}): nothing to compare`)
      break
    case "first":
      lines.push(`node ${e.node} was ${e.status} in run ${e.run}; no earlier run recorded a key for it: nothing to compare`)
      break
    case "reused":
      lines.push(`node ${e.node} was ${e.status} in run ${e.run} ${previous}: same key ${short(e.key)}: reused`)
      break
    case "re-executed":
      lines.push(
        `node ${e.node} re-ran in run ${e.run} ${previous}: same key ${short(e.key)}; re-executed ` +
          (e.notes.length === 0 ? "(forced, or its cached object was unusable)" : `because ${e.notes.join("; ")}`)
      )
      break
    case "unknown":
      lines.push(`node ${e.node} ${ran} in run ${e.run} ${previous}: key ${short(e.previousKey)} -> ${short(e.key)}`)
      for (const note of e.notes) lines.push(`  ${note}`)
      break
    case "changed":
      lines.push(
        e.status === "executed"
          ? `node ${e.node} re-ran in run ${e.run} ${previous}:`
          : `node ${e.node} ${ran} in run ${e.run}, under another key than in run ${e.against} (an earlier result was reused):`
      )
      for (const change of e.changes) lines.push(`  ${changeLine(change)}`)
      break
  }
  if (e.memo.length > 0) lines.push("  memo items:", ...e.memo.map((m) => `    ${memoLine(m)}`))
  return lines.join("\n")
}
