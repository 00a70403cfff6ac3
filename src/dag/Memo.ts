/**
 * Memoized items: the per-item cache inside a stage (one judge call, one rollout group). Each
 * item is stored under its own key as soon as it is computed, so a crash halfway through a
 * stage loses nothing finished. The same item is computed once across processes (per-key
 * lock). Failures are never stored, nor values the caller's `persistIf` rejects.
 */
import { Effect, Option, type Schema } from "effect"
import { ArtifactStore } from "./ArtifactStore.ts"
import * as CacheKey from "./CacheKey.ts"
import { LockError } from "./KeyLock.ts"
import type { RunLog } from "./RunLog.ts"
import type { MemoOptions, StageContext } from "./Stage.ts"
import * as StoredValue from "./StoredValue.ts"

/** Who is asking: the node, its stage and engines (for keys), and where to record what happened. */
export interface MemoScope {
  readonly log: RunLog
  readonly node: string
  readonly stage: string
  readonly version: string
  readonly engines: Readonly<Record<string, string>>
  /** Collects the memo keys the node used (its index entry lists them, for `gc`). */
  readonly used: Set<string>
}

/** The `memo` of a StageContext, bound to one node. */
export const make = (scope: MemoScope, store: ArtifactStore["Service"]): StageContext["memo"] =>
  <A, I, E, R>(namespace: string, itemKey: unknown, schema: Schema.Codec<A, I>, compute: Effect.Effect<A, E, R>, options?: MemoOptions<A>) => {
    const { log, node } = scope
    const key = CacheKey.memoKey(scope.stage, scope.version, namespace, itemKey, scope.engines)
    // Kept with the entry (and an unstored item's event) so `explain` can say what changed.
    const components = () => CacheKey.memoComponents(scope.stage, scope.version, namespace, itemKey, scope.engines)
    const quarantined = new Set<string>()
    const lookup = Effect.gen(function*() {
      const entry = yield* store.readMemo(key)
      return entry === undefined ? Option.none<A>() : yield* StoredValue.read(log, node, entry.object, schema, quarantined)
    })
    const hit = (value: A) =>
      Effect.sync(() => scope.used.add(key)).pipe(Effect.andThen(log.emit({ type: "memo_hit", node, key, namespace })), Effect.as(value))
    const store_ = (value: A) => Effect.gen(function*() {
      if (options?.persistIf !== undefined && !options.persistIf(value)) {
        yield* log.emit({ type: "memo_unstored", node, key, namespace, components: components() })
        return value
      }
      const stored = yield* Effect.orDie(StoredValue.encode(schema, value))
      const object = yield* Effect.orDie(store.put(stored.bytes))
      yield* Effect.orDie(store.writeMemo({ key, object, createdAt: new Date().toISOString(), components: components() }))
      scope.used.add(key)
      yield* log.emit({ type: "memo_stored", node, key, object, namespace })
      return stored.value
    })
    // Interrupted during the write (a stopping run), the value is still stored: it was paid for.
    const computeAndStore = Effect.uninterruptibleMask((restore) => Effect.flatMap(restore(compute), store_))
    // Store failures inside a memo are defects of the stage body: the node fails and the run says why.
    const cached = Effect.orDie(Effect.provideService(lookup, ArtifactStore, store))
    return Effect.flatMap(cached, (found) =>
      Option.isSome(found)
        ? hit(found.value)
        : store.withLock(key, Effect.flatMap(cached, (again) => (Option.isSome(again) ? hit(again.value) : computeAndStore))).pipe(
          // The item's own failures pass through untouched: the stage's retry policy reads them.
          Effect.catchIf((e): e is LockError => e instanceof LockError, (e) => Effect.die(e))
        ) as Effect.Effect<A, E, R>
    )
  }
