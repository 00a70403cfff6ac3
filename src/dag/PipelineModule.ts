/**
 * Pipelines chosen by a recipe: a built-in name (`pipelines/`) or a `.ts` file, built with the
 * recipe's values, with the recipe's custom stages (`uses: ./file.ts#export`) inserted.
 * TypeScript is imported at run time, with no build step: through tsx, or by the prebuilt
 * command's importer (`useImporter`, cli/BundledImporter.ts).
 *
 * A pipeline module's default export is a {@link Definition} (from {@link define}), or a plain
 * Pipeline that takes no recipe values. Its optional `layer` export (a Layer, or a function of
 * the recipe returning one) provides the services its stages need.
 *
 * @example
 * // my-pipeline.ts
 * export default PipelineModule.define("word-stats", (b, recipe) => {
 *   const texts = b.node(readTexts, { id: "read", params: { dir: String(recipe.params?.dir ?? "texts") } })
 *   return { counts: b.node(countWords, { id: "count", inputs: { texts } }) }
 * })
 */
import { statSync } from "node:fs"
import { dirname, isAbsolute, resolve } from "node:path"
import { pathToFileURL } from "node:url"
import { Data, Effect, Layer } from "effect"
import * as Pipeline from "./Pipeline.ts"
import type { Pools } from "./Executor.ts"
import type * as Plan from "./Plan.ts"
import type { Recipe } from "../recipe/Recipe.ts"
import type { AnyStage } from "./Stage.ts"

/** A pipeline or stage module that cannot be used, said with the file and the reason. */
export class ModuleError extends Data.TaggedError("ModuleError")<{ readonly file: string; readonly reason: string }> {
  override get message() {
    return `${this.file}: ${this.reason}`
  }
}

/** A pipeline built from a recipe's values. */
export interface Definition {
  readonly _tag: "PipelineDefinition"
  readonly name: string
  /** `recipeFile`: the recipe's absolute path (for provenance; its paths are already anchored). */
  readonly build: (b: Pipeline.Builder, recipe: Recipe, recipeFile: string) => Readonly<Record<string, Pipeline.NodeRef<any, any>>>
}

/** Defines a pipeline whose shape and params come from a recipe. */
export const define = (name: string, build: Definition["build"]): Definition => ({ _tag: "PipelineDefinition", name, build })

/** Built-in pipelines, by name: each a module (in `pipelines/`) whose default export is a Definition. */
const BUILTINS: Readonly<Record<string, string>> = {
  "polaris-data": resolve(import.meta.dirname, "..", "..", "pipelines", "polarisData.ts"),
  pretrain: resolve(import.meta.dirname, "..", "..", "pipelines", "pretrain.ts"),
  "judge-references": resolve(import.meta.dirname, "..", "..", "pipelines", "judgeReferences.ts"),
  "judge-audit": resolve(import.meta.dirname, "..", "..", "pipelines", "judgeAudit.ts"),
  eqbench: resolve(import.meta.dirname, "..", "..", "pipelines", "eqbench.ts"),
  polaris: resolve(import.meta.dirname, "..", "..", "pipelines", "polaris.ts"),
  "eval-length": resolve(import.meta.dirname, "..", "..", "pipelines", "evalLength.ts")
}

/**
 * Imports modules instead of Node's loader: the prebuilt command sets one (cli/BundledImporter.ts)
 * that answers from the bundle, so that a built-in pipeline or a user's module shares the
 * bundle's instances. Unset, modules load through tsx.
 */
let importer: ((file: string) => Promise<Record<string, unknown>>) | undefined
export const useImporter = (f: (file: string) => Promise<Record<string, unknown>>): void => {
  importer = f
}

/**
 * Raised inside the prebuilt command when a module needs what the bundle cannot give it
 * (top-level await, an effect entry point it does not carry): `bin/polaris.js` then runs the
 * command again from the TypeScript sources. It is raised while the target is resolved, before
 * anything is written.
 */
export class NeedsSources extends Data.TaggedError("NeedsSources")<{ readonly file: string }> {}

/**
 * What a pipeline module's `layer(recipe, context)` may use besides the recipe: the store the
 * run uses (engines that keep files, such as the embedded policy's checkpoints, put them there).
 */
export interface LayerContext {
  readonly store?: string
}

/** A loaded pipeline: built, with the services its stages need. */
export interface Loaded {
  readonly pipeline: Pipeline.Pipeline<any, any>
  readonly layer: Layer.Layer<any, any, never>
  /** The source files involved (the pipeline module, custom stage modules), for watch mode. */
  readonly files: ReadonlyArray<string>
  /** Resource class -> shared pool, from the module's `pools` export (Executor's `RunOptions.pools`). */
  readonly pools: Pools
  /** What each node costs if it runs, from the module's `estimate` export (`polaris plan`); none without one. */
  readonly estimate?: Plan.Estimator
}

const isPipeline = (u: unknown): u is Pipeline.Pipeline<any, any> => typeof u === "object" && u !== null && (u as { _tag?: unknown })._tag === "Pipeline"
const isDefinition = (u: unknown): u is Definition => typeof u === "object" && u !== null && (u as { _tag?: unknown })._tag === "PipelineDefinition"
const isStage = (u: unknown): u is AnyStage => typeof u === "object" && u !== null && (u as { _tag?: unknown })._tag === "Stage"

/** Modification time of each module when it was first imported by this process. */
const importedAt = new Map<string, number | undefined>()

/**
 * Imports a module, again when its file changed since this process first imported it (watch
 * mode): the URL then carries the file's modification time, and a new URL is a new instance.
 */
