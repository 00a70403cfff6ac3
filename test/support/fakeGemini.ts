/**
 * A local Gemini Developer API (generateContent REST, as sent by `@google/genai`) on 127.0.0.1:0,
 * with seeded fault injection and the inline Batch API (protocols.md §3).
 *
 * Point `@google/genai` at it with `httpOptions: { baseUrl: server.url }`; the SDK keeps sending
 * `x-goog-api-key`. This file also holds the pieces shared with `fakeOpenAI.ts`: the `Faults` /
 * `Call` / `FakeServer` types and the HTTP core (recording, seeded fault draws, latency, hangs).
 */
import { createHash } from "node:crypto"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { seeded } from "../../src/internal/random.ts"

// ---------------------------------------------------------------------------------------------
// Shared types
// ---------------------------------------------------------------------------------------------

/**
 * Fault probabilities, drawn once per model call (generateContent / chat completions) from a
 * generator seeded by `seed`. The buckets are taken in this order from one uniform draw:
 * rateLimited, dailyQuota, unavailable, hang, malformed, maxTokensNoParts (if they add up to more
 * than 1, the later ones shrink). Batch endpoints never get these faults.
 */
export interface Faults {
  /** A per-minute 429 (Gemini: RESOURCE_EXHAUSTED with QuotaFailure(…PerMinute…) + Help; OpenAI: `{"error":{…,"code":429}}`). */
  readonly rateLimited?: number
  /** Among 429s (per-minute and daily), the chance the reply says when to retry: Gemini RetryInfo / OpenAI `retry-after` (+ `retry-after-ms`). */
  readonly retryInfo?: number
  /** The delay carried by RetryInfo / Retry-After, a protobuf Duration string. Default "0.05s". */
  readonly retryDelay?: string
  /** A 429 whose quotaId contains "PerDay" (OpenAI: type "insufficient_quota", "per day" message). Must not be retried. */
  readonly dailyQuota?: number
  /** A 5xx: 503 and 500 alternate (503 first), with protocol-shaped bodies. */
  readonly unavailable?: number
  /** The request is read and never answered, until the client gives up or `close()` destroys it. */
  readonly hang?: number
  /** A 200 whose answer text is truncated JSON or not JSON at all (half each, drawn). */
  readonly malformed?: number
  /** Gemini only: a 200 with finishReason MAX_TOKENS and a candidate without `parts`. */
  readonly maxTokensNoParts?: number
  /** Batch only (Gemini): the chance that one inline result is an `error` (google.rpc.Status) instead of a `response`. */
  readonly batchItemError?: number
  /** Seed of the fault generator; the same seed and call order give the same outcomes. Default "polaris-fake". */
  readonly seed?: string
}

/**
 * What the server did with a call. "batch" is any Batch API call (create/get/list/cancel/delete);
 * "rejected" is a local 4xx (bad key, unknown path, body not JSON, invalid request), which draws
 * no fault.
 */
export type Outcome = "ok" | "429" | "429-daily" | "5xx" | "hang" | "malformed" | "max-tokens" | "batch" | "rejected"
export const outcomes: ReadonlyArray<Outcome> = ["ok", "429", "429-daily", "5xx", "hang", "malformed", "max-tokens", "batch", "rejected"]

export interface Call {
  readonly method: string
  /** The request target as sent, query string included. */
  readonly path: string
  readonly headers: Record<string, string | string[] | undefined>
  /** The parsed JSON body; the raw text when it is not JSON; undefined when empty. */
  readonly body: unknown
  readonly outcome: Outcome
  /** Date.now() when the request had been read. */
  readonly at: number
}

export type Counts = Readonly<Record<Outcome | "total", number>>

export interface FakeServer {
  /** `http://127.0.0.1:PORT`, no trailing slash. */
  readonly url: string
  /** Every call so far, in arrival order (the live array; `reset()` empties it). */
  readonly calls: ReadonlyArray<Call>
  /** Total calls and calls per outcome. */
  readonly counts: () => Counts
  /** Ends hanging and delayed requests (destroys their sockets) and stops the server. Idempotent. */
  readonly close: () => Promise<void>
  /** Replaces the faults and reseeds the generator from `f.seed` (default "polaris-fake"). */
  setFaults(f: Faults): void
  /** Empties `calls`, reseeds the generator from the current faults' seed, and forgets batches. */
  reset(): void
}

// ---------------------------------------------------------------------------------------------
// Shared core
// ---------------------------------------------------------------------------------------------

