/**
 * Requests memoized one by one but computed together: `memoBatch` looks each request up under
 * its own memo key and hands exactly the missing requests, in their order, to one `compute`
 * call (one batched sampling call for every rollout group a crash left undone). Batch
 * composition is thus a function of what is stored, never of timing, so a resumed step
 * computes what an uninterrupted one would have.
 *
 * As with `memoCall`, the key is the request and `compute` sees only the requests: whatever the
 * engine is sent is in the key (ARCHITECTURE.md §5, "a memo key is the request").
 *
 * @example
 * const samples = yield* memoBatch(ctx, "group", prompts.map((p) => ({ prompt: engine.promptIds(p), n: 5, params })),
 *   Schema.Array(Sequence), (missing) => engine.sample(missing))
 */
import { Deferred, Effect, type Schema } from "effect"
import { digest } from "./Canonical.ts"
import type { StageContext } from "./Stage.ts"

export const memoBatch = <Req, A, I, E, R>(
  ctx: StageContext,
  namespace: string,
  requests: ReadonlyArray<Req>,
  schema: Schema.Codec<A, I>,
  compute: (missing: ReadonlyArray<Req>) => Effect.Effect<ReadonlyArray<A>, E, R>
): Effect.Effect<Array<A>, E, R> =>
  Effect.gen(function*() {
    const keys = requests
    if (keys.length === 0) return []
    // Equal keys are one item (two waiters on one key's lock would never both report).
    const firstOf = new Map<string, number>()
    const owner = keys.map((k, i) => {
      const d = digest(k)
      if (!firstOf.has(d)) firstOf.set(d, i)
      return firstOf.get(d)!
    })
    const unique = [...firstOf.values()]
    const values = yield* memoUnique(ctx, namespace, unique.map((i) => keys[i]), schema, (missing) => compute(missing.map((m) => keys[unique[m]!]!)))
    const byIndex = new Map(unique.map((i, k) => [i, values[k]!]))
    return owner.map((i) => byIndex.get(i)!)
  })

const memoUnique = <A, I, E, R>(
  ctx: StageContext,
  namespace: string,
  keys: ReadonlyArray<unknown>,
  schema: Schema.Codec<A, I>,
  compute: (missing: ReadonlyArray<number>) => Effect.Effect<ReadonlyArray<A>, E, R>
): Effect.Effect<Array<A>, E, R> =>
  Effect.gen(function*() {
    const results = yield* Effect.forEach(keys, () => Deferred.make<A, E>())
    const allKnown = yield* Deferred.make<void>()
    const missing = new Set<number>()
    const known = new Set<number>()
    // Every item reports once: as a hit (its memo returned) or as missing (its memo asked to compute).
    const report = (i: number, isMissing: boolean) =>
      Effect.suspend(() => {
        if (known.has(i)) return Effect.void
        known.add(i)
        if (isMissing) missing.add(i)
        return known.size === keys.length ? Deferred.succeed(allKnown, undefined) : Effect.void
      })
    const items = Effect.forEach(keys, (key, i) =>
      ctx.memo(namespace, key, schema, Effect.andThen(report(i, true), Deferred.await(results[i]!))).pipe(Effect.tap(() => report(i, false))),
      { concurrency: "unbounded" })
    const runner = Effect.gen(function*() {
      yield* Deferred.await(allKnown)
      const indices = [...missing].sort((a, b) => a - b)
      if (indices.length === 0) return
      const exit = yield* Effect.exit(compute(indices))
      yield* Effect.forEach(indices, (i, k) =>
        exit._tag === "Success" ? Deferred.succeed(results[i]!, exit.value[k]!) : Deferred.failCause(results[i]!, exit.cause), { discard: true })
    })
    const [values] = yield* Effect.all([items, runner], { concurrency: 2 })
    return values
  })
