/**
 * Source fingerprints: a stage's cache key includes a hash of the module that defines it, so
 * editing a stage re-runs it (and, by early cutoff, nothing else unless its output changes).
 */
import { readFileSync } from "node:fs"
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

/** sha256 of a source file's bytes, memoised in `cache` (one read per file per run). */
export const fingerprintFile = (path: string, cache: Map<string, string>): string => {
  let fp = cache.get(path)
  if (fp === undefined) {
    fp = sha256(readFileSync(path))
    cache.set(path, fp)
  }
  return fp
}
