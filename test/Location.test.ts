/**
 * A location's digest: sha256 of what a stage reading the path reads (a file's bytes; a folder's
 * names and bytes), remembered by the file's identity on disk only once the file is old enough
 * that a write in the same clock tick cannot hide behind the same stamps.
 */
import { createHash } from "node:crypto"
import { mkdirSync, statSync, utimesSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { describe, expect, it } from "vitest"
import * as Location from "../src/dag/Location.ts"
import { lookup } from "../src/dag/internal/contentCache.ts"
import { tempDir } from "./support/store.ts"

const sha = (bytes: string | Buffer) => createHash("sha256").update(bytes).digest("hex")

/** The cache entry `fileDigest` would read for `path` as it is now. */
const remembered = (path: string) => {
  const s = statSync(path, { bigint: true })
  return lookup<string>("file-digests", [resolve(path), String(s.dev), String(s.ino), String(s.size), String(s.mtimeNs), String(s.ctimeNs)])?.value
}

describe("Location digests", () => {
  it("hash a file's bytes, and a folder's relative names and bytes in name order", () => {
    const dir = tempDir("location-")
    mkdirSync(join(dir, "b"))
    writeFileSync(join(dir, "a.txt"), "alpha")
    writeFileSync(join(dir, "b", "c.txt"), "gamma")
    expect(Location.contentDigest(join(dir, "a.txt"))).toBe(sha("alpha"))
    expect(Location.of(dir)).toEqual({ $path: dir, digest: sha(`a.txt\0${sha("alpha")}\nb/c.txt\0${sha("gamma")}`) })
  })

  it("remember a file's digest only when it is older than the racy window, and never across new bytes", () => {
    const dir = tempDir("location-")
    const file = join(dir, "weights.bin")
    writeFileSync(file, "one")
    // Just written: hashed, not remembered.
    expect(Location.fileDigest(file)).toBe(sha("one"))
    expect(remembered(file)).toBeUndefined()
    // Later (the clock moved past the window): remembered under the file's identity.
    const later = Date.now() + Location.RACY_MS + 1_000
    expect(Location.fileDigest(file, later)).toBe(sha("one"))
    expect(remembered(file)).toBe(sha("one"))
    // New bytes of the same size, the modification time put back: the change time moved, so the
    // identity is new and the bytes are hashed again.
    // (Written again until the change time differs: the kernel's clock ticks every few ms, and
    // inside one tick the stamps would stay; RACY_MS is there for that case.)
    const { atime, mtime } = statSync(file)
    const before = statSync(file, { bigint: true }).ctimeNs
    do {
      writeFileSync(file, "two")
      utimesSync(file, atime, mtime)
    } while (statSync(file, { bigint: true }).ctimeNs === before)
    expect(Math.round(statSync(file).mtimeMs)).toBe(mtime.getTime())
    expect(Location.fileDigest(file, later + 10_000)).toBe(sha("two"))
  })
})
