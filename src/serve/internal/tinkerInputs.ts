/**
 * Tinker's wire shapes (engines/tinker/Wire.ts) as the engine's inputs, and the engine's
 * forward outputs as Tinker's: text-only model inputs, 1-D dense tensors, the losses the engine
 * has, the SDK's Adam defaults, sampling params.
 */
import { Effect } from "effect"
import type { AdamParams } from "../../model/AdamW.ts"
import { defaultSamplingParams, type SamplingParams } from "../../model/Sampling.ts"
import type { Datum, LossFn, PolicyEngineShape } from "../../engines/PolicyEngine.ts"
import * as Proto from "../../engines/tinker/Proto.ts"
import type * as Wire from "../../engines/tinker/Wire.ts"
import { ADAM_DEFAULTS } from "../../engines/tinker/Wire.ts"
import { badRequest, type RequestError } from "./RequestError.ts"
import { randomSeed, stopTokens } from "./sampling.ts"

/** `model_input.chunks[].tokens`, concatenated (text chunks only). */
export const tokensOf = (input: Wire.ModelInput, where: string): Effect.Effect<Array<number>, RequestError> =>
  Effect.suspend(() => {
    const out: Array<number> = []
    for (const [i, chunk] of input.chunks.entries()) {
      if (chunk.type !== undefined && chunk.type !== "encoded_text") {
        return Effect.fail(badRequest(`${where}.chunks[${i}]: chunk type ${JSON.stringify(chunk.type)} is not supported (text only)`))
      }
      out.push(...(chunk as { readonly tokens: ReadonlyArray<number> }).tokens)
    }
    return Effect.succeed(out)
  })

/** A 1-D dense tensor of `length` entries. */
const vector = (t: Wire.TensorData, where: string, length: number): Effect.Effect<ReadonlyArray<number>, RequestError> => {
  if (t.sparse_crow_indices != null || t.sparse_col_indices != null) return Effect.fail(badRequest(`${where}: sparse tensors are not supported`))
  if (t.shape != null && t.shape.length !== 1) return Effect.fail(badRequest(`${where}: only 1-D tensors are supported, got shape ${JSON.stringify(t.shape)}`))
  if (t.data.length !== length) return Effect.fail(badRequest(`${where} has ${t.data.length} entries, model_input ${length}`))
  return Effect.succeed(t.data)
}

export const datumOf = (d: Wire.Datum, i: number): Effect.Effect<Datum, RequestError> =>
  Effect.gen(function*() {
    const where = `data[${i}]`
    const modelInput = yield* tokensOf(d.model_input, `${where}.model_input`)
    const n = modelInput.length
    const targets = d.loss_fn_inputs["target_tokens"]
    if (targets === undefined) return yield* badRequest(`${where}.loss_fn_inputs.target_tokens is required`)
    const targetTokens = yield* vector(targets, `${where}.loss_fn_inputs.target_tokens`, n)
    const optional = (key: "weights" | "logprobs" | "advantages") => {
      const t = d.loss_fn_inputs[key]
      return t === undefined
        ? Effect.succeed({})
        : Effect.map(vector(t, `${where}.loss_fn_inputs.${key}`, n), (v) => ({ [key]: Float32Array.from(v) }))
    }
    return { modelInput, targetTokens, ...(yield* optional("weights")), ...(yield* optional("logprobs")), ...(yield* optional("advantages")) }
  })

/** Tinker's `loss_fn` + `loss_fn_config` as the engine's LossFn (the variants the engine has). */
const LOSSES: Partial<Record<Wire.LossFnType, (config: Readonly<Record<string, number>>) => LossFn>> = {
  cross_entropy: () => ({ name: "cross_entropy" }),
  importance_sampling: () => ({ name: "importance_sampling" }),
  ppo: (c) => ({ name: "ppo", clipLow: c["clip_low_threshold"] ?? 0.8, clipHigh: c["clip_high_threshold"] ?? 1.2 })
}

export const lossOf = (input: Wire.ForwardBackwardInput): Effect.Effect<LossFn, RequestError> => {
  const make = LOSSES[input.loss_fn]
  return make === undefined
    ? Effect.fail(badRequest(`loss_fn ${JSON.stringify(input.loss_fn)} is not supported (${Object.keys(LOSSES).join(", ")})`))
    : Effect.succeed(make(input.loss_fn_config ?? {}))
}

export const adamOf = (a: Wire.AdamParams): AdamParams => {
  const d = ADAM_DEFAULTS
  return {
    learningRate: a.learning_rate ?? d.learning_rate,
    beta1: a.beta1 ?? d.beta1,
    beta2: a.beta2 ?? d.beta2,
    eps: a.eps ?? d.eps,
    weightDecay: a.weight_decay ?? d.weight_decay,
    gradClipNorm: a.grad_clip_norm ?? d.grad_clip_norm
  }
}

export const samplingParamsOf = (engine: PolicyEngineShape, p: Wire.SamplingParams, promptLength: number): Effect.Effect<SamplingParams, RequestError> =>
  Effect.gen(function*() {
    const maxTokens = p.max_tokens ?? Math.max(1, engine.maxContext - promptLength)
    if (maxTokens < 1) return yield* badRequest(`sampling_params.max_tokens must be > 0, got ${maxTokens}`)
    return {
      ...defaultSamplingParams,
      maxTokens,
      temperature: p.temperature ?? 1,
      topP: p.top_p ?? 1,
      topK: p.top_k ?? -1,
      stop: p.stop != null ? yield* stopTokens(engine, p.stop, "sampling_params.stop") : [],
      seed: p.seed ?? randomSeed()
    }
  })

/** Per-datum logprobs as Tinker's loss_fn_outputs. */
export const forwardOutput = (logprobs: ReadonlyArray<ArrayLike<number>>, metrics: Readonly<Record<string, number>>): Wire.ForwardBackwardOutput => ({
  loss_fn_output_type: Proto.ARRAY_RECORD,
  loss_fn_outputs: logprobs.map((lp) => ({ logprobs: { data: Array.from(lp), dtype: "float32", shape: [lp.length] } })),
  metrics: { ...metrics }
})
