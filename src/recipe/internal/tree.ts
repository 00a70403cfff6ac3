/**
 * A recipe tree: the plain value read from YAML, with where each node was written. Extends
 * merges trees (mappings deep-merged, everything else replaced, the child winning) and `--set`
 * writes into them, so an error found later still points at the text that caused it.
 */

/** Where a value was written: a position in a file (1-based), a whole file, or a `--set` argument. */
export type Location =
  | { readonly file: string; readonly line: number; readonly col: number }
  | { readonly file: string }
  | { readonly set: string }

/** One thing wrong with a recipe: where, at which path (empty for the whole file), and what. */
export interface Problem {
  readonly where: Location
  readonly path: Path
  readonly message: string
}

/** Where a node's key and value were written (the same for list items and the root). */
export interface Origin {
  readonly key: Location
  readonly value: Location
}

/** A path into a recipe: mapping keys and list indices. */
export type Path = ReadonlyArray<string | number>

export type Mapping = Record<string, unknown>

/** A plain value and the origin of every node in it, by {@link pathKey}. */
export interface Tree {
  readonly value: Mapping
  readonly origins: Map<string, Origin>
}

export const pathKey = (path: Path): string => path.map(String).join("\u0000")

/** `grpo.steps`, `eval.buckets[0].name`. */
export const formatPath = (path: Path): string =>
  path.reduce<string>((out, p) => typeof p === "number" ? `${out}[${p}]` : out === "" ? p : `${out}.${p}`, "")

export const isMapping = (u: unknown): u is Mapping =>
  typeof u === "object" && u !== null && !Array.isArray(u) && Object.getPrototypeOf(u) === Object.prototype

/** What a value is, in words, for messages: `a list`, `a string`, `nothing`. */
export const kindOf = (u: unknown): string =>
  u === null || u === undefined ? "nothing" : Array.isArray(u) ? "a list" : typeof u === "object" ? "a mapping" : `a ${typeof u}`

/** The origin of `path`, or of its nearest ancestor that has one. */
export const originAt = (tree: Tree, path: Path): Origin | undefined => {
  for (let n = path.length; n >= 0; n--) {
    const origin = tree.origins.get(pathKey(path.slice(0, n)))
    if (origin !== undefined) return origin
  }
  return undefined
}

/** The value at `path`, or undefined. */
export const valueAt = (root: unknown, path: Path): unknown =>
  path.reduce<unknown>(
    (node, p) => ((Array.isArray(node) || isMapping(node)) && Object.hasOwn(node, p) ? (node as Record<string | number, unknown>)[p] : undefined),
    root
  )

/** Calls `f` on every node of `value`, the root included, with its path. */
export const walk = (value: unknown, f: (value: unknown, path: Path) => void, path: Path = []): void => {
  f(value, path)
  if (Array.isArray(value)) value.forEach((item, i) => walk(item, f, [...path, i]))
  else if (isMapping(value)) for (const [k, v] of Object.entries(value)) walk(v, f, [...path, k])
}

/** Sets an own property, even one named `__proto__` (YAML keys are data, never prototypes). */
export const setKey = (mapping: Mapping, key: string, value: unknown): void => {
  Object.defineProperty(mapping, key, { value, enumerable: true, writable: true, configurable: true })
}

const deepMerge = (base: unknown, child: unknown): unknown => {
  if (!isMapping(base) || !isMapping(child)) return child
  const out: Mapping = {}
  for (const [k, v] of Object.entries(base)) setKey(out, k, v)
  for (const [k, v] of Object.entries(child)) setKey(out, k, Object.hasOwn(base, k) ? deepMerge(base[k], v) : v)
  return out
}

/**
 * `child` over `base`: mappings merge key by key, lists and scalars are replaced. Every node of
 * the result keeps the origin of the file that provided it: the child's where it wrote the path.
 */
export const merge = (base: Tree, child: Tree): Tree => {
  const value = deepMerge(base.value, child.value) as Mapping
  const origins = new Map<string, Origin>()
  walk(value, (_, path) => {
    const key = pathKey(path)
    const origin = child.origins.get(key) ?? base.origins.get(key)
    if (origin !== undefined) origins.set(key, origin)
  })
  return { value, origins }
}
