/**
 * What every remote LLM engine (Writer, Judge) shares: the error type and its classification
 * (HTTP status, google.rpc.Status details, Retry-After), reading Gemini and OpenAI-compatible
 * replies, and one attempt-timeout-retry wrapper. An attempt is one HTTP call; a malformed or
 * truncated answer fails its attempt as retryable, so it is retried like a 503.
 *
 * @example
 * const call = attempts({ timeout: "60 seconds", attempts: 5 }, origin, once)
 */
import { Cause, Data, Duration, Effect, Schema } from "effect"
import { HttpClientRequest, type HttpClient } from "effect/http"
import * as Retry from "../../dag/Retry.ts"

/** Why a remote call failed. */
export type LlmErrorReason =
  | "RateLimited" // 429
  | "Unavailable" // 408, 5xx
  | "Timeout" // no answer within the call timeout
  | "Transport" // connection refused/reset
  | "Malformed" // 2xx, but the reply is not the JSON we asked for (or truncated)
  | "Blocked" // the model refused (promptFeedback.blockReason, SAFETY)
  | "QuotaExhausted" // a daily quota: retrying today cannot help
  | "BadRequest" // 400
  | "Unauthorized" // 401, 403
  | "NotFound" // 404 (unknown model)
  | "Http" // any other status

/** A failed remote call; names the method and URL (never the key) and keeps the cause. */
export class LlmError extends Data.TaggedError("LlmError")<{
  readonly reason: LlmErrorReason
  readonly message: string
  /** `POST http://host/v1beta/models/m:generateContent`; never contains the key. */
  readonly origin: string
  readonly status?: number | undefined
  readonly retryable: boolean
  readonly retryAfter?: Duration.Duration | undefined
  readonly cause?: unknown
}> {}

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

/** Message, RetryInfo.retryDelay and "PerDay" quota facts of a google.rpc.Status / OpenAI error body. */
const errorFacts = (text: string) => {
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

/**
 * HTTP status + headers + body -> an LlmError (permanent or retryable). `message` reads the
 * body's message in a protocol's own error shape (e.g. the wire Schemas' `errorMessage`); by
 * default the google.rpc.Status / OpenAI `{"error":{"message"}}` shape, else the body itself.
 */
export const classifyStatus = (
  origin: string,
  status: number,
  headers: Readonly<Record<string, string | undefined>>,
  body: string,
  message?: (body: string) => string | undefined
): LlmError => {
  const facts = errorFacts(body)
  const retryAfter = parseRetryAfter(headers["retry-after"]) ?? facts.retryDelay
  const base = { origin, status, message: `${status} ${message?.(body) ?? facts.message}`.trim() }
  if (status === 429 && facts.daily) return new LlmError({ ...base, reason: "QuotaExhausted", retryable: false })
  if (status === 429) return new LlmError({ ...base, reason: "RateLimited", retryable: true, retryAfter })
  if (status === 408 || status >= 500) return new LlmError({ ...base, reason: "Unavailable", retryable: true, retryAfter })
  if (status === 401 || status === 403) return new LlmError({ ...base, reason: "Unauthorized", retryable: false })
  if (status === 404) return new LlmError({ ...base, reason: "NotFound", retryable: false })
  if (status === 400) return new LlmError({ ...base, reason: "BadRequest", retryable: false })
  return new LlmError({ ...base, reason: "Http", retryable: false })
}

/** A 2xx reply that is not what was asked for: retryable (models do produce the odd bad JSON). */
export const malformed = (origin: string, message: string, cause?: unknown): LlmError =>
  new LlmError({ reason: "Malformed", origin, message, retryable: true, cause })

// ---------------------------------------------------------------------------------------------
// Replies

/** Tokens one call used, as the provider reports them. */
export interface TokenUsage {
  readonly input: number
  readonly output: number
  readonly thought: number
}

/** A model's answer: its text (thoughts skipped), why generation finished, and the tokens used. */
/** USD per million tokens; thought tokens are billed as output (as Gemini and OpenAI bill them). */
export interface Price {
  readonly input: number
  readonly output: number
}

/** USD of one call's tokens. */
export const cost = (u: TokenUsage, price: Price | undefined): number =>
  price === undefined ? 0 : (u.input * price.input + (u.output + u.thought) * price.output) / 1e6

export interface Reply {
  readonly text: string
  readonly finishReason: string | undefined
  readonly usage: TokenUsage
}

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
  promptFeedback: Schema.optionalKey(Schema.Struct({ blockReason: Schema.optionalKey(Schema.String) })),
  usageMetadata: Schema.optionalKey(Schema.Struct({
    promptTokenCount: Schema.optionalKey(Schema.Number),
    candidatesTokenCount: Schema.optionalKey(Schema.Number),
    thoughtsTokenCount: Schema.optionalKey(Schema.Number)
  }))
})
const decodeGemini = Schema.decodeUnknownResult(GeminiResponse)

const BLOCKED_FINISH = new Set(["SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"])

/**
 * A generateContent response (the parsed REST body, or the SDK's response object, which has the
 * same fields) -> the answer of candidates[0] with thought parts skipped, or why there is none.
 */
