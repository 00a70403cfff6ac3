/**
 * The vLLM OpenAI-compatible subset (protocols.md §2) over one PolicyEngine: what RL rollouts
 * and scoring use.
 *
 * - `POST /v1/completions` with token-id prompts (or text), `n`, the sampling fields, `seed`,
 *   `stop_token_ids`, `logprobs`, `prompt_logprobs`, `return_token_ids`, `echo` (+ `max_tokens: 0`
 *   to score a prompt). Choices run prompt-major. `logprobs: k` and `prompt_logprobs: k` report the
 *   chosen token only (no top-k alternatives), and prompt logprob `rank` is null: the engine
 *   returns the chosen token's logprob, not the distribution.
 * - `GET /health`, `GET /v1/models`, `POST /reset_prefix_cache` (nothing to reset),
 *   `POST /tokenize`, `POST /detokenize`.
 * - LoRA: `POST /v1/load_lora_adapter {lora_name, lora_path}` registers a checkpoint path (a
 *   `tinker://…/sampler_weights/…` of this server, or a folder) under a name; `model: <lora_name>`
 *   then samples those weights. These are full-weight checkpoints, not LoRA deltas: each adapter
 *   other than the engine's current weights is opened as its own sampling engine.
 * - Errors: `{"error":{"message","type","param","code"}}`.
 */
import { randomBytes } from "node:crypto"
import type { PolicyEngineShape, SampledSequence } from "../engines/PolicyEngine.ts"
import { defaultSamplingParams, type SamplingParams } from "../model/Sampling.ts"
import type { Handler, Reply } from "./Server.ts"
import {
  asBool,
  asInt,
  asNumber,
  asRecord,
  asString,
  bad,
  field,
  HttpError,
  promptLogprobs,
  randomSeed,
  runEngine,
  stopTokens
} from "./TinkerRoutes.ts"

const ERROR_TYPES: Record<number, string> = { 400: "BadRequestError", 404: "NotFoundError", 500: "InternalServerError", 503: "ServiceUnavailableError" }

/** vLLM's error body. */
export const errorReply = (status: number, message: string, type?: string): Reply => ({
  status,
  json: { error: { message, type: type ?? ERROR_TYPES[status] ?? "BadRequestError", param: null, code: status } }
})

export interface OpenAIOptions {
  readonly modelName: string
  /** The engine sampling a checkpoint path (undefined: the base model); see TinkerRoutes. */
  readonly engineFor: (path: string | undefined) => Promise<PolicyEngineShape>
}

/** vLLM clamps -inf logprobs to -9999. */
const clamp = (x: number) => (Number.isFinite(x) ? x : x > 0 ? x : -9999)

/** `prompt` as lists of token ids: int[], int[][], a string or strings. */
const prompts = (engine: PolicyEngineShape, v: unknown): Array<Array<number>> => {
  const one = (p: unknown, name: string): Array<number> => {
    if (typeof p === "string") return engine.tokenizer.encode(p)
    if (Array.isArray(p) && p.every((x) => Number.isInteger(x))) return p as Array<number>
    return bad(`${name} must be token ids or a string`)
  }
  if (v === undefined || v === null) return bad("prompt is required")
  const list = Array.isArray(v) && v.length > 0 && (Array.isArray(v[0]) || typeof v[0] === "string") ? v : [v]
  const out = list.map((p, i) => one(p, list === v ? `prompt[${i}]` : "prompt"))
  if (out.some((p) => p.length === 0)) return bad("prompt has no tokens")
  return out
}

interface LogprobsBlock {
  tokens: Array<string>
  token_logprobs: Array<number | null>
  top_logprobs: Array<Record<string, number> | null>
  text_offset: Array<number>
}

