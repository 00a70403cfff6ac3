/**
 * The Writer engine: derives a story's premise for its prompt (ARCHITECTURE.md §1, §6).
 *
 * Layers:
 * - `Writer.extractive`: no network; the premise is built from the story (data/Premise.ts).
 * - `Writer.gemini({ apiKey, model })`: Gemini REST `generateContent` with structured JSON output
 *   (protocols.md §3).
 * - `Writer.openai({ baseUrl, model })`: any OpenAI-compatible `/v1/chat/completions` endpoint
 *   (vLLM etc.) with `response_format: json_object` (protocols.md §2).
 *
 * Remote layers validate the reply with Schema, classify failures (408/429/5xx, timeouts and
 * malformed replies are retryable, honouring `Retry-After` and google.rpc.RetryInfo; 400/401/
 * 403/404 and daily quota exhaustion are not), retry on `Retry.backoff`, and time out each call.
 * The API key is `Redacted`: it is sent as a header and never logged or fingerprinted.
 *
 * @example
 * ```ts
 * const program = Effect.gen(function*() {
 *   const writer = yield* Writer
 *   return yield* writer.premise({ title: "THE GIFT OF THE MAGI", text })
 * })
 * Effect.runPromise(Effect.provide(program, Writer.gemini({ apiKey: Redacted.make(key), model: "gemini-3-flash-preview" })))
 * ```
 */
import { digest } from "../dag/Canonical.ts"
import { Context, Effect, Layer, Redacted, Schema } from "effect"
import { FetchHttpClient, HttpClient } from "effect/http"
import { premise as extractivePremise, type PremiseSource } from "../data/Premise.ts"
import { excerpt } from "../data/Prompts.ts"
import type { Fingerprinted } from "../dag/Engine.ts"
import {
  attempts,
  cost,
  LlmError,
  parseJsonBody,
  postJson,
  readChatReply,
  readGeminiReply,
  malformed,
  trimSlash,
  type LlmErrorReason,
  type Price,
  type RemoteOptions as SharedRemoteOptions,
  type Reply
} from "./llm/Remote.ts"

/** A failed premise derivation (the remote-call error every LLM engine shares). */
export const WriterError = LlmError
export type WriterError = LlmError
export type WriterErrorReason = LlmErrorReason

/** A premise and what its call cost (0 without a price, or for the extractive writer). */
export interface Premise {
  readonly premise: string
  readonly cost_usd: number
}

/** What a Writer does. */
export interface WriterShape extends Fingerprinted {
  /** One premise phrase for a story, to complete "Write a N-word story about <premise>." */
  readonly premise: (story: PremiseSource) => Effect.Effect<Premise, WriterError>
  /** What one premise call is expected to cost, before it is made (for the budget; 0 without a price). */
  readonly expectedUsd: (story: PremiseSource) => number
}

/** Settings every remote Writer shares (attempts, backoff and timeout as every remote engine). */
export interface RemoteOptions extends SharedRemoteOptions {
  /** Words of the story sent to the model (its opening, cut at a paragraph; default 3000). */
  readonly maxStoryWords?: number
  /** Sampling temperature (omitted when not set). */
  readonly temperature?: number
  /** USD per million tokens, for the premise's `cost_usd` (not in the fingerprint: it changes no premise). */
  readonly price?: Price
}

/** Options of `Writer.gemini`. */
export interface GeminiOptions extends RemoteOptions {
  readonly apiKey: Redacted.Redacted<string>
  /** e.g. `gemini-3-flash-preview`; a `models/` prefix is accepted. */
  readonly model: string
  /** Origin only (default `https://generativelanguage.googleapis.com`). */
  readonly baseUrl?: string
  /** API version path segment (default `v1beta`). */
  readonly apiVersion?: string
}

/** Options of `Writer.openai`. */
export interface OpenAIOptions extends RemoteOptions {
  /** e.g. `http://127.0.0.1:8000` (a trailing `/v1` is accepted). */
  readonly baseUrl: string
  readonly model: string
  readonly apiKey?: Redacted.Redacted<string>
}

/** The instruction sent to remote writers. */
export const instruction =
  "You write the premise line of a story-writing prompt. Read the short story below and answer with JSON " +
  '{"premise": string}: one phrase of at most 35 words that completes "Write a story about ...", naming the main ' +
  "characters, the setting and the opening situation, without revealing the ending. Start with a lower-case " +
  "letter unless the first word is a name."

const userText = (story: PremiseSource, maxWords: number): string =>
  `${instruction}\n\nTitle: ${story.title}\n\n${excerpt(story.text, maxWords)}`

/** The JSON the model is asked for. */
const PremiseReply = Schema.Struct({ premise: Schema.String.check(Schema.isNonEmpty()) })
const decodePremise = Schema.decodeUnknownResult(Schema.fromJsonString(PremiseReply))

/** JSON Schema of the reply (Gemini `responseJsonSchema`). */
export const premiseJsonSchema = {
  type: "object",
  properties: { premise: { type: "string" } },
  required: ["premise"],
  propertyOrdering: ["premise"]
} as const

// ---------------------------------------------------------------------------------------------
// Gemini

/** A generateContent body -> the premise. */
const readGemini = (price: Price | undefined) => (origin: string, text: string): Effect.Effect<Premise, WriterError> =>
  parseJsonBody(origin, text).pipe(
    Effect.flatMap((body) => readGeminiReply(origin, body)),
    Effect.flatMap((reply) => readPremiseJson(origin, reply, price))
  )