export const readGeminiReply = (origin: string, body: unknown): Effect.Effect<Reply, LlmError> => {
  const decoded = decodeGemini(body)
  if (decoded._tag === "Failure") return Effect.fail(malformed(origin, `unexpected generateContent reply: ${decoded.failure.message}`, decoded.failure))
  const { candidates = [], promptFeedback, usageMetadata: u } = decoded.success
  const first = candidates[0]
  if (first === undefined) {
    const why = promptFeedback?.blockReason
    return why === undefined
      ? Effect.fail(malformed(origin, "reply has no candidates"))
      : Effect.fail(new LlmError({ reason: "Blocked", origin, message: `prompt blocked: ${why}`, retryable: false }))
  }
  if (first.finishReason !== undefined && BLOCKED_FINISH.has(first.finishReason)) {
    return Effect.fail(new LlmError({ reason: "Blocked", origin, message: `answer blocked: ${first.finishReason}`, retryable: false }))
  }
  return Effect.succeed({
    text: (first.content?.parts ?? []).filter((p) => p.thought !== true).map((p) => p.text ?? "").join(""),
    finishReason: first.finishReason,
    usage: { input: u?.promptTokenCount ?? 0, output: u?.candidatesTokenCount ?? 0, thought: u?.thoughtsTokenCount ?? 0 }
  })
}

const ChatResponse = Schema.Struct({
  choices: Schema.Array(
    Schema.Struct({
      message: Schema.Struct({ content: Schema.NullOr(Schema.String) }),
      finish_reason: Schema.optionalKey(Schema.NullOr(Schema.String))
    })
  ),
  usage: Schema.optionalKey(Schema.NullOr(Schema.Struct({
    prompt_tokens: Schema.optionalKey(Schema.Number),
    completion_tokens: Schema.optionalKey(Schema.Number),
    completion_tokens_details: Schema.optionalKey(Schema.NullOr(Schema.Struct({ reasoning_tokens: Schema.optionalKey(Schema.Number) })))
  })))
})
const decodeChat = Schema.decodeUnknownResult(Schema.fromJsonString(ChatResponse))

/** A 2xx chat completion body (OpenAI-compatible) -> the answer of choices[0]. */
export const readChatReply = (origin: string, text: string): Effect.Effect<Reply, LlmError> => {
  const decoded = decodeChat(text)
  if (decoded._tag === "Failure") return Effect.fail(malformed(origin, `unexpected chat completion reply: ${decoded.failure.message}`, decoded.failure))
  const first = decoded.success.choices[0]
  if (first === undefined) return Effect.fail(malformed(origin, "reply has no choices"))
  const u = decoded.success.usage
  const thought = u?.completion_tokens_details?.reasoning_tokens ?? 0
  return Effect.succeed({
    text: first.message.content ?? "",
    finishReason: first.finish_reason ?? undefined,
    usage: { input: u?.prompt_tokens ?? 0, output: (u?.completion_tokens ?? 0) - thought, thought }
  })
}

/** Parses the JSON of a REST body for readGeminiReply; a body that is not JSON is malformed. */
export const parseJsonBody = (origin: string, text: string): Effect.Effect<unknown, LlmError> =>
  Effect.try({ try: () => JSON.parse(text) as unknown, catch: (e) => malformed(origin, `reply is not JSON: ${text.slice(0, 120)}`, e) })

// ---------------------------------------------------------------------------------------------
// Attempts

/** Settings every remote engine shares. */
export interface RemoteOptions {
  /** Total attempts per call, the first included (default 5). */
  readonly attempts?: number
  /** Backoff between attempts (defaults of `Retry.backoff`; `attempts` above wins). */
  readonly backoff?: Retry.BackoffOptions
  /** Time limit of one HTTP call (default 60 seconds). */
  readonly timeout?: Duration.Input
}

/**
 * Runs `once` (one HTTP call and the reading of its reply) with a time limit per attempt,
 * turning timeouts and transport failures into LlmErrors, and retries the retryable ones on
 * `Retry.backoff` (honouring RetryInfo / Retry-After). `wrap` surrounds each attempt (a rate
 * limiter's permit, call counting).
 */
export const attempts = <A>(
  options: RemoteOptions,
  origin: string,
  once: Effect.Effect<A, unknown>,
  wrap: (attempt: Effect.Effect<A, LlmError>) => Effect.Effect<A, LlmError> = (a) => a
): Effect.Effect<A, LlmError> => {
  const timeout = options.timeout ?? "60 seconds"
  const schedule = Retry.backoff({ ...options.backoff, attempts: options.attempts ?? options.backoff?.attempts ?? 5 })
  const attempt = once.pipe(
    Effect.timeout(timeout),
    Effect.mapError((e): LlmError => {
      if (e instanceof LlmError) return e
      if (Cause.isTimeoutError(e)) {
        return new LlmError({ reason: "Timeout", origin, message: `no answer within ${Duration.format(Duration.fromInputUnsafe(timeout))}`, retryable: true, cause: e })
      }
      return new LlmError({ reason: "Transport", origin, message: String((e as { message?: unknown }).message ?? e), retryable: true, cause: e })
    })
  )
  return Retry.transient(wrap(attempt), schedule)
}

/** One JSON POST: a non-2xx status is classified, a 2xx body goes to `read`. */
export const postJson = <A>(
  client: HttpClient.HttpClient,
  spec: {
    readonly url: string
    readonly headers: Record<string, string>
    readonly body: unknown
    readonly read: (origin: string, text: string) => Effect.Effect<A, LlmError>
  }
): Effect.Effect<A, unknown> => {
  const origin = `POST ${spec.url}`
  return client
    .execute(HttpClientRequest.post(spec.url).pipe(HttpClientRequest.setHeaders(spec.headers), HttpClientRequest.bodyJsonUnsafe(spec.body)))
    .pipe(
      Effect.flatMap((response) =>
        Effect.flatMap(response.text, (text) =>
          response.status >= 200 && response.status < 300
            ? spec.read(origin, text)
            : Effect.fail(classifyStatus(origin, response.status, response.headers, text))
        )
      )
    )
}

export const trimSlash = (s: string): string => s.replace(/\/+$/, "")
