/**
 * The node cache key, exactly as ARCHITECTURE.md §3 defines it:
 *
 *     key = sha256(canonical { stage name, stage version, source fingerprint,
 *                              canonical params, input content digests, engine fingerprints })
 *
 * Retry settings, concurrency, secrets (Redacted values) and paths (a Location's `$path`) are
 * not in the key. Inputs enter by the digest of their bytes, not by the key of the node that
 * made them: a node that re-ran and produced the same bytes leaves its descendants' keys
 * unchanged (early cutoff).
 */
import type { KeyComponents, MemoComponents } from "./ArtifactStore.ts"
import { canonicalJson, digest } from "./Canonical.ts"
import { withoutPaths } from "./Location.ts"

/** Gathers a node's key components. Throws UnhashableValue on params with no canonical form. */
export const components = (parts: {
  readonly stage: string
  readonly version: string
  readonly source: string
  readonly params: unknown
  readonly inputs: Readonly<Record<string, string>>
  readonly engines: Readonly<Record<string, string>>
}): KeyComponents => ({
  stage: parts.stage,
  version: parts.version,
  source: parts.source,
  // A Location's `$path` is where the content is, not what it is: only its digest enters.
  params: canonicalJson(withoutPaths(parts.params), "drop"),
  inputs: parts.inputs,
  engines: parts.engines
})

/** A list input's digest in a key: its elements' digests, in order (the executor and `plan` alike). */
export const listDigest = (digests: ReadonlyArray<string>): string => digest({ list: digests })

/** The node key of its components. */
export const nodeKey = (c: KeyComponents): string => digest({ kind: "node", ...c })

/**
 * The key of one memoized item: `(stage, version, namespace, item key, engine fingerprints)`.
 * It does not depend on the node, so a judge call made under one node is reused by any other
 * that asks the same of the same judge; another judge model or rubric is another key.
 */
export const memoKey = (
  stage: string,
  version: string,
  namespace: string,
  key: unknown,
  engines: Readonly<Record<string, string>> = {}
): string => digest({ kind: "memo", stage, version, namespace, key, engines })

/** How deep {@link keyFields} follows nested plain objects: `key.settings.temperature`. */
export const KEY_FIELD_DEPTH = 2

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/**
 * An item key as named parts, each a short digest (16 hex characters) of its canonical JSON,
 * for `explain` to say which part of an item's request changed. A plain object is flattened
 * to dotted paths under `key.`, down to `depth` levels; arrays, scalars, empty objects and
 * deeper objects are hashed whole. A key that is not a non-empty plain object is the one part
 * `key`. The key is canonicalised first, as {@link memoKey} does (Redacted and `undefined`
 * fields dropped). Throws UnhashableValue where {@link memoKey} would.
 *
 * @example
 * keyFields({ text: "Once.", settings: { temperature: 0.7 }, tags: ["a"] })
 * // { "key.settings.temperature": "…", "key.tags": "…", "key.text": "…" }
 * keyFields("Once.") // { key: "…" }
 */
export const keyFields = (key: unknown, depth: number = KEY_FIELD_DEPTH): Record<string, string> => {
  const out: Record<string, string> = {}
  const walk = (value: unknown, path: string, level: number): void => {
    if (level < depth && isPlainObject(value) && Object.keys(value).length > 0) {
      for (const name of Object.keys(value).sort()) walk(value[name], `${path}.${name}`, level + 1)
    } else {
      out[path] = digest(value).slice(0, 16)
    }
  }
  walk(JSON.parse(canonicalJson(key, "drop")), "key", 0)
  return out
}

/** The components of {@link memoKey}'s key, for the memo index entry (digests of the item key, not its values). */
export const memoComponents = (
  stage: string,
  version: string,
  namespace: string,
  key: unknown,
  engines: Readonly<Record<string, string>> = {}
): MemoComponents => ({ namespace, stage, version, engines, key: keyFields(key) })

/** One difference between two keys' components. */
export interface KeyChange {
  readonly component: string
  readonly before: string | undefined
  readonly after: string | undefined
}

/** The names of `before` and `after` whose values differ, in name order, as `prefix` + name. */
const recordDiff = (
  prefix: string,
  before: Readonly<Record<string, string>>,
  after: Readonly<Record<string, string>>
): Array<KeyChange> =>
  [...new Set([...Object.keys(before), ...Object.keys(after)])]
    .sort()
    .filter((name) => before[name] !== after[name])
    .map((name) => ({ component: `${prefix}${name}`, before: before[name], after: after[name] }))

/** Which components differ between a previous key and the current one (for `explain`). */
export const diff = (before: KeyComponents, after: KeyComponents): ReadonlyArray<KeyChange> => {
  const changes: Array<KeyChange> = []
  for (const field of ["stage", "version", "source", "params"] as const) {
    if (before[field] !== after[field]) changes.push({ component: field, before: before[field], after: after[field] })
  }
  for (const group of ["inputs", "engines"] as const) changes.push(...recordDiff(`${group}.`, before[group], after[group]))
  return changes
}

/**
 * Which components differ between two memo keys: `namespace`, `stage`, `version`,
 * `engines.<key>`, then the item key's parts (`key`, `key.text`, `key.settings.temperature`).
 *
 * @example
 * memoDiff(memoComponents("judge", "1", "verdict", { text: "a" }), memoComponents("judge", "1", "verdict", { text: "b" }))
 * // [{ component: "key.text", before: "…", after: "…" }]
 */
export const memoDiff = (before: MemoComponents, after: MemoComponents): ReadonlyArray<KeyChange> => {
  const changes: Array<KeyChange> = []
  for (const field of ["namespace", "stage", "version"] as const) {
    if (before[field] !== after[field]) changes.push({ component: field, before: before[field], after: after[field] })
  }
  changes.push(...recordDiff("engines.", before.engines, after.engines))
  changes.push(...recordDiff("", before.key, after.key))
  return changes
}
