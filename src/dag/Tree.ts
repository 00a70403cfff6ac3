/**
 * Tree artifacts: a folder (a model checkpoint) stored in the artifact store by content. Each
 * file is an object; a manifest object names them by relative path; the folder's identity is
 * the manifest's digest. Stage outputs hold a `TreeRef`, never a path, so a store copied to
 * another folder or machine still resolves every checkpoint, `gc` keeps the files of reachable
 * trees (the manifest names them as `$blob`s), and `verify` re-hashes them like any object.
 *
 * Engines read folders, so `materialize` lays a tree out under `<store>/trees/<digest>/`: a
 * derived copy (temp folder, every object checksum-verified, then one rename), re-hashed
 * against its manifest once per store handle (a run) before use, that `gc` may delete at any time. Its path
 * is for this process only: never put it in an output. A folder handed over with `move` becomes
 * that copy, its files linked as the objects: one set of bytes, so damage to either is caught by
 * the same hash and never used.
 *
 * @example
 * const ref = yield* ctx.putTree(savedFolder)   // { $tree: "9f2c…", bytes: 15731218 }
 * const dir = yield* ctx.getTree(ref)           // <store>/trees/9f2c…/, read-only files
 */
import { existsSync } from "node:fs"
import * as fs from "node:fs/promises"
import { join } from "node:path"
import { Cause, Deferred, Effect, Schema } from "effect"
import { type ArtifactStore, BlobRef, StoreError } from "./ArtifactStore.ts"
import { canonicalJson, sha256 } from "./Canonical.ts"
import { tempName } from "./internal/files.ts"
import { filesUnder } from "./Location.ts"

/** A stored folder: the digest of its manifest and the total bytes of its files. */
export const TreeRef = Schema.Struct({ $tree: Schema.String, bytes: Schema.Number })
export type TreeRef = typeof TreeRef.Type

/** The manifest object: each file's path (`/`-separated, relative to the folder) and blob. */
export const Manifest = Schema.Struct({ files: Schema.Record(Schema.String, BlobRef) })
export type Manifest = typeof Manifest.Type

const attempt = <A>(op: string, path: string, f: () => Promise<A>) =>
  Effect.tryPromise({ try: f, catch: (cause) => new StoreError({ op, path, cause }) })

const decodeManifest = Schema.decodeUnknownEffect(Schema.fromJsonString(Manifest))

/** Options of {@link put}. */
export interface PutOptions {
  /**
   * Move `dir` into the store as the tree's laid-out copy (what `materialize` returns, with no
   * copy or re-hash of its files) instead of leaving it: a folder written only to be stored (a
   * checkpoint) is then read back from where it already is. Its files become the objects
   * themselves (`ArtifactStore.putFile`: linked, not copied). `dir` is gone afterwards.
   */
  readonly move?: boolean
}

/** Stores the files of `dir` and their manifest; the same bytes give the same ref wherever the folder lies. */
export const put = (store: ArtifactStore["Service"], dir: string, options: PutOptions = {}): Effect.Effect<TreeRef, StoreError> =>
  Effect.gen(function*() {
    const names = yield* attempt("list", dir, async () => filesUnder(dir))
    // A folder handed over is linked into the store, never copied (its files are the objects' bytes
    // from now on), its files hashed through a small buffer, several at once so that their reads
    // and fsyncs overlap; a copied folder's files are read whole, one at a time.
    const blobs = yield* Effect.forEach(names, (name) => {
      const path = join(dir, name)
      return options.move === true
        ? store.putFile(path)
        : Effect.flatMap(attempt("read", path, () => fs.readFile(path)), (data) => Effect.map(store.put(data), ($blob) => ({ $blob, bytes: data.byteLength })))
    }, { concurrency: options.move === true ? 4 : 1 })
    const files: Record<string, BlobRef> = Object.fromEntries(names.map((name, i) => [name, blobs[i]!]))
    const bytes = blobs.reduce((sum, b) => sum + b.bytes, 0)
    const manifest = new TextEncoder().encode(canonicalJson({ files }, "reject"))
    const ref = { $tree: yield* store.put(manifest), bytes }
    if (options.move === true) yield* adopt(store, ref, dir, names)
    return ref
  })

