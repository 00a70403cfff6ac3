import { spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from "node:fs"
import { hostname } from "node:os"
import { join } from "node:path"
import { Effect, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { ArtifactStore, type Executor, Pipeline, RunLog, Stage, StoreMaintenance } from "polaris"
import { allFiles, runOk, tempDir } from "./support/store.ts"
import { makeCounter } from "./support/counter.ts"

/** Stage body executions (and memo computations) by name: the side channel. */
const { count, ran, reset } = makeCounter()

const sha = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")
const memoPath = (root: string, key: string) => join(root, "memo", key.slice(0, 2), `${key}.json`)
const run = <A>(effect: Effect.Effect<A, unknown>) => Effect.runPromise(effect)

const source = Stage.make({
  name: "source",
  version: "1",
  output: Schema.Array(Schema.Number),
  params: Schema.Struct({ n: Schema.Number }),
  run: (_, { n }) => Effect.sync(() => (count("source"), Array.from({ length: n }, (_, i) => i)))
})

const Square = Schema.Struct({ sq: Schema.Number, tag: Schema.String })

/** Squares each item through ctx.memo, so every item has its own memo entry and object. */
const squares = Stage.make({
  name: "squares",
  version: "1",
  inputs: { xs: Schema.Array(Schema.Number) },
  output: Schema.Array(Square),
  params: Schema.Struct({ offset: Schema.Number }),
  run: ({ xs }, { offset }, ctx) =>
    Effect.sync(() => count("squares")).pipe(Effect.andThen(Effect.forEach(xs, (x) =>
      ctx.memo("square", { x, offset }, Square, Effect.sync(() => (count("memo"), { sq: (x + offset) ** 2, tag: "memo" }))))))
})

/** Stores raw (non-JSON) bytes as a blob and puts the BlobRef in its output. */
const weights = Stage.make({
  name: "weights",
  version: "1",
  inputs: { xs: Schema.Array(Schema.Number) },
  output: Schema.Struct({ weights: ArtifactStore.BlobRef, label: Schema.String }),
  params: Schema.Struct({ label: Schema.String }),
  run: ({ xs }, { label }, ctx) =>
    Effect.sync(() => count("weights")).pipe(
      Effect.andThen(ctx.putBlob(Uint8Array.from([0xff, 0x00, ...label.split("").map((c) => c.charCodeAt(0)), ...xs]))),
      Effect.map((ref) => ({ weights: ref, label }))
    )
})

const pipeline = (name: string, offset: number, label: string) =>
  Pipeline.make(name, (p) => {
    const xs = p.node(source, { id: "source", params: { n: 3 } })
    return {
      squares: p.node(squares, { id: "squares", inputs: { xs }, params: { offset } }),
      weights: p.node(weights, { id: "weights", inputs: { xs }, params: { label } })
    }
  })
const alpha = () => pipeline("alpha", 0, "a")
const beta = () => pipeline("beta", 10, "b")

type Run = Executor.RunResult
const nodeKeys = (r: Run) => new Set(Object.values(r.nodes).map((n) => n.key!))
const nodeObjects = (r: Run) => new Set(Object.values(r.nodes).map((n) => n.object!))
const blobOf = (r: Run) => (r.outputs["weights"] as { weights: ArtifactStore.BlobRef }).weights.$blob
/** Memo keys and objects this run recorded as stored. */
const memoStored = (root: string, runId: string) =>
  RunLog.readJsonl(join(root, "runs", runId, "events.jsonl")).then((events) =>
    events.filter((e) => e.type === "memo_stored").map((e) => ({ key: String(e.key), object: String(e.object) })))

/** Every file under the store with its size, mtime and content hash. */
const snapshot = (root: string) =>
  Object.fromEntries(allFiles(root).sort().map((f) => {
    const stat = statSync(f)
    return [f, `${stat.size}:${stat.mtimeMs}:${sha(readFileSync(f))}`]
  }))

const setup = async () => {
  const root = tempDir()
  const paths = ArtifactStore.pathsOf(root)
  reset()
  const a = await runOk(root, alpha(), { runId: "run-a" })
  const b = await runOk(root, beta(), { runId: "run-b" })
  return { root, paths, a, b, memoA: await memoStored(root, "run-a"), memoB: await memoStored(root, "run-b") }
}

describe("StoreMaintenance.list", () => {
  it("summarises runs, objects and indexes", async () => {
    const { root, paths } = await setup()
    mkdirSync(join(root, "runs", "run-c"))
    writeFileSync(join(root, "runs", "run-c", "config.json"), "{}\n")
    const summary = await run(StoreMaintenance.list(paths))
    expect(summary.runs.map(({ id, status, nodes }) => ({ id, status, nodes }))).toEqual([
      { id: "run-a", status: "succeeded", nodes: 3 },
      { id: "run-b", status: "succeeded", nodes: 3 },
      { id: "run-c", status: "incomplete", nodes: 0 }
    ])
    expect(Number.isNaN(Date.parse(summary.runs[0]!.createdAt))).toBe(false)
    const objectFiles = allFiles(paths.objects)
    // source is shared: 5 distinct nodes; 3 memo items per run; objects: 5 outputs + 2 blobs + 6 memo values
    expect(summary.nodes).toBe(5)
    expect(summary.memo).toBe(6)
    expect(summary.objects).toEqual({ count: 13, bytes: objectFiles.reduce((s, f) => s + statSync(f).size, 0) })
    expect(objectFiles).toHaveLength(13)
  })
})

describe("StoreMaintenance.gc", () => {
  it("keeping run A removes exactly B's unique artifacts, keeps A's memo and blob objects", async () => {
    const { root, paths, a, b, memoA, memoB } = await setup()
    const before = snapshot(root)

    const plan = await run(StoreMaintenance.gc(paths, { keepRuns: ["run-a"] }))
    expect(snapshot(root)).toEqual(before) // a dry run (the default) changes nothing on disk
    expect(plan.dryRun).toBe(true)

    const result = await run(StoreMaintenance.gc(paths, { dryRun: false, keepRuns: ["run-a"] }))
    expect(result.removed).toEqual(plan.removed) // the plan is what happens
    expect(result.keptRuns).toEqual(["run-a"])
    expect(result.removedRuns).toEqual(["run-b"])
    expect(existsSync(join(root, "runs", "run-b"))).toBe(false)
    expect(existsSync(join(root, "runs", "run-a", "events.jsonl"))).toBe(true)

    // B's unique: 2 node entries (squares, weights; source is shared), 3 memo entries,
    // 6 objects (2 outputs, 1 blob, 3 memo values).
    const uniqueNodes = [...nodeKeys(b)].filter((k) => !nodeKeys(a).has(k))
    const uniqueObjects = [...nodeObjects(b), blobOf(b), ...memoB.map((m) => m.object)].filter((d) => !nodeObjects(a).has(d))
    expect(uniqueNodes).toHaveLength(2)
    expect(uniqueObjects).toHaveLength(6)
    expect({ nodes: result.removed.nodes.count, memo: result.removed.memo.count, objects: result.removed.objects.count, runs: result.removed.runs.count })
      .toEqual({ nodes: 2, memo: 3, objects: 6, runs: 1 })
    for (const k of uniqueNodes) expect(existsSync(ArtifactStore.nodeEntryPath(paths, k))).toBe(false)
    for (const m of memoB) expect(existsSync(memoPath(root, m.key))).toBe(false)
    for (const d of uniqueObjects) expect(existsSync(ArtifactStore.objectPath(paths, d))).toBe(false)

    // A keeps everything: node entries, node outputs, memo entries and values, the blob.
    expect(memoA).toHaveLength(3)
    for (const k of nodeKeys(a)) expect(existsSync(ArtifactStore.nodeEntryPath(paths, k))).toBe(true)
    for (const m of memoA) expect(existsSync(memoPath(root, m.key))).toBe(true)
    const keptObjects = [...nodeObjects(a), blobOf(a), ...memoA.map((m) => m.object)]
    for (const d of keptObjects) expect(existsSync(ArtifactStore.objectPath(paths, d))).toBe(true)
    expect(allFiles(paths.objects)).toHaveLength(7)
    expect(result.kept.objects.count).toBe(7)
    expect(result.kept.nodes.count).toBe(3)
    expect(result.kept.memo.count).toBe(3)

    // A re-run of A finds everything cached: no stage body runs.
    reset()
    const again = await runOk(root, alpha(), { runId: "run-a2" })
    expect(ran()).toEqual({})
    expect(again.cached).toBe(3)
    // Forcing the memo stage runs its body, but every item is a memo hit: the memo survived gc.
    const forced = await runOk(root, alpha(), { runId: "run-a3", force: ["squares"] })
    expect(ran()).toEqual({ squares: 1 })
    expect(forced.outputs["squares"]).toEqual([0, 1, 4].map((sq) => ({ sq, tag: "memo" })))
  })

  it("without keepRuns keeps every run and removes only orphans, old temp files and dead locks", async () => {
    const { root, paths } = await setup()
    const orphan = await run(ArtifactStore.make(root).put(new TextEncoder().encode("nobody points here")))
    const old = join(paths.tmp, "old.tmp")
    const fresh = join(paths.tmp, "fresh.tmp")
    mkdirSync(paths.tmp, { recursive: true })
    writeFileSync(old, "x".repeat(10))
    writeFileSync(fresh, "y")
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000)
    utimesSync(old, twoHoursAgo, twoHoursAgo)
    const deadPid = spawnSync(process.execPath, ["-e", ""]).pid
    const lock = (name: string, holder: object) => {
      mkdirSync(paths.locks, { recursive: true })
      writeFileSync(join(paths.locks, `${name}.lock`), JSON.stringify(holder))
      return join(paths.locks, `${name}.lock`)
    }
    const dead = lock("dead", { pid: deadPid, host: hostname(), nonce: "n1" })
    const live = lock("live", { pid: process.pid, host: hostname(), nonce: "n2" })
    const remote = lock("remote", { pid: deadPid, host: "another-host", nonce: "n3" })

    const before = snapshot(root)
    const plan = await run(StoreMaintenance.gc(paths))
    expect(snapshot(root)).toEqual(before)
    expect(plan.removedRuns).toEqual([])
    expect(plan.removed.objects).toEqual({ count: 1, bytes: "nobody points here".length })
    expect(plan.removed.tmp).toEqual({ count: 1, bytes: 10 })
    expect(plan.removed.locks.count).toBe(1)
    expect(plan.removed.nodes.count + plan.removed.memo.count).toBe(0)

    const result = await run(StoreMaintenance.gc(paths, { dryRun: false }))
    expect(result.removed).toEqual(plan.removed)
    expect(existsSync(ArtifactStore.objectPath(paths, orphan))).toBe(false)
    expect([existsSync(old), existsSync(fresh)]).toEqual([false, true])
    expect([existsSync(dead), existsSync(live), existsSync(remote)]).toEqual([false, true, true])
    expect(allFiles(paths.objects)).toHaveLength(13)
  })

  it("refuses an unknown run in keepRuns before touching anything", async () => {
    const { root, paths } = await setup()
    const before = snapshot(root)
    const exit = await Effect.runPromiseExit(StoreMaintenance.gc(paths, { dryRun: false, keepRuns: ["run-a", "run-typo"] }))
    expect(exit._tag).toBe("Failure")
    expect(String(exit._tag === "Failure" ? exit.cause : "")).toContain("run-typo")
    expect(snapshot(root)).toEqual(before)
  })
})

describe("StoreMaintenance.verify", () => {
  it("reports exactly the object with a flipped byte; repair moves it to corrupt/ and the node recomputes", async () => {
    const root = tempDir()
    const paths = ArtifactStore.pathsOf(root)
    const a = await runOk(root, alpha(), { runId: "run-a" })
    // A multi-chunk object: a streamed hash that dropped or reordered chunks would call it corrupt.
    const big = Uint8Array.from({ length: 3 * (1 << 20) + 17 }, (_, i) => (i * 7919) % 251)
    await run(ArtifactStore.make(root).put(big))
    const files = allFiles(paths.objects)
    const totalBytes = files.reduce((s, f) => s + statSync(f).size, 0)

    expect(await run(StoreMaintenance.verify(paths))).toEqual({ checked: files.length, bytes: totalBytes, corrupt: [] })

    const target = a.nodes["source"]!.object!
    const path = ArtifactStore.objectPath(paths, target)
    chmodSync(path, 0o644)
    const bytes = readFileSync(path)
    bytes[0] = bytes[0]! ^ 0x01
    writeFileSync(path, bytes)

    expect(await run(StoreMaintenance.verify(paths))).toEqual({ checked: files.length, bytes: totalBytes, corrupt: [target] })
    expect(existsSync(path)).toBe(true) // without repair nothing moves

    const repaired = await run(StoreMaintenance.verify(paths, { repair: true }))
    expect(repaired.corrupt).toEqual([target])
    expect(existsSync(path)).toBe(false)
    const moved = readdirSync(paths.corrupt)
    expect(moved).toHaveLength(1)
    expect(moved[0]!.startsWith(`${target}.`)).toBe(true)
    expect(readFileSync(join(paths.corrupt, moved[0]!))).toEqual(bytes)

    expect((await run(StoreMaintenance.verify(paths))).corrupt).toEqual([])
    reset()
    const rerun = await runOk(root, alpha(), { runId: "run-a2" })
    expect(ran()).toEqual({ source: 1 }) // same bytes again: its descendants stay cached
    expect(rerun.nodes["source"]!.object).toBe(target)
  })
})
