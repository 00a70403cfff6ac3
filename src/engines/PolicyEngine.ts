/**
 * The PolicyEngine: the model being trained, behind a Tinker-shaped interface (ARCHITECTURE.md §6,
 * protocols.md §1) so the embedded ONNX model and remote GPU engines slot into the same stages.
 *
 * - `sample(requests, weights?)`: n continuations per prompt (each request with its own settings),
 *   with per-token sampler logprobs, from the given policy weights (else the last published).
 * - `logprobs(items)`: teacher-forced logprobs of a completion after a prompt (for HRI references);
 *   `trainerLogprobs(items)` the same under the trainer's weights (the mismatch correction's old policy).
 * - `forwardBackward(datums, loss)`: gradients of a SUM loss accumulate until `optimStep`.
 * - `optimStep(adam)`, `save(name)` / `load(path)` (weights and optimizer state), `publish()`
 *   (the trained weights become the ones `sample` and `logprobs` use).
 *
 * Datums follow Tinker's alignment: `modelInput = full[:-1]`, `targetTokens = full[1:]`, every
 * per-token array the length of `modelInput`; position i scores `targetTokens[i]`.
 *
 * @example
 * ```ts
 * const program = Effect.gen(function*() {
 *   const policy = yield* PolicyEngine
 *   const [[seq]] = yield* policy.sample([{ prompt: policy.promptIds("Write a 300-word story about a fox."), n: 1, params }])
 *   yield* policy.forwardBackward([datum], { name: "ppo", clipLow: 0.8, clipHigh: 1.2 })
 *   yield* policy.optimStep({ ...defaultAdamParams, learningRate: 1e-5 })
 *   yield* policy.publish()
 * })
 * Effect.runPromise(Effect.provide(program, EmbeddedPolicy.layer({ checkpoint: "models/story-1m" })))
 * ```
 */
import { Context, Data, Effect, Schema } from "effect"
import type { AdamParams } from "../model/AdamW.ts"
import type { SamplingParams } from "../model/Sampling.ts"
import type { ChatOptions } from "../model/tokenizer/ChatTemplate.ts"
import type { Tokenizer } from "../model/tokenizer/Tokenizer.ts"
import type { Fingerprinted } from "../dag/Engine.ts"

/** The engine losses (Tinker's names); each a SUM over tokens, normalization is the caller's. */
export const LossFn = Schema.Union([
  /** ℓ = -weights·lp */
  Schema.Struct({ name: Schema.Literal("cross_entropy") }),
  /** ℓ = -r·A, r = exp(lp - logprobs) */
  Schema.Struct({ name: Schema.Literal("importance_sampling") }),
  /** ℓ = -min(r·A, clip(r, clipLow, clipHigh)·A); the bounds are ratio bounds (Tinker: 0.8 / 1.2), not ε */
  Schema.Struct({ name: Schema.Literal("ppo"), clipLow: Schema.Number, clipHigh: Schema.Number })
])
export type LossFn = typeof LossFn.Type

/** One training sequence. */
export interface Datum {
  readonly modelInput: ReadonlyArray<number>
  readonly targetTokens: ReadonlyArray<number>
  /** cross_entropy per-token weights. */
  readonly weights?: ArrayLike<number>
  /** Sampler logprobs (importance_sampling, ppo); 0 on prompt positions. */
  readonly logprobs?: ArrayLike<number>
  /** Per-token advantages (importance_sampling, ppo); 0 on prompt positions. */
  readonly advantages?: ArrayLike<number>
}

/** One sampling request: Tinker's `prompt`, `num_samples` and `sampling_params`. */
export interface SampleRequest {
  readonly prompt: ReadonlyArray<number>
  readonly n: number
  readonly params: SamplingParams
}

export interface SampledSequence {
  readonly tokens: ReadonlyArray<number>
  /**
   * log q(token) as the sampler reports it: the raw distribution (log-softmax of the logits
   * before temperature and top-p/top-k) on the embedded engine and vLLM's default; the
   * distribution actually sampled on a vLLM serving `--logprobs-mode processed_logprobs`.
   */
  readonly logprobs: ReadonlyArray<number>
  readonly stopReason: "stop" | "length"
}