/**
 * Makes `dir` (whose files `names` were just stored as `ref`) the tree's laid-out copy: its
 * files made read-only and the folder renamed into place, known verified for this store handle.
 * Where a copy is laid out already, or the store is on another file system, `dir` is removed
 * and `materialize` works as ever.
 */
const adopt = (store: ArtifactStore["Service"], ref: TreeRef, dir: string, names: ReadonlyArray<string>): Effect.Effect<void, StoreError> =>
  attempt("move tree", dir, async () => {
    const dest = pathOf(store, ref)
    if (!existsSync(dest)) {
      for (const name of names) await fs.chmod(join(dir, name), 0o444)
      await fs.mkdir(join(dest, ".."), { recursive: true })
      const moved = await fs.rename(dir, dest).then(() => true, (e: NodeJS.ErrnoException) => {
        if (e.code === "ENOTEMPTY" || e.code === "EEXIST" || e.code === "EXDEV") return false
        throw e
      })
      if (moved) {
        verifiedBy(store).add(dest)
        return
      }
    }
    await fs.rm(dir, { recursive: true, force: true })
  })

/** The folder where `ref` is (or will be) laid out. */
export const pathOf = (store: ArtifactStore["Service"], ref: TreeRef): string => join(store.paths.root, "trees", ref.$tree)

/** The manifest of tree `digest`, verified like every object; failures name `where`. */
const readManifest = (store: ArtifactStore["Service"], digest: string, where: string): Effect.Effect<Manifest, StoreError> =>
  Effect.flatMap(store.get(digest), (bytes) => decodeManifest(new TextDecoder().decode(bytes))).pipe(
    Effect.mapError((e) => new StoreError({ op: "read tree", path: where, cause: new Error(e._tag === "SchemaError" ? `${digest} is not a stored folder (a $tree)` : e.message) }))
  )

/** Writes the manifest's files under `dir` (verified objects); returns their total bytes. */
const writeFiles = (store: ArtifactStore["Service"], manifest: Manifest, dir: string, mode: number): Effect.Effect<number, StoreError> =>
  Effect.gen(function*() {
    let bytes = 0
    for (const [name, blob] of Object.entries(manifest.files)) {
      if (name.split("/").some((part) => part === ".." || part === "" || part === ".")) {
        return yield* new StoreError({ op: "write tree", path: dir, cause: new Error(`the tree names an unsafe path ${JSON.stringify(name)}`) })
      }
      const data = yield* Effect.mapError(store.get(blob.$blob), (e) => new StoreError({ op: "read tree file", path: dir, cause: new Error(e.message) }))
      const path = join(dir, ...name.split("/"))
      yield* attempt("write", path, async () => {
        await fs.mkdir(join(path, ".."), { recursive: true })
        await fs.writeFile(path, data, { mode })
      })
      bytes += data.byteLength
    }
    return bytes
  })

/**
 * Lays `ref` out as a folder of read-only files and returns its path. Every object is
 * checksum-verified on the way; a missing or corrupt one fails (the tree cannot be rebuilt).
 * Concurrent calls for one tree share one lay-out (a step's 16 rollouts start together, and
 * each re-hashing the checkpoint measured 4.2 s of a 10-step quickstart).
 */
export const materialize = (store: ArtifactStore["Service"], ref: TreeRef): Effect.Effect<string, StoreError> =>
  Effect.suspend(() => {
    const dest = pathOf(store, ref)
    if (verifiedBy(store).has(dest)) return Effect.succeed(dest)
    const running = inFlightBy(store)
    const shared = running.get(dest)
    if (shared !== undefined) {
      // The fiber laying it out was interrupted: this one tries itself.
      return Effect.catchCause(Deferred.await(shared), (cause) => Cause.hasInterruptsOnly(cause) ? materialize(store, ref) : Effect.failCause(cause))
    }
    const done = Deferred.makeUnsafe<string, StoreError>()
    running.set(dest, done)
    return layOut(store, ref, dest).pipe(Effect.onExit((exit) =>
      Effect.sync(() => {
        running.delete(dest)
        Deferred.doneUnsafe(done, exit)
      })
    ))
  })