export const make = (engine: PolicyEngineShape, options: OpenAIOptions) => {
  /** Loaded adapters: name → checkpoint path. */
  const adapters = new Map<string, string>()
  const created = Math.floor(Date.now() / 1000)

  const engineOf = (model: string | undefined): Promise<PolicyEngineShape> => {
    if (model === undefined || model === options.modelName) return Promise.resolve(engine)
    const path = adapters.get(model)
    if (path === undefined) throw new HttpError(404, `The model \`${model}\` does not exist.`, "NotFoundError")
    return options.engineFor(path)
  }

  const completions = async (body: Record<string, unknown>): Promise<Reply> => {
    const modelName = field(body, "model", asString) ?? options.modelName
    const target = await engineOf(modelName)
    const ps = prompts(target, body["prompt"])
    const n = field(body, "n", asInt) ?? 1
    if (n < 1) bad(`n must be >= 1, got ${n}`)
    const maxTokens = field(body, "max_tokens", asInt) ?? 16
    if (maxTokens < 0) bad(`max_tokens must be >= 0, got ${maxTokens}`)
    const stopIds = [
      ...(field(body, "stop_token_ids", (v, name) => stopTokens(target, v, name)) ?? []),
      ...(field(body, "stop", (v, name) => stopTokens(target, v, name)) ?? [])
    ]
    const params: SamplingParams = {
      ...defaultSamplingParams,
      maxTokens,
      temperature: field(body, "temperature", asNumber) ?? 1,
      topP: field(body, "top_p", asNumber) ?? 1,
      topK: field(body, "top_k", asInt) ?? -1,
      repetitionPenalty: field(body, "repetition_penalty", asNumber) ?? 1,
      presencePenalty: field(body, "presence_penalty", asNumber) ?? 0,
      frequencyPenalty: field(body, "frequency_penalty", asNumber) ?? 0,
      stop: stopIds,
      seed: field(body, "seed", asInt) ?? randomSeed()
    }
    const logprobs = field(body, "logprobs", asInt)
    const wantPromptLogprobs = field(body, "prompt_logprobs", asInt) !== undefined
    const echo = field(body, "echo", asBool) ?? false
    const returnIds = field(body, "return_token_ids", asBool) ?? false
    for (const p of ps) {
      if (p.length + maxTokens > target.maxContext && maxTokens > 0) {
        bad(`This model's maximum context length is ${target.maxContext} tokens. However, you requested ${p.length + maxTokens} tokens (${p.length} in the messages, ${maxTokens} in the completion).`)
      }
    }

    const groups: Array<Array<SampledSequence>> = maxTokens === 0
      ? ps.map(() => Array.from({ length: n }, () => ({ tokens: [], logprobs: [], stopReason: "length" as const })))
      : await runEngine(target.sample(ps.map((prompt) => ({ prompt, n, params }))))
    const promptLps = wantPromptLogprobs || (echo && logprobs !== undefined)
      ? await Promise.all(ps.map((p) => promptLogprobs(target, p)))
      : undefined

    const piece = (id: number) => target.tokenizer.decode([id])
    const choices = ps.flatMap((prompt, pi) =>
      (groups[pi] ?? []).map((seq, j) => {
        const plp = promptLps?.[pi]
        let block: LogprobsBlock | null = null
        if (logprobs !== undefined) {
          const ids = echo ? [...prompt, ...seq.tokens] : [...seq.tokens]
          const lps: Array<number | null> = echo ? [...(plp ?? prompt.map(() => null)), ...seq.logprobs] : [...seq.logprobs]
          const tokens = ids.map(piece)
          let offset = 0
          block = {
            tokens,
            token_logprobs: lps.map((x) => (x === null ? null : clamp(x))),
            top_logprobs: lps.map((x, t) => (x === null ? null : { [tokens[t]!]: clamp(x) })),
            text_offset: tokens.map((s) => {
              const at = offset
              offset += s.length
              return at
            })
          }
        }
        const last = seq.tokens.at(-1)
        const text = target.tokenizer.decode(seq.tokens, { skipSpecial: true })
        return {
          index: pi * n + j,
          text: echo ? target.tokenizer.decode(prompt, { skipSpecial: true }) + text : text,
          logprobs: block,
          finish_reason: seq.stopReason,
          stop_reason: seq.stopReason === "stop" && last !== undefined && last !== target.endToken && stopIds.includes(last) ? last : null,
          prompt_token_ids: returnIds ? [...prompt] : null,
          token_ids: returnIds ? [...seq.tokens] : null,
          prompt_logprobs: wantPromptLogprobs && plp !== undefined
            ? plp.map((x, t) => (x === null ? null : { [String(prompt[t])]: { logprob: clamp(x), rank: null, decoded_token: piece(prompt[t]!) } }))
            : null
        }
      })
    )
    const promptTokens = ps.reduce((a, p) => a + p.length, 0)
    const completionTokens = groups.flat().reduce((a, s) => a + s.tokens.length, 0)
    return {
      status: 200,
      json: {
        id: `cmpl-${randomBytes(8).toString("hex")}`,
        object: "text_completion",
        created: Math.floor(Date.now() / 1000),
        model: modelName,
        choices,
        usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens, prompt_tokens_details: null },
        system_fingerprint: null,
        service_tier: null,
        kv_transfer_params: null
      }
    }
  }

  const modelCard = (id: string, parent: string | null, root: string) => ({
    id,
    object: "model",
    created,
    owned_by: "vllm",
    root,
    parent,
    max_model_len: engine.maxContext,
    permission: []
  })

  const routes: Record<string, (body: Record<string, unknown>) => Promise<Reply> | Reply> = {
    "GET /health": () => ({ status: 200 }),
    "GET /v1/models": () => ({
      status: 200,
      json: {
        object: "list",
        data: [
          modelCard(options.modelName, null, options.modelName),
          ...[...adapters].map(([name, path]) => modelCard(name, options.modelName, path))
        ]
      }
    }),
    "POST /v1/completions": completions,
    "POST /v1/load_lora_adapter": async (body) => {
      const name = field(body, "lora_name", asString) ?? bad("lora_name is required")
      const path = field(body, "lora_path", asString) ?? bad("lora_path is required")
      const inplace = field(body, "load_inplace", asBool) ?? false
      if (name === options.modelName) bad(`${name} is the base model's name`)
      if (adapters.has(name) && !inplace) throw new HttpError(400, `The lora adapter '${name}' has already been loaded.`, "InvalidUserInput")
      await options.engineFor(path) // a missing path is a 404 now, not at sampling time
      adapters.set(name, path)
      return { status: 200, text: `Success: LoRA adapter '${name}' added successfully.` }
    },
    "POST /v1/unload_lora_adapter": (body) => {
      const name = field(body, "lora_name", asString) ?? bad("lora_name is required")
      if (!adapters.delete(name)) throw new HttpError(404, `The lora adapter '${name}' cannot be found.`, "NotFoundError")
      return { status: 200, text: `Success: LoRA adapter '${name}' removed successfully.` }
    },
    // There is no prefix cache; sampling always reads the current weights.
    "POST /reset_prefix_cache": () => ({ status: 200 }),
    "POST /tokenize": async (body) => {
      const target = await engineOf(field(body, "model", asString))
      if (body["messages"] !== undefined) bad("/tokenize: the chat form is not supported; send prompt")
      const prompt = field(body, "prompt", asString) ?? bad("prompt is required")
      const tokens = target.tokenizer.encode(prompt)
      const strs = field(body, "return_token_strs", asBool) ?? false
      return {
        status: 200,
        json: { count: tokens.length, max_model_len: target.maxContext, tokens, token_strs: strs ? tokens.map((t) => target.tokenizer.decode([t])) : null }
      }
    },
    "POST /detokenize": async (body) => {
      const target = await engineOf(field(body, "model", asString))
      const tokens = field(body, "tokens", (v, name) => (Array.isArray(v) && v.every(Number.isInteger) ? (v as Array<number>) : bad(`${name} must be token ids`))) ?? bad("tokens is required")
      return { status: 200, json: { prompt: target.tokenizer.decode(tokens) } }
    }
  }

  const handle: Handler = async (request) => {
    const route = routes[`${request.method} ${request.path}`]
    if (route === undefined) return undefined
    try {
      const body = request.method === "GET" ? {} : asRecord(request.body ?? {}, "request body")
      return await route(body)
    } catch (e) {
      if (e instanceof HttpError) return errorReply(e.status, e.message, e.kind)
      throw e
    }
  }

  return { handle }
}
