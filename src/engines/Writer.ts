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
import { digest } from "../Canonical.ts"
import { Cause, Context, Data, Duration, Effect, Layer, Redacted, Schema } from "effect"
import { FetchHttpClient, HttpClient, HttpClientRequest } from "effect/http"
import { premise as extractivePremise, type PremiseSource } from "../data/Premise.ts"
import { excerpt } from "../data/Prompts.ts"
import type { Fingerprinted } from "../Engine.ts"
import * as Retry from "../Retry.ts"

/** Why a Writer call failed. */
export type WriterErrorReason =
  | "RateLimited" // 429
  | "Unavailable" // 408, 5xx
  | "Timeout" // no answer within the call timeout
  | "Transport" // connection refused/reset
  | "Malformed" // 2xx, but the reply is not the JSON we asked for
  | "Blocked" // the model refused (promptFeedback.blockReason, SAFETY)
  | "QuotaExhausted" // a daily quota: retrying today cannot help
  | "BadRequest" // 400
  | "Unauthorized" // 401, 403
  | "NotFound" // 404 (unknown model)
  | "Http" // any other status

/** A failed premise derivation; names the method and URL, keeps the cause. */
export class WriterError extends Data.TaggedError("WriterError")<{
  readonly reason: WriterErrorReason
  readonly message: string
  /** `POST http://host/v1beta/models/m:generateContent`; never contains the key. */
  readonly origin: string
  readonly status?: number | undefined
  readonly retryable: boolean
  readonly retryAfter?: Duration.Duration | undefined
  readonly cause?: unknown
}> {}

/** What a Writer does. */
export interface WriterShape extends Fingerprinted {
  /** One premise phrase for a story, to complete "Write a N-word story about <premise>." */
  readonly premise: (story: PremiseSource) => Effect.Effect<string, WriterError>
}