export interface ForwardBackwardResult {
  /** Learner logprobs per datum, `modelInput`'s length. */
  readonly logprobs: ReadonlyArray<Float32Array>
  /** Tinker-style `name:reduction` metrics: `loss:sum`, `tokens:sum`, `clipped:sum`. */
  readonly metrics: Readonly<Record<string, number>>
}

/** Options of `forwardBackward`. */
export interface ForwardBackwardOptions {
  /**
   * Where the caller reads the result's `logprobs`: "all" positions (the default, Tinker's
   * `loss_fn_outputs`), or only where a token has a loss (weight or advantage not 0), when an
   * engine may skip the LM head elsewhere (the embedded engine does: a GRPO step's prompts are a
   * quarter of its positions) and report NaN there. The loss, its gradients and the metrics are
   * the same either way.
   */
  readonly logprobs?: "all" | "loss"
}

export interface OptimStepResult {
  /** Global gradient L2 norm before clipping. */
  readonly gradNorm: number
  readonly clipScale: number
  /** Optimizer steps taken so far. */
  readonly step: number
}

/** Where a checkpoint went: a folder path (embedded) or a `tinker://` path. */
export interface CheckpointRef {
  readonly path: string
}

/**
 * The policy weights a sampling or scoring call uses, named per call so that a sampler can serve
 * an older policy while the trainer trains a newer one (off-policy GRPO) and calls for different
 * policies can be in flight at once: `checkpoint` is what `load` would take (a folder, a remote
 * path, the base model's name), `sampler` where the sampler already holds those weights, when
 * `publish` said (Tinker's sampler_weights path). Neither touches the trainer's state.
 */
export interface SamplingWeights {
  readonly checkpoint: string
  readonly sampler?: string
}

export type PolicyErrorReason =
  | "BadInput" // a datum or parameter the engine cannot use (not retryable)
  | "ContextOverflow" // a sequence longer than the model's context
  | "Checkpoint" // save/load failed or the checkpoint is invalid
  | "Backend" // the engine itself failed
  | "Unavailable" // a remote engine is down or rate-limited (retryable)
  | "Unsupported" // the engine cannot do this (training on an inference-only ONNX export)

export class PolicyError extends Data.TaggedError("PolicyError")<{
  readonly reason: PolicyErrorReason
  readonly message: string
  readonly retryable: boolean
  readonly cause?: unknown
}> {}

export interface PolicyEngineShape extends Fingerprinted {
  readonly tokenizer: Tokenizer
  /** The id that ends a turn; sampling always stops on it. */
  readonly endToken: number
  readonly maxContext: number
  /** Chat-formatted prompt ids (`promptIds` of the model's chat template; `enableThinking` for Qwen3-style templates). */
  readonly promptIds: (prompt: string, options?: ChatOptions) => Array<number>
  /**
   * Samples for several requests at once (concurrent requests): `n` continuations of each
   * `prompt` under its own `params`; the result has one array of `n` sequences per request, in
   * order. A request's tokens depend only on its own prompt, params and seed, never on the other
   * requests. `weights`: the policy to sample (absent: the last published, or the only one an
   * inference-only engine has).
   */
  readonly sample: (requests: ReadonlyArray<SampleRequest>, weights?: SamplingWeights) => Effect.Effect<Array<Array<SampledSequence>>, PolicyError>
  /** Teacher-forced logprobs of each completion after its prompt under `weights` (as `sample`). */
  readonly logprobs: (
    items: ReadonlyArray<{ readonly prompt: ReadonlyArray<number>; readonly completion: ReadonlyArray<number> }>,
    weights?: SamplingWeights
  ) => Effect.Effect<Array<Float32Array>, PolicyError>
  /**
   * Teacher-forced logprobs of a completion under the TRAINER's current weights, the model
   * `forwardBackward` differentiates (where `logprobs` asks the sampler): the old policy of the
   * mismatch correction (grpo/MismatchCorrection.ts). Same layout as `logprobs`.
   */
  readonly trainerLogprobs: (
    items: ReadonlyArray<{ readonly prompt: ReadonlyArray<number>; readonly completion: ReadonlyArray<number> }>
  ) => Effect.Effect<Array<Float32Array>, PolicyError>
  readonly forwardBackward: (
    datums: ReadonlyArray<Datum>,
    loss: LossFn,
    options?: ForwardBackwardOptions
  ) => Effect.Effect<ForwardBackwardResult, PolicyError>
  readonly optimStep: (params: AdamParams) => Effect.Effect<OptimStepResult, PolicyError>
  readonly save: (name: string) => Effect.Effect<CheckpointRef, PolicyError>
  readonly load: (ref: CheckpointRef) => Effect.Effect<void, PolicyError>
  /**
   * Makes the trained weights the sampler's; returns where the sampler weights are, when they have
   * a path (Tinker's sampler_weights), for later calls to name as `SamplingWeights.sampler`.
   */
  readonly publish: () => Effect.Effect<CheckpointRef | undefined, PolicyError>
  /**
   * The folder `save` wrote at `from` now lies at `to`, the same bytes (the artifact store took it
   * as a stored tree's copy, PolicyCheckpoint.ts): an engine that holds `from`'s weights then
   * holds `to`'s, and loading or sampling `to` need read nothing. Optional: engines that keep no
   * such record ignore it.
   */
  readonly moved?: (from: string, to: string) => Effect.Effect<void>
}

