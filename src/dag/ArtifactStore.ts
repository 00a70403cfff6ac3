/**
 * The artifact store: content-addressed objects on disk plus two small indexes (node keys and
 * memo keys) that point at them. Blobs and index live apart, as in every serious build cache.
 *
 * Layout under the store root (default `.polaris/`):
 *
 *     objects/ab/cdef...   immutable bytes named by their sha256, read-only
 *     nodes/ab/<key>.json  node key  -> object digest, key components, metrics, memo keys
 *     memo/ab/<key>.json   memo key  -> object digest, key components
 *     locks/<key>.lock     per-key single-flight locks (see KeyLock)
 *     locks/runs/<id>.lock held by each run in flight, so `cache gc` refuses to delete under it
 *     locks/gc.lock        held by `cache gc` while it deletes; starting runs wait for it
 *     runs/<run-id>/       run directories (see RunLog)
 *     corrupt/             objects that failed verification, kept for inspection
 *     tmp/                 temp files, renamed into place
 *
 * Every object read is re-hashed: a corrupted object is reported and recomputed, never used.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs/promises"
import { dirname, join } from "node:path"
import { Context, Data, Effect, Layer, Option, Schema } from "effect"
import { sha256 } from "./Canonical.ts"
import { atomicWrite, ensureDir, readIfExists, syncDir, tempName } from "./internal/files.ts"
import * as KeyLock from "./KeyLock.ts"

/** The file system refused a store operation. */
export class StoreError extends Data.TaggedError("StoreError")<{
  readonly op: string
  readonly path: string
  readonly cause: unknown
}> {
  override get message() {
    return `store ${this.op} ${this.path}: ${this.cause instanceof Error ? this.cause.message : String(this.cause)}`
  }
}

/** An object's bytes do not hash to its name. */
export class CorruptObject extends Data.TaggedError("CorruptObject")<{
  readonly digest: string
  readonly path: string
  readonly actual: string
}> {
  override get message() {
    return `object ${this.digest} is corrupt (its bytes hash to ${this.actual}): ${this.path}`
  }
}

/** An index points at an object that is not there. */
export class MissingObject extends Data.TaggedError("MissingObject")<{
  readonly digest: string
  readonly path: string
}> {
  override get message() {
    return `object ${this.digest} is missing: ${this.path}`
  }
}

/** A reference to raw bytes in the store, placed inside a stage output (e.g. model weights). */
export const BlobRef = Schema.Struct({ $blob: Schema.String, bytes: Schema.Number })
export type BlobRef = typeof BlobRef.Type

/** The parts a node key was hashed from, kept so `explain` can say which one changed. */
export const KeyComponents = Schema.Struct({
  stage: Schema.String,
  version: Schema.String,
  source: Schema.String,
  params: Schema.String,
  inputs: Schema.Record(Schema.String, Schema.String),
  engines: Schema.Record(Schema.String, Schema.String)
})
export type KeyComponents = typeof KeyComponents.Type

const MetricValue = Schema.Union([Schema.Number, Schema.String, Schema.Boolean, Schema.Null])

/** Index entry of a computed node. */
export const NodeEntry = Schema.Struct({
  key: Schema.String,
  object: Schema.String,
  bytes: Schema.Number,
  components: KeyComponents,
  metrics: Schema.Array(Schema.Record(Schema.String, MetricValue)),
  memo: Schema.Array(Schema.String),
  durationMs: Schema.Number,
  createdAt: Schema.String
})
export type NodeEntry = typeof NodeEntry.Type

/**
 * The parts a memo key was hashed from, kept so `explain` can say which one changed. The item
 * key is kept as a short digest per field (`CacheKey.keyFields`), never its values.
 */
export const MemoComponents = Schema.Struct({
  namespace: Schema.String,
  stage: Schema.String,
  version: Schema.String,
  engines: Schema.Record(Schema.String, Schema.String),
  key: Schema.Record(Schema.String, Schema.String)
})
export type MemoComponents = typeof MemoComponents.Type

