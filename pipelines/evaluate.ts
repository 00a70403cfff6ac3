/**
 * The evaluation part of a pipeline, shared by `polaris` (initial vs final policy) and
 * `eval-length` (any engines and models): held-out prompts per requested-length bucket, then for
 * each system its stories judged and summarized (in scope `eval-<system>/`), the systems compared
 * pairwise in both orders, rated, and gathered into the `evaluation` node the report reads.
 *
 *   eval-set -> eval-prompts -> (per system) rollout -> candidates -> judge -> summary
 *                                            all rollouts -> pairwise -> ratings -> evaluation
 */
import type { Builder, NodeRef } from "../src/dag/Pipeline.ts"
import type { Recipe } from "../src/recipe/Recipe.ts"
import type { PromptWithReference } from "../src/records/PromptWithReference.ts"

type Prompts = ReadonlyArray<typeof PromptWithReference.Type>
import { collectEvaluation, evalBatch, evalPrompts, summarizeEval } from "../stages/evaluation.ts"
import { judge } from "../stages/judge.ts"
import { pairwise, rateSystems } from "../stages/pairwise.ts"
import type { Group } from "../src/records/Group.ts"
import { noReferences, stepCandidates } from "../stages/stepCandidates.ts"
import { batchPrompts } from "../stages/batchPrompts.ts"

/** Stories per prompt and system (eval.samples). */
export const evalSamples = (recipe: Recipe): number => recipe.eval?.samples ?? 2

/** The judge stage's params from the recipe. */
export const judgeParams = (recipe: Recipe) => ({
  samples: recipe.judge?.samples ?? 1,
  length_factor: recipe.reward?.length_factor ?? "longwriter",
  concurrency: recipe.judge?.max_in_flight ?? 16
} as const)

/**
 * The eval prompts: per requested-length bucket when the recipe names buckets (eval.buckets),
 * else the held-out prompts as derived; `prompts_per_bucket` of each.
 */
export const evalSet = <R>(b: Builder, recipe: Recipe, heldout: NodeRef<Prompts, R>) => {
  const seed = recipe.seed ?? 0
  const perBucket = recipe.eval?.prompts_per_bucket ?? 16
  const buckets = recipe.eval?.buckets
  const prompts = buckets !== undefined
    ? b.node(evalPrompts, { id: "eval-set", inputs: { prompts: heldout }, params: { buckets, per_bucket: perBucket, seed } })
    : heldout
  const batch = b.node(evalBatch, { id: "eval-prompts", inputs: { prompts }, params: { max_prompts: perBucket * (buckets?.length ?? 1) } })
  // The prompts the systems are asked, in batch order: what each system's rollout receives.
  const chosen = b.node(batchPrompts, { id: "eval-chosen", inputs: { prompts, batch } })
  return { prompts, batch, chosen }
}

/** A system under test: its name and the node of its stories, built in `scope` (`eval-<name>`). */
export interface SystemNode {
  readonly name: string
  readonly scope: Builder
  readonly groups: NodeRef<ReadonlyArray<Group>, any>
}

/** Judges and summarizes every system, compares them pairwise (eval.pairwise, default on) and gathers it all. */
export const evaluateSystems = <R>(b: Builder, recipe: Recipe, prompts: NodeRef<Prompts, R>, systems: ReadonlyArray<SystemNode>, baseline: string) => {
  const names = systems.map((s) => s.name)
  if (!names.includes(baseline)) throw new Error(`eval.baseline "${baseline}" is not among the systems (${names.join(", ")})`)
  const summaries = Object.fromEntries(systems.map(({ name, scope, groups }) => {
    const candidates = scope.node(stepCandidates, { id: "candidates", inputs: { groups, references: scope.node(noReferences, { id: "no-references", inputs: { groups } }) } })
    const judged = scope.node(judge, { id: "judge", inputs: { stories: candidates }, params: judgeParams(recipe) })
    return [name, scope.node(summarizeEval, { id: "summary", inputs: { groups, judged, prompts } })]
  }))
  const seed = recipe.seed ?? 0
  const withPairs = (recipe.eval?.pairwise ?? true) && systems.length > 1
  const ratings = withPairs
    ? b.node(rateSystems, {
      id: "ratings",
      inputs: {
        comparisons: b.node(pairwise(names), {
          id: "pairwise",
          inputs: { prompts, ...Object.fromEntries(systems.map((s) => [s.name, s.groups])) },
          params: { baseline, pairs: recipe.eval?.pairs ?? "baseline", samples: evalSamples(recipe), concurrency: recipe.judge?.max_in_flight ?? 16 }
        })
      },
      params: { baseline, seed, resamples: recipe.eval?.bootstrap ?? 1000 }
    })
    : undefined
  return b.node(collectEvaluation(names, { ratings: withPairs }), {
    id: "evaluation",
    inputs: { ...summaries, ...(ratings !== undefined ? { ratings } : {}) },
    params: { baseline }
  })
}
