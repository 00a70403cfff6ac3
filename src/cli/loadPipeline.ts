/** Loads a pipeline written in code: a module exporting a Pipeline (and optionally a Layer). */
import { isAbsolute, resolve } from "node:path"
import { pathToFileURL } from "node:url"
import { Data, Effect, Layer } from "effect"
import type { Pipeline } from "../Pipeline.ts"

/** The module could not be loaded or does not export a pipeline. */
export class PipelineLoadError extends Data.TaggedError("PipelineLoadError")<{ readonly file: string; readonly reason: string }> {
  override get message() {
    return `${this.file}: ${this.reason}`
  }
}

/** A loaded pipeline module: the pipeline and the services its stages need. */
export interface LoadedPipeline {
  readonly file: string
  readonly pipeline: Pipeline<any>
  readonly layer: Layer.Layer<any, any, never>
}

const isPipeline = (u: unknown): u is Pipeline<any> => typeof u === "object" && u !== null && (u as { _tag?: unknown })._tag === "Pipeline"

/**
 * Imports `file` and takes its `default` or `pipeline` export; its `layer` export, when
 * present, provides the services the stages need (engines, judges).
 */
export const loadPipeline = (file: string): Effect.Effect<LoadedPipeline, PipelineLoadError> => {
  const path = isAbsolute(file) ? file : resolve(file)
  return Effect.tryPromise({
    try: () => import(pathToFileURL(path).href) as Promise<Record<string, unknown>>,
    catch: (e) => new PipelineLoadError({ file: path, reason: e instanceof Error ? e.message : String(e) })
  }).pipe(
    Effect.flatMap((module) => {
      const pipeline = [module.default, module.pipeline].find(isPipeline)
      if (pipeline === undefined) {
        return Effect.fail(new PipelineLoadError({ file: path, reason: "exports no pipeline (export default Pipeline.make(...), or export const pipeline)" }))
      }
      const layer = (Layer.isLayer(module.layer) ? module.layer : Layer.empty) as Layer.Layer<any, any, never>
      return Effect.succeed({ file: path, pipeline, layer })
    })
  )
}
