/**
 * The PolicyEngine a recipe's `policy:` section describes (docs/engines.md):
 *
 * - `embedded`: the story model in onnxruntime-node (EmbeddedPolicy.ts), checkpoints in the store;
 * - `tinker`: a Tinker-compatible training and sampling service (TinkerPolicy.ts);
 * - `vllm`: training on the Tinker service at `base_url`, sampling and teacher forcing on vLLM
 *   servers (`sampler_urls`, VllmSampler.ts), each published checkpoint loaded there as a
 *   versioned LoRA adapter.
 *
 * Every engine is wrapped by `trackCheckpoints`, so the stages' "load the step's checkpoint"
 * costs nothing when the engine already holds it.
 *
 * @example
 * ```ts
 * Effect.provide(program, Policies.fromRecipe(recipe.policy!, { store: ".polaris" }))
 * ```
 */
import { Effect, Layer } from "effect"
import { FetchHttpClient } from "effect/http"
import { join } from "node:path"
import type { Recipe } from "../recipe/Recipe.ts"
import * as EmbeddedPolicy from "./EmbeddedPolicy.ts"
import { PolicyEngine, PolicyError, type PolicyEngineShape } from "./PolicyEngine.ts"
import * as TinkerPolicy from "./TinkerPolicy.ts"
import * as VllmSampler from "./VllmSampler.ts"

/**
 * Skips `load` of the checkpoint the engine already holds: the one it last loaded or saved, with
 * no training since. The initial model (`initial`) counts as held until the first update.
 */
export const trackCheckpoints = (engine: PolicyEngineShape, initial: string): PolicyEngineShape => {
  let held: string | undefined = initial
  const dirty = <A>(e: Effect.Effect<A, PolicyError>) => Effect.tap(e, () => Effect.sync(() => void (held = undefined)))
  return {
    ...engine,
    forwardBackward: (datums, loss) => dirty(engine.forwardBackward(datums, loss)),
    optimStep: (params) => dirty(engine.optimStep(params)),
    save: (name) => Effect.tap(engine.save(name), (ref) => Effect.sync(() => void (held = ref.path))),
    load: (ref) => (ref.path === held ? Effect.void : Effect.tap(engine.load(ref), () => Effect.sync(() => void (held = ref.path))))
  }
}

/** Sampling and teacher forcing on vLLM, training on `trainer`; each publish becomes an adapter there. */
export const withVllmSampling = (trainer: PolicyEngineShape, sampler: VllmSampler.VllmSampler): PolicyEngineShape => {
  const publish = () =>
    Effect.flatMap(trainer.publish(), (ref) => (ref === undefined ? Effect.succeed(ref) : Effect.as(sampler.useAdapter(ref.path), ref)))
  return {
    ...trainer,
    fingerprint: `${trainer.fingerprint}+${sampler.fingerprint}`,
    sample: sampler.sample,
    logprobs: sampler.logprobs,
    publish,
    // The loaded weights must be the ones vLLM samples from.
    load: (ref) => Effect.andThen(trainer.load(ref), publish())
  }
}

type PolicySection = NonNullable<Recipe["policy"]>

export const fromRecipe = (policy: PolicySection, context: { readonly store?: string }): Layer.Layer<PolicyEngine, PolicyError> => {
  const tracked = (make: Effect.Effect<PolicyEngineShape, PolicyError, any>) =>
    Layer.effect(PolicyEngine, Effect.map(make, (engine) => trackCheckpoints(engine, policy.model))).pipe(Layer.provide(FetchHttpClient.layer)) as Layer.Layer<PolicyEngine, PolicyError>
  if (policy.backend === "embedded") {
    return tracked(EmbeddedPolicy.make({ checkpoint: policy.model, checkpointDir: join(context.store ?? ".polaris", "checkpoints") }))
  }
  const need = (value: string | undefined, key: string): string => {
    if (value === undefined) throw new Error(`policy.${key} is required for the ${policy.backend} backend`)
    return value
  }
  const tinker = {
    baseUrl: need(policy.base_url, "base_url"),
    baseModel: policy.model,
    tokenizer: need(policy.tokenizer, "tokenizer"),
    ...(policy.api_key !== undefined ? { apiKey: policy.api_key } : {}),
    ...(policy.lora_rank !== undefined ? { loraRank: policy.lora_rank } : {}),
    ...(policy.flavour !== undefined ? { flavour: policy.flavour } : {})
  }
  if (policy.backend === "tinker") return tracked(TinkerPolicy.make(tinker))
  const urls = policy.sampler_urls ?? []
  if (urls.length === 0) throw new Error("policy.sampler_urls is required for the vllm backend (the vLLM servers that sample)")
  return tracked(Effect.gen(function*() {
    const trainer = yield* TinkerPolicy.make(tinker)
    const sampler = yield* VllmSampler.make({ urls, model: policy.model, ...(policy.api_key !== undefined ? { apiKey: policy.api_key } : {}) }, trainer.endToken)
    return withVllmSampling(trainer, sampler)
  }))
}
