/**
 * `judge-audit`: the recipe's judge audited on held-out human stories before paying for
 * training (docs/evaluation.md, "Judge audit"): each story and its damaged versions (truncated
 * to 50% and 75%, paragraphs shuffled, a paragraph repeated, the ending cut) and its padded
 * version judged `audit.samples` times; each story against its padded version in both orders;
 * the same by `audit.second_judge` when there is one; then the audit's numbers with intervals.
 *
 *   polaris-data nodes -> audit-stories -> audit-judge (+ audit-second-judge) -> audit-summary
 */
import { Effect, Layer } from "effect"
import * as Judges from "../src/engines/judge/Judges.ts"
import { Judge } from "../src/engines/judge/Judge.ts"
import { SecondJudge } from "../src/engines/judge/SecondJudge.ts"
import { define } from "../src/dag/PipelineModule.ts"
import type { Recipe } from "../src/recipe/Recipe.ts"
import { auditJudge, auditSecondJudge, auditStories, auditSummary } from "../stages/judgeAudit.ts"
import { datasetNode, layer as dataLayer, promptsNode } from "./polarisData.ts"

export default define("judge-audit", (b, recipe) => {
  const heldout = promptsNode(b, recipe, datasetNode(b, recipe), "heldout")
  const seed = recipe.seed ?? 0
  const stories = b.node(auditStories, { id: "stories", inputs: { prompts: heldout }, params: { stories: recipe.audit?.stories ?? 12, seed } })
  const params = { samples: recipe.audit?.samples ?? 3, concurrency: recipe.judge?.max_in_flight ?? 16 }
  const first = b.node(auditJudge, { id: "judge", inputs: { stories }, params })
  const judges = recipe.audit?.second_judge === undefined ? [first] : [first, b.node(auditSecondJudge, { id: "second-judge", inputs: { stories }, params })]
  return { audit: b.node(auditSummary, { id: "audit", inputs: { judges }, params: { seed } }) }
})

/** The data nodes' Writer, the recipe's Judge (proxy when it names none), and the second judge when named. */
export const layer = (recipe: Recipe) => {
  const second = recipe.audit?.second_judge
  return Layer.mergeAll(
    dataLayer(recipe),
    Judges.fromRecipe(recipe.judge ?? { backend: "proxy" }),
    second === undefined ? Layer.empty : Layer.effect(SecondJudge, Effect.service(Judge)).pipe(Layer.provide(Judges.fromRecipe(second)))
  )
}
