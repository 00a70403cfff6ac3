/**
 * Store maintenance: what the store holds (`list`), whether its objects are intact (`verify`)
 * and removing what the kept runs can no longer reach (`gc`). These are the bodies of the
 * `polaris cache ...` commands; they take the store's directories (`ArtifactStore.pathsOf`).
 *
 * Reachability, for `gc`: a kept run names node keys and memo keys in its event log and
 * manifest; node entries name their object and the memo keys their stage used; memo entries
 * name their object; an object that is JSON names the blobs (`{ "$blob": digest }`) inside it.
 *
 * A run in flight may have stored objects that no log names yet, so `gc` (unless a dry run)
 * first takes the store's gc lock, which runs starting meanwhile wait for, and refuses with
 * StoreInUse while a live run lock exists (KeyLock: runs hold one for their whole life).
 */
import { createHash } from "node:crypto"
import { createReadStream, type Dirent } from "node:fs"
import * as fs from "node:fs/promises"
import { join } from "node:path"
import { Data, Effect, Option, References, Schema } from "effect"
import { make as makeStore, objectPath, StoreError, type StorePaths } from "./ArtifactStore.ts"
import { readIfExists } from "./internal/files.ts"
import * as KeyLock from "./KeyLock.ts"
import * as RunLog from "./RunLog.ts"

/** `gc` refused to delete: these runs still hold their run locks, so they may be writing. */
export class StoreInUse extends Data.TaggedError("StoreInUse")<{
  readonly store: string
  readonly runs: ReadonlyArray<{ readonly runId: string; readonly pid: number | undefined; readonly host: string | undefined }>
}> {
  override get message() {
    const runs = this.runs.map((r) => `run ${r.runId} (pid ${r.pid ?? "?"} on ${r.host ?? "?"})`).join(", ")
    const one = this.runs.length === 1
    return `cache gc refused: ${runs} ${one ? "is" : "are"} still writing to the store ${this.store}; run gc again when ${one ? "it has" : "they have"} finished`
  }
}

/** How many files and how many bytes. */
export interface Tally { readonly count: number; readonly bytes: number }

/** One run, as `list` shows it. `incomplete`: the run left no readable manifest. */
export interface RunSummary {
  readonly id: string
  readonly status: RunLog.Manifest["status"] | "incomplete"
  readonly nodes: number
  readonly createdAt: string
}

/** What the store holds. */
export interface StoreSummary {
  readonly runs: ReadonlyArray<RunSummary>
  readonly objects: Tally
  readonly nodes: number
  readonly memo: number
}

/** Outcome of `verify`: objects re-hashed, their bytes, and the digests whose bytes disagree. */
export interface VerifyResult {
  readonly checked: number
  readonly bytes: number
  readonly corrupt: ReadonlyArray<string>
}

/** Options of `gc`. */
export interface GcOptions {
  /** Only report what would be removed (default true: removing is asked for explicitly). */
  readonly dryRun?: boolean
  /** Runs whose artifacts stay; the other run directories are removed. Default: every run. */
  readonly keepRuns?: ReadonlyArray<string>
}

/** What `gc` removed (or, on a dry run, would remove) and what it keeps. */
export interface GcResult {
  readonly dryRun: boolean
  readonly keptRuns: ReadonlyArray<string>
  readonly removedRuns: ReadonlyArray<string>
  readonly kept: Readonly<Record<"objects" | "nodes" | "memo", Tally>>
  readonly removed: Readonly<Record<"runs" | "objects" | "nodes" | "memo" | "tmp" | "locks" | "folders", Tally>>
}

const DIGEST = /^[0-9a-f]{64}$/
/** Objects larger than this are blobs (weights), never parsed for references. */
const MAX_SCAN_BYTES = 64 * 1024 * 1024
/** Temp files this old belong to a writer that died; a live one renames its file within seconds. */
const TMP_MAX_AGE_MS = 60 * 60 * 1000

const decodeManifest = Schema.decodeUnknownOption(Schema.fromJsonString(RunLog.Manifest))

