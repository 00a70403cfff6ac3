/**
 * A cache on disk of values that are a pure function of their key (a transpiled module by its
 * bytes and the transpiler's version): kept under `node_modules/.cache/polaris/<kind>/`, one
 * file per key, written whole through a rename. A missing, unreadable or unwritable cache only
 * costs the computation, so callers never see it fail.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { sha256 } from "../Canonical.ts"

const ROOT = join(import.meta.dirname, "..", "..", "..", "node_modules", ".cache", "polaris")

type Key = ReadonlyArray<string | Uint8Array>

const fileOf = (kind: string, key: Key) =>
  join(ROOT, kind, `${sha256(Buffer.concat(key.map((k) => (typeof k === "string" ? Buffer.from(`${k}\0`) : k))))}.json`)

/** The value kept under `key`, if any. */
export const lookup = <A>(kind: string, key: Key): { readonly value: A } | undefined => {
  try {
    return JSON.parse(readFileSync(fileOf(kind, key), "utf8")) as { readonly value: A }
  } catch {
    return undefined // not computed yet, or cut short by a crash
  }
}

/** Keeps `value` under `key`. */
export const keep = <A>(kind: string, key: Key, value: A): void => {
  const file = fileOf(kind, key)
  try {
    mkdirSync(join(ROOT, kind), { recursive: true })
    const tmp = `${file}.${process.pid}.tmp`
    writeFileSync(tmp, JSON.stringify({ value }))
    renameSync(tmp, file)
  } catch {
    // a read-only installation
  }
}

/** The value of `compute()` under `key` (text or bytes the value is a function of), read back from disk when present. */
export const cached = <A>(kind: string, key: Key, compute: () => A): A => {
  const found = lookup<A>(kind, key)
  if (found !== undefined) return found.value
  const value = compute()
  keep(kind, key, value)
  return value
}
