/**
 * Sweeps: one recipe, many variants (a grid of recipe values and/or a list), each run as its own
 * run in the store, all from one sweep directory whose state is always on disk.
 *
 * - Variants share the cache: a node two variants both need (the data, the prompts, the initial
 *   policy's evaluation) has one key, so one computes it and the others read it.
 * - They run at once within the engines' limits taken together (`Executor.makeSlots`: one set of
 *   resource slots for the whole sweep), and variants with equal engine sections share one engine
 *   (one judge, one rate limit: `Engine.sharedByConfig` and one `Layer.MemoMap`).
 * - `sweeps/<id>/sweep.json` says each variant's run id and status, written before its run starts
 *   and after it ends. `resume` continues the variants not done, each run resumed in place;
 *   a finished variant is never run again.
 *
 * @example
 * ```yaml
 * sweep:
 *   grid:
 *     grpo.reference_loss: [on_policy, luffy, sft]
 *     seed: [1, 2]
 * ```
 * `polaris sweep recipe.yaml` runs 6 variants; `polaris resume <sweep id>` continues them.
 */
import { existsSync } from "node:fs"
import { readFile } from "node:fs/promises"
import { join, resolve } from "node:path"
import { Context, Data, Effect, Layer, Schema, Semaphore } from "effect"
import { parseDocument } from "yaml"
import * as ArtifactStore from "../dag/ArtifactStore.ts"
import * as Executor from "../dag/Executor.ts"
import { atomicWrite } from "../dag/internal/files.ts"
import * as RunLog from "../dag/RunLog.ts"
import * as RecipeLoader from "../recipe/RecipeLoader.ts"
import type { Sweep } from "../recipe/Recipe.ts"
import * as Trackers from "../tracking/Trackers.ts"
import { resolveTarget } from "../cli/target.ts"

/** A sweep that cannot be set up (no variants, a bad --grid, no such sweep). */
export class SweepError extends Data.TaggedError("SweepError")<{
  readonly message: string
  /** A mistake in how the sweep was asked for (exit 2), not a variant that failed (exit 1). */
  readonly usage?: boolean
}> {}

/** One variant: its name and the `--set`s that make it from the base recipe. */
export interface Variant {
  readonly name: string
  readonly sets: ReadonlyArray<string>
}

export const VariantState = Schema.Struct({
  name: Schema.String,
  sets: Schema.Array(Schema.String),
  /** Its run's id, set when it first starts (a resumed variant continues this run). */
  run: Schema.NullOr(Schema.String),
  status: Schema.Literals(["pending", "running", "succeeded", "failed"]),
  error: Schema.NullOr(Schema.String)
})
export type VariantState = typeof VariantState.Type

/** `sweeps/<id>/sweep.json`. */
export const SweepState = Schema.Struct({
  id: Schema.String,
  /** The recipe file (absolute) and the sweep's own `--set`s, under every variant's. */
  recipe: Schema.String,
  sets: Schema.Array(Schema.String),
  concurrency: Schema.NullOr(Schema.Int),
  created_at: Schema.String,
  variants: Schema.Array(VariantState)
})
export type SweepState = typeof SweepState.Type

const keyValue = (key: string, value: unknown) => `${key}=${JSON.stringify(value)}`
const nameOf = (pairs: ReadonlyArray<readonly [string, unknown]>) =>
  pairs.map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(",")

/**
 * The variants of a recipe's `sweep:` plus `--grid KEY=[V1, V2]` flags (which extend or replace
 * the recipe's grid keys): every combination of the grid, in key order, then the listed ones.
 */