const attempt = <A>(op: string, path: string, f: () => Promise<A>): Effect.Effect<A, StoreError> =>
  Effect.tryPromise({ try: f, catch: (cause) => new StoreError({ op, path, cause }) })

const isMissing = (e: unknown) => (e as NodeJS.ErrnoException).code === "ENOENT"
const orMissing = <A>(p: Promise<A>): Promise<A | undefined> =>
  p.catch((e) => {
    if (isMissing(e)) return undefined
    throw e
  })

const entries = async (dir: string): Promise<Array<Dirent>> => (await orMissing(fs.readdir(dir, { withFileTypes: true }))) ?? []

interface StoredFile {
  readonly name: string
  readonly path: string
  readonly bytes: number
  readonly mtimeMs: number
}

/** Plain files directly in `dir` (files removed meanwhile are skipped). */
const filesIn = async (dir: string): Promise<Array<StoredFile>> => {
  const found = await Promise.all((await entries(dir)).filter((e) => e.isFile()).map(async (e) => {
    const path = join(dir, e.name)
    const stat = await orMissing(fs.stat(path))
    return stat === undefined ? undefined : { name: e.name, path, bytes: stat.size, mtimeMs: stat.mtimeMs }
  }))
  return found.filter((f) => f !== undefined)
}

/** Files of a sharded directory (`objects/ab/<name>`). */
const shardedFiles = (dir: string): Effect.Effect<Array<StoredFile>, StoreError> =>
  attempt("list", dir, async () => {
    const shards = (await entries(dir)).filter((e) => e.isDirectory()).map((e) => e.name).sort()
    return (await Promise.all(shards.map((s) => filesIn(join(dir, s))))).flat()
  })

/** Index files (`<key>.json`) of a sharded index, with their key. */
const indexFiles = (dir: string) =>
  Effect.map(shardedFiles(dir), (files) => files.filter((f) => f.name.endsWith(".json")).map((f) => ({ ...f, key: f.name.slice(0, -5) })))

const tally = (files: ReadonlyArray<{ readonly bytes: number }>): Tally => ({
  count: files.length,
  bytes: files.reduce((sum, f) => sum + f.bytes, 0)
})

const partition = <A>(items: ReadonlyArray<A>, keep: (a: A) => boolean): [Array<A>, Array<A>] =>
  [items.filter(keep), items.filter((a) => !keep(a))]

const dirBytes = async (dir: string): Promise<number> => {
  let total = 0
  for (const e of await entries(dir)) {
    const path = join(dir, e.name)
    total += e.isDirectory() ? await dirBytes(path) : (await orMissing(fs.stat(path)))?.size ?? 0
  }
  return total
}

/** The latest modification time of anything inside `dir` (its own, when empty). */
const newestInside = async (dir: string): Promise<number> => {
  let newest = 0
  for (const e of await entries(dir)) {
    const path = join(dir, e.name)
    const stat = await orMissing(fs.stat(path))
    if (stat !== undefined) newest = Math.max(newest, e.isDirectory() ? Math.max(stat.mtimeMs, await newestInside(path)) : stat.mtimeMs)
  }
  return newest > 0 ? newest : (await orMissing(fs.stat(dir)))?.mtimeMs ?? 0
}

const readManifest = (paths: StorePaths, runId: string) => {
  const path = join(paths.runs, runId, "manifest.json")
  return Effect.map(attempt("read", path, () => readIfExists(path)), (bytes) =>
    bytes === undefined ? undefined : Option.getOrUndefined(decodeManifest(bytes.toString("utf8"))))
}

/**
 * Summarises the store: its runs (status, node count, creation time), its objects, and the
 * sizes of the node and memo indexes.
 *
 * @example
 * const { runs, objects } = yield* StoreMaintenance.list(ArtifactStore.pathsOf(".polaris"))
 */
