/**
 * Stored folders (src/dag/Tree.ts): a folder's identity is its content, wherever it lies; the
 * laid-out copy is verified before use; it leaves the store with `exportTo`; and a stage output
 * holding a `$tree` keeps the tree's files through `gc`.
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { ArtifactStore, Pipeline, Stage, StoreMaintenance } from "polaris"
import * as Tree from "../src/dag/Tree.ts"
import { runOk, tempDir } from "./support/store.ts"

/** A checkpoint-like folder: two files and one in a subfolder. */
const folder = (at: string, weights = "weights-v1") => {
  mkdirSync(join(at, "onnx"), { recursive: true })
  writeFileSync(join(at, "config.json"), '{"d_model":8}\n')
  writeFileSync(join(at, "model.safetensors"), weights)
  writeFileSync(join(at, "onnx", "model.onnx"), "graph")
  return at
}

describe("Tree", () => {
  it.effect("the same files in two places are one tree; other bytes are another", () =>
    Effect.gen(function*() {
      const store = ArtifactStore.make(tempDir())
      const a = yield* Tree.put(store, folder(join(tempDir(), "here")))
      const b = yield* Tree.put(store, folder(join(tempDir(), "there", "deeper")))
      expect(b).toEqual(a)
      expect(a.bytes).toBe('{"d_model":8}\n'.length + "weights-v1".length + "graph".length)
      const c = yield* Tree.put(store, folder(join(tempDir(), "other"), "weights-v2"))
      expect(c.$tree).not.toBe(a.$tree)
      // The manifest names each file by relative path and blob: nothing of where the folder was.
      const manifest = new TextDecoder().decode(yield* store.get(a.$tree))
      expect(JSON.parse(manifest)).toEqual({
        files: {
          "config.json": { $blob: expect.stringMatching(/^[0-9a-f]{64}$/), bytes: 14 },
          "model.safetensors": { $blob: expect.stringMatching(/^[0-9a-f]{64}$/), bytes: 10 },
          "onnx/model.onnx": { $blob: expect.stringMatching(/^[0-9a-f]{64}$/), bytes: 5 }
        }
      })
      expect(manifest).not.toContain("here")
    }))

  it.effect("put with move: the folder becomes the laid-out copy, used as it is; where a copy exists the folder is dropped", () =>
    Effect.gen(function*() {
      const root = tempDir()
      const counted = ArtifactStore.make(root)
      let reads = 0
      const store = { ...counted, get: (digest: string) => Effect.tap(counted.get(digest), () => Effect.sync(() => void reads++)) }
      const src = folder(join(tempDir(), "saved"))
      const ref = yield* Tree.put(store, src, { move: true })
      expect(existsSync(src)).toBe(false)
      const dir = yield* Tree.materialize(store, ref)
      expect(dir).toBe(join(root, "trees", ref.$tree))
      expect(reads).toBe(0) // nothing read back, nothing re-hashed
      expect(readFileSync(join(dir, "onnx", "model.onnx"), "utf8")).toBe("graph")
      expect(statSync(join(dir, "onnx", "model.onnx")).mode & 0o777).toBe(0o444) // read-only, as laid-out copies are
      // Its files are the objects themselves (linked, not copied), which verify like any object.
      const manifest = JSON.parse(new TextDecoder().decode(yield* counted.get(ref.$tree))) as Tree.Manifest
      const weights = ArtifactStore.objectPath(counted.paths, manifest.files["model.safetensors"]!.$blob)
      expect(statSync(weights).ino).toBe(statSync(join(dir, "model.safetensors")).ino)
      expect(statSync(weights).mode & 0o777).toBe(0o444)
      expect(new TextDecoder().decode(yield* counted.get(manifest.files["model.safetensors"]!.$blob))).toBe("weights-v1")
      // The same bytes saved again: the copy in place stays, the new folder goes.
      const again = folder(join(tempDir(), "saved-again"))
      expect(yield* Tree.put(store, again, { move: true })).toEqual(ref)
      expect(existsSync(again)).toBe(false)
      // Another run (store handle) checks the moved copy against the manifest like any other.
      expect(yield* Tree.materialize(ArtifactStore.make(root), ref)).toBe(dir)
    }))

  it.effect("a moved tree's file damaged in place is damage to its object: caught by the hash, never used", () =>
    Effect.gen(function*() {
      const root = tempDir()
      const ref = yield* Tree.put(ArtifactStore.make(root), folder(join(tempDir(), "saved")), { move: true })
      const file = join(root, "trees", ref.$tree, "model.safetensors")
      chmodSync(file, 0o644)
      writeFileSync(file, "tampered!!") // the same length, written in place
      const failed = yield* Effect.flip(Tree.materialize(ArtifactStore.make(root), ref))
      expect(failed.message).toMatch(/corrupt|does not match/i)
    }))

  it.effect("concurrent lay-outs of one tree share one: its files are read once", () =>
    Effect.gen(function*() {
      const root = tempDir()
      const counted = ArtifactStore.make(root)
      const reads = new Map<string, number>()
      const store = { ...counted, get: (digest: string) => Effect.tap(counted.get(digest), () => Effect.sync(() => void reads.set(digest, (reads.get(digest) ?? 0) + 1))) }
      const ref = yield* Tree.put(store, folder(join(tempDir(), "src")))
      const dirs = yield* Effect.all(Array.from({ length: 16 }, () => Tree.materialize(store, ref)), { concurrency: "unbounded" })
      expect(new Set(dirs)).toEqual(new Set([join(root, "trees", ref.$tree)]))
      expect([...reads.values()]).toEqual([1, 1, 1, 1]) // the manifest and its three files, once each
    }))

  it.effect("lays a tree out read-only, and lays it out again when the copy no longer matches", () =>
    Effect.gen(function*() {
      const root = tempDir()
      const store = ArtifactStore.make(root)
      const ref = yield* Tree.put(store, folder(join(tempDir(), "src")))
      const dir = yield* Tree.materialize(store, ref)
      expect(dir).toBe(join(root, "trees", ref.$tree))
      expect(readFileSync(join(dir, "onnx", "model.onnx"), "utf8")).toBe("graph")
      // The next run (another store handle) finds a damaged copy: it lays the tree out again.
      const file = join(dir, "model.safetensors")
      chmodSync(file, 0o644)
      writeFileSync(file, "tampered!!")
      const again = yield* Tree.materialize(ArtifactStore.make(root), ref)
      expect(again).toBe(dir)
      expect(readFileSync(file, "utf8")).toBe("weights-v1")
    }))

  it.effect("exports a tree by a digest prefix into a new folder, and refuses a non-empty one", () =>
    Effect.gen(function*() {
      const store = ArtifactStore.make(tempDir())
      const ref = yield* Tree.put(store, folder(join(tempDir(), "src")))
      const out = join(tempDir(), "exported")
      const exported = yield* Tree.exportTo(store, ref.$tree.slice(0, 10), out)
      expect(exported).toEqual(ref)
      expect(readdirSync(out).sort()).toEqual(["config.json", "model.safetensors", "onnx"])
      expect(readFileSync(join(out, "model.safetensors"), "utf8")).toBe("weights-v1")
      const again = yield* Effect.flip(Tree.exportTo(store, ref.$tree, out))
      expect(again.message).toContain("not empty")
      const missing = yield* Effect.flip(Tree.exportTo(store, "00000000", join(tempDir(), "x")))
      expect(missing.message).toContain("no object 00000000")
    }))

  it("gc keeps the files of a tree a kept run's output holds, and removes those of a tree no run reaches", async () => {
    const root = tempDir()
    const kept = folder(join(tempDir(), "kept"))
    const dropped = folder(join(tempDir(), "dropped"), "weights-unreached")
    const save = Stage.make({
      name: "save-folder",
      version: "1",
      params: Schema.Struct({ dir: Schema.String }),
      output: Schema.Struct({ checkpoint: Tree.TreeRef }),
      run: (_, { dir }, ctx) => Effect.map(ctx.putTree(dir), (checkpoint) => ({ checkpoint }))
    })
    const result = await runOk(root, Pipeline.make("trees", (b) => ({ out: b.node(save, { id: "save", params: { dir: kept } }) })))
    const store = ArtifactStore.make(root)
    const unreached = await Effect.runPromise(Tree.put(store, dropped))
    const ref0 = (result.outputs.out as { checkpoint: Tree.TreeRef }).checkpoint
    // Both laid out; and a scratch checkpoint a killed run left in tmp/ two hours ago.
    const laidKept = await Effect.runPromise(Tree.materialize(store, ref0))
    const laidGone = await Effect.runPromise(Tree.materialize(store, unreached))
    const scratch = folder(join(root, "tmp", "checkpoints", "step-0003-abc"))
    const old = new Date(Date.now() - 2 * 3600_000)
    for (const f of ["config.json", "model.safetensors", "onnx/model.onnx", "onnx", ""]) utimesSync(join(scratch, f), old, old)
    const paths = ArtifactStore.pathsOf(root)
    const gc = await Effect.runPromise(StoreMaintenance.gc(paths, { dryRun: false }))
    expect(gc.removed.objects.count).toBe(2) // the unreached manifest and its distinct weights (config and onnx are shared)
    expect(gc.removed.folders.count).toBe(2)
    expect(existsSync(laidKept)).toBe(true)
    expect(existsSync(laidGone)).toBe(false)
    expect(existsSync(scratch)).toBe(false)
    const out = join(tempDir(), "after-gc")
    const ref = (result.outputs.out as { checkpoint: Tree.TreeRef }).checkpoint
    await Effect.runPromise(Tree.exportTo(store, ref.$tree, out))
    expect(readFileSync(join(out, "model.safetensors"), "utf8")).toBe("weights-v1")
    const gone = await Effect.runPromise(Effect.flip(Tree.exportTo(store, unreached.$tree, join(tempDir(), "y"))))
    expect(gone.message).toContain("no object")
  })
})