/** Index entry of a memoized item. `components` is absent in entries written by older versions. */
export const MemoEntry = Schema.Struct({
  key: Schema.String,
  object: Schema.String,
  createdAt: Schema.String,
  components: Schema.optionalKey(MemoComponents)
})
export type MemoEntry = typeof MemoEntry.Type

/** Which index. */
export type IndexKind = "nodes" | "memo"

/**
 * An index entry's text decoded: JSON.parse, then the schema. What `Schema.fromJsonString` does,
 * without its JSON step's machinery, which doubled the time a cached run of 1,000 nodes spends
 * decoding their entries (they are decoded one by one, before V8 has optimized anything).
 */
const indexDecoder = <A>(schema: Schema.Decoder<A>) => {
  const decode = Schema.decodeUnknownOption(schema)
  return (text: string): Option.Option<A> => {
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      return Option.none()
    }
    return decode(json)
  }
}
const decodeNode = indexDecoder(NodeEntry)
const decodeMemo = indexDecoder(MemoEntry)

/** The store's directories. */
export interface StorePaths {
  readonly root: string
  readonly objects: string
  readonly nodes: string
  readonly memo: string
  readonly locks: string
  readonly runs: string
  readonly corrupt: string
  readonly tmp: string
}

export const pathsOf = (root: string): StorePaths => ({
  root,
  objects: join(root, "objects"),
  nodes: join(root, "nodes"),
  memo: join(root, "memo"),
  locks: join(root, "locks"),
  runs: join(root, "runs"),
  corrupt: join(root, "corrupt"),
  tmp: join(root, "tmp")
})

const shard = (dir: string, name: string, suffix = "") => join(dir, name.slice(0, 2), `${name}${suffix}`)

/** The artifact store service. */
export class ArtifactStore extends Context.Service<ArtifactStore, {
  readonly paths: StorePaths
  /** Stores bytes under their sha256 (idempotent) and returns the digest. */
  readonly put: (bytes: Uint8Array) => Effect.Effect<string, StoreError>
  /**
   * Stores the file at `path` as an object by linking it, not copying it: the file is made
   * read-only, made durable, and shares the object's bytes from then on, so it must never be
   * written again (a folder handed over to the store, Tree.ts `move`). Falls back to a copy where
   * the file system cannot link.
   */
  readonly putFile: (path: string) => Effect.Effect<BlobRef, StoreError>
  /** Reads and verifies an object. */
  readonly get: (digest: string) => Effect.Effect<Uint8Array, StoreError | CorruptObject | MissingObject>
  /** Moves a corrupt object aside so it is recomputed. */
  readonly quarantine: (digest: string) => Effect.Effect<void, StoreError>
  readonly readNode: (key: string) => Effect.Effect<NodeEntry | undefined, StoreError>
  readonly writeNode: (entry: NodeEntry) => Effect.Effect<void, StoreError>
  readonly readMemo: (key: string) => Effect.Effect<MemoEntry | undefined, StoreError>
  readonly writeMemo: (entry: MemoEntry) => Effect.Effect<void, StoreError>
  /** Runs `effect` as the only holder of `key` among all processes on this store. */
  readonly withLock: <A, E, R>(
    key: string,
    effect: Effect.Effect<A, E, R>,
    options?: KeyLock.LockOptions
  ) => Effect.Effect<A, E | KeyLock.LockError, R>
}>()("polaris/ArtifactStore") {}

const attempt = <A>(op: string, path: string, f: () => Promise<A>) =>
  Effect.tryPromise({ try: f, catch: (cause) => new StoreError({ op, path, cause }) })

