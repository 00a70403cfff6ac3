/**
 * The PolicyEngine a recipe's `policy:` section describes (docs/engines.md):
 *
 * - `embedded`: the story model in onnxruntime-node (EmbeddedPolicy.ts), checkpoints saved to the
 *   store's tmp/ and moved into the store by content (PolicyCheckpoint.ts);
 * - `tinker`: a Tinker-compatible training and sampling service (TinkerPolicy.ts);
 * - `vllm`: training on the Tinker service at `base_url`, sampling and teacher forcing on vLLM
 *   servers (`sampler_urls`, VllmSampler.ts), each published checkpoint loaded there as a
 *   versioned LoRA adapter: with `adapter_dir`, downloaded from Tinker and written there as a
 *   PEFT folder (tinker/Archive.ts); without it, loaded by its `tinker://` path, which only a
 *   server that resolves those itself (`polaris serve`) can do (checked at start-up). Without
 *   `base_url`, sampling only (evaluating a served model).
 *
 * - `simulated`: paper-scale GPU time emulated, deterministic made-up outputs (SimulatedPolicy.ts);
 *   `policy.time_scale` compresses time, `policy.tokenizer` is optional (default the story model's).
 *
 * `policy.tokenizer` is a local folder or a Hugging Face model id in the local cache
 * (model/HubCache.ts); it is resolved here, once, for every backend that reads it.
 *
 * `registry` holds several engines by system name, for evaluations that compare models.
 *
 * Every engine is wrapped by `trackCheckpoints`, so the stages' "load the step's checkpoint"
 * costs nothing when the engine already holds it.
 *
 * @example
 * ```ts
 * Effect.provide(program, Policies.fromRecipe(recipe.policy!, { store: ".polaris" }))
 * ```
 */
import { Effect, Layer, Scope, Semaphore } from "effect"
import type { HttpClient } from "effect/http"
import { rm } from "node:fs/promises"
import { join } from "node:path"
import * as HubCache from "../model/HubCache.ts"
import type { Recipe } from "../recipe/Recipe.ts"
import { inferenceOnly, overriding, PolicyEngine, PolicyError, type PolicyEngineShape, type SamplingWeights } from "./PolicyEngine.ts"
import { PolicyEngines } from "./PolicyEngines.ts"
import * as Secret from "../dag/Secret.ts"
import type { Pools } from "../dag/Executor.ts"
import { priced } from "./PricedPolicy.ts"
import type * as VllmSampler from "./VllmSampler.ts"

// Each backend is imported when an engine of its kind is built, not with this module: a command
// that runs nothing (validate, dag) loads neither onnxruntime nor the remote clients.
const backends = {
  embedded: () => import("./EmbeddedPolicy.ts"),
  simulated: () => import("./SimulatedPolicy.ts"),
  tinker: () => import("./TinkerPolicy.ts"),
  vllm: () => import("./VllmSampler.ts"),
  archive: () => import("./tinker/Archive.ts"),
  peft: () => import("../model/PeftAdapter.ts"),
  tokenizer: () => Promise.all([import("../model/tokenizer/Tokenizer.ts"), import("../model/tokenizer/ChatTemplate.ts")])
}
// The remote engines' HTTP client, loaded with them (effect/http: ~12 ms of a command's start-up,
// which an embedded or simulated engine never pays).
const fetchClient = Layer.unwrap(Effect.promise(() => import("./FetchClient.ts")).pipe(Effect.map((client) => client.layer)))
const loading = <A>(load: () => Promise<A>) => Effect.promise(load)

/**
 * Skips `load` of the checkpoint the engine already holds: the one it last loaded or saved (and
 * wherever that was `moved`), with no training since. The initial model (`initial`) counts as held
 * until the first update.
 */