/** @internal What one model call turns into; all draws are made up front so the sequence is fixed per call. */
export interface Decision {
  readonly kind: "ok" | "429" | "429-daily" | "5xx" | "hang" | "malformed" | "max-tokens"
  /** For 429s: carry RetryInfo / Retry-After. */
  readonly retryInfo: boolean
  /** For 5xx: 503 (true) or 500 (false), alternating. */
  readonly is503: boolean
  /** For malformed: truncated JSON (true) or not JSON (false). */
  readonly truncated: boolean
  /** For ok: a uniform draw deciding a thought part (Gemini) / a `reasoning` field (OpenAI). */
  readonly thoughtDraw: number
  /** 0-based index of this model call since the last reset/setFaults. */
  readonly n: number
}

/** @internal A parsed request. */
export interface Incoming {
  readonly method: string
  readonly url: string
  readonly pathname: string
  readonly query: URLSearchParams
  readonly headers: IncomingMessage["headers"]
  readonly raw: string
  /** `undefined` when the body is empty or not JSON (see `raw`). */
  readonly json: unknown
  readonly isJson: boolean
}

/** @internal What the handler wants sent back. */
export interface Reply {
  readonly outcome: Outcome
  readonly status?: number
  /** A string is sent as is; anything else as JSON. */
  readonly body?: unknown
  readonly headers?: Record<string, string>
  readonly contentType?: string
  readonly hang?: boolean
}

/** @internal The shared HTTP machinery. */
export interface Core {
  readonly faults: () => Faults
  readonly decide: () => Decision
  readonly server: FakeServer
}

const DEFAULT_SEED = "polaris-fake"

/** @internal Starts a server on 127.0.0.1:0 that records calls and sends what `handle` decides. */
export const startCore = async (options: {
  readonly faults?: Faults | undefined
  readonly latencyMs?: number | undefined
  readonly handle: (request: Incoming, core: Core) => Reply
  readonly onReset?: () => void
}): Promise<FakeServer> => {
  let faults: Faults = options.faults ?? {}
  let rng = seeded(faults.seed ?? DEFAULT_SEED)
  let modelCalls = 0
  let fiveHundreds = 0
  const calls: Array<Call> = []
  const timers = new Set<NodeJS.Timeout>()
  let closed: Promise<void> | undefined

  const reseed = () => {
    rng = seeded(faults.seed ?? DEFAULT_SEED)
    modelCalls = 0
    fiveHundreds = 0
  }

  const decide = (): Decision => {
    // Always four draws per model call, whatever the outcome, so call k sees the same numbers.
    const r = rng(), sub = rng(), thought = rng(), truncated = rng()
    const n = modelCalls++
    const buckets: ReadonlyArray<readonly [Decision["kind"], number | undefined]> = [
      ["429", faults.rateLimited],
      ["429-daily", faults.dailyQuota],
      ["5xx", faults.unavailable],
      ["hang", faults.hang],
      ["malformed", faults.malformed],
      ["max-tokens", faults.maxTokensNoParts]
    ]
    let kind: Decision["kind"] = "ok"
    let edge = 0
    for (const [k, p] of buckets) {
      edge += Math.max(0, p ?? 0)
      if (r < edge) {
        kind = k
        break
      }
    }
    const is503 = kind === "5xx" ? fiveHundreds++ % 2 === 0 : true
    return { kind, retryInfo: sub < (faults.retryInfo ?? 0), is503, truncated: truncated < 0.5, thoughtDraw: thought, n }
  }

  const send = (res: ServerResponse, reply: Reply) => {
    if (res.destroyed) return
    const body = reply.body === undefined ? "" : typeof reply.body === "string" ? reply.body : JSON.stringify(reply.body)
    const headers: Record<string, string> = { ...reply.headers }
    if (body !== "") headers["content-type"] = reply.contentType ?? (typeof reply.body === "string" ? "text/plain; charset=utf-8" : "application/json; charset=UTF-8")
    res.writeHead(reply.status ?? 200, headers)
    res.end(body)
  }

  const http = createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => {
      const raw = Buffer.concat(chunks).toString("utf8")
      let json: unknown = undefined
      let isJson = false
      if (raw !== "") {
        try {
          json = JSON.parse(raw)
          isJson = true
        } catch {
          // left as raw text
        }
      }
      const url = req.url ?? "/"
      const parsed = new URL(url, "http://127.0.0.1")
      const incoming: Incoming = { method: req.method ?? "GET", url, pathname: parsed.pathname, query: parsed.searchParams, headers: req.headers, raw, json, isJson }
      let reply: Reply
      try {
        reply = options.handle(incoming, core)
      } catch (e) {
        reply = { outcome: "5xx", status: 500, body: { error: { code: 500, message: `fake server handler threw: ${String(e)}`, status: "INTERNAL" } } }
      }
      calls.push({ method: incoming.method, path: url, headers: req.headers, body: isJson ? json : raw === "" ? undefined : raw, outcome: reply.outcome, at: Date.now() })
      if (reply.hang === true || closed !== undefined) return // never answered; close() destroys the socket
      const latency = options.latencyMs ?? 0
      if (latency <= 0) return send(res, reply)
      const t = setTimeout(() => {
        timers.delete(t)
        send(res, reply)
      }, latency)
      timers.add(t)
    })
  })
  await new Promise<void>((resolve, reject) => {
    http.once("error", reject)
    http.listen(0, "127.0.0.1", () => {
      http.off("error", reject)
      resolve()
    })
  })
  const port = (http.address() as AddressInfo).port

  const server: FakeServer = {
    url: `http://127.0.0.1:${port}`,
    get calls() {
      return calls
    },
    counts: () => {
      const out = Object.fromEntries([...outcomes.map((o) => [o, 0] as const), ["total", calls.length] as const]) as Record<Outcome | "total", number>
      for (const c of calls) out[c.outcome] += 1
      return out
    },
    close: () => {
      if (closed === undefined) {
        for (const t of timers) clearTimeout(t)
        timers.clear()
        closed = new Promise<void>((resolve) => {
          http.close(() => resolve())
          http.closeAllConnections()
        })
      }
      return closed
    },
    setFaults: (f: Faults) => {
      faults = f
      reseed()
    },
    reset: () => {
      calls.length = 0
      reseed()
      options.onReset?.()
    }
  }
  const core: Core = { faults: () => faults, decide, server }
  return server
}

