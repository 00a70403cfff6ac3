/**
 * A local OpenAI-compatible (vLLM-flavoured) chat completions server on 127.0.0.1:0, with seeded
 * fault injection (protocols.md §2). Clients use `server.url` (or `${server.url}/v1`) as base URL.
 *
 * Routes: `POST /v1/chat/completions`, `GET /v1/models`, `GET /health`; anything else is a 404.
 */
import {
  type Core,
  type FakeServer,
  type Faults,
  durationSeconds,
  idOf,
  type Incoming,
  malformedText,
  type Reply,
  roughTokens,
  startCore
} from "./fakeGemini.ts"

export type { Call, Counts, FakeServer, Faults, Outcome } from "./fakeGemini.ts"

export interface FakeOpenAIOptions {
  /** The assistant's answer text for a well-formed reply, given the chat completion request body. */
  readonly answer: (request: any) => string
  /** `maxTokensNoParts` and `batchItemError` do not apply here. */
  readonly faults?: Faults
  /** Delay before every answer (errors included; not hangs). */
  readonly latencyMs?: number
  /** When set, `/v1/*` needs `Authorization: Bearer <requireKey>` (401 otherwise). */
  readonly requireKey?: string
  /** The served model id, listed by `GET /v1/models`. Default "Qwen/Qwen3-8B". Requests for any model are answered. */
  readonly model?: string
  /** Chance an ok reply's message also carries a vLLM `reasoning` field (clients must read `content`). Default 0.5. */
  readonly reasoning?: number
}

/** `{"error":{"message","type","param","code"}}` with `code` = the HTTP status (vLLM, protocols.md §2). */
export const openAIError = (code: number, type: string, message: string, param: string | null = null) => ({
  error: { message, type, param, code }
})

const REASONING = "The user wants a JSON verdict. Let me weigh the story against the rubric first."

const textOf = (request: any): string => {
  const out: Array<string> = []
  if (Array.isArray(request?.messages)) {
    for (const m of request.messages) {
      if (typeof m?.content === "string") out.push(m.content)
      else if (Array.isArray(m?.content)) for (const p of m.content) if (typeof p?.text === "string") out.push(p.text)
    }
  }
  return out.join("\n")
}

export const startFakeOpenAI = (options: FakeOpenAIOptions): Promise<FakeServer> => {
  const served = options.model ?? "Qwen/Qwen3-8B"
  const created = Math.floor(Date.now() / 1000)
  const reasoningP = options.reasoning ?? 0.5

  const handle = (req: Incoming, core: Core): Reply => {
    const rejected = (status: number, type: string, message: string): Reply => ({ outcome: "rejected", status, body: openAIError(status, type, message) })

    if (req.pathname === "/health" && req.method === "GET") return { outcome: "ok", status: 200 }

    if (options.requireKey !== undefined && req.pathname.startsWith("/v1/")) {
      const auth = req.headers["authorization"]
      const value = Array.isArray(auth) ? auth[0] : auth
      // vLLM's own --api-key check answers a flat {"error":"Unauthorized"}; this uses the common error shape.
      if (value !== `Bearer ${options.requireKey}`) {
        return rejected(401, "AuthenticationError", value === undefined ? "Missing bearer token." : "Incorrect API key provided.")
      }
    }

    if (req.pathname === "/v1/models" && req.method === "GET") {
      return {
        outcome: "ok",
        body: {
          object: "list",
          data: [{ id: served, object: "model", created, owned_by: "vllm", root: served, parent: null, max_model_len: 32768, permission: [] }]
        }
      }
    }

    if (req.pathname === "/v1/chat/completions" && req.method === "POST") {
      if (!req.isJson) return rejected(400, "BadRequestError", "Expecting value: line 1 column 1 (char 0)")
      const body = req.json as any
      if (typeof body !== "object" || body === null || !Array.isArray(body.messages) || body.messages.length === 0) {
        return rejected(400, "BadRequestError", "Field required: messages")
      }
      const d = core.decide()
      const seed = core.faults().seed ?? "polaris-fake"
      const delay = core.faults().retryDelay ?? "0.05s"
      // Retry-After in (possibly fractional) seconds, as the OpenAI SDKs parse it, plus retry-after-ms.
      const retryHeaders = d.retryInfo ? { "retry-after": String(durationSeconds(delay)), "retry-after-ms": String(Math.round(durationSeconds(delay) * 1000)) } : undefined
      switch (d.kind) {
        case "429":
          return {
            outcome: "429",
            status: 429,
            body: openAIError(429, "RateLimitError", "Rate limit reached for requests per min (RPM): Limit 10, Used 10, Requested 1. Please try again shortly."),
            ...(retryHeaders !== undefined ? { headers: retryHeaders } : {})
          }
        case "429-daily":
          return {
            outcome: "429-daily",
            status: 429,
            body: openAIError(429, "insufficient_quota", "You exceeded your current quota: requests per day (RPD): Limit 250, Used 250. Please check your plan and billing details."),
            ...(retryHeaders !== undefined ? { headers: retryHeaders } : {})
          }
        case "5xx":
          return d.is503
            ? { outcome: "5xx", status: 503, body: openAIError(503, "ServiceUnavailableError", "The server is overloaded or not ready yet.") }
            : { outcome: "5xx", status: 500, body: openAIError(500, "InternalServerError", "Internal Server Error") }
        case "hang":
          return { outcome: "hang", hang: true }
        case "max-tokens": // Gemini-only fault: answered normally here
        case "malformed":
        case "ok": {
          const n = typeof body.n === "number" && body.n >= 1 ? Math.floor(body.n) : 1
          const choices = Array.from({ length: n }, (_, index) => {
            const answer = options.answer(body)
            const content = d.kind === "malformed" ? malformedText(answer, d.truncated) : answer
            return {
              index,
              message: { role: "assistant", content, ...(d.kind !== "malformed" && d.thoughtDraw < reasoningP ? { reasoning: REASONING } : {}) },
              logprobs: null,
              finish_reason: "stop",
              stop_reason: null
            }
          })
          const prompt = roughTokens(textOf(body))
          const completion = choices.reduce((s, c) => s + roughTokens(c.message.content), 0)
          return {
            outcome: d.kind === "malformed" ? "malformed" : "ok",
            body: {
              id: `chatcmpl-${idOf(seed, "openai", d.n)}`,
              object: "chat.completion",
              created: Math.floor(Date.now() / 1000),
              model: typeof body.model === "string" ? body.model : served,
              choices,
              usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion, prompt_tokens_details: null },
              system_fingerprint: null,
              service_tier: null
            }
          }
        }
      }
    }

    return rejected(404, "NotFoundError", `Not Found: ${req.method} ${req.pathname}`)
  }

  return startCore({ faults: options.faults, latencyMs: options.latencyMs, handle })
}
