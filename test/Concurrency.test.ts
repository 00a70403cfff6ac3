/**
 * Two processes run the same pipeline on one store at the same time: both succeed, the store
 * stays consistent, and every node and memoized item is computed exactly once between them.
 */
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { ArtifactStore, CacheKey, StoreMaintenance } from "polaris"
import { Effect } from "effect"
import { readSide, resultOf, startFixture } from "./support/child.ts"
import { tempDir } from "./support/store.ts"

describe("two processes on one store", () => {
  it("both succeed and each key is computed once", async () => {
    const dir = tempDir()
    const store = join(dir, "store")
    const side = join(dir, "side.log")
    const [a, b] = await Promise.all([startFixture(store, side, "a").done, startFixture(store, side, "b").done])
    expect(a.code, a.stderr).toBe(0)
    expect(b.code, b.stderr).toBe(0)

    const records = readSide(side)
    const nodeRuns = new Map<string, number>()
    const memoRuns = new Map<string, number>()
    for (const r of records) {
      if (r.kind === "node") nodeRuns.set(r.key, (nodeRuns.get(r.key) ?? 0) + 1)
      else {
        const key = CacheKey.memoKey(r.stage, r.version, r.namespace, r.key)
        memoRuns.set(key, (memoRuns.get(key) ?? 0) + 1)
      }
    }
    expect(nodeRuns.size).toBe(1 + 1 + 5 * 3) // items, init, and 3 nodes per step
    expect([...nodeRuns.values()].every((n) => n === 1)).toBe(true)
    expect(memoRuns.size).toBe(48 * 5)
    expect([...memoRuns.values()].every((n) => n === 1)).toBe(true)

    // Both processes really ran: between them they executed everything once and cached the rest.
    const ra = resultOf(a.stdout)
    const rb = resultOf(b.stdout)
    expect(ra.executed + rb.executed).toBe(17)
    expect(ra.executed + ra.cached).toBe(17)
    expect(rb.executed + rb.cached).toBe(17)

    const report = await Effect.runPromise(StoreMaintenance.verify(ArtifactStore.pathsOf(store)))
    expect(report.corrupt).toEqual([])
  }, 120_000)
})