const importFile = (file: string): Effect.Effect<Record<string, unknown>, ModuleError> => {
  if (importer !== undefined) {
    const load = importer
    return Effect.tryPromise({ try: () => load(file), catch: (e) => e }).pipe(
      Effect.catch((e) => (e instanceof NeedsSources ? Effect.die(e) : Effect.fail(new ModuleError({ file, reason: e instanceof Error ? e.message.split("\n")[0]! : String(e) }))))
    )
  }
  return Effect.tryPromise({
    try: () => {
      const mtime = statSync(file, { throwIfNoEntry: false })?.mtimeMs
      if (!importedAt.has(file)) importedAt.set(file, mtime)
      const changed = mtime !== undefined && importedAt.get(file) !== mtime
      return import(`${pathToFileURL(file).href}${changed ? `?v=${Math.round(mtime)}` : ""}`) as Promise<Record<string, unknown>>
    },
    catch: (e) => new ModuleError({ file, reason: e instanceof Error ? e.message.split("\n")[0]! : String(e) })
  })
}

/** Where the recipe's `pipeline` points: a built-in module or a `.ts` file next to the recipe. */
const pipelineFile = (name: string, recipeDir: string) => {
  if (name.endsWith(".ts")) return Effect.succeed(isAbsolute(name) ? name : resolve(recipeDir, name))
  const builtin = BUILTINS[name]
  if (builtin !== undefined) return Effect.succeed(builtin)
  const known = Object.keys(BUILTINS)
  return Effect.fail(new ModuleError({ file: name, reason: `no built-in pipeline "${name}"${known.length > 0 ? ` (built-ins: ${known.join(", ")})` : ""}; or give a path to a .ts pipeline file` }))
}

/** A recipe's custom stages, imported and checked. */
const insertionsOf = (recipe: Recipe, recipeDir: string) =>
  Effect.forEach(recipe.stages ?? [], (entry) =>
    Effect.gen(function*() {
      const [path, name] = entry.uses.split("#") as [string, string]
      const file = resolve(recipeDir, path)
      const module = yield* importFile(file)
      const stage = module[name]
      if (!isStage(stage)) {
        const stages = Object.entries(module).filter(([, v]) => isStage(v)).map(([k]) => k)
        return yield* new ModuleError({ file, reason: `exports no stage "${name}"${stages.length > 0 ? `; its stages: ${stages.join(", ")}` : ""}` })
      }
      const insertion: Pipeline.Insertion = { after: entry.after, stage, id: entry.id ?? name, ...(entry.params !== undefined ? { params: entry.params } : {}) }
      return { insertion, file }
    }))

/**
 * Builds the pipeline a recipe selects, relative to the recipe's directory, with its custom
 * stages inserted. Build errors (unknown node to insert after, bad params) are ModuleErrors.
 */
export const load = (recipe: Recipe, recipeFile: string, context: LayerContext = {}): Effect.Effect<Loaded, ModuleError> =>
  Effect.gen(function*() {
    const recipeDir = dirname(recipeFile)
    const file = yield* pipelineFile(recipe.pipeline, recipeDir)
    const module = yield* importFile(file)
    const custom = yield* insertionsOf(recipe, recipeDir)
    const exported = module.default ?? module.pipeline
    const pipeline = yield* Effect.try({
      try: () => {
        if (isDefinition(exported)) {
          return Pipeline.make(exported.name, (b) => exported.build(b, recipe, recipeFile), { insertions: custom.map((c) => c.insertion) })
        }
        if (isPipeline(exported)) {
          if (custom.length > 0) throw new Error("exports a finished Pipeline, so stages cannot be inserted; export PipelineModule.define(...) instead")
          return exported
        }
        throw new Error("exports no pipeline (export default PipelineModule.define(...) or Pipeline.make(...))")
      },
      catch: (e) => new ModuleError({ file, reason: e instanceof Error ? e.message : String(e) })
    })
    const layerExport = module.layer
    const layer = (yield* Effect.try({
      try: () => (typeof layerExport === "function" ? (layerExport as (r: Recipe, c: LayerContext) => unknown)(recipe, context) : layerExport ?? Layer.empty),
      catch: (e) => new ModuleError({ file, reason: `its layer function failed: ${e instanceof Error ? e.message : String(e)}` })
    })) as Layer.Layer<any, any, never>
    if (!Layer.isLayer(layer)) return yield* new ModuleError({ file, reason: "its `layer` export is not a Layer (nor a function of the recipe returning one)" })
    const poolsExport = module.pools
    const pools = yield* Effect.try({
      try: () => (typeof poolsExport === "function" ? (poolsExport as (r: Recipe) => unknown)(recipe) : poolsExport ?? {}),
      catch: (e) => new ModuleError({ file, reason: `its pools function failed: ${e instanceof Error ? e.message : String(e)}` })
    })
    const isPoolOf = (v: unknown) => typeof v === "string" || (typeof v === "object" && v !== null && typeof (v as { pool?: unknown }).pool === "string" && (v as { whole?: unknown }).whole === true)
    if (typeof pools !== "object" || pools === null || !Object.values(pools).every(isPoolOf)) {
      return yield* new ModuleError({ file, reason: "its `pools` export is not a record of resource class to pool name or { pool, whole: true } (nor a function of the recipe returning one)" })
    }
    const estimateExport = module.estimate
    const estimate = typeof estimateExport === "function"
      ? yield* Effect.try({
        try: () => (estimateExport as (r: Recipe) => Plan.Estimator)(recipe),
        catch: (e) => new ModuleError({ file, reason: `its estimate function failed: ${e instanceof Error ? e.message : String(e)}` })
      })
      : undefined
    return { pipeline, layer, files: [file, ...custom.map((c) => c.file)], pools: pools as Pools, ...(estimate !== undefined ? { estimate } : {}) }
  })