export class PolicyEngine extends Context.Service<PolicyEngine, PolicyEngineShape>()("polaris/PolicyEngine") {}

/** The sampling half of an engine; `inferenceOnly` completes it. */
export type SamplingEngine = Pick<PolicyEngineShape, "fingerprint" | "tokenizer" | "endToken" | "maxContext" | "promptIds" | "sample" | "logprobs">

/**
 * `engine` with `methods` in place of its own. Its other properties are kept as they are
 * defined, not read: an engine's lazy getter (the embedded tokenizer, made on first use) stays
 * lazy, where `{ ...engine }` would make it at once.
 */
export const overriding = (engine: PolicyEngineShape, methods: Partial<PolicyEngineShape>): PolicyEngineShape =>
  Object.defineProperties({}, { ...Object.getOwnPropertyDescriptors(engine), ...Object.getOwnPropertyDescriptors(methods) }) as PolicyEngineShape

/**
 * An engine that samples and scores but cannot train (an ONNX export, a served model): every
 * training call fails `Unsupported`, saying `why`; `publish` has nothing to publish.
 */
export const inferenceOnly = (engine: SamplingEngine, why: string): PolicyEngineShape => {
  const unsupported = (what: string) => Effect.fail(new PolicyError({ reason: "Unsupported", retryable: false, message: `${what}: ${why}` }))
  return {
    ...engine,
    trainerLogprobs: () => unsupported("forward"),
    forwardBackward: () => unsupported("forward_backward"),
    optimStep: () => unsupported("optim_step"),
    save: () => unsupported("save"),
    load: () => unsupported("load"),
    publish: () => Effect.succeed(undefined)
  }
}

/** The datum for "prompt then completion", Tinker-aligned, with per-completion-token arrays. */
export const datumOf = (
  prompt: ReadonlyArray<number>,
  completion: ReadonlyArray<number>,
  perToken: { readonly weights?: ArrayLike<number>; readonly logprobs?: ArrayLike<number>; readonly advantages?: ArrayLike<number> } = {}
): Datum => {
  const full = [...prompt, ...completion]
  const pad = (a: ArrayLike<number> | undefined) => {
    if (a === undefined) return undefined
    if (a.length !== completion.length) throw new Error(`per-token arrays need ${completion.length} entries, got ${a.length}`)
    const out = new Float32Array(full.length - 1)
    out.set(Array.from(a), prompt.length - 1)
    return out
  }
  const weights = pad(perToken.weights)
  const logprobs = pad(perToken.logprobs)
  const advantages = pad(perToken.advantages)
  return {
    modelInput: full.slice(0, -1),
    targetTokens: full.slice(1),
    ...(weights !== undefined ? { weights } : {}),
    ...(logprobs !== undefined ? { logprobs } : {}),
    ...(advantages !== undefined ? { advantages } : {})
  }
}