const layOut = (store: ArtifactStore["Service"], ref: TreeRef, dest: string): Effect.Effect<string, StoreError> =>
  Effect.gen(function*() {
    const verified = verifiedBy(store)
    const manifest = yield* readManifest(store, ref.$tree, dest)
    // A folder laid out earlier (by any process) is used once its files hash to the manifest's;
    // one that does not (a file edited, truncated or removed) is laid out again.
    if (yield* attempt("verify", dest, () => matches(dest, manifest))) {
      verified.add(dest)
      return dest
    }
    yield* attempt("remove", dest, () => fs.rm(dest, { recursive: true, force: true }))
    const tmp = tempName(store.paths.tmp)
    yield* attempt("mkdir", tmp, () => fs.mkdir(tmp, { recursive: true }))
    yield* writeFiles(store, manifest, tmp, 0o444)
    yield* attempt("rename", dest, async () => {
      await fs.mkdir(join(dest, ".."), { recursive: true })
      // Another process may have laid the same tree out meanwhile: its copy is as good as ours.
      await fs.rename(tmp, dest).catch(async (e: NodeJS.ErrnoException) => {
        if (e.code !== "ENOTEMPTY" && e.code !== "EEXIST") throw e
        await fs.rm(tmp, { recursive: true, force: true })
      })
    })
    verified.add(dest)
    return dest
  })

/** Folders checked against their manifest through each store handle (their files are read-only). */
const checked = new WeakMap<object, Set<string>>()
const verifiedBy = (store: ArtifactStore["Service"]): Set<string> => {
  let set = checked.get(store)
  if (set === undefined) checked.set(store, (set = new Set()))
  return set
}

/** Lay-outs in progress through each store handle, by folder. */
const laying = new WeakMap<object, Map<string, Deferred.Deferred<string, StoreError>>>()
const inFlightBy = (store: ArtifactStore["Service"]): Map<string, Deferred.Deferred<string, StoreError>> => {
  let map = laying.get(store)
  if (map === undefined) laying.set(store, (map = new Map()))
  return map
}

/** Whether `dir` holds exactly the manifest's files, each with its bytes. */
const matches = async (dir: string, manifest: Manifest): Promise<boolean> => {
  if (!existsSync(dir)) return false
  const names = Object.keys(manifest.files).sort()
  if (filesUnder(dir).join("\n") !== names.join("\n")) return false
  for (const name of names) {
    const bytes = await fs.readFile(join(dir, ...name.split("/")))
    if (sha256(bytes) !== manifest.files[name]!.$blob) return false
  }
  return true
}

/**
 * Writes the tree `digest` (a `$tree`, or a unique prefix of one) out as an ordinary folder at
 * `dest` (which must not exist yet or be empty): how a trained checkpoint leaves the store.
 */
export const exportTo = (store: ArtifactStore["Service"], digest: string, dest: string): Effect.Effect<TreeRef, StoreError> =>
  Effect.gen(function*() {
    const full = yield* resolvePrefix(store, digest)
    const existing = yield* attempt("list", dest, () => fs.readdir(dest).catch(() => [] as Array<string>))
    if (existing.length > 0) return yield* new StoreError({ op: "export", path: dest, cause: new Error("the folder exists and is not empty") })
    const manifest = yield* readManifest(store, full, dest)
    return { $tree: full, bytes: yield* writeFiles(store, manifest, dest, 0o644) }
  })

/** The one object whose digest starts with `prefix` (at least 8 hex digits). */
const resolvePrefix = (store: ArtifactStore["Service"], prefix: string): Effect.Effect<string, StoreError> =>
  Effect.gen(function*() {
    const fail = (message: string) => new StoreError({ op: "export", path: store.paths.objects, cause: new Error(message) })
    if (!/^[0-9a-f]{8,64}$/.test(prefix)) return yield* fail(`${JSON.stringify(prefix)} is not a digest (8 to 64 hex digits)`)
    const shard = join(store.paths.objects, prefix.slice(0, 2))
    const names = yield* attempt("list", shard, () => fs.readdir(shard).catch(() => [] as Array<string>))
    const found = names.filter((n) => n.startsWith(prefix))
    if (found.length === 0) return yield* fail(`no object ${prefix} in this store`)
    if (found.length > 1) return yield* fail(`${prefix} names ${found.length} objects; give more digits`)
    return found[0]!
  })