export const variantsOf = (sweep: Sweep | undefined, gridFlags: ReadonlyArray<string> = []): Effect.Effect<ReadonlyArray<Variant>, SweepError> =>
  Effect.gen(function*() {
    const grid = new Map<string, ReadonlyArray<unknown>>(Object.entries(sweep?.grid ?? {}))
    for (const flag of gridFlags) {
      const eq = flag.indexOf("=")
      const doc = eq > 0 ? parseDocument(flag.slice(eq + 1)) : undefined
      const values = doc !== undefined && doc.errors.length === 0 ? doc.toJS() as unknown : undefined
      if (eq <= 0 || !Array.isArray(values) || values.length === 0) {
        return yield* new SweepError({ message: `--grid ${flag}: expected KEY=[V1, V2, ...], e.g. --grid 'seed=[1, 2, 3]'`, usage: true })
      }
      grid.set(flag.slice(0, eq).trim(), values)
    }
    let combos: Array<Array<readonly [string, unknown]>> = grid.size > 0 ? [[]] : []
    for (const [key, values] of grid) combos = combos.flatMap((c) => values.map((v) => [...c, [key, v] as const]))
    const listed = (sweep?.variants ?? []).map((v) => Object.entries(v))
    const all = [...combos, ...listed]
    if (all.length === 0) return yield* new SweepError({ message: "no variants: give the recipe a `sweep:` with a grid or variants, or pass --grid KEY=[V1, V2]", usage: true })
    const variants = all.map((pairs) => ({ name: nameOf(pairs) || "base", sets: pairs.map(([k, v]) => keyValue(k, v)) }))
    const names = new Set<string>()
    for (const v of variants) {
      if (names.has(v.name)) return yield* new SweepError({ message: `variant ${v.name} appears twice`, usage: true })
      names.add(v.name)
    }
    return variants
  })

const dirOf = (store: string, id: string) => join(store, "sweeps", id)

/** Whether `id` names a sweep in `store`. */
export const isSweep = (store: string, id: string) => existsSync(join(dirOf(store, id), "sweep.json"))

export const read = (store: string, id: string): Effect.Effect<SweepState, SweepError> =>
  Effect.tryPromise({
    try: async () => Schema.decodeUnknownSync(SweepState)(JSON.parse(await readFile(join(dirOf(store, id), "sweep.json"), "utf8"))),
    catch: (e) => new SweepError({ message: `sweep ${id} in ${store}: ${e instanceof Error ? e.message : String(e)}` })
  })

const write = (store: string, state: SweepState) =>
  Effect.promise(() => atomicWrite(join(store, "tmp"), join(dirOf(store, state.id), "sweep.json"), JSON.stringify(state, null, 2) + "\n"))

/** What a sweep's progress says, one line per variant event. */
export type SweepEvent =
  | { readonly _tag: "created"; readonly sweep: string; readonly variants: number; readonly file: string }
  | { readonly _tag: "started"; readonly variant: string; readonly run: string; readonly resumed: boolean }
  | { readonly _tag: "finished"; readonly variant: string; readonly run: string; readonly executed: number; readonly cached: number }
  | { readonly _tag: "failed"; readonly variant: string; readonly run: string | null; readonly error: string }

export interface SweepOptions {
  readonly sets?: ReadonlyArray<string>
  readonly grid?: ReadonlyArray<string>
  /** `--store`, over the recipe's `store:`. */
  readonly store?: string | undefined
  readonly onEvent?: (event: SweepEvent) => Effect.Effect<void>
}

/** Starts a sweep of `file`: writes its state, then runs every variant. */
export const start = (file: string, options: SweepOptions = {}) =>
  Effect.gen(function*() {
    const recipe = resolve(file)
    const loaded = yield* RecipeLoader.load(recipe, { sets: options.sets ?? [], env: process.env, checkInputs: true })
    const variants = yield* variantsOf(loaded.recipe.sweep, options.grid)
    const store = options.store ?? loaded.recipe.store ?? ".polaris"
    const state: SweepState = {
      id: RunLog.newRunId(),
      recipe,
      sets: [...(options.sets ?? [])],
      concurrency: loaded.recipe.sweep?.concurrency ?? null,
      created_at: new Date().toISOString(),
      variants: variants.map((v) => ({ name: v.name, sets: [...v.sets], run: null, status: "pending", error: null }))
    }
    yield* write(store, state)
    if (options.onEvent) yield* options.onEvent({ _tag: "created", sweep: state.id, variants: state.variants.length, file: join(dirOf(store, state.id), "sweep.json") })
    return { store, state: yield* proceed(store, state, options.onEvent) }
  })

