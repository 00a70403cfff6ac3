/**
 * `polaris-data`: the data half of the POLARIS pipeline, as a built-in pipeline.
 *
 *   split-stories -> dataset -> derive-prompts (train) -> stratify
 *                            -> derive-prompts (held out)
 *
 * Recipe keys: `data.anthologies` (default: the bundled corpus), `data.min_words`,
 * `data.max_words`, `data.heldout_fraction`, `data.prompt.{mode,round_to,max_words}`,
 * `data.buckets.{edges,weights}`, `data.writer`.
 */
import { join } from "node:path"
import type { Layer } from "effect"
import * as Location from "../src/dag/Location.ts"
import { Writer } from "../src/engines/Writer.ts"
import type { Builder, NodeRef } from "../src/dag/Pipeline.ts"
import { define } from "../src/dag/PipelineModule.ts"
import { sharedByConfig } from "../src/dag/Engine.ts"
import * as Secret from "../src/dag/Secret.ts"
import type { Recipe } from "../src/recipe/Recipe.ts"
import type { DatasetParams } from "../src/data/Dataset.ts"
import { dataset, heldoutOf, trainOf } from "../stages/dataset.ts"
import { Dataset } from "../src/records/Dataset.ts"
import { derivePrompts } from "../stages/derivePrompts.ts"
import { splitStories } from "../stages/splitStories.ts"
import { stratify } from "../stages/stratify.ts"

/** Requested-length bucket edges when the recipe gives none (the paper's ID range, in 1k steps). */
export const DEFAULT_EDGES = [0, 1000, 2000, 3000, 4000, 12000]

/** The corpus that ships with polaris. */
export const BUNDLED_CORPUS = join(import.meta.dirname, "..", "examples", "anthologies")

/** The corpus the recipe reads: its anthologies, or the bundled one. */
export const anthologiesOf = (recipe: Recipe): ReadonlyArray<string> => recipe.data?.anthologies ?? [BUNDLED_CORPUS]

/** The recipe's length filters and held-out share, as the `dataset` stage (and `prepareDataset`) take them. */
export const datasetParams = (recipe: Recipe): DatasetParams => {
  const data = recipe.data ?? {}
  return {
    ...(data.min_words !== undefined ? { min_words: data.min_words } : {}),
    ...(data.max_words !== undefined ? { max_words: data.max_words } : {}),
    ...(data.heldout_fraction !== undefined ? { heldout_fraction: data.heldout_fraction } : {})
  }
}

/** `split-stories` -> `dataset`: the recipe's stories, filtered, de-duplicated and split. */
export const datasetNode = (b: Builder, recipe: Recipe) => {
  const stories = b.node(splitStories, { id: "split-stories", params: { sources: anthologiesOf(recipe).map(Location.of) } })
  return b.node(dataset, { id: "dataset", inputs: { stories }, params: datasetParams(recipe) })
}

/** One prompt per training (or held-out) story, the premise by the recipe's Writer. */
export const promptsNode = (b: Builder, recipe: Recipe, split: NodeRef<typeof Dataset.Type, never>, which: "train" | "heldout") => {
  const data = recipe.data ?? {}
  if (data.prompt?.mode === "excerpt" && data.prompt.max_words === undefined) {
    throw new Error("data.prompt.mode is excerpt: set data.prompt.max_words (the longest reference)")
  }
  const params = {
    round_to: data.prompt?.round_to ?? 100,
    mode: data.prompt?.mode ?? "full",
    ...(data.prompt?.max_words !== undefined ? { max_words: data.prompt.max_words } : {})
  } as const
  const stories = which === "train"
    ? b.node(trainOf, { id: "train", inputs: { dataset: split } })
    : b.node(heldoutOf, { id: "heldout", inputs: { dataset: split } })
  return b.node(derivePrompts, { id: which === "train" ? "derive-prompts" : "derive-heldout-prompts", inputs: { stories }, params })
}

export default define("polaris-data", (b, recipe) => {
  const split = datasetNode(b, recipe)
  const prompts = promptsNode(b, recipe, split, "train")
  const buckets = recipe.data?.buckets ?? { edges: DEFAULT_EDGES }
  return {
    dataset: split,
    prompts,
    strata: b.node(stratify, { id: "stratify", inputs: { prompts }, params: { edges: buckets.edges, ...(buckets.weights !== undefined ? { weights: buckets.weights } : {}) } }),
    heldoutPrompts: promptsNode(b, recipe, split, "heldout")
  }
})

/** The Writer the recipe chooses (extractive unless `data.writer` says otherwise). */
export const layer = (recipe: Recipe): Layer.Layer<Writer> => {
  const writer = recipe.data?.writer
  if (writer === undefined || writer.backend === "extractive") return Writer.extractive
  // Equal sections give one Layer object: a sweep's variants then share one writer and its rate limit.
  return sharedByConfig("writer", writer, () => Secret.layerRequiring(Writer, remoteWriter(writer), [writer.api_key]))
}

const remoteWriter = (writer: NonNullable<NonNullable<Recipe["data"]>["writer"]>): Layer.Layer<Writer> => {
  if (writer.model === undefined) throw new Error(`data.writer.model is required for the ${writer.backend} writer`)
  const price = writer.price_per_million === undefined ? {} : { price: writer.price_per_million }
  if (writer.backend === "gemini") {
    if (writer.api_key === undefined) throw new Error("data.writer.api_key is required for the gemini writer (write ${GEMINI_API_KEY})")
    return Writer.gemini({ apiKey: writer.api_key, model: writer.model, ...price, ...(writer.base_url !== undefined ? { baseUrl: writer.base_url } : {}) })
  }
  if (writer.base_url === undefined) throw new Error("data.writer.base_url is required for the openai writer")
  return Writer.openai({ baseUrl: writer.base_url, model: writer.model, ...price, ...(writer.api_key !== undefined ? { apiKey: writer.api_key } : {}) })
}

