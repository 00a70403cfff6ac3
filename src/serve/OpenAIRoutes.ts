/**
 * The vLLM OpenAI-compatible subset (protocols.md §2) over one PolicyEngine, as HttpRouter
 * routes with the bodies of `engines/openai/Wire.ts`: what RL rollouts, scoring and chat
 * clients pointed at a vLLM URL use.
 *
 * - `POST /v1/completions` (token-id or text prompts, `n`, the sampling fields, `seed`,
 *   `stop_token_ids`, `logprobs`, `prompt_logprobs`, `return_token_ids`, `echo`, `max_tokens: 0`
 *   to score a prompt) and `POST /v1/chat/completions` (the model's chat template), both also
 *   as `stream: true` server-sent events (internal/Completions.ts).
 * - `GET /health`, `GET /v1/models`, `POST /reset_prefix_cache` (nothing to reset),
 *   `POST /tokenize` (prompt or chat form), `POST /detokenize`.
 * - LoRA: `POST /v1/load_lora_adapter {lora_name, lora_path}` registers a checkpoint path (a
 *   `tinker://…/sampler_weights/…` of this server, or a folder) under a name; `model: <lora_name>`
 *   then samples those weights. These are full-weight checkpoints, not LoRA deltas: each adapter
 *   other than the engine's current weights is opened as its own sampling engine.
 * - Errors: `{"error":{"message","type","param","code"}}`.
 */
import { Cause, Effect } from "effect"
import { HttpRouter, type HttpServerRequest, HttpServerResponse } from "effect/http"
import type { PolicyEngineShape } from "../engines/PolicyEngine.ts"
import * as Wire from "../engines/openai/Wire.ts"
import * as Body from "./internal/body.ts"
import * as Completions from "./internal/Completions.ts"
import { badRequest, fromCause, notFound, RequestError } from "./internal/RequestError.ts"

export interface OpenAIOptions {
  readonly modelName: string
  /** The engine sampling a checkpoint path (undefined: the base model); see TinkerRoutes. */
  readonly engineFor: (path: string | undefined) => Effect.Effect<PolicyEngineShape, RequestError>
}

const ERROR_TYPES: Record<number, string> = { 400: "BadRequestError", 404: "NotFoundError", 415: "BadRequestError", 500: "InternalServerError", 503: "ServiceUnavailableError" }

/** vLLM's error body. */
export const errorResponse = (error: RequestError): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.jsonUnsafe({
    error: { message: error.message, type: error.kind ?? ERROR_TYPES[error.status] ?? "BadRequestError", param: null, code: error.status }
  } satisfies Wire.ErrorResponse, { status: error.status })

type Handler = Effect.Effect<HttpServerResponse.HttpServerResponse, RequestError, HttpServerRequest.HttpServerRequest>

/** A route whose failures answer vLLM's error body. */
const route = (method: "GET" | "POST", path: `/${string}`, handler: Handler): HttpRouter.Route<never, never> =>
  HttpRouter.route(method, path, handler.pipe(
    Effect.catchCause((cause) => (Cause.hasInterruptsOnly(cause) ? Effect.failCause(cause) : Effect.succeed(errorResponse(fromCause(cause)))))
  ) as Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest>)

export const make = (engine: PolicyEngineShape, options: OpenAIOptions): { readonly routes: ReadonlyArray<HttpRouter.Route<never, never>> } => {
  /** Loaded adapters: name → checkpoint path. */
  const adapters = new Map<string, string>()
  const created = Math.floor(Date.now() / 1000)

  const engineOf: Completions.EngineOf = (model) =>
    Effect.suspend(() => {
      if (model === undefined || model === options.modelName) return Effect.succeed({ name: options.modelName, engine })
      const path = adapters.get(model)
      if (path === undefined) return Effect.fail(new RequestError({ reason: "NotFound", message: `The model \`${model}\` does not exist.`, kind: "NotFoundError" }))
      return Effect.map(options.engineFor(path), (e) => ({ name: model, engine: e }))
    })

  const modelCard = (id: string, parent: string | null, root: string): typeof Wire.ModelCard.Type => ({
    id,
    object: "model",
    created,
    owned_by: "vllm",
    root,
    parent,
    max_model_len: engine.maxContext,
    permission: []
  })

  const routes = [
    route("GET", "/health", Effect.succeed(HttpServerResponse.empty({ status: 200 }))),

    route("GET", "/v1/models", Effect.sync(() =>
      HttpServerResponse.jsonUnsafe({
        object: "list",
        data: [
          modelCard(options.modelName, null, options.modelName),
          ...[...adapters].map(([name, path]) => modelCard(name, options.modelName, path))
        ]
      } satisfies Wire.ModelList)
    )),

    route("POST", "/v1/completions", Effect.flatMap(Body.json(Wire.CompletionRequest), (body) => Completions.completion(engineOf, body))),

    route("POST", "/v1/chat/completions", Effect.flatMap(Body.json(Wire.ChatCompletionRequest), (body) => Completions.chatCompletion(engineOf, body))),

    route("POST", "/v1/load_lora_adapter", Effect.gen(function*() {
      const body = yield* Body.json(Wire.LoadLoraAdapterRequest)
      const name = body.lora_name
      if (name === options.modelName) return yield* badRequest(`${name} is the base model's name`)
      if (adapters.has(name) && body.load_inplace !== true) return yield* badRequest(`The lora adapter '${name}' has already been loaded.`, "InvalidUserInput")
      yield* options.engineFor(body.lora_path) // a missing path is a 404 now, not at sampling time
      adapters.set(name, body.lora_path)
      return HttpServerResponse.text(`Success: LoRA adapter '${name}' added successfully.`)
    })),

    route("POST", "/v1/unload_lora_adapter", Effect.gen(function*() {
      const body = yield* Body.json(Wire.UnloadLoraAdapterRequest)
      if (!adapters.delete(body.lora_name)) return yield* notFound(`The lora adapter '${body.lora_name}' cannot be found.`)
      return HttpServerResponse.text(`Success: LoRA adapter '${body.lora_name}' removed successfully.`)
    })),

    // There is no prefix cache; sampling always reads the current weights.
    route("POST", "/reset_prefix_cache", Effect.succeed(HttpServerResponse.empty({ status: 200 }))),

    route("POST", "/tokenize", Effect.gen(function*() {
      const body = yield* Body.json(Wire.TokenizeRequest)
      const { engine: target } = yield* engineOf(body.model ?? undefined)
      let tokens: Array<number>
      if (body.messages != null) {
        tokens = yield* Completions.chatPromptIds(target.tokenizer, body.messages, body.add_generation_prompt ?? true, body.chat_template_kwargs)
      } else if (body.prompt != null) tokens = target.tokenizer.encode(body.prompt)
      else return yield* badRequest("prompt or messages is required")
      return HttpServerResponse.jsonUnsafe({
        count: tokens.length,
        max_model_len: target.maxContext,
        tokens,
        token_strs: body.return_token_strs === true ? tokens.map((t) => target.tokenizer.decode([t])) : null
      } satisfies typeof Wire.TokenizeResponse.Type)
    })),

    route("POST", "/detokenize", Effect.gen(function*() {
      const body = yield* Body.json(Wire.DetokenizeRequest)
      const { engine: target } = yield* engineOf(body.model ?? undefined)
      return HttpServerResponse.jsonUnsafe({ prompt: target.tokenizer.decode(body.tokens) } satisfies typeof Wire.DetokenizeResponse.Type)
    }))
  ]

  return { routes }
}