export const trackCheckpoints = (engine: PolicyEngineShape, initial: string): PolicyEngineShape => {
  let held: string | undefined = initial
  const dirty = <A>(e: Effect.Effect<A, PolicyError>) => Effect.tap(e, () => Effect.sync(() => void (held = undefined)))
  return overriding(engine, {
    forwardBackward: (datums, loss, options) => dirty(engine.forwardBackward(datums, loss, options)),
    optimStep: (params) => dirty(engine.optimStep(params)),
    save: (name) => Effect.tap(engine.save(name), (ref) => Effect.sync(() => void (held = ref.path))),
    load: (ref) => (ref.path === held ? Effect.void : Effect.tap(engine.load(ref), () => Effect.sync(() => void (held = ref.path)))),
    moved: (from, to) =>
      Effect.andThen(Effect.sync(() => void (held === from && (held = to))), engine.moved?.(from, to) ?? Effect.void)
  })
}

/** How published checkpoints reach the vLLM servers as adapter folders. */
export interface AdapterFolders {
  /** The local adapter folder of a published checkpoint path (written there if needed). */
  readonly folderOf: (path: string) => Effect.Effect<string, PolicyError>
  /** Deletes a folder once the servers have switched away from it. */
  readonly remove: (folder: string) => Effect.Effect<void>
}

/**
 * Sampling and teacher forcing on vLLM, training on `trainer`; each publish becomes an adapter
 * there (through `folders` when given, else by the published path itself).
 */
export const withVllmSampling = (trainer: PolicyEngineShape, sampler: VllmSampler.VllmSampler, folders?: AdapterFolders): PolicyEngineShape => {
  let inUse: string | undefined
  // The trainer's published path vLLM samples now; calls naming other weights switch it first.
  let serving: string | undefined
  const switching = Semaphore.makeUnsafe(1)
  const use = (path: string) =>
    Effect.andThen(
      folders === undefined
        ? sampler.useAdapter(path)
        : Effect.gen(function*() {
          const folder = yield* folders.folderOf(path)
          yield* sampler.useAdapter(folder)
          const previous = inUse
          inUse = folder
          if (previous !== undefined && previous !== folder) yield* folders.remove(previous)
        }),
      Effect.sync(() => void (serving = path))
    )
  const publish = () =>
    Effect.flatMap(trainer.publish(), (ref) => (ref === undefined ? Effect.succeed(ref) : Effect.as(switching.withPermits(1)(use(ref.path)), ref)))
  /**
   * vLLM serves one adapter at a time here: weights published by another process (a resumed run)
   * are switched to before sampling. Sampling two policies at once is not supported on this
   * backend (off_policy_steps ≥ 1 is refused at recipe load, Recipe.ts).
   */
  const at = (weights: SamplingWeights | undefined) =>
    weights?.sampler === undefined || weights.sampler === serving ? Effect.void : switching.withPermits(1)(Effect.suspend(() => weights.sampler === serving ? Effect.void : use(weights.sampler!)))
  return {
    ...trainer,
    fingerprint: `${trainer.fingerprint}+${sampler.fingerprint}`,
    sample: (requests, weights) => Effect.andThen(at(weights), sampler.sample(requests)),
    logprobs: (items, weights) => Effect.andThen(at(weights), sampler.logprobs(items)),
    publish,
    // The loaded weights must be the ones vLLM samples from.
    load: (ref) => Effect.andThen(trainer.load(ref), publish())
  }
}

type PolicySection = NonNullable<Recipe["policy"]>

/** `policy.tokenizer` (a folder or a model id in the Hugging Face cache) as the folder holding tokenizer.json. */
export const resolveTokenizer = (spec: string, env: HubCache.HubEnv = process.env): Effect.Effect<string, PolicyError> =>
  Effect.try({
    try: () => HubCache.tokenizerDir(spec, env),
    catch: (e) => new PolicyError({ reason: "BadInput", retryable: false, message: `policy.tokenizer: ${(e as Error).message}`, cause: e })
  })

/**
 * Sampling and teacher forcing on vLLM with no trainer (evaluating a served model): the tokenizer
 * comes from `policy.tokenizer`; training calls fail `Unsupported`.
 */
