/**
 * The memo items part of `explain` (Explain.ts): which items a node recomputed in a run and
 * which it reused, per namespace, and for each recomputed item which components of its key
 * changed, compared with the items the node used in the earlier run. It reads the two runs'
 * event logs (`memo_hit` / `memo_stored` / `memo_unstored`), the earlier node index entry's
 * `memo` list (for a run where the node was cached) and the memo index entries' components.
 */
import { join } from "node:path"
import { Effect, Schema } from "effect"
import { type ArtifactStore, MemoComponents, type NodeEntry, StoreError, type StorePaths } from "../ArtifactStore.ts"
import * as CacheKey from "../CacheKey.ts"
import * as RunLog from "../RunLog.ts"

/** Why a memo item was computed in the run rather than reused. */
export type MemoReason =
  /** Its key differs from the nearest item of its namespace the node used in the earlier run; `changes` names the components. */
  | "changed"
  /** The node used no item of this namespace in the earlier run (or there is no earlier run). */
  | "new"
  /** Components unavailable: index entries gone (cache gc) or written by an older version. */
  | "unknown"
  /** The earlier run used this very key: the item was not stored then (`persistIf`), or its stored object was unusable. */
  | "same-key"

/** A memo item the node computed in the run. */
export interface MemoRecomputed {
  readonly key: string
  /** False when its value was not stored (the memo's `persistIf` refused it). */
  readonly stored: boolean
  readonly reason: MemoReason
  /** For `changed`: the earlier run's item it was compared with. */
  readonly previous?: string
  /** For `changed`: the components that differ from `previous` (`key.text`, `engines.<key>`...). */
  readonly changes: ReadonlyArray<CacheKey.KeyChange>
}

/** What the node did in the run with the memo items of one namespace. */
export interface MemoNamespace {
  /** `(unknown)` for items an older version logged without their namespace. */
  readonly namespace: string
  readonly recomputed: ReadonlyArray<MemoRecomputed>
  /** Keys of the items found stored and reused. */
  readonly reused: ReadonlyArray<string>
}

/** What a run's event log says about one memo item of a node. */
interface LoggedItem {
  namespace: string | undefined
  computed: boolean
  stored: boolean
  /** An unstored item's components (it has no index entry). */
  components: MemoComponents | undefined
}

const decodeComponents = Schema.decodeUnknownOption(MemoComponents)

/** The memo items of `node` in the event log of `runId`, by key. */
const loggedItems = (paths: StorePaths, runId: string, node: string): Effect.Effect<Map<string, LoggedItem>, StoreError> => {
  const path = join(paths.runs, runId, "events.jsonl")
  return Effect.tryPromise({
    try: async () => {
      const items = new Map<string, LoggedItem>()
      for (const e of await RunLog.readJsonl(path)) {
        if (e.node !== node || typeof e.key !== "string") continue
        if (e.type !== "memo_hit" && e.type !== "memo_stored" && e.type !== "memo_unstored") continue
        const item = items.get(e.key) ?? { namespace: undefined, computed: false, stored: false, components: undefined }
        if (typeof e.namespace === "string") item.namespace = e.namespace
        if (e.type !== "memo_hit") item.computed = true
        if (e.type === "memo_stored") item.stored = true
        const components = e.type === "memo_unstored" ? decodeComponents(e.components) : undefined
        if (components?._tag === "Some") item.components = components.value
        items.set(e.key, item)
      }
      return items
    },
    catch: (cause) => new StoreError({ op: "read", path, cause })
  })
}

/** An item the node used in the earlier run. */
interface Previous {
  readonly key: string
  readonly components: MemoComponents | undefined
}

/** An earlier item whose components are known. */
type Comparable = Previous & { readonly components: MemoComponents }

/** What the earlier run tells about the namespace of an item. */
interface Earlier {
  /** Whether the earlier run's items are known at all (its log, or the node's index entry). */
  readonly known: boolean
  /** Every key the node used in the earlier run. */
  readonly used: ReadonlySet<string>
  /** Whether the earlier run used items of the namespace, or items whose namespace is unknown (older versions). */
  readonly any: boolean
  /** The earlier items of the namespace to compare with, with their components, by key. */
  readonly pool: ReadonlyArray<Comparable>
}

