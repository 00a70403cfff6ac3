/**
 * Values as stored bytes: canonical JSON of a value's Schema encoding, written to and read from
 * the artifact store. Node outputs and memo items both go through here, so both get the same
 * guarantees: one byte form per value (what early cutoff compares), secrets refused, and every
 * read verified, with a corrupt object reported and quarantined instead of used.
 */
import { Data, Effect, Option, Schema } from "effect"
import { ArtifactStore, type CorruptObject, type MissingObject, type StoreError } from "./ArtifactStore.ts"
import { canonicalJson, containsSecret } from "./Canonical.ts"
import type { RunLog } from "./RunLog.ts"

/** A value that cannot be stored: a secret inside, or a mismatch with its schema. */
export class EncodeError extends Data.TaggedError("EncodeError")<{ readonly reason: string }> {
  override get message() {
    return this.reason
  }
}

const jsonCodecs = new WeakMap<object, Schema.Codec<any, any>>()

/** The JSON codec of a schema, built once per schema. */
const jsonCodec = (schema: Schema.Codec<any, any>): Schema.Codec<any, any> => {
  let codec = jsonCodecs.get(schema)
  if (codec === undefined) {
    codec = Schema.toCodecJson(schema) as Schema.Codec<any, any>
    jsonCodecs.set(schema, codec)
  }
  return codec
}

/**
 * The bytes of `value` under `schema`, and the value decoded back from them: whoever uses the
 * value next sees exactly what a later cached read would give (fields outside the schema gone).
 */
export const encode = <A>(schema: Schema.Codec<A, any>, value: A): Effect.Effect<{ readonly bytes: Uint8Array; readonly value: A }, EncodeError> =>
  Effect.gen(function*() {
    if (containsSecret(value)) return yield* new EncodeError({ reason: "contains a Redacted secret; secrets are never stored" })
    const codec = jsonCodec(schema)
    const json = yield* Schema.encodeUnknownEffect(codec)(value).pipe(
      Effect.mapError((e) => new EncodeError({ reason: `does not match its schema: ${e.message}` }))
    )
    const text = canonicalJson(json, "reject")
    const decoded = yield* Schema.decodeUnknownEffect(codec)(JSON.parse(text)).pipe(
      Effect.mapError((e) => new EncodeError({ reason: `does not survive a round trip through its schema: ${e.message}` }))
    )
    return { bytes: new TextEncoder().encode(text), value: decoded as A }
  })

const decode = <A>(schema: Schema.Codec<A, any>, bytes: Uint8Array): Effect.Effect<Option.Option<A>> =>
  Effect.try({ try: () => JSON.parse(new TextDecoder().decode(bytes)) as unknown, catch: (e) => e }).pipe(
    Effect.flatMap((json) => Schema.decodeUnknownEffect(jsonCodec(schema))(json)),
    Effect.option
  ) as Effect.Effect<Option.Option<A>>

/** Decodes bytes from `readBytes` as a value of `schema`; None when they no longer decode. */
export const decodeBytes: <A>(schema: Schema.Codec<A, any>, bytes: Uint8Array) => Effect.Effect<Option.Option<A>> = decode

/**
 * Reads the object `digest` as a value of `schema`. None when it is missing, corrupt or no
 * longer decodes: the caller recomputes. A corrupt object is reported on `log` (for `node`) and
 * moved aside; `quarantined` remembers it, so the caller's second look does not report the
 * then-missing object again.
 */
export const read = <A>(
  log: RunLog,
  node: string,
  digest: string,
  schema: Schema.Codec<A, any>,
  quarantined: Set<string>
): Effect.Effect<Option.Option<A>, StoreError, ArtifactStore> =>
  Effect.flatMap(readBytes(log, node, digest, quarantined), Option.match({
    onNone: () => Effect.succeedNone,
    onSome: (bytes) => decode(schema, bytes)
  }))

/**
 * The verified bytes of the object `digest` (their sha256 checked), as `read` finds them, without
 * decoding: a cached node whose value no consumer needs is never decoded.
 */
export const readBytes = (
  log: RunLog,
  node: string,
  digest: string,
  quarantined: Set<string>
): Effect.Effect<Option.Option<Uint8Array>, StoreError, ArtifactStore> =>
  Effect.gen(function*() {
    const store = yield* ArtifactStore
    return yield* store.get(digest).pipe(
      Effect.map(Option.some),
      Effect.catchTags({
        CorruptObject: (e: CorruptObject) =>
          log.emit({ type: "corrupt_object", node, object: e.digest, detail: e.message }).pipe(
            Effect.andThen(store.quarantine(e.digest)),
            Effect.andThen(Effect.sync(() => quarantined.add(e.digest))),
            Effect.as(Option.none<Uint8Array>())
          ),
        MissingObject: (e: MissingObject) =>
          (quarantined.has(e.digest) ? Effect.void : log.emit({ type: "missing_object", node, object: e.digest, detail: e.message })).pipe(
            Effect.as(Option.none<Uint8Array>())
          )
      })
    )
  })
