/**
 * What `polaris run` (and `resume`, `validate`, `dag`, `watch`) runs: a YAML recipe, or a `.ts`
 * pipeline file given directly. Either way: the pipeline, the services it needs, the config to
 * freeze in the run directory, and the run settings the recipe carries.
 */
import { resolve } from "node:path"
import { Effect, type Layer, type Schedule } from "effect"
import * as ArtifactStore from "../dag/ArtifactStore.ts"
import type { Pipeline } from "../dag/Pipeline.ts"
import type * as Plan from "../dag/Plan.ts"
import * as PipelineModule from "../dag/PipelineModule.ts"
import * as Retry from "../dag/Retry.ts"
import type { Recipe } from "../recipe/Recipe.ts"
import * as RunLog from "../dag/RunLog.ts"
import type * as Executor from "../dag/Executor.ts"
import * as RecipeLoader from "../recipe/RecipeLoader.ts"

/** A resolved run target. */
export interface Target {
  readonly pipeline: Pipeline<any, any>
  readonly layer: Layer.Layer<any, any, never>
  /** Frozen in the run directory; `resume` reads it back. Secrets appear as `${VAR}`. */
  readonly config: Readonly<Record<string, unknown>>
  readonly store: string
  readonly concurrency: Readonly<Record<string, number>>
  /** Which resource classes share a pool, from the pipeline module (its engines): Executor's `pools`. */
  readonly pools: Executor.Pools
  readonly retries: Readonly<Record<string, Schedule.Schedule<unknown, unknown>>>
  /** Every file whose change makes the target stale (recipes, pipeline and stage modules). */
  readonly files: ReadonlyArray<string>
  readonly recipe?: Recipe
  /** Unset secret variables, each at its recipe value (RecipeLoader `warnings`): the run goes on. */
  readonly warnings: ReadonlyArray<RecipeLoader.RecipeError>
  /** What each node costs if it runs (the pipeline module's `estimate`), for `polaris plan`. */
  readonly estimate?: Plan.Estimator
  /** The recipe's `budget.usd` (Executor's `budgetUsd`). */
  readonly budgetUsd?: number
}

/** How a target is asked for on the command line. */
export interface TargetOptions {
  readonly sets?: ReadonlyArray<string>
  /** `--store`, which wins over the recipe's `store:`. */
  readonly store?: string | undefined
}

export const isRecipeFile = (file: string) => /\.ya?ml$/i.test(file)

const retriesOf = (recipe: Recipe) =>
  Object.fromEntries(
    Object.entries(recipe.retries ?? {}).map(([resource, r]) => [
      resource,
      Retry.backoff({
        ...(r.attempts !== undefined ? { attempts: r.attempts } : {}),
        ...(r.base_ms !== undefined ? { base: r.base_ms } : {}),
        ...(r.cap_ms !== undefined ? { cap: r.cap_ms } : {})
      })
    ])
  )

/** Resolves `file` (a recipe or a pipeline module) into a runnable target. */
export const resolveTarget = (file: string, options: TargetOptions = {}) =>
  Effect.gen(function*() {
    const path = resolve(file)
    if (!isRecipeFile(path)) {
      if ((options.sets ?? []).length > 0) return yield* new PipelineModule.ModuleError({ file: path, reason: "--set applies to recipes (.yaml); this is a pipeline file" })
      const loaded = yield* PipelineModule.load({ pipeline: path }, path, { store: resolve(options.store ?? ".polaris") })
      return {
        pipeline: loaded.pipeline,
        layer: loaded.layer,
        config: { pipelineFile: path },
        store: options.store ?? ".polaris",
        concurrency: {},
        pools: loaded.pools,
        retries: {},
        files: loaded.files,
        warnings: []
      } satisfies Target as Target
    }
    const loaded = yield* RecipeLoader.load(path, { sets: options.sets ?? [], env: process.env, checkInputs: true })
    const store = options.store ?? loaded.recipe.store ?? ".polaris"
    const built = yield* PipelineModule.load(loaded.recipe, path, { store: resolve(store) })
    return {
      pipeline: built.pipeline,
      layer: built.layer,
      config: { recipeFile: path, sets: options.sets ?? [], recipe: loaded.frozen },
      store,
      concurrency: loaded.recipe.concurrency ?? {},
      pools: built.pools,
      ...(built.estimate !== undefined ? { estimate: built.estimate } : {}),
      ...(loaded.recipe.budget !== undefined ? { budgetUsd: loaded.recipe.budget.usd } : {}),
      retries: retriesOf(loaded.recipe),
      files: [...loaded.files, ...built.files],
      recipe: loaded.recipe,
      warnings: loaded.warnings
    } satisfies Target as Target
  })

/** `warning: file:line:col: key: message`, one line per warning, for stderr. */
export const formatWarnings = (t: Pick<Target, "warnings">): string =>
  t.warnings.map((w) => `warning: ${RecipeLoader.formatError(w)}\n`).join("")

/** The target a run was started with, from its frozen config (the files are read again). */
export const targetOfRun = (store: string, runId: string) =>
  Effect.gen(function*() {
    const config = (yield* RunLog.readConfig(ArtifactStore.pathsOf(store), runId)) as { recipeFile?: string; sets?: ReadonlyArray<string>; pipelineFile?: string }
    const file = config.recipeFile ?? config.pipelineFile
    if (typeof file !== "string") return yield* new PipelineModule.ModuleError({ file: runId, reason: "the run's config names no recipe or pipeline file" })
    return yield* resolveTarget(file, { sets: config.sets ?? [], store })
  })