/** @internal A short deterministic id. */
export const idOf = (...parts: ReadonlyArray<string | number>): string =>
  createHash("sha256").update(parts.join("\u0000")).digest("base64url").slice(0, 16)

/** @internal "0.05s" → 0.05 (protobuf Duration string). */
export const durationSeconds = (d: string): number => {
  const s = Number(d.replace(/s$/, ""))
  return Number.isFinite(s) && s >= 0 ? s : 0
}

/** @internal The answer text cut in half (truncated JSON when the answer is JSON), or prose. */
export const malformedText = (answer: string, truncated: boolean): string =>
  truncated
    ? answer.slice(0, Math.max(1, Math.floor(answer.length / 2)))
    : "Sure! Having read the story carefully, I would say it is quite good overall, with a strong ending."

/** @internal A rough token count: one token per 4 characters, at least 1. */
export const roughTokens = (text: string): number => Math.max(1, Math.ceil(text.length / 4))

// ---------------------------------------------------------------------------------------------
// Gemini
// ---------------------------------------------------------------------------------------------

export interface GeminiUsage {
  readonly promptTokenCount: number
  readonly candidatesTokenCount: number
  readonly thoughtsTokenCount?: number
}

export interface FakeGeminiOptions {
  /** The model's answer text for a well-formed reply (e.g. the judge's JSON), given the GenerateContentRequest body. */
  readonly answer: (request: any) => string
  readonly faults?: Faults
  /** Delay before every answer (errors included; not hangs). */
  readonly latencyMs?: number
  /** Token counts for usageMetadata; default: ~4 characters a token, thoughtsTokenCount 64. */
  readonly usage?: (request: any, answer: string) => GeminiUsage
  /** When set, a request whose `x-goog-api-key` (or `?key=`) differs gets 403 (missing) / 401 (wrong). */
  readonly requireKey?: string
  /** GETs of a batch before it succeeds (1..N-1 answer RUNNING, the N-th SUCCEEDED; 0 = done at create). Default 2. */
  readonly batchPolls?: number
  /** Chance an ok reply carries a `thought: true` part before the answer (clients must skip it). Default 0.5. */
  readonly thoughtParts?: number
}

/** google.rpc.Status inside `error`, as the REST API sends it (protocols.md §3.4). */
export const googleError = (code: number, status: string, message: string, details?: ReadonlyArray<unknown>) => ({
  error: { code, message, status, ...(details !== undefined ? { details } : {}) }
})