/**
 * Why an item was recomputed: compared with the item of `earlier.pool` whose components differ
 * least (the first in key order among equals).
 */
const whyRecomputed = (key: string, components: MemoComponents | undefined, earlier: Earlier): Pick<MemoRecomputed, "reason" | "previous" | "changes"> => {
  const unknown = { reason: "unknown", changes: [] } as const
  if (!earlier.known) return unknown
  if (earlier.used.has(key)) return { reason: "same-key", changes: [] }
  if (!earlier.any) return { reason: "new", changes: [] }
  if (components === undefined) return unknown
  let best: { previous: string; changes: ReadonlyArray<CacheKey.KeyChange> } | undefined
  for (const b of earlier.pool) {
    const changes = CacheKey.memoDiff(b.components, components)
    if (changes.length > 0 && (best === undefined || changes.length < best.changes.length)) best = { previous: b.key, changes }
    if (best?.changes.length === 1) break // nothing nearer: equal components would be the same key
  }
  return best === undefined ? unknown : { reason: "changed", ...best }
}

/**
 * The memo items `node` used in `run`, per namespace, each recomputed one compared with the
 * items the node used in `against`: those in its event log, and those its node index entry
 * (`previousEntry`, the entry of its key in `against`) lists, for a run where it was cached.
 */
export const memoItems = (
  paths: StorePaths,
  store: ArtifactStore["Service"],
  node: string,
  run: string,
  against: string | undefined,
  previousEntry: NodeEntry | undefined
): Effect.Effect<ReadonlyArray<MemoNamespace>, StoreError> =>
  Effect.gen(function*() {
    const current = yield* loggedItems(paths, run, node)
    if (current.size === 0) return []
    const previous = against === undefined ? new Map<string, LoggedItem>() : yield* loggedItems(paths, against, node)
    const known = against === undefined || previous.size > 0 || previousEntry !== undefined
    for (const key of previousEntry?.memo ?? []) {
      if (!previous.has(key)) previous.set(key, { namespace: undefined, computed: false, stored: true, components: undefined })
    }
    const componentsOf = (key: string, item: LoggedItem) =>
      item.components !== undefined ? Effect.succeed(item.components) : Effect.map(store.readMemo(key), (entry) => entry?.components)

    const before = new Map<string | undefined, Array<Previous>>()
    for (const [key, item] of previous) {
      const components = yield* componentsOf(key, item)
      const namespace = item.namespace ?? components?.namespace
      const list = before.get(namespace) ?? []
      list.push({ key, components })
      before.set(namespace, list)
    }
    const used = new Set(previous.keys())
    const undetermined = before.has(undefined)
    // A recomputed item is compared with the earlier items of its namespace, preferring those the
    // run did not use: an item it reused is not the one this one replaced.
    const pools = new Map<string, ReadonlyArray<Comparable>>()
    const poolOf = (namespace: string) => {
      let pool = pools.get(namespace)
      if (pool === undefined) {
        const comparable = (before.get(namespace) ?? []).filter((b): b is Comparable => b.components !== undefined)
        const unused = comparable.filter((b) => !current.has(b.key))
        pool = (unused.length > 0 ? unused : comparable).sort((a, b) => (a.key < b.key ? -1 : 1))
        pools.set(namespace, pool)
      }
      return pool
    }

    const groups = new Map<string, { recomputed: Array<MemoRecomputed>; reused: Array<string> }>()
    for (const [key, item] of current) {
      const components = item.computed || item.namespace === undefined ? yield* componentsOf(key, item) : undefined
      const namespace = item.namespace ?? components?.namespace
      const label = namespace ?? "(unknown)"
      const group = groups.get(label) ?? { recomputed: [], reused: [] }
      groups.set(label, group)
      if (!item.computed) {
        group.reused.push(key)
        continue
      }
      const why = namespace === undefined
        ? { reason: "unknown" as const, changes: [] }
        : whyRecomputed(key, components, { known, used, any: before.has(namespace) || undetermined, pool: poolOf(namespace) })
      group.recomputed.push({ key, stored: item.stored, ...why })
    }
    return [...groups].sort(([a], [b]) => a.localeCompare(b)).map(([namespace, g]) => ({ namespace, ...g }))
  })
