/**
 * The `openai` judge: any OpenAI-compatible `/v1/chat/completions` endpoint (a vLLM-served judge,
 * OpenAI itself) with JSON output constrained by the rubric's schema (`response_format`
 * `json_schema`), the same retries, limits and validation as every remote judge.
 *
 * @example
 * ```ts
 * const layer = openai({ baseUrl: "http://127.0.0.1:8000", model: "Qwen/Qwen3-32B", rubric })
 * ```
 */
import { Effect, Layer, type Redacted } from "effect"
import * as RedactedValue from "effect/Redacted"
import { FetchHttpClient, HttpClient } from "effect/http"
import { postJson, readChatReply, trimSlash } from "../llm/Remote.ts"
import { Judge } from "./Judge.ts"
import { makeRemoteJudge, type RemoteJudgeOptions } from "./RemoteJudge.ts"

export interface OpenAIJudgeOptions extends RemoteJudgeOptions {
  /** e.g. `http://127.0.0.1:8000` (a trailing `/v1` is accepted). */
  readonly baseUrl: string
  readonly model: string
  readonly apiKey?: Redacted.Redacted<string>
  readonly temperature?: number
  readonly maxTokens?: number
}

/** `propertyOrdering` is Gemini's keyword; OpenAI's strict mode keeps declaration order and may reject unknown keywords. */
const withoutOrdering = (schema: unknown): unknown =>
  Array.isArray(schema) ? schema.map(withoutOrdering)
    : typeof schema === "object" && schema !== null
    ? Object.fromEntries(Object.entries(schema).filter(([k]) => k !== "propertyOrdering").map(([k, v]) => [k, withoutOrdering(v)]))
    : schema

export const makeOpenAI = (options: OpenAIJudgeOptions) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const url = `${trimSlash(options.baseUrl).replace(/\/v1$/, "")}/v1/chat/completions`
    const headers = {
      "content-type": "application/json",
      ...(options.apiKey === undefined ? {} : { authorization: `Bearer ${RedactedValue.value(options.apiKey)}` })
    }
    return yield* makeRemoteJudge({
      name: "openai",
      model: options.model,
      origin: `POST ${url}`,
      settings: { url, temperature: options.temperature ?? null, maxTokens: options.maxTokens ?? null },
      call: (prompt, schema, name) =>
        postJson(client, {
          url,
          headers,
          body: {
            model: options.model,
            // A system message and response_format are both optional: ChatCompletionRequest has
            // `messages: list[ChatCompletionMessageParam]` and `response_format: AnyResponseFormat | None = None`
            // (vllm-project/vllm@d5dba2d7 vllm/entrypoints/openai/chat_completion/protocol.py).
            messages: [...(prompt.system !== "" ? [{ role: "system", content: prompt.system }] : []), { role: "user", content: prompt.user }],
            ...(schema !== undefined ? { response_format: { type: "json_schema", json_schema: { name, schema: withoutOrdering(schema), strict: true } } } : {}),
            ...(options.temperature !== undefined ? { temperature: options.temperature } : {}),
            ...(options.maxTokens !== undefined ? { max_tokens: options.maxTokens } : {})
          },
          read: readChatReply
        })
    }, options)
  })

/** The openai judge as a Judge layer (over the fetch HTTP client). */
export const openai = (options: OpenAIJudgeOptions): Layer.Layer<Judge> =>
  Layer.effect(Judge, makeOpenAI(options)).pipe(Layer.provide(FetchHttpClient.layer))