/** Continues sweep `id`: its variants not done, each run resumed where it stopped. */
export const resume = (store: string, id: string, onEvent?: SweepOptions["onEvent"]) =>
  Effect.flatMap(read(store, id), (state) => proceed(store, state, onEvent))

const errorText = (e: unknown): string =>
  e instanceof Error || (typeof e === "object" && e !== null && "message" in e) ? String((e as { message: unknown }).message) : String(e)

/** Runs the variants not yet succeeded; the state on disk follows every start and end. */
const proceed = (store: string, initial: SweepState, onEvent: SweepOptions["onEvent"] = () => Effect.void) =>
  Effect.scoped(Effect.gen(function*() {
    let state = initial
    const writing = Semaphore.makeUnsafe(1)
    const update = (name: string, change: Partial<VariantState>) =>
      writing.withPermits(1)(Effect.suspend(() => {
        state = { ...state, variants: state.variants.map((v) => (v.name === name ? { ...v, ...change } : v)) }
        return write(store, state)
      }))
    const todo = state.variants.filter((v) => v.status !== "succeeded")
    const targets = yield* Effect.forEach(todo, (v) => Effect.result(resolveTarget(state.recipe, { sets: [...state.sets, ...v.sets], store })))
    const first = targets.find((t) => t._tag === "Success")
    // One set of resource slots for the sweep (the recipe's limits and its engine's pools).
    const slots = Executor.makeSlots(first?._tag === "Success" ? { concurrency: first.success.concurrency, pools: first.success.pools } : {})
    const memoMap = yield* Layer.makeMemoMap
    const scope = yield* Effect.scope
    const storeContext = yield* Layer.buildWithMemoMap(ArtifactStore.layer(store), memoMap, scope)

    const runVariant = (v: VariantState, i: number) =>
      Effect.gen(function*() {
        const target = targets[i]!
        if (target._tag === "Failure") {
          const error = errorText(target.failure)
          yield* update(v.name, { status: "failed", error })
          return yield* onEvent({ _tag: "failed", variant: v.name, run: v.run, error })
        }
        const t = target.success
        const runId = v.run ?? RunLog.newRunId()
        yield* update(v.name, { run: runId, status: "running", error: null })
        yield* onEvent({ _tag: "started", variant: v.name, run: runId, resumed: v.run !== null })
        const outcome = yield* Effect.result(Effect.gen(function*() {
          const engines = yield* Layer.buildWithMemoMap(t.layer, memoMap, scope)
          // Each variant's metrics go to the recipe's trackers too, under its own run id.
          const onStart = (log: RunLog.RunLog) => Effect.asVoid(Effect.orDie(Trackers.attach(log, t.recipe?.trackers)))
          return yield* Executor.run(t.pipeline, { runId, config: t.config, pools: t.pools, retries: t.retries, slots, onStart }).pipe(
            Effect.provide(Context.merge(storeContext, engines))
          )
        }))
        if (outcome._tag === "Success") {
          yield* update(v.name, { status: "succeeded", error: null })
          return yield* onEvent({ _tag: "finished", variant: v.name, run: runId, executed: outcome.success.executed, cached: outcome.success.cached })
        }
        const error = errorText(outcome.failure)
        yield* update(v.name, { status: "failed", error })
        yield* onEvent({ _tag: "failed", variant: v.name, run: runId, error })
      })
    yield* Effect.forEach(todo, runVariant, { concurrency: state.concurrency ?? "unbounded", discard: true })
    return state
  }))