export const list = (paths: StorePaths): Effect.Effect<StoreSummary, StoreError> =>
  Effect.gen(function*() {
    const runs = yield* Effect.forEach(yield* RunLog.list(paths), (id) =>
      Effect.gen(function*() {
        const manifest = yield* readManifest(paths, id)
        const dir = join(paths.runs, id)
        // config.json is written once when the run is created and never rewritten, even on resume.
        const stat = yield* attempt("stat", dir, async () => (await orMissing(fs.stat(join(dir, "config.json")))) ?? (await fs.stat(dir)))
        return {
          id,
          status: manifest?.status ?? "incomplete",
          nodes: manifest === undefined ? 0 : Object.keys(manifest.nodes).length,
          createdAt: stat.mtime.toISOString()
        } satisfies RunSummary
      }))
    const objects = yield* shardedFiles(paths.objects)
    const nodes = yield* indexFiles(paths.nodes)
    const memo = yield* indexFiles(paths.memo)
    return { runs, objects: tally(objects), nodes: nodes.length, memo: memo.length }
  })

/** sha256 of a file read as a stream (objects can be hundreds of MB); undefined if it vanished. */
const hashFile = (path: string) =>
  attempt("hash", path, () =>
    orMissing((async () => {
      const hash = createHash("sha256")
      let bytes = 0
      for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
        hash.update(chunk)
        bytes += chunk.byteLength
      }
      return { digest: hash.digest("hex"), bytes }
    })()))

/**
 * Re-hashes every object and reports those whose bytes do not match their name. With
 * `repair`, moves them to `corrupt/` (the store's quarantine), so the nodes that used them
 * are recomputed on the next run.
 *
 * @example
 * const { corrupt } = yield* StoreMaintenance.verify(paths, { repair: true })
 */
export const verify = (paths: StorePaths, options: { readonly repair?: boolean } = {}): Effect.Effect<VerifyResult, StoreError> =>
  Effect.gen(function*() {
    const files = yield* shardedFiles(paths.objects)
    const hashed = yield* Effect.forEach(files, (f) => Effect.map(hashFile(f.path), (h) => ({ name: f.name, ...h })), { concurrency: 4 })
    const checked = hashed.filter((h) => h.digest !== undefined)
    const corrupt = checked.filter((h) => h.digest !== h.name).map((h) => h.name)
    if (options.repair === true) yield* Effect.forEach(corrupt, makeStore(paths.root).quarantine, { discard: true })
    return { checked: checked.length, bytes: checked.reduce((sum, h) => sum + (h.bytes ?? 0), 0), corrupt }
  })

/** Keys and digests a run names: the roots of reachability. */
const runRoots = (paths: StorePaths, runId: string, nodes: Set<string>, memo: Set<string>, objects: Set<string>) =>
  Effect.gen(function*() {
    const eventsFile = join(paths.runs, runId, "events.jsonl")
    for (const e of yield* attempt("read", eventsFile, () => RunLog.readJsonl(eventsFile))) {
      if (typeof e.key !== "string" || !DIGEST.test(e.key)) continue
      if (e.type === "node_finished" || e.type === "node_cached") nodes.add(e.key)
      else if (e.type === "memo_hit" || e.type === "memo_stored") memo.add(e.key)
      else continue
      // The objects the run itself recorded stay readable even if the key was re-indexed since.
      if (typeof e.object === "string" && DIGEST.test(e.object)) objects.add(e.object)
    }
    for (const node of Object.values((yield* readManifest(paths, runId))?.nodes ?? {})) {
      if (node.key !== undefined && DIGEST.test(node.key)) nodes.add(node.key)
      if (node.object !== undefined && DIGEST.test(node.object)) objects.add(node.object)
    }
  })

/** Every `$blob` and `$tree` digest inside a JSON value. */
const blobRefs = (value: unknown, out: Array<string>): Array<string> => {
  if (Array.isArray(value)) for (const v of value) blobRefs(v, out)
  else if (value !== null && typeof value === "object") {
    // `$tree`: a stored folder's manifest (Tree.ts), itself JSON naming its files as `$blob`s.
    for (const field of ["$blob", "$tree"]) {
      const ref = (value as Record<string, unknown>)[field]
      if (typeof ref === "string" && DIGEST.test(ref)) out.push(ref)
    }
    for (const v of Object.values(value)) blobRefs(v, out)
  }
  return out
}

