/**
 * Unscorable items of a run, per node: stories (or pairs) a judge could not score, counted by
 * reason. A judge records them in its output, one item each with `unscorable: { reason,
 * message, calls }` (records/Judgement.ts, records/Comparison.ts), and counts them in its
 * `unscorable` metric. The metric picks the nodes to read, so no other output is opened.
 *
 * Read by the run summary, `polaris status` and the report.
 *
 * @example
 * const found = yield* Unscorables.ofRun(".polaris", runId)
 * for (const line of Unscorables.lines(found)) console.log(line) // "judge: 7 of 51 unscorable (Unavailable 5, Malformed 2)"
 */
import { join } from "node:path"
import { Effect, Schema } from "effect"
import { objectPath, pathsOf } from "../dag/ArtifactStore.ts"
import { readIfExists } from "../dag/internal/files.ts"
import { readJsonl } from "../dag/RunLog.ts"

/** One reason: how many items, and the first one's message (they tend to repeat). */
export const Reason = Schema.Struct({ reason: Schema.String, count: Schema.Int, message: Schema.String })
export type Reason = typeof Reason.Type

/** One node's unscorable items. */
export const NodeUnscorables = Schema.Struct({
  node: Schema.String,
  /** Items the node judged. */
  items: Schema.Int,
  unscorable: Schema.Int,
  /** Most frequent first. */
  reasons: Schema.Array(Reason)
})
export type NodeUnscorables = typeof NodeUnscorables.Type

/** An output item with the field a judge's records share. */
const Item = Schema.Struct({ unscorable: Schema.NullOr(Schema.Struct({ reason: Schema.String, message: Schema.String })) })
const Items = Schema.decodeUnknownOption(Schema.Array(Item))

/** The unscorable items among a node's output, or undefined when it is not a list of judged items. */
export const count = (node: string, output: unknown): NodeUnscorables | undefined => {
  const items = Items(output)
  if (items._tag === "None") return undefined
  const reasons = new Map<string, Reason>()
  for (const { unscorable: u } of items.value) {
    if (u === null) continue
    const r = reasons.get(u.reason)
    reasons.set(u.reason, { reason: u.reason, count: (r?.count ?? 0) + 1, message: r?.message ?? u.message })
  }
  const sorted = [...reasons.values()].sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason))
  return { node, items: items.value.length, unscorable: sorted.reduce((n, r) => n + r.count, 0), reasons: sorted }
}

/**
 * Nodes with unscorable items, in the order of `metrics` (a run's metrics.jsonl records): those
 * whose last record says `unscorable > 0` and whose output (`output(node)`) is a list of judged
 * items.
 */
export const find = async (
  metrics: ReadonlyArray<Readonly<Record<string, unknown>>>,
  output: (node: string) => Promise<unknown>
): Promise<Array<NodeUnscorables>> => {
  const flagged = new Map<string, boolean>()
  for (const m of metrics) {
    if (typeof m.node !== "string" || typeof m.unscorable !== "number") continue
    flagged.delete(m.node)
    flagged.set(m.node, m.unscorable > 0)
  }
  const found: Array<NodeUnscorables> = []
  for (const [node, any] of flagged) {
    if (!any) continue
    const counted = count(node, await output(node))
    if (counted !== undefined && counted.unscorable > 0) found.push(counted)
  }
  return found
}

/** {@link find} over run `runId` of the store at `storeRoot`; each node's output is the object it last produced. */
export const ofRun = (storeRoot: string, runId: string): Effect.Effect<ReadonlyArray<NodeUnscorables>> =>
  Effect.promise(async () => {
    const paths = pathsOf(storeRoot)
    const dir = join(paths.runs, runId)
    const objects = new Map<string, string>()
    for (const e of await readJsonl(join(dir, "events.jsonl"))) {
      if ((e.type === "node_finished" || e.type === "node_cached") && typeof e.node === "string" && typeof e.object === "string") objects.set(e.node, e.object)
    }
    return find(await readJsonl(join(dir, "metrics.jsonl")), async (node) => {
      const object = objects.get(node)
      const bytes = object === undefined ? undefined : await readIfExists(objectPath(paths, object))
      return bytes === undefined ? undefined : parseOrUndefined(bytes.toString("utf8"))
    })
  })

const parseOrUndefined = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/**
 * Nodes that differ only in their numbers (the judges of `train/step-003/group-1/judge` and
 * its like) merged under one pattern, each number written `*`, so a long run lists its judges in
 * a few lines; the first message of each reason is kept. A node alone keeps its id.
 */
export const collapse = (found: ReadonlyArray<NodeUnscorables>): Array<NodeUnscorables> => {
  const groups = new Map<string, Array<NodeUnscorables>>()
  for (const n of found) {
    const pattern = n.node.replace(/-\d+(?=\/|$)/g, "-*")
    groups.set(pattern, [...(groups.get(pattern) ?? []), n])
  }
  return [...groups].map(([pattern, nodes]) => {
    if (nodes.length === 1) return nodes[0]!
    const reasons = new Map<string, Reason>()
    for (const r of nodes.flatMap((n) => n.reasons)) {
      const had = reasons.get(r.reason)
      reasons.set(r.reason, { reason: r.reason, count: (had?.count ?? 0) + r.count, message: had?.message ?? r.message })
    }
    return {
      node: `${pattern} (${nodes.length} nodes)`,
      items: nodes.reduce((k, n) => k + n.items, 0),
      unscorable: nodes.reduce((k, n) => k + n.unscorable, 0),
      reasons: [...reasons.values()].sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason))
    }
  })
}

/** The first line of a message, cut to `width` characters. */
const short = (message: string, width = 100) => {
  const first = message.split("\n")[0] ?? ""
  return first.length <= width ? first : `${first.slice(0, width - 1)}…`
}

/**
 * One line per node (nodes alike {@link collapse}d): `judge: 7 of 51 unscorable (Unavailable 5,
 * Malformed 2)`; with `messages`, each reason's first message on a line of its own below.
 */
export const lines = (found: ReadonlyArray<NodeUnscorables>, options: { readonly messages?: boolean } = {}): Array<string> =>
  collapse(found).flatMap((n) => [
    `${n.node}: ${n.unscorable} of ${n.items} unscorable (${n.reasons.map((r) => `${r.reason} ${r.count}`).join(", ")})`,
    ...(options.messages === true ? n.reasons.map((r) => `  ${r.reason}: ${short(r.message)}`) : [])
  ])

/** `7 of 51 items unscorable in 1 node`, over all nodes; undefined when none. */
export const total = (found: ReadonlyArray<NodeUnscorables>): string | undefined => {
  if (found.length === 0) return undefined
  const unscorable = found.reduce((n, f) => n + f.unscorable, 0)
  const items = found.reduce((n, f) => n + f.items, 0)
  return `${unscorable} of ${items} judged items unscorable in ${found.length} node${found.length === 1 ? "" : "s"}`
}
