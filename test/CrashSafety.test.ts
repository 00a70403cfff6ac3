/**
 * Crash safety, for real: the fixture pipeline runs in a child process that is killed with
 * SIGKILL at 20 random moments, then resumed each time. The final artifacts must be
 * byte-identical to an uninterrupted run, and no node or memoized item whose result had been
 * stored before a kill may execute again after it.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { ArtifactStore, CacheKey, Canonical } from "polaris"
import { indexKeys, readSide, startFixture } from "./support/child.ts"
import { tempDir } from "./support/store.ts"

const KILLS = 20

/** A small deterministic PRNG so the kill moments are random but reproducible. */
const lcg = (seed: number) => () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31)

const memoKeyOf = (r: Record<string, any>) => CacheKey.memoKey(r.stage, r.version, r.namespace, r.key)

const tempFiles = (store: string) => (existsSync(join(store, "tmp")) ? readdirSync(join(store, "tmp")).length : 0)

const manifestObjects = (store: string, runId: string): Record<string, string> => {
  const manifest = JSON.parse(readFileSync(join(store, "runs", runId, "manifest.json"), "utf8"))
  return Object.fromEntries(Object.entries(manifest.nodes as Record<string, { object: string }>).map(([id, n]) => [id, n.object]))
}

describe("crash safety", () => {
  it(`resumes after ${KILLS} SIGKILLs to byte-identical artifacts without repeating finished work`, async () => {
    const reference = tempDir()
    const ref = await startFixture(join(reference, "store"), join(reference, "side.log"), "ref", { POLARIS_RUN_ID: "ref" }).done
    expect(ref.code, ref.stderr).toBe(0)

    const dir = tempDir()
    const store = join(dir, "store")
    const side = join(dir, "side.log")
    const records = () => readSide(side)
    const random = lcg(20261123)
    const stored: Array<{ nodes: Set<string>; memo: Set<string> }> = []
    let killedMidRun = 0
    let killedMidWrite = 0
    let tempsBefore = 0
    for (let attempt = 0; attempt < KILLS; attempt++) {
      const run = startFixture(store, side, String(attempt), { POLARIS_RUN_ID: "crashy" })
      // A random moment in the run: after start-up, up to 0.4 s in (an uninterrupted run takes ~4 s).
      const delay = random() * 400
      let timer: NodeJS.Timeout | undefined
      void run.ready.then(() => (timer = setTimeout(() => run.child.kill("SIGKILL"), delay)))
      const result = await run.done
      clearTimeout(timer)
      if (result.signal === "SIGKILL") killedMidRun++
      else expect(result.code, result.stderr).toBe(0)
      stored.push({ nodes: indexKeys(store, "nodes"), memo: indexKeys(store, "memo") })
      // A temp file left behind means the kill landed inside an atomic write.
      if (result.signal === "SIGKILL" && tempFiles(store) > tempsBefore) killedMidWrite++
      tempsBefore = tempFiles(store)
    }
    const last = startFixture(store, side, String(KILLS), { POLARIS_RUN_ID: "crashy" })
    const guard = setTimeout(() => last.child.kill("SIGKILL"), 60_000)
    const final = await last.done
    clearTimeout(guard)
    expect(final.code, final.stderr).toBe(0)

    console.log(`crash test: ${killedMidRun}/${KILLS} kills interrupted the run, ${killedMidWrite} inside a write; ` +
      `${records().filter((r) => r.kind === "memo").length} memo executions for ${48 * 5} items`)
    // Most kills must have interrupted real work, or the test proves little.
    expect(killedMidRun).toBeGreaterThanOrEqual(15)

    // Byte-identical: every node's output object is the same digest as in the uninterrupted run,
    // and that object's bytes hash to it.
    const expected = manifestObjects(join(reference, "store"), "ref")
    const actual = manifestObjects(store, "crashy")
    expect(actual).toEqual(expected)
    const check = ArtifactStore.make(store)
    for (const digest of Object.values(actual)) {
      expect(Canonical.sha256(readFileSync(ArtifactStore.objectPath(check.paths, digest)))).toBe(digest)
    }
    expect(readFileSync(ArtifactStore.objectPath(check.paths, actual["train/step-004/update"]!))).toEqual(
      readFileSync(ArtifactStore.objectPath(ArtifactStore.make(join(reference, "store")).paths, expected["train/step-004/update"]!))
    )

    // No repeated work: an execution in attempt k never concerns a key already stored after attempt k-1.
    for (const r of records()) {
      const attempt = Number(r.label)
      if (attempt === 0) continue
      const before = stored[attempt - 1]!
      if (r.kind === "memo") expect(before.memo.has(memoKeyOf(r)), `memo item ${JSON.stringify(r.key)} re-executed in attempt ${attempt}`).toBe(false)
      else expect(before.nodes.has(r.key), `node ${r.node} re-executed in attempt ${attempt}`).toBe(false)
    }
    // And overall: every memo item ran at least once; re-runs only for items a kill cut short.
    const memoRuns = records().filter((r) => r.kind === "memo")
    const unique = new Set(memoRuns.map(memoKeyOf))
    expect(unique.size).toBe(48 * 5)
    const refRuns = readSide(join(reference, "side.log")).filter((r) => r.kind === "memo").length
    expect(refRuns).toBe(48 * 5)
  }, 180_000)
})