const HELP = {
  "@type": "type.googleapis.com/google.rpc.Help",
  links: [{ description: "Learn more about Gemini API quotas", url: "https://ai.google.dev/gemini-api/docs/rate-limits" }]
}

/** The 429 body: QuotaFailure (per-minute or per-day quotaId) + Help (+ RetryInfo). */
export const geminiQuota429 = (model: string, daily: boolean, retryDelay: string | undefined) =>
  googleError(
    429,
    "RESOURCE_EXHAUSTED",
    daily
      ? "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. * Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 250"
      : "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. * Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 10",
    [
      {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        violations: [
          {
            quotaMetric: "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            quotaId: daily ? "GenerateRequestsPerDayPerProjectPerModel-FreeTier" : "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
            quotaDimensions: { location: "global", model },
            quotaValue: daily ? "250" : "10"
          }
        ]
      },
      HELP,
      ...(retryDelay !== undefined ? [{ "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay }] : [])
    ]
  )

export const gemini503 = googleError(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
// The exact 500 wording is UNCONFIRMED (protocols.md §3.4).
export const gemini500 = googleError(500, "INTERNAL", "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting")

/** Every `text` in the request's contents and systemInstruction. */
const requestText = (request: any): string => {
  const texts: Array<string> = []
  const walk = (content: any) => {
    const parts = content?.parts
    if (Array.isArray(parts)) for (const p of parts) if (typeof p?.text === "string") texts.push(p.text)
  }
  if (Array.isArray(request?.contents)) for (const c of request.contents) walk(c)
  walk(request?.systemInstruction)
  return texts.join("\n")
}

const defaultUsage = (request: any, answer: string): GeminiUsage => ({
  promptTokenCount: roughTokens(requestText(request)),
  candidatesTokenCount: roughTokens(answer),
  thoughtsTokenCount: 64
})

const usageMetadata = (u: GeminiUsage) => ({
  promptTokenCount: u.promptTokenCount,
  candidatesTokenCount: u.candidatesTokenCount,
  ...(u.thoughtsTokenCount !== undefined ? { thoughtsTokenCount: u.thoughtsTokenCount } : {}),
  totalTokenCount: u.promptTokenCount + u.candidatesTokenCount + (u.thoughtsTokenCount ?? 0),
  promptTokensDetails: [{ modality: "TEXT", tokenCount: u.promptTokenCount }]
})

const THOUGHT = "**Weighing the story**\n\nI am checking the premise against the rubric before settling on a score."

/** A GenerateContentResponse (protocols.md §3.3). */
const generateContentResponse = (model: string, text: string, usage: GeminiUsage, thought: boolean, responseId: string) => ({
  candidates: [
    {
      content: {
        role: "model",
        parts: [
          ...(thought ? [{ text: THOUGHT, thought: true }] : []),
          { text, thoughtSignature: `CiQB${responseId}` }
        ]
      },
      finishReason: "STOP",
      index: 0
    }
  ],
  usageMetadata: usageMetadata(usage),
  modelVersion: model,
  responseId
})

/** MAX_TOKENS while thinking: the candidate has a content without `parts` (protocols.md §3.3). */
const maxTokensResponse = (model: string, request: any, responseId: string) => {
  const prompt = roughTokens(requestText(request))
  const thoughts = typeof request?.generationConfig?.maxOutputTokens === "number" ? request.generationConfig.maxOutputTokens : 8192
  return {
    candidates: [{ content: { role: "model" }, finishReason: "MAX_TOKENS", index: 0 }],
    usageMetadata: { promptTokenCount: prompt, thoughtsTokenCount: thoughts, totalTokenCount: prompt + thoughts, promptTokensDetails: [{ modality: "TEXT", tokenCount: prompt }] },
    modelVersion: model,
    responseId
  }
}

// --- Batch API (protocols.md §3.5) ---

/**
 * The metadata `@type` of a batch operation. The exact value is UNCONFIRMED (protocols.md §3.5);
 * this is the one seen in published responses. Clients must not depend on it.
 */
export const BATCH_METADATA_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"

interface BatchItem {
  readonly response?: unknown
  readonly error?: { readonly code: number; readonly message: string }
  readonly metadata?: unknown
}
interface Batch {
  readonly id: string
  readonly model: string
  readonly displayName: string
  readonly createTime: string
  updateTime: string
  endTime?: string
  polls: number
  cancelled: boolean
  readonly items: ReadonlyArray<BatchItem>
}

export const startFakeGemini = (options: FakeGeminiOptions): Promise<FakeServer> => {
  const batches = new Map<string, Batch>()
  let batchCount = 0
  const polls = Math.max(0, options.batchPolls ?? 2)
  const thoughtP = options.thoughtParts ?? 0.5
  const usageOf = options.usage ?? defaultUsage

  const stateOf = (b: Batch): string =>
    b.cancelled ? "BATCH_STATE_CANCELLED" : b.polls >= polls ? "BATCH_STATE_SUCCEEDED" : b.polls === 0 ? "BATCH_STATE_PENDING" : "BATCH_STATE_RUNNING"

  /**
   * The long-running operation for a batch: `{name, metadata:{@type, model, displayName, createTime,
   * updateTime, endTime?, batchStats, state, output?}, done?}`. Results are in
   * `metadata.output.inlinedResponses.inlinedResponses` (nested twice), in input order. `batchStats`
   * (int64 counts as strings) is UNCONFIRMED. A finished real operation may also carry a top-level
   * `response`; protocols.md recommends reading `metadata.output` (as @google/genai does), so it is
   * left out here to keep clients honest.
   */
  const operation = (b: Batch) => {
    const state = stateOf(b)
    const done = state === "BATCH_STATE_SUCCEEDED" || state === "BATCH_STATE_CANCELLED"
    if (done && b.endTime === undefined) b.endTime = new Date().toISOString()
    const failed = b.items.filter((i) => i.error !== undefined).length
    const n = String(b.items.length)
    return {
      name: `batches/${b.id}`,
      metadata: {
        "@type": BATCH_METADATA_TYPE,
        model: `models/${b.model}`,
        displayName: b.displayName,
        createTime: b.createTime,
        updateTime: b.updateTime,
        ...(b.endTime !== undefined ? { endTime: b.endTime } : {}),
        batchStats:
          state === "BATCH_STATE_SUCCEEDED"
            ? { requestCount: n, successfulRequestCount: String(b.items.length - failed), ...(failed > 0 ? { failedRequestCount: String(failed) } : {}) }
            : { requestCount: n, pendingRequestCount: n },
        state,
        ...(state === "BATCH_STATE_SUCCEEDED" ? { output: { inlinedResponses: { inlinedResponses: b.items } } } : {})
      },
      ...(done ? { done: true } : {})
    }
  }

  const handle = (req: Incoming, core: Core): Reply => {
    const rejected = (status: number, statusName: string, message: string, details?: ReadonlyArray<unknown>): Reply => ({
      outcome: "rejected",
      status,
      body: googleError(status, statusName, message, details)
    })

    if (options.requireKey !== undefined) {
      const header = req.headers["x-goog-api-key"]
      const key = (Array.isArray(header) ? header[0] : header) ?? req.query.get("key") ?? undefined
      if (key === undefined || key === "") {
        return rejected(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.")
      }
      if (key !== options.requireKey) {
        // The real service answers a wrong key with 400 INVALID_ARGUMENT + ErrorInfo(API_KEY_INVALID);
        // the judge tests want a 401/403-shaped auth error, so this is 401 UNAUTHENTICATED with the same ErrorInfo.
        return rejected(401, "UNAUTHENTICATED", "API key not valid. Please pass a valid API key.", [
          { "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "API_KEY_INVALID", domain: "googleapis.com", metadata: { service: "generativelanguage.googleapis.com" } }
        ])
      }
    }

    const model = /^(?:\/v1[a-z0-9]*)?\/models\/([^/:]+):(generateContent|batchGenerateContent)$/.exec(req.pathname)
    const batch = /^(?:\/v1[a-z0-9]*)?\/batches(?:\/([^/:]+))?(?::(cancel))?$/.exec(req.pathname)

    if (model !== null && req.method === "POST") {
      const modelId = decodeURIComponent(model[1]!)
      if (!req.isJson) {
        return rejected(400, "INVALID_ARGUMENT", `Invalid JSON payload received. Unexpected token.\n${req.raw.slice(0, 40)}\n^`)
      }
      const body = req.json as any
      if (model[2] === "generateContent") {
        if (typeof body !== "object" || body === null || !Array.isArray(body.contents) || body.contents.length === 0) {
          return rejected(400, "INVALID_ARGUMENT", "* GenerateContentRequest.contents: contents is not specified\n")
        }
        const d = core.decide()
        const responseId = idOf(core.faults().seed ?? DEFAULT_SEED, "gemini", d.n)
        const retryDelay = d.retryInfo ? core.faults().retryDelay ?? "0.05s" : undefined
        switch (d.kind) {
          case "429":
            return { outcome: "429", status: 429, body: geminiQuota429(modelId, false, retryDelay) }
          case "429-daily":
            return { outcome: "429-daily", status: 429, body: geminiQuota429(modelId, true, retryDelay) }
          case "5xx":
            return d.is503 ? { outcome: "5xx", status: 503, body: gemini503 } : { outcome: "5xx", status: 500, body: gemini500 }
          case "hang":
            return { outcome: "hang", hang: true }
          case "max-tokens":
            return { outcome: "max-tokens", body: maxTokensResponse(modelId, body, responseId) }
          case "malformed":
          case "ok": {
            const answer = options.answer(body)
            const text = d.kind === "ok" ? answer : malformedText(answer, d.truncated)
            const thought = d.kind === "ok" && d.thoughtDraw < thoughtP
            return { outcome: d.kind, body: generateContentResponse(modelId, text, usageOf(body, text), thought, responseId) }
          }
        }
      }
      // batchGenerateContent
      const requests = body?.batch?.inputConfig?.requests?.requests
      if (body?.batch?.inputConfig?.fileName !== undefined) {
        return rejected(400, "INVALID_ARGUMENT", "fake Gemini: only inline batch requests (inputConfig.requests.requests) are supported")
      }
      if (!Array.isArray(requests) || requests.some((r: any) => typeof r !== "object" || r === null || typeof r.request !== "object" || r.request === null)) {
        return rejected(400, "INVALID_ARGUMENT", "* BatchGenerateContentRequest.batch.input_config: input_config.requests.requests[].request is required\n")
      }
      const n = batchCount++
      const seed = core.faults().seed ?? DEFAULT_SEED
      const id = idOf(seed, "batch", n).toLowerCase().replace(/[^a-z0-9]/g, "0")
      const itemRng = seeded(`${seed}:batch:${n}`)
      const itemErrorP = core.faults().batchItemError ?? 0
      const items: Array<BatchItem> = requests.map((r: any, i: number): BatchItem => {
        const metadata = r.metadata !== undefined ? { metadata: r.metadata } : {}
        if (itemRng() < itemErrorP) {
          // An embedded google.rpc.Status carries the canonical (gRPC) code, 13 = INTERNAL; UNCONFIRMED wording.
          return { error: { code: 13, message: "Internal error encountered." }, ...metadata }
        }
        const answer = options.answer(r.request)
        const itemModel = typeof r.request.model === "string" ? r.request.model.replace(/^models\//, "") : modelId
        return { response: generateContentResponse(itemModel, answer, usageOf(r.request, answer), i % 2 === 1, idOf(seed, "batch", n, i)), ...metadata }
      })
      const now = new Date().toISOString()
      const b: Batch = {
        id,
        model: modelId,
        displayName: typeof body.batch.displayName === "string" ? body.batch.displayName : `batch-${id}`,
        createTime: now,
        updateTime: now,
        polls: 0,
        cancelled: false,
        items
      }
      batches.set(id, b)
      return { outcome: "batch", body: operation(b) }
    }

    if (batch !== null) {
      const id = batch[1]
      if (id === undefined) {
        if (req.method !== "GET") return rejected(404, "NOT_FOUND", "Method not found.")
        const ops = [...batches.values()].map(operation)
        return { outcome: "batch", body: { operations: ops } }
      }
      const b = batches.get(id)
      if (b === undefined) return rejected(404, "NOT_FOUND", `Requested entity was not found. (batches/${id})`)
      if (batch[2] === "cancel" && req.method === "POST") {
        if (stateOf(b) !== "BATCH_STATE_SUCCEEDED") {
          b.cancelled = true
          b.updateTime = new Date().toISOString()
        }
        return { outcome: "batch", body: {} }
      }
      if (batch[2] === undefined && req.method === "GET") {
        if (!b.cancelled && b.polls < polls) {
          b.polls += 1
          b.updateTime = new Date().toISOString()
        }
        return { outcome: "batch", body: operation(b) }
      }
      if (batch[2] === undefined && req.method === "DELETE") {
        batches.delete(id)
        return { outcome: "batch", body: {} }
      }
      return rejected(404, "NOT_FOUND", "Method not found.")
    }

    return rejected(404, "NOT_FOUND", `fake Gemini: no route for ${req.method} ${req.pathname}`)
  }

  return startCore({
    faults: options.faults,
    latencyMs: options.latencyMs,
    handle,
    onReset: () => {
      batches.clear()
      batchCount = 0
    }
  })
}