/** The blobs an object references; none when it is missing, too big, or not JSON (a blob). */
const referencedBlobs = (paths: StorePaths, digest: string) => {
  const path = objectPath(paths, digest)
  return attempt("read", path, async () => {
    const stat = await orMissing(fs.stat(path))
    if (stat === undefined || stat.size > MAX_SCAN_BYTES) return []
    const bytes = await orMissing(fs.readFile(path))
    // Stage outputs are canonical JSON, so they start with '{' or '['; raw blobs are skipped unparsed.
    if (bytes === undefined || (bytes[0] !== 0x7b && bytes[0] !== 0x5b)) return []
    try {
      return blobRefs(JSON.parse(bytes.toString("utf8")), [])
    } catch {
      return []
    }
  })
}

/** Node keys, memo keys and objects reachable from the runs `runIds`. */
const reachable = (paths: StorePaths, runIds: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const nodeKeys = new Set<string>()
    const memoKeys = new Set<string>()
    const objects = new Set<string>()
    for (const id of runIds) yield* runRoots(paths, id, nodeKeys, memoKeys, objects)
    const store = makeStore(paths.root)
    for (const key of nodeKeys) {
      const entry = yield* store.readNode(key)
      if (entry === undefined) continue
      objects.add(entry.object)
      for (const m of entry.memo) memoKeys.add(m)
    }
    for (const key of memoKeys) {
      const entry = yield* store.readMemo(key)
      if (entry !== undefined) objects.add(entry.object)
    }
    // Every reachable object is scanned, blobs found included: a JSON blob may reference others.
    const queue = [...objects]
    for (let digest = queue.pop(); digest !== undefined; digest = queue.pop()) {
      for (const ref of yield* referencedBlobs(paths, digest)) {
        if (objects.has(ref)) continue
        objects.add(ref)
        queue.push(ref)
      }
    }
    return { nodeKeys, memoKeys, objects }
  })

const removeFiles = (files: ReadonlyArray<StoredFile>) =>
  Effect.forEach(files, (f) => attempt("remove", f.path, () => orMissing(fs.unlink(f.path))), { concurrency: 16, discard: true })

/**
 * Removes everything the kept runs cannot reach: objects, node entries, memo entries, and
 * the directories of runs not kept; also temp files older than an hour and stale locks (key
 * and run locks whose holder is gone, by KeyLock's rules). A dry run (the default) only reports,
 * and touches nothing on disk.
 *
 * Fails before removing anything: with StoreInUse (naming each run) while a live run holds its
 * run lock, and with a StoreError when `keepRuns` names a run that does not exist (a typo must
 * not empty the store). Runs that start while gc deletes wait for it.
 *
 * @example
 * const result = yield* StoreMaintenance.gc(paths, { dryRun: false, keepRuns: [runId] })
 * console.log(`${result.removed.objects.count} objects, ${result.removed.objects.bytes} bytes freed`)
 */
