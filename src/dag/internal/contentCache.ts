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

/** The value of `compute()` under `key` (text or bytes the value is a function of), read back from disk when present. */
export const cached = <A>(kind: string, key: ReadonlyArray<string | Uint8Array>, compute: () => A): A => {
  const dir = join(ROOT, kind)
  const file = join(dir, `${sha256(Buffer.concat(key.map((k) => (typeof k === "string" ? Buffer.from(`${k}\0`) : k))))}.json`)
  try {
    return (JSON.parse(readFileSync(file, "utf8")) as { readonly value: A }).value
  } catch {
    // not computed yet, or cut short by a crash
  }
  const value = compute()
  try {
    mkdirSync(dir, { recursive: true })
    const tmp = `${file}.${process.pid}.tmp`
    writeFileSync(tmp, JSON.stringify({ value }))
    renameSync(tmp, file)
  } catch {
    // a read-only installation
  }
  return value
}
