/**
 * `eval-length`: evaluation by requested length of any engines and models against each other
 * (ARCHITECTURE.md §8): the held-out premises at each bucket's lengths (ID, near OOD, far OOD),
 * `eval.samples` stories per prompt from every system in `eval.systems`, each judged (quality
 * per dimension, S_l, length ratio, truncation, per bucket, bootstrap intervals over prompts)
 * and compared pairwise in both orders with Bradley-Terry ratings anchored on `eval.baseline`.
 *
 *   data:     split-stories -> dataset -> derive-heldout-prompts -> eval-set -> eval-prompts
 *   systems:  eval-<name>/rollout -> candidates -> judge -> summary
 *   compare:  pairwise -> ratings -> evaluation        (then `polaris report`)
 *
 * A system is a name and a `policy:` section: the embedded engine with a model folder (the
 * shipped model, a checkpoint a training run wrote under `<store>/checkpoints/`, an ONNX export),
 * a vLLM server (`backend: vllm`, `sampler_urls`, no `base_url`: sampling only), or a Tinker
 * service. Stories are memoized per engine fingerprint, so adding a system reuses the others'.
 */
import { Layer } from "effect"
import * as Judges from "../src/engines/judge/Judges.ts"
import * as Policies from "../src/engines/Policies.ts"
import { define, type LayerContext } from "../src/dag/PipelineModule.ts"
import type { Recipe } from "../src/recipe/Recipe.ts"
import { rolloutSystem } from "../stages/rolloutSystem.ts"
import { evalSamples, evalSet, evaluateSystems } from "./evaluate.ts"
import { samplingOf } from "./polaris.ts"
import { datasetNode, layer as dataLayer, promptsNode } from "./polarisData.ts"
import * as Location from "../src/dag/Location.ts"
import * as HubCache from "../src/model/HubCache.ts"

type System = NonNullable<NonNullable<Recipe["eval"]>["systems"]>[number]

const systemsOf = (recipe: Recipe): ReadonlyArray<System> => {
  const systems = recipe.eval?.systems ?? []
  if (systems.length === 0) throw new Error("eval.systems is required: the models under test, each { name, policy }")
  const names = systems.map((s) => s.name)
  const repeated = names.filter((n, i) => names.indexOf(n) !== i)
  if (repeated.length > 0) throw new Error(`eval.systems: the name ${repeated[0]} is used twice`)
  return systems
}

/** A tokenizer folder by content; a Hugging Face model id by its cached snapshot's commit (HubCache.ts). */
const tokenizerKey = (spec: string) => {
  const identity = HubCache.tokenizerIdentity(spec)
  return "folder" in identity ? Location.of(identity.folder) : identity.id
}

/** What identifies a system's model in its node's key: the section without secrets, local files by content (Location). */
const modelKey = (policy: System["policy"]): Record<string, unknown> => {
  const { api_key: _secret, ...rest } = policy
  return {
    ...rest,
    ...(policy.backend === "embedded" ? { model: Location.of(policy.model) } : {}),
    ...(policy.tokenizer !== undefined ? { tokenizer: tokenizerKey(policy.tokenizer) } : {})
  }
}

export default define("eval-length", (b, recipe) => {
  const systems = systemsOf(recipe)
  const sampling = samplingOf(recipe)
  const seed = recipe.seed ?? 0
  const evaluation = evalSet(b, recipe, promptsNode(b, recipe, datasetNode(b, recipe), "heldout"))
  const nodes = systems.map(({ name, policy }) => {
    const scope = b.scope(`eval-${name}`)
    const groups = scope.node(rolloutSystem, {
      id: "rollout",
      inputs: { prompts: evaluation.chosen },
      params: { system: name, model: modelKey(policy), group_size: evalSamples(recipe) + 1, seed: seed + 1, sampling },
      resource: "sampler"
    })
    return { name, scope, groups }
  })
  return { evaluation: evaluateSystems(b, recipe, evaluation.prompts, nodes, recipe.eval?.baseline ?? systems[0]!.name) }
})

/** Sampling nodes share one slot when any system's engine is the embedded one (Policies.POOLS). */
export const pools = (recipe: Recipe) =>
  systemsOf(recipe).some((s) => s.policy.backend === "embedded") ? Policies.POOLS.embedded : { sampler: "sampler" }

/** The Writer (premises), the Judge, and one policy engine per system. */
export const layer = (recipe: Recipe, context: LayerContext) =>
  Layer.mergeAll(
    dataLayer(recipe),
    Judges.fromRecipe(recipe.judge ?? { backend: "proxy" }),
    Policies.registry(Object.fromEntries(systemsOf(recipe).map((s) => [s.name, s.policy])), context)
  )
