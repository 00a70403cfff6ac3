/**
 * The node cache key, exactly as ARCHITECTURE.md §3 defines it:
 *
 *     key = sha256(canonical { stage name, stage version, source fingerprint,
 *                              canonical params, input content digests, engine fingerprints })
 *
 * Retry settings, concurrency, secrets (Redacted values) and paths are not in the key. Inputs
 * enter by the digest of their bytes, not by the key of the node that made them: a node that
 * re-ran and produced the same bytes leaves its descendants' keys unchanged (early cutoff).
 */
import type { KeyComponents } from "./ArtifactStore.ts"
import { canonicalJson, digest } from "./Canonical.ts"

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
  params: canonicalJson(parts.params, "drop"),
  inputs: parts.inputs,
  engines: parts.engines
})

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

/** One difference between two keys' components. */
export interface KeyChange {
  readonly component: string
  readonly before: string | undefined
  readonly after: string | undefined
}

/** Which components differ between a previous key and the current one (for `explain`). */
export const diff = (before: KeyComponents, after: KeyComponents): ReadonlyArray<KeyChange> => {
  const changes: Array<KeyChange> = []
  for (const field of ["stage", "version", "source", "params"] as const) {
    if (before[field] !== after[field]) changes.push({ component: field, before: before[field], after: after[field] })
  }
  for (const group of ["inputs", "engines"] as const) {
    const names = new Set([...Object.keys(before[group]), ...Object.keys(after[group])])
    for (const name of [...names].sort()) {
      if (before[group][name] !== after[group][name]) {
        changes.push({ component: `${group}.${name}`, before: before[group][name], after: after[group][name] })
      }
    }
  }
  return changes
}