const vllmOnly = (policy: PolicySection, urls: ReadonlyArray<string>, tokenizerSpec: string) =>
  Effect.gen(function*() {
    const fail = (message: string, cause?: unknown) => new PolicyError({ reason: "Checkpoint", message, retryable: false, cause })
    const tokenizerDir = yield* resolveTokenizer(tokenizerSpec)
    const [[{ Tokenizer }, { endToken, promptIds }], VllmSampler] = yield* Effect.all([loading(backends.tokenizer), loading(backends.vllm)])
    const tokenizer = yield* Effect.try({
      try: () => Tokenizer.fromFile(join(tokenizerDir, "tokenizer.json")),
      catch: (e) => fail(`vllm tokenizer ${tokenizerDir}: ${(e as Error).message}`, e)
    })
    const end = yield* Effect.try({ try: () => tokenizer.tokenId(endToken(tokenizer)), catch: (e) => fail(`vllm tokenizer: ${(e as Error).message}`) })
    const sampler = yield* VllmSampler.make({ urls, model: policy.model, ...(policy.api_key !== undefined ? { apiKey: policy.api_key } : {}) }, end)
    return inferenceOnly({
      fingerprint: sampler.fingerprint,
      tokenizer,
      endToken: end,
      maxContext: policy.max_context ?? sampler.maxModelLen ?? 32768,
      promptIds: (prompt, options) => promptIds(tokenizer, prompt, options),
      sample: sampler.sample,
      logprobs: sampler.logprobs
    }, "vllm without base_url samples only (no trainer)")
  })

/**
 * The engine a `policy:` section describes, unwrapped (for one layer, or one of many systems
 * under evaluation). Throws at once, naming the key, when the section lacks what its backend needs.
 */