const readPremiseJson = (origin: string, reply: Reply, price: Price | undefined): Effect.Effect<Premise, WriterError> => {
  const parsed = decodePremise(reply.text)
  if (parsed._tag === "Failure") {
    const { finishReason } = reply
    const note = finishReason !== undefined && finishReason !== "STOP" && finishReason !== "stop" ? ` (finish ${finishReason})` : ""
    return Effect.fail(malformed(origin, `the answer is not {"premise": string}${note}: ${JSON.stringify(reply.text.slice(0, 120))}`, parsed.failure))
  }
  return Effect.succeed({ premise: parsed.success.premise.trim().replace(/[.\s]+$/, ""), cost_usd: cost(reply.usage, price) })
}

/** Tokens a premise is expected to take: its phrase in JSON, with room (35 words at most). */
const EXPECTED_OUTPUT_TOKENS = 80
/** The prompt at ~4 characters per token (as the judge estimates), the expected answer, at `price`. */
const expectedUsdOf = (price: Price | undefined, maxWords: number) => (story: PremiseSource) =>
  cost({ input: Math.ceil(userText(story, maxWords).length / 4), output: EXPECTED_OUTPUT_TOKENS, thought: 0 }, price)

const geminiMake = (options: GeminiOptions) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const post = <A>(spec: Parameters<typeof postJson<A>>[1]) => attempts(options, `POST ${spec.url}`, postJson(client, spec))
    const model = options.model.replace(/^models\//, "")
    const version = options.apiVersion ?? "v1beta"
    const origin = trimSlash(options.baseUrl ?? "https://generativelanguage.googleapis.com")
    const url = `${origin}${version === "" ? "" : `/${version}`}/models/${model}:generateContent`
    const maxWords = options.maxStoryWords ?? 3000
    const generationConfig = {
      ...(options.temperature === undefined ? {} : { temperature: options.temperature }),
      responseMimeType: "application/json",
      responseJsonSchema: premiseJsonSchema
    }
    return Writer.of({
      fingerprint: settingsFingerprint("gemini", model, { instruction, temperature: options.temperature ?? null, maxWords }),
      expectedUsd: expectedUsdOf(options.price, maxWords),
      premise: (story) =>
        post({
          url,
          headers: { "x-goog-api-key": Redacted.value(options.apiKey), "content-type": "application/json" },
          body: { contents: [{ role: "user", parts: [{ text: userText(story, maxWords) }] }], generationConfig },
          read: readGemini(options.price)
        })
    })
  })

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible

const readChat = (price: Price | undefined) => (origin: string, text: string): Effect.Effect<Premise, WriterError> =>
  Effect.flatMap(readChatReply(origin, text), (reply) => readPremiseJson(origin, reply, price))

/**
 * `backend:model@settings`: everything that shapes a premise (the instruction, temperature, the
 * story length sent, the endpoint of an OpenAI-compatible server) is in the fingerprint, so a
 * change of any of them is a new memo key; the API key never is.
 */
const settingsFingerprint = (backend: string, model: string, settings: Record<string, unknown>) =>
  `${backend}:${model}@${digest(settings).slice(0, 12)}`

const openaiMake = (options: OpenAIOptions) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const post = <A>(spec: Parameters<typeof postJson<A>>[1]) => attempts(options, `POST ${spec.url}`, postJson(client, spec))
    const url = `${trimSlash(options.baseUrl).replace(/\/v1$/, "")}/v1/chat/completions`
    const maxWords = options.maxStoryWords ?? 3000
    const apiKey = options.apiKey
    return Writer.of({
      fingerprint: settingsFingerprint("openai", options.model, { instruction, temperature: options.temperature ?? null, maxWords, url }),
      expectedUsd: expectedUsdOf(options.price, maxWords),
      premise: (story) =>
        post({
          url,
          headers: {
            "content-type": "application/json",
            ...(apiKey === undefined ? {} : { authorization: `Bearer ${Redacted.value(apiKey)}` })
          },
          body: {
            model: options.model,
            messages: [{ role: "user", content: userText(story, maxWords) }],
            response_format: { type: "json_object" },
            ...(options.temperature === undefined ? {} : { temperature: options.temperature })
          },
          read: readChat(options.price)
        })
    })
  })

// ---------------------------------------------------------------------------------------------

/**
 * The Writer service. Stages that derive prompts depend on it and list it as an engine, so its
 * `fingerprint` (`extractive:1`, `gemini:<model>`, `openai:<model>`) enters their cache keys.
 */
export class Writer extends Context.Service<Writer, WriterShape>()("polaris/Writer") {
  /** No network: the premise is extracted from the story (data/Premise.ts). */
  static readonly extractive: Layer.Layer<Writer> = Layer.succeed(Writer, {
    fingerprint: "extractive:1",
    local: true,
    expectedUsd: () => 0,
    premise: (story) => Effect.sync(() => ({ premise: extractivePremise(story), cost_usd: 0 }))
  })

  /** Gemini REST generateContent (protocols.md §3), over the fetch HTTP client. */
  static readonly gemini = (options: GeminiOptions): Layer.Layer<Writer> =>
    Layer.effect(Writer, geminiMake(options)).pipe(Layer.provide(FetchHttpClient.layer))

  /** An OpenAI-compatible chat endpoint with JSON output (protocols.md §2). */
  static readonly openai = (options: OpenAIOptions): Layer.Layer<Writer> =>
    Layer.effect(Writer, openaiMake(options)).pipe(Layer.provide(FetchHttpClient.layer))
}
