/**
 * The `gemini` judge: @google/genai's generateContent with structured JSON output
 * (`responseJsonSchema` from the rubric: evidence before score for every dimension, scores
 * bounded), temperature and thinking level configurable. The SDK's own retries stay off (it
 * ignores RetryInfo); RemoteJudge retries on our Schedule, honouring RetryInfo, behind the rate
 * limiter. The key is Redacted: it reaches the SDK and nothing else.
 *
 * @example
 * ```ts
 * const layer = gemini({ apiKey: Redacted.make(process.env.GEMINI_API_KEY!), model: "gemini-3-flash-preview", rubric,
 *   thinkingLevel: "LOW", limits: { requestsPerMinute: 1000 }, price: { input: 0.5, output: 3 } })
 * ```
 */
import type { GoogleGenAI, ThinkingLevel } from "@google/genai"
import { Effect, Layer, Redacted } from "effect"
import { createRequire } from "node:module"
import { classifyStatus, LlmError, readGeminiReply, trimSlash } from "../llm/Remote.ts"
import { Judge } from "./Judge.ts"
import { makeRemoteJudge, type RemoteJudgeOptions } from "./RemoteJudge.ts"

export interface GeminiJudgeOptions extends RemoteJudgeOptions {
  readonly apiKey: Redacted.Redacted<string>
  /** e.g. `gemini-3-flash-preview`; a `models/` prefix is accepted. */
  readonly model: string
  /** Origin only (default `https://generativelanguage.googleapis.com`): a local server in tests. */
  readonly baseUrl?: string
  /** API version path segment (default `v1beta`). */
  readonly apiVersion?: string
  /** Default 1.0, Google's advice for Gemini 3. */
  readonly temperature?: number
  /** Gemini 3 thinking level (omitted: the model's default). */
  readonly thinkingLevel?: "MINIMAL" | "LOW" | "MEDIUM" | "HIGH"
  readonly maxOutputTokens?: number
}

const DEFAULT_ORIGIN = "https://generativelanguage.googleapis.com"

// The SDK (with google-auth) on first call: ~65 ms that `plan` and `validate`, which build the
// judge for its fingerprint only, never need.
let sdk: typeof import("@google/genai") | undefined
const genai = (): typeof import("@google/genai") => (sdk ??= createRequire(import.meta.url)("@google/genai") as typeof import("@google/genai"))

/** An SDK failure -> an LlmError: ApiError carries the status and the JSON error body as its message. */
export const fromSdk = (origin: string, e: unknown): LlmError => {
  if (e instanceof LlmError) return e
  if (sdk !== undefined && e instanceof sdk.ApiError) return classifyStatus(origin, e.status, {}, e.message)
  return new LlmError({ reason: "Transport", origin, message: e instanceof Error ? e.message : String(e), retryable: true, cause: e })
}

/**
 * What the online and the batch Gemini judges share: the SDK client, the settings that enter the
 * fingerprint, and the request for one verdict (the rubric's prompt and reply schema).
 */
export const geminiClient = (options: Omit<GeminiJudgeOptions, "rubric" | "limits" | "price" | "expectedOutputTokens">) => {
  const model = options.model.replace(/^models\//, "")
  const version = options.apiVersion ?? "v1beta"
  const base = trimSlash(options.baseUrl ?? DEFAULT_ORIGIN)
  const temperature = options.temperature ?? 1
  let ai: GoogleGenAI | undefined
  return {
    model,
    /** `POST <origin>/<version>/models/<model>:<method>`, for error messages. */
    origin: (method: string) => `POST ${base}${version === "" ? "" : `/${version}`}/models/${model}:${method}`,
    get ai(): GoogleGenAI {
      return (ai ??= new (genai().GoogleGenAI)({ apiKey: Redacted.value(options.apiKey), httpOptions: { baseUrl: base, apiVersion: version } }))
    },
    settings: { temperature, thinkingLevel: options.thinkingLevel ?? null, maxOutputTokens: options.maxOutputTokens ?? null },
    request: (prompt: { readonly system: string; readonly user: string }, schema: unknown) => ({
      contents: [{ role: "user", parts: [{ text: prompt.user }] }],
      config: {
        ...(prompt.system !== "" ? { systemInstruction: prompt.system } : {}),
        temperature,
        // Without a schema (a plain-text completion) the model answers as the prompt asks. The SDK's
        // GenerateContentConfig has systemInstruction, responseMimeType and responseJsonSchema all
        // optional (@google/genai@3.1.0 dist/genai.d.ts, the version in package-lock.json).
        ...(schema !== undefined ? { responseMimeType: "application/json", responseJsonSchema: schema } : {}),
        ...(options.thinkingLevel !== undefined ? { thinkingConfig: { thinkingLevel: options.thinkingLevel as ThinkingLevel } } : {}),
        ...(options.maxOutputTokens !== undefined ? { maxOutputTokens: options.maxOutputTokens } : {})
      }
    })
  }
}

export const makeGemini = (options: GeminiJudgeOptions) => {
  const client = geminiClient(options)
  const origin = client.origin("generateContent")
  return makeRemoteJudge({
    name: "gemini",
    model: client.model,
    origin,
    settings: client.settings,
    call: (prompt, schema) => {
      const { contents, config } = client.request(prompt, schema)
      return Effect.tryPromise({
        try: (signal) => client.ai.models.generateContent({ model: client.model, contents, config: { ...config, abortSignal: signal } }),
        catch: (e) => fromSdk(origin, e)
      }).pipe(Effect.flatMap((response) => readGeminiReply(origin, response)))
    }
  }, options)
}

/** The gemini judge as a Judge layer. */
export const gemini = (options: GeminiJudgeOptions): Layer.Layer<Judge> => Layer.effect(Judge, makeGemini(options))
