/**
 * `judge-references`: the held-out human stories scored by the recipe's judge, with their
 * rewards: a judge's calibration on human writing before any training, and the smallest
 * pipeline that exercises a judge end to end.
 *
 *   polaris-data nodes -> reference-candidates -> judge
 *
 * Recipe keys: `data.*` as in polaris-data; `judge.*` (backend, model, rubric, limits, prices,
 * samples); `reward.length_factor`.
 */
import { Layer } from "effect"
import * as Judges from "../src/engines/judge/Judges.ts"
import { define } from "../src/dag/PipelineModule.ts"
import type { Recipe } from "../src/recipe/Recipe.ts"
import { judge } from "../stages/judge.ts"
import { referenceCandidates } from "../stages/referenceCandidates.ts"
import { datasetNode, layer as dataLayer, promptsNode } from "./polarisData.ts"

export default define("judge-references", (b, recipe) => {
  const heldoutPrompts = promptsNode(b, recipe, datasetNode(b, recipe), "heldout")
  const stories = b.node(referenceCandidates, { id: "references", inputs: { prompts: heldoutPrompts } })
  return {
    judged: b.node(judge, {
      id: "judge",
      inputs: { stories },
      params: {
        samples: recipe.judge?.samples ?? 1,
        length_factor: recipe.reward?.length_factor ?? "longwriter",
        concurrency: recipe.judge?.max_in_flight ?? 16
      }
    })
  }
})

/** The Writer of the data nodes and the recipe's Judge (proxy when the recipe names none). */
export const layer = (recipe: Recipe) => Layer.mergeAll(dataLayer(recipe), Judges.fromRecipe(recipe.judge ?? { backend: "proxy" }))