export const gc = (paths: StorePaths, options: GcOptions = {}): Effect.Effect<GcResult, StoreError | StoreInUse> =>
  Effect.scoped(Effect.gen(function*() {
    const dryRun = options.dryRun ?? true
    const lockError = (e: KeyLock.LockError) => new StoreError({ op: "lock", path: e.path, cause: e.cause })
    if (!dryRun) {
      // Held until gc returns: a run starting meanwhile waits. A run already going refuses gc.
      yield* Effect.mapError(KeyLock.holdGc(paths.locks, {
        onWait: (holder) => Effect.logWarning(`cache gc waits for another cache gc (${holder})`).pipe(Effect.provideService(References.LogToStderr, true))
      }), lockError)
      const live = (yield* Effect.mapError(KeyLock.runLocks(paths.locks), lockError)).filter((r) => r.live)
      if (live.length > 0) return yield* new StoreInUse({ store: paths.root, runs: live.map((r) => ({ runId: r.runId, pid: r.pid, host: r.host })) })
    }
    const allRuns = yield* RunLog.list(paths)
    const keptRuns = options.keepRuns === undefined ? allRuns : [...new Set(options.keepRuns)].sort()
    const unknown = keptRuns.find((id) => !allRuns.includes(id))
    if (unknown !== undefined) yield* new StoreError({ op: "gc", path: join(paths.runs, unknown), cause: new Error(`no run "${unknown}" to keep`) })
    const removedRuns = allRuns.filter((id) => !keptRuns.includes(id))
    const { nodeKeys, memoKeys, objects } = yield* reachable(paths, keptRuns)

    const objectFiles = yield* shardedFiles(paths.objects)
    const nodeFiles = yield* indexFiles(paths.nodes)
    const memoFiles = yield* indexFiles(paths.memo)
    const now = Date.now()
    const oldTmp = (yield* attempt("list", paths.tmp, () => filesIn(paths.tmp))).filter((f) => now - f.mtimeMs > TMP_MAX_AGE_MS)
    const deadLocks: Array<StoredFile> = []
    const lockFiles = yield* attempt("list", paths.locks, async () => [...await filesIn(paths.locks), ...await filesIn(join(paths.locks, "runs"))])
    for (const f of lockFiles) {
      if (f.name.endsWith(".lock") && (yield* Effect.mapError(KeyLock.isStaleLock(f.path), lockError))) deadLocks.push(f)
    }
    const runBytes = yield* Effect.forEach(removedRuns, (id) => attempt("stat", join(paths.runs, id), () => dirBytes(join(paths.runs, id))))
    // Folders: stored trees laid out for engines (trees/<digest>, kept while their manifest is
    // reachable) and scratch folders in tmp/ (an engine's checkpoint not yet moved into the store
    // when its run was killed), aged like temp files by the newest thing inside them.
    const goneFolders = yield* attempt("list", paths.root, async () => {
      const under = async (dir: string, keep: (name: string, path: string) => Promise<boolean>) =>
        Promise.all((await entries(dir)).filter((e) => e.isDirectory()).map(async (e) => {
          const path = join(dir, e.name)
          return (await keep(e.name, path)) ? [] : [{ path, bytes: await dirBytes(path) }]
        })).then((found) => found.flat())
      return [
        ...await under(join(paths.root, "trees"), async (name) => objects.has(name)),
        ...await under(paths.tmp, async (_, path) => now - (await newestInside(path)) <= TMP_MAX_AGE_MS)
      ]
    })
    const [keptObjects, goneObjects] = partition(objectFiles, (f) => objects.has(f.name))
    const [keptNodes, goneNodes] = partition(nodeFiles, (f) => nodeKeys.has(f.key))
    const [keptMemo, goneMemo] = partition(memoFiles, (f) => memoKeys.has(f.key))

    if (!dryRun) {
      for (const id of removedRuns) {
        const dir = join(paths.runs, id)
        yield* attempt("remove", dir, () => fs.rm(dir, { recursive: true, force: true }))
      }
      // Index entries first, so an interrupted gc never leaves an entry without its object.
      yield* removeFiles(goneNodes)
      yield* removeFiles(goneMemo)
      yield* removeFiles(goneObjects)
      yield* removeFiles(oldTmp)
      yield* Effect.forEach(goneFolders, (f) => attempt("remove", f.path, () => fs.rm(f.path, { recursive: true, force: true })), { discard: true })
      for (const lock of deadLocks) yield* Effect.mapError(KeyLock.removeIfStale(lock.path), lockError)
    }

    return {
      dryRun,
      keptRuns,
      removedRuns,
      kept: { objects: tally(keptObjects), nodes: tally(keptNodes), memo: tally(keptMemo) },
      removed: {
        runs: { count: removedRuns.length, bytes: runBytes.reduce((a, b) => a + b, 0) },
        objects: tally(goneObjects),
        nodes: tally(goneNodes),
        memo: tally(goneMemo),
        tmp: tally(oldTmp),
        locks: tally(deadLocks),
        folders: tally(goneFolders)
      }
    }
  }))