/** Settings every remote Writer shares. */
export interface RemoteOptions {
  /** Total attempts per call, the first included (default 5). */
  readonly attempts?: number
  /** Backoff between attempts (defaults of `Retry.backoff`; `attempts` above wins). */
  readonly backoff?: Retry.BackoffOptions
  /** Time limit of one HTTP call (default 60 seconds). */
  readonly timeout?: Duration.Input
  /** Words of the story sent to the model (its opening, cut at a paragraph; default 3000). */
  readonly maxStoryWords?: number
  /** Sampling temperature (omitted when not set). */
  readonly temperature?: number
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
// Error classification (shared by the remote layers)

/** A protobuf Duration string ("26s", "0.2s") -> Duration. */
export const parseProtoDuration = (s: string): Duration.Duration | undefined => {
  const m = /^(\d+(?:\.\d+)?)s$/.exec(s.trim())
  return m === null ? undefined : Duration.millis(Math.round(Number(m[1]) * 1000))
}

/** A Retry-After header (delta seconds or an HTTP date) -> Duration. */
export const parseRetryAfter = (value: string | undefined, now: number = Date.now()): Duration.Duration | undefined => {
  if (value === undefined || value.trim() === "") return undefined
  const v = value.trim()
  if (/^\d+(?:\.\d+)?$/.test(v)) return Duration.millis(Math.round(Number(v) * 1000))
  const at = Date.parse(v)
  return Number.isNaN(at) ? undefined : Duration.millis(Math.max(0, at - now))
}

const ErrorBody = Schema.Struct({
  error: Schema.Struct({
    message: Schema.optionalKey(Schema.String),
    status: Schema.optionalKey(Schema.String),
    details: Schema.optionalKey(Schema.Array(Schema.Record(Schema.String, Schema.Unknown)))
  })
})
const decodeErrorBody = Schema.decodeUnknownResult(Schema.fromJsonString(ErrorBody))

interface ErrorFacts {
  readonly message: string
  readonly retryDelay: Duration.Duration | undefined
  readonly daily: boolean
}

/** Message, RetryInfo.retryDelay and "PerDay" quota facts of a google.rpc.Status / OpenAI error body. */
const errorFacts = (text: string): ErrorFacts => {
  const decoded = decodeErrorBody(text)
  if (decoded._tag === "Failure") return { message: text.slice(0, 300), retryDelay: undefined, daily: false }
  const { details = [], message = "", status } = decoded.success.error
  let retryDelay: Duration.Duration | undefined
  let daily = false
  for (const d of details) {
    const type = typeof d["@type"] === "string" ? d["@type"] : ""
    if (type.endsWith("google.rpc.RetryInfo") && typeof d.retryDelay === "string") retryDelay = parseProtoDuration(d.retryDelay)
    if (type.endsWith("google.rpc.QuotaFailure") && Array.isArray(d.violations)) {
      daily ||= d.violations.some((v: unknown) => typeof v === "object" && v !== null && String((v as { quotaId?: unknown }).quotaId ?? "").includes("PerDay"))
    }
  }
  return { message: status === undefined ? message : `${status}: ${message}`, retryDelay, daily }
}

/** HTTP status + headers + body -> a WriterError (permanent or retryable). */
export const classifyStatus = (
  origin: string,
  status: number,
  headers: Readonly<Record<string, string | undefined>>,
  body: string
): WriterError => {
  const facts = errorFacts(body)
  const retryAfter = parseRetryAfter(headers["retry-after"]) ?? facts.retryDelay
  const base = { origin, status, message: `${status} ${facts.message}`.trim() }
  if (status === 429 && facts.daily) return new WriterError({ ...base, reason: "QuotaExhausted", retryable: false })
  if (status === 429) return new WriterError({ ...base, reason: "RateLimited", retryable: true, retryAfter })
  if (status === 408 || status >= 500) return new WriterError({ ...base, reason: "Unavailable", retryable: true, retryAfter })
  if (status === 401 || status === 403) return new WriterError({ ...base, reason: "Unauthorized", retryable: false })
  if (status === 404) return new WriterError({ ...base, reason: "NotFound", retryable: false })
  if (status === 400) return new WriterError({ ...base, reason: "BadRequest", retryable: false })
  return new WriterError({ ...base, reason: "Http", retryable: false })
}

const malformed = (origin: string, message: string, cause?: unknown): WriterError =>
  new WriterError({ reason: "Malformed", origin, message, retryable: true, cause })

// ---------------------------------------------------------------------------------------------
// One JSON POST with timeout, classification and retries

interface PostSpec<A> {
  readonly url: string
  readonly headers: Record<string, string>
  readonly body: unknown
  /** The reply body (2xx) -> the premise, or a WriterError. */
  readonly read: (origin: string, text: string) => Effect.Effect<A, WriterError>
}

const makePost = (client: HttpClient.HttpClient, options: RemoteOptions) => {
  const timeout = options.timeout ?? "60 seconds"
  const schedule = Retry.backoff({ ...options.backoff, attempts: options.attempts ?? options.backoff?.attempts ?? 5 })
  return <A>(spec: PostSpec<A>): Effect.Effect<A, WriterError> => {
    const origin = `POST ${spec.url}`
    const once = client
      .execute(HttpClientRequest.post(spec.url).pipe(HttpClientRequest.setHeaders(spec.headers), HttpClientRequest.bodyJsonUnsafe(spec.body)))
      .pipe(
        Effect.flatMap((response) =>
          Effect.flatMap(response.text, (text) =>
            response.status >= 200 && response.status < 300
              ? spec.read(origin, text)
              : Effect.fail(classifyStatus(origin, response.status, response.headers, text))
          )
        ),
        Effect.timeout(timeout),
        Effect.mapError((e): WriterError => {
          if (e instanceof WriterError) return e
          if (Cause.isTimeoutError(e)) {
            return new WriterError({ reason: "Timeout", origin, message: `no answer within ${Duration.format(Duration.fromInputUnsafe(timeout))}`, retryable: true, cause: e })
          }
          return new WriterError({ reason: "Transport", origin, message: String((e as { message?: unknown }).message ?? e), retryable: true, cause: e })
        })
      )
    return Retry.transient(once, schedule)
  }
}

// ---------------------------------------------------------------------------------------------
// Gemini

const GeminiResponse = Schema.Struct({
  candidates: Schema.optionalKey(
    Schema.Array(
      Schema.Struct({
        content: Schema.optionalKey(
          Schema.Struct({
            parts: Schema.optionalKey(
              Schema.Array(Schema.Struct({ text: Schema.optionalKey(Schema.String), thought: Schema.optionalKey(Schema.Boolean) }))
            )
          })
        ),
        finishReason: Schema.optionalKey(Schema.String)
      })
    )
  ),
  promptFeedback: Schema.optionalKey(Schema.Struct({ blockReason: Schema.optionalKey(Schema.String) }))
})
const decodeGemini = Schema.decodeUnknownResult(Schema.fromJsonString(GeminiResponse))

const BLOCKED_FINISH = new Set(["SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"])

/** A 2xx generateContent body -> the premise (text of candidates[0], thoughts skipped). */
const readGemini = (origin: string, text: string): Effect.Effect<string, WriterError> => {
  const decoded = decodeGemini(text)
  if (decoded._tag === "Failure") return Effect.fail(malformed(origin, `unexpected generateContent reply: ${decoded.failure.message}`, decoded.failure))
  const { candidates = [], promptFeedback } = decoded.success
  const first = candidates[0]
  if (first === undefined) {
    const why = promptFeedback?.blockReason
    return why === undefined
      ? Effect.fail(malformed(origin, "reply has no candidates"))
      : Effect.fail(new WriterError({ reason: "Blocked", origin, message: `prompt blocked: ${why}`, retryable: false }))
  }
  if (first.finishReason !== undefined && BLOCKED_FINISH.has(first.finishReason)) {
    return Effect.fail(new WriterError({ reason: "Blocked", origin, message: `answer blocked: ${first.finishReason}`, retryable: false }))
  }
  const answer = (first.content?.parts ?? []).filter((p) => p.thought !== true).map((p) => p.text ?? "").join("")
  return readPremiseJson(origin, answer, first.finishReason)
}

const readPremiseJson = (origin: string, answer: string, finishReason?: string): Effect.Effect<string, WriterError> => {
  const parsed = decodePremise(answer)
  if (parsed._tag === "Failure") {
    const note = finishReason !== undefined && finishReason !== "STOP" && finishReason !== "stop" ? ` (finish ${finishReason})` : ""
    return Effect.fail(malformed(origin, `the answer is not {"premise": string}${note}: ${JSON.stringify(answer.slice(0, 120))}`, parsed.failure))
  }
  return Effect.succeed(parsed.success.premise.trim().replace(/[.\s]+$/, ""))
}

const trimSlash = (s: string): string => s.replace(/\/+$/, "")

const geminiMake = (options: GeminiOptions) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const post = makePost(client, options)
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
      premise: (story) =>
        post({
          url,
          headers: { "x-goog-api-key": Redacted.value(options.apiKey), "content-type": "application/json" },
          body: { contents: [{ role: "user", parts: [{ text: userText(story, maxWords) }] }], generationConfig },
          read: readGemini
        })
    })
  })

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible

