/**
 * Source fingerprints: a stage's cache key includes a hash of the module that defines it, so
 * editing a stage re-runs it (and, by early cutoff, nothing else unless its output changes).
 */
import { existsSync, readFileSync } from "node:fs"
import { dirname, join, resolve, sep } from "node:path"
import { fileURLToPath } from "node:url"
import { sha256 } from "./Canonical.ts"

/** Normalises a `file://` URL or a path to an absolute path. */
export const toPath = (source: string): string => (source.startsWith("file:") ? fileURLToPath(source) : source)

// A stack frame's file, without the query string watch mode adds to re-import a changed module.
const THIS_FILE = fileURLToPath(import.meta.url)

const FRAME = /\(?((?:file:\/\/)?\/[^():?]+\.[cm]?[jt]sx?)(?:\?[^:)]*)?:\d+:\d+\)?\s*$/

/**
 * The file of the first stack frame outside `exclude`: where `Stage.make` was called from.
 * Stage authors never pass `import.meta.url` by hand, but may, to be explicit.
 */
export const callerFile = (exclude: ReadonlyArray<string>): string | undefined => {
  const stack = new Error().stack?.split("\n").slice(1) ?? []
  for (const line of stack) {
    const m = FRAME.exec(line)
    if (m === null) continue
    const file = toPath(m[1]!)
    if (file === THIS_FILE || exclude.includes(file) || file.includes("/node_modules/")) continue
    return file
  }
  return undefined
}

// Relative module specifiers in import / export-from / dynamic import statements.
const RELATIVE_IMPORT = /(?:\bfrom\s*|\bimport\s*\(?\s*)["'](\.{1,2}\/[^"']+)["']/g

const SRC = dirname(THIS_FILE)

/**
 * The framework's own modules (the engine in `src/`, its CLI, recipe loader and internals) are
 * not part of a stage's fingerprint: upgrading polaris must not invalidate a 160-step run.
 * Domain code (`src/data`, `src/text`, `src/engines`...) and every user module are.
 */
const isFramework = (file: string): boolean => {
  const dir = dirname(file)
  return dir === SRC || [join(SRC, "cli"), join(SRC, "recipe"), join(SRC, "internal")].some((d) => dir === d || dir.startsWith(d + sep))
}

/** The modules `file` imports by relative path, resolved (only those that exist). */
const relativeImports = (file: string, text: string): Array<string> =>
  Array.from(text.matchAll(RELATIVE_IMPORT), (m) => resolve(dirname(file), m[1]!)).filter((f) => existsSync(f))

/**
 * A stage's source fingerprint: sha256 over its module and, transitively, the modules it imports
 * by relative path (framework modules excepted). Editing a helper a stage calls re-runs the
 * stage. Only bytes enter, never paths, so a moved checkout keeps its cache. Memoised in
 * `cache` (one read per file per run).
 */
export const fingerprintFile = (path: string, cache: Map<string, string>): string => {
  let fp = cache.get(path)
  if (fp !== undefined) return fp
  const seen = new Set<string>([path])
  const digests: Array<string> = []
  const queue = [path]
  for (let file = queue.pop(); file !== undefined; file = queue.pop()) {
    const bytes = readFileSync(file)
    if (file !== path) digests.push(sha256(bytes))
    for (const dep of relativeImports(file, bytes.toString("utf8"))) {
      if (!seen.has(dep) && !isFramework(dep)) {
        seen.add(dep)
        queue.push(dep)
      }
    }
  }
  fp = digests.length === 0 ? sha256(readFileSync(path)) : sha256([sha256(readFileSync(path)), ...digests.sort()].join("\n"))
  cache.set(path, fp)
  return fp
}