export const make = (policy: PolicySection, context: { readonly store?: string }): Effect.Effect<PolicyEngineShape, PolicyError, Scope.Scope> => {
  // With prices, every token-billed call is charged to the node that makes it (PricedPolicy.ts).
  const price = policy.price_per_million
  const local = (engine: Effect.Effect<PolicyEngineShape, PolicyError, Scope.Scope>) =>
    Effect.map(engine, (e) => trackCheckpoints(price === undefined ? e : priced(e, price), policy.model))
  const remote = (engine: Effect.Effect<PolicyEngineShape, PolicyError, HttpClient.HttpClient | Scope.Scope>) => local(Effect.provide(engine, fetchClient))
  if (policy.backend === "embedded") {
    return local(Effect.flatMap(loading(backends.embedded), (EmbeddedPolicy) =>
      EmbeddedPolicy.make({ checkpoint: policy.model, checkpointDir: join(context.store ?? ".polaris", "tmp", "checkpoints") })))
  }
  if (policy.backend === "simulated") {
    return local(Effect.gen(function*() {
      const SimulatedPolicy = yield* loading(backends.simulated)
      const tokenizer = policy.tokenizer === undefined ? undefined : join(yield* resolveTokenizer(policy.tokenizer), "tokenizer.json")
      return yield* SimulatedPolicy.make({
        model: policy.model,
        ...(tokenizer !== undefined ? { tokenizer } : {}),
        ...(policy.time_scale !== undefined ? { timeScale: policy.time_scale } : {}),
        ...(policy.max_context !== undefined ? { maxContext: policy.max_context } : {})
      })
    }))
  }
  const need = (value: string | undefined, key: string): string => {
    if (value === undefined) throw new Error(`policy.${key} is required for the ${policy.backend} backend`)
    return value
  }
  const urls = policy.sampler_urls ?? []
  if (policy.backend === "vllm" && urls.length === 0) throw new Error("policy.sampler_urls is required for the vllm backend (the vLLM servers that sample)")
  if (policy.backend === "vllm" && policy.base_url === undefined) return remote(vllmOnly(policy, urls, need(policy.tokenizer, "tokenizer")))
  const baseUrl = need(policy.base_url, "base_url")
  const tokenizerSpec = need(policy.tokenizer, "tokenizer")
  const apiKey = policy.api_key !== undefined ? { apiKey: policy.api_key } : {}
  const tinker = (tokenizer: string) => ({
    baseUrl,
    baseModel: policy.model,
    tokenizer,
    ...apiKey,
    ...(policy.lora_rank !== undefined ? { loraRank: policy.lora_rank } : {}),
    ...(policy.flavour !== undefined ? { flavour: policy.flavour } : {})
  })
  if (policy.backend === "tinker") {
    return remote(Effect.flatMap(Effect.all([resolveTokenizer(tokenizerSpec), loading(backends.tinker)]), ([dir, TinkerPolicy]) => TinkerPolicy.make(tinker(dir))))
  }
  return remote(Effect.gen(function*() {
    const [TinkerPolicy, VllmSampler, Archive, PeftAdapter] = yield* Effect.all([loading(backends.tinker), loading(backends.vllm), loading(backends.archive), loading(backends.peft)])
    const tokenizerDir = yield* resolveTokenizer(tokenizerSpec)
    const rank = policy.lora_rank ?? 32 // TinkerPolicy's default
    const adapterDir = policy.adapter_dir
    // With adapter_dir: the base model's layout first (the conversion needs it), then the servers.
    const base = adapterDir === undefined ? undefined : yield* Effect.tryPromise({
      try: () => PeftAdapter.baseModel([policy.model, tokenizerDir]),
      catch: (e) => new PolicyError({ reason: "BadInput", retryable: false, message: `policy.adapter_dir: ${(e as Error).message}`, cause: e })
    })
    const trainer = yield* TinkerPolicy.make(tinker(tokenizerDir))
    const sampler = yield* VllmSampler.make({
      urls,
      model: policy.model,
      ...apiKey,
      adapters: adapterDir === undefined ? { rank, uris: true } : { rank, probeDir: adapterDir }
    }, trainer.endToken)
    if (adapterDir === undefined || base === undefined) return withVllmSampling(trainer, sampler)
    const archive = { baseUrl, ...apiKey, adapterDir, base }
    return withVllmSampling(trainer, sampler, {
      folderOf: (path) => (Archive.parsePath(path) === undefined ? Effect.succeed(path) : Effect.provide(Archive.toPeftFolder(archive, path), fetchClient)),
      remove: (folder) => (folder.startsWith(adapterDir) ? Effect.ignore(Effect.tryPromise(() => rm(folder, { recursive: true, force: true }))) : Effect.void)
    })
  }))
}

/**
 * What a policy backend can run at once, as the executor's shared pools (Executor `RunOptions.pools`):
 * the resource classes `sampler` (rollouts, reference logprobs) and `trainer` (updates).
 *
 * - `embedded`: one engine on this machine's CPU: a sampling node takes one of the `policy`
 *   pool's slots (the engine decodes the requests in flight together, on a worker per core), a
 *   training node takes them all, so training never runs beside sampling;
 * - `tinker`, `vllm`, `simulated`: a remote (or emulated) sampler beside a remote trainer, two
 *   resources: one node in flight on each by default (a recipe's `concurrency:` changes that).
 *
 * @example
 * Executor.run(pipeline, { pools: Policies.poolsOf(recipe.policy!) })
 */
export const POOLS: { readonly [B in PolicySection["backend"]]: Pools } = {
  embedded: { sampler: "policy", trainer: { pool: "policy", whole: true } },
  tinker: { sampler: "sampler", trainer: "trainer" },
  vllm: { sampler: "sampler", trainer: "trainer" },
  simulated: { sampler: "sampler", trainer: "trainer" }
}

/** The shared pools of a recipe's policy section ({@link POOLS}). */
export const poolsOf = (policy: PolicySection): Pools => POOLS[policy.backend]