const ChatResponse = Schema.Struct({
  choices: Schema.Array(
    Schema.Struct({
      message: Schema.Struct({ content: Schema.NullOr(Schema.String) }),
      finish_reason: Schema.optionalKey(Schema.NullOr(Schema.String))
    })
  )
})
const decodeChat = Schema.decodeUnknownResult(Schema.fromJsonString(ChatResponse))

const readChat = (origin: string, text: string): Effect.Effect<string, WriterError> => {
  const decoded = decodeChat(text)
  if (decoded._tag === "Failure") return Effect.fail(malformed(origin, `unexpected chat completion reply: ${decoded.failure.message}`, decoded.failure))
  const first = decoded.success.choices[0]
  if (first === undefined) return Effect.fail(malformed(origin, "reply has no choices"))
  return readPremiseJson(origin, first.message.content ?? "", first.finish_reason ?? undefined)
}

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
    const post = makePost(client, options)
    const url = `${trimSlash(options.baseUrl).replace(/\/v1$/, "")}/v1/chat/completions`
    const maxWords = options.maxStoryWords ?? 3000
    const apiKey = options.apiKey
    return Writer.of({
      fingerprint: settingsFingerprint("openai", options.model, { instruction, temperature: options.temperature ?? null, maxWords, url }),
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
          read: readChat
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
    premise: (story) => Effect.sync(() => extractivePremise(story))
  })

  /** Gemini REST generateContent (protocols.md §3), over the fetch HTTP client. */
  static readonly gemini = (options: GeminiOptions): Layer.Layer<Writer> =>
    Layer.effect(Writer, geminiMake(options)).pipe(Layer.provide(FetchHttpClient.layer))

  /** An OpenAI-compatible chat endpoint with JSON output (protocols.md §2). */
  static readonly openai = (options: OpenAIOptions): Layer.Layer<Writer> =>
    Layer.effect(Writer, openaiMake(options)).pipe(Layer.provide(FetchHttpClient.layer))
}
