/**
 * A file or folder a stage reads, given in its params: where it is (`$path`, for the stage to
 * read) and the digest of what is there (for the key). A node key takes the digest alone
 * (CacheKey.components drops every `$path`), so the same files in another checkout, another
 * folder or on another machine key the same, and new bytes at the same path key anew.
 *
 * @example
 * b.node(splitStories, { id: "split-stories", params: { sources: paths.map(Location.of) } })
 * // in the stage: ingest(sources.map((s) => s.$path))
 */
import { readdirSync, readFileSync, statSync } from "node:fs"
import { join, relative, resolve, sep } from "node:path"
import { Schema } from "effect"
import { sha256 } from "./Canonical.ts"
import { keep, lookup } from "./internal/contentCache.ts"

export const Location = Schema.Struct({ $path: Schema.String, digest: Schema.String })
export type Location = typeof Location.Type

/** Every regular file under `dir`, recursively, as sorted `/`-separated relative paths. */
export const filesUnder = (dir: string): Array<string> => {
  const walk = (d: string): Array<string> =>
    readdirSync(d, { withFileTypes: true }).flatMap((e) => {
      const path = join(d, e.name)
      return e.isDirectory() ? walk(path) : e.isFile() ? [relative(dir, path).split(sep).join("/")] : []
    })
  return walk(dir).sort()
}

/**
 * A file's digest is remembered by the file's identity on disk (device, inode, size, change and
 * modification times in nanoseconds), as git's index and Bazel's digest cache do: new bytes
 * change the change time at least, so every command need not re-hash a model and a corpus
 * (10 MB: ~20 ms, a tenth of a `validate`). A file written within RACY_MS of its hashing is
 * not remembered (git's "racy clean" case: a second write in the same clock tick would keep
 * every stamp): it is hashed again next time.
 */
export const RACY_MS = 2_000

/** sha256 of the file at `path`; `now` (ms since the epoch) decides what is old enough to remember. */
export const fileDigest = (path: string, now: number = Date.now()): string => {
  const s = statSync(path, { bigint: true })
  const identity = [resolve(path), String(s.dev), String(s.ino), String(s.size), String(s.mtimeNs), String(s.ctimeNs)]
  const known = lookup<string>("file-digests", identity)
  if (known !== undefined) return known.value
  const digest = sha256(readFileSync(path))
  if (Number(s.ctimeNs / 1_000_000n) < now - RACY_MS && Number(s.mtimeNs / 1_000_000n) < now - RACY_MS) keep("file-digests", identity, digest)
  return digest
}

/**
 * sha256 of a file's bytes, or of a folder's files (each relative name, then its bytes, in
 * name order, recursively): what a stage reading `path` would read.
 */
export const contentDigest = (path: string): string => {
  if (!statSync(path).isDirectory()) return fileDigest(path)
  const entries = filesUnder(path)
  return sha256(entries.map((name) => `${name}\0${fileDigest(join(path, name))}`).join("\n"))
}

/** The location of `path` with the digest of its content now. */
export const of = (path: string): Location => ({ $path: path, digest: contentDigest(path) })

/** `value` with every `$path` left out (what a key hashes). */
export const withoutPaths = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map(withoutPaths)
  if (value === null || typeof value !== "object" || Object.getPrototypeOf(value) !== Object.prototype) return value
  return Object.fromEntries(Object.entries(value).filter(([k]) => k !== "$path").map(([k, v]) => [k, withoutPaths(v)]))
}