/**
 * The recipe's policy engine as the PolicyEngine layer. With its `api_key` unset (Secret.ts), a
 * remote engine is not connected: the layer holds a stand-in with the engine's fingerprint, so
 * cached nodes are reused and a node that would call it fails first, naming the variable.
 */
export const fromRecipe = (policy: PolicySection, context: { readonly store?: string }): Layer.Layer<PolicyEngine, PolicyError> => {
  const variables = remote(policy) ? Secret.unsetVariables(policy.api_key) : []
  return variables.length > 0 ? Layer.effect(PolicyEngine, unconnected(policy, variables)) : Layer.effect(PolicyEngine, make(policy, context))
}

/** Backends that reach a server, and so use `api_key`. */
const remote = (policy: PolicySection): boolean => policy.backend === "tinker" || policy.backend === "vllm"

/** The fingerprint `make(policy)` gives a remote engine, computed without connecting. */
const fingerprintOf = (policy: PolicySection): Effect.Effect<string> =>
  Effect.map(Effect.all([loading(backends.tinker), loading(backends.vllm)]), ([TinkerPolicy, VllmSampler]) => {
    const trainer = TinkerPolicy.fingerprintOf({ baseModel: policy.model, ...(policy.flavour !== undefined ? { flavour: policy.flavour } : {}) })
    const sampler = VllmSampler.fingerprintOf({ model: policy.model })
    if (policy.backend === "tinker") return trainer
    return policy.base_url === undefined ? sampler : `${trainer}+${sampler}`
  })

/**
 * A remote engine left unconnected for want of its secret: its fingerprint and `missingSecrets`,
 * which the executor checks before running a node; anything else read from it is a defect that
 * names the variable (a stage using the engine without listing it in `engines`).
 */
const unconnected = (policy: PolicySection, variables: ReadonlyArray<string>): Effect.Effect<PolicyEngineShape> =>
  Effect.map(fingerprintOf(policy), (fingerprint) => {
    const known: Record<string, unknown> = { fingerprint, missingSecrets: variables }
    return new Proxy(known, {
      get: (target, property) => {
        if (typeof property === "symbol" || property in target || property === "then" || property === "toJSON") return target[property as string]
        throw new Secret.MissingSecret({ variables, needs: `policy.api_key, for the ${policy.backend} engine's ${property}` })
      }
    }) as unknown as PolicyEngineShape
  })

export { PolicyEngines, type PolicyEnginesShape } from "./PolicyEngines.ts"

/** The registry over `systems` (name → policy section); an unknown name fails BadInput. */
export const registry = (systems: Readonly<Record<string, PolicySection>>, context: { readonly store?: string }): Layer.Layer<PolicyEngines> =>
  Layer.effect(PolicyEngines, Effect.gen(function*() {
    const lock = yield* Semaphore.make(1)
    // Engines built later live as long as the registry (remote sessions close with it).
    const scope = yield* Effect.scope
    const built = new Map<string, PolicyEngineShape>()
    return {
      // One system's engine is built at a time: two stages asking for it at once share one build.
      get: (system) =>
        lock.withPermits(1)(Effect.suspend(() => {
          const have = built.get(system)
          if (have !== undefined) return Effect.succeed(have)
          const section = systems[system]
          if (section === undefined) return Effect.fail(new PolicyError({ reason: "BadInput", retryable: false, message: `no system named ${JSON.stringify(system)} (known: ${Object.keys(systems).join(", ")})` }))
          // Built on first use: a system whose secret is unset fails only the nodes that sample it.
          const variables = remote(section) ? Secret.unsetVariables(section.api_key) : []
          if (variables.length > 0) {
            const missing = new Secret.MissingSecret({ variables, needs: `eval.systems ${system}'s policy.api_key` })
            return Effect.fail(new PolicyError({ reason: "BadInput", retryable: false, message: missing.message, cause: missing }))
          }
          return Effect.tap(Effect.suspend(() => Scope.provide(make(section, context), scope)), (engine) => Effect.sync(() => void built.set(system, engine)))
        }))
    }
  }))