/** A store on the local file system, rooted at `root`. */
export const make = (root: string): ArtifactStore["Service"] => {
  const paths = pathsOf(root)
  const objectPath = (digest: string) => shard(paths.objects, digest)

  const put = (bytes: Uint8Array) => {
    const digest = sha256(bytes)
    const path = objectPath(digest)
    return attempt("put", path, async () => {
      const existing = await fs.stat(path).catch(() => undefined)
      if (existing?.size !== bytes.byteLength) await atomicWrite(paths.tmp, path, bytes, { mode: 0o444 })
      return digest
    })
  }

  const putFile = (file: string) =>
    attempt("put", file, async () => {
      // Hashed through one small buffer: reading a 16 MB checkpoint file into a fresh buffer of its
      // size measured 70 ms on a 2-core VM, where first-touching memory is slow (hashing it: 11 ms).
      const hash = createHash("sha256")
      let bytes = 0
      const handle = await fs.open(file, "r")
      try {
        const chunk = Buffer.allocUnsafe(1 << 20)
        for (let n; (n = (await handle.read(chunk, 0, chunk.length, null)).bytesRead) > 0; bytes += n) hash.update(chunk.subarray(0, n))
        await handle.sync()
      } finally {
        await handle.close()
      }
      const ref: BlobRef = { $blob: hash.digest("hex"), bytes }
      const path = objectPath(ref.$blob)
      await fs.chmod(file, 0o444)
      if ((await fs.stat(path).catch(() => undefined))?.size === bytes) return ref
      await ensureDir(paths.tmp)
      const tmp = tempName(paths.tmp)
      const linked = await fs.link(file, tmp).then(() => true, () => false)
      if (!linked) {
        await atomicWrite(paths.tmp, path, await fs.readFile(file), { mode: 0o444 })
        return ref
      }
      await ensureDir(dirname(path))
      await fs.rename(tmp, path)
      await syncDir(dirname(path))
      return ref
    })

  const get = (digest: string) => {
    const path = objectPath(digest)
    return Effect.flatMap(attempt("read", path, () => readIfExists(path)), (bytes): Effect.Effect<Uint8Array, CorruptObject | MissingObject> => {
      if (bytes === undefined) return Effect.fail(new MissingObject({ digest, path }))
      const actual = sha256(bytes)
      return actual === digest ? Effect.succeed(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)) : Effect.fail(new CorruptObject({ digest, path, actual }))
    })
  }

  const quarantine = (digest: string) => {
    const path = objectPath(digest)
    return attempt("quarantine", path, async () => {
      await ensureDir(paths.corrupt)
      await fs.rename(path, join(paths.corrupt, `${digest}.${Date.now()}`)).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== "ENOENT") throw e
      })
    })
  }

  const readIndex = <A>(dir: string, key: string, decode: (s: string) => Option.Option<A>) => {
    const path = shard(dir, key, ".json")
    return Effect.map(attempt("read", path, () => readIfExists(path)), (bytes) => {
      if (bytes === undefined) return undefined
      const parsed = decode(bytes.toString("utf8"))
      return parsed._tag === "Some" ? parsed.value : undefined
    })
  }

  const writeIndex = (dir: string, key: string, entry: unknown) => {
    const path = shard(dir, key, ".json")
    return attempt("write", path, () => atomicWrite(paths.tmp, path, JSON.stringify(entry)))
  }

  return {
    paths,
    put,
    putFile,
    get,
    quarantine,
    readNode: (key) => readIndex(paths.nodes, key, decodeNode),
    writeNode: (entry) => writeIndex(paths.nodes, entry.key, entry),
    readMemo: (key) => readIndex(paths.memo, key, decodeMemo),
    writeMemo: (entry) => writeIndex(paths.memo, entry.key, entry),
    withLock: (key, effect, options) => KeyLock.withLock(paths.locks, key, effect, options)
  }
}

/** The file-system store at `root` (default `.polaris` in the working directory). */
export const layer = (root = ".polaris"): Layer.Layer<ArtifactStore> => Layer.succeed(ArtifactStore, make(root))

/** Path of a node index entry (for tools and tests). */
export const nodeEntryPath = (paths: StorePaths, key: string) => shard(paths.nodes, key, ".json")
/** Path of an object (for tools and tests). */
export const objectPath = (paths: StorePaths, digest: string) => shard(paths.objects, digest)
