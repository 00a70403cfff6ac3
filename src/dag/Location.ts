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
 * Digests of files are remembered by the files' identities on disk (device, inode, size, change
 * and modification times in nanoseconds), as git's index and Bazel's digest cache do: new bytes
 * change the change time at least, so every command need not re-hash a model and a corpus
 * (10 MB: ~20 ms, a tenth of a `validate`). A file written within RACY_MS of its reading is not
 * remembered (git's "racy clean" case: a second write in the same clock tick would keep every
 * stamp, and a write just after the bytes were read would pair them with the new stamps): it is
 * read again next time.
 */
export const RACY_MS = 2_000

/** What is remembered under the identities of some files, and how to remember a value there. */
export interface Remembered<A> {
  readonly known: { readonly value: A } | undefined
  /** Keeps `value` unless a file is too recent to be trusted (RACY_MS). */
  readonly keep: (value: A) => void
}

/**
 * The value remembered under `kind` for the files as they are now: a value that depends on the
 * bytes of `files` (read after this call, or just before it) and on `also` (the other things it
 * is a function of: parameters, a code fingerprint), nothing else. `now` (ms since the epoch)
 * decides which files are old enough to remember.
 */
export const remembered = <A>(
  kind: string,
  files: ReadonlyArray<string>,
  options: { readonly also?: ReadonlyArray<string>; readonly now?: number } = {}
): Remembered<A> => {
  const now = options.now ?? Date.now()
  const stats = files.map((f) => statSync(f, { bigint: true }))
  const identity = [
    ...(options.also ?? []),
    ...stats.flatMap((s, i) => [resolve(files[i]!), String(s.dev), String(s.ino), String(s.size), String(s.mtimeNs), String(s.ctimeNs)])
  ]
  const settled = (ns: bigint) => Number(ns / 1_000_000n) < now - RACY_MS
  return {
    known: lookup<A>(kind, identity),
    keep: (value) => {
      if (stats.every((s) => settled(s.ctimeNs) && settled(s.mtimeNs))) keep(kind, identity, value)
    }
  }
}

/** `compute()`, remembered by the identities of `files` as `remembered` does. */
export const byFileIdentity = <A>(kind: string, files: ReadonlyArray<string>, compute: () => A, options: { readonly also?: ReadonlyArray<string>; readonly now?: number } = {}): A => {
  const memo = remembered<A>(kind, files, options)
  if (memo.known !== undefined) return memo.known.value
  const value = compute()
  memo.keep(value)
  return value
}

/** sha256 of the file at `path`, remembered by its identity (`byFileIdentity`). */
export const fileDigest = (path: string, now?: number): string =>
  byFileIdentity("file-digests", [path], () => sha256(readFileSync(path)), now === undefined ? {} : { now })

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
