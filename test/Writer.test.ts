/** The Writer layers against local servers on port 0 speaking recorded Gemini / OpenAI replies, with injected faults. */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { type Duration, Effect, Exit, Redacted } from "effect"
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { Writer, type WriterError, type WriterShape } from "../src/engines/Writer.ts"
import { polaris, ROOT } from "./support/cli.ts"
import { roughTokens } from "./support/fakeGemini.ts"
import { startFakeOpenAI } from "./support/fakeOpenAI.ts"
import { tempDirInRepo } from "./support/store.ts"

interface Seen {
  readonly method: string
  readonly path: string
  readonly headers: IncomingMessage["headers"]
  readonly body: any
  readonly at: number
}
type Reply = (res: ServerResponse) => void

let server: Server
let base = ""
let seen: Array<Seen> = []
let replies: Array<Reply> = []

const json = (status: number, body: unknown, headers: Record<string, string> = {}): Reply => (res) => {
  res.writeHead(status, { "content-type": "application/json", ...headers })
  res.end(typeof body === "string" ? body : JSON.stringify(body))
}
const hang: Reply = () => {}

/** A recorded-shape generateContent reply (protocols.md §3.3). */
const geminiOk = (answer: string) =>
  json(200, {
    candidates: [
      {
        content: { role: "model", parts: [{ text: answer, thoughtSignature: "CiQBcAdm..." }] },
        finishReason: "STOP",
        index: 0
      }
    ],
    usageMetadata: {
      promptTokenCount: 812,
      candidatesTokenCount: 24,
      thoughtsTokenCount: 131,
      totalTokenCount: 967,
      promptTokensDetails: [{ modality: "TEXT", tokenCount: 812 }]
    },
    modelVersion: "gemini-3-flash-preview",
    responseId: "mJ1vaPz3Bq-ozLUP"
  })
const PREMISE = "Della and Jim, a poor young couple in a New York flat, each secretly selling a treasure to buy the other a Christmas gift"
const answer = JSON.stringify({ premise: PREMISE })

const quota429 = (retryDelay: string) =>
  json(429, {
    error: {
      code: 429,
      status: "RESOURCE_EXHAUSTED",
      message: "You exceeded your current quota, please check your plan and billing details.",
      details: [
        {
          "@type": "type.googleapis.com/google.rpc.QuotaFailure",
          violations: [
            {
              quotaMetric: "generativelanguage.googleapis.com/generate_content_free_tier_requests",
              quotaId: "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
              quotaDimensions: { location: "global", model: "gemini-3-flash-preview" },
              quotaValue: "10"
            }
          ]
        },
        { "@type": "type.googleapis.com/google.rpc.Help", links: [{ description: "Learn more", url: "https://ai.google.dev/gemini-api/docs/rate-limits" }] },
        { "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay }
      ]
    }
  })
const overloaded = json(503, { error: { code: 503, message: "The model is overloaded. Please try again later.", status: "UNAVAILABLE" } })

beforeAll(async () => {
  server = createServer((req, res) => {
    let raw = ""
    req.on("data", (c: Buffer) => (raw += c.toString("utf8")))
    req.on("end", () => {
      seen.push({ method: req.method ?? "", path: req.url ?? "", headers: req.headers, body: raw === "" ? undefined : JSON.parse(raw), at: Date.now() })
      const reply = replies.shift() ?? json(500, { error: { code: 500, message: "no reply scripted", status: "INTERNAL" } })
      reply(res)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(async () => {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
})
beforeEach(() => {
  seen = []
  replies = []
})

const story = { title: "THE GIFT OF THE MAGI", text: "One dollar and eighty-seven cents. That was all.\n\nDella counted it three times." }
const KEY = "AIza-test-key-123"

/** Runs `f` with the Writer service. */
const use = <A, E>(f: (w: WriterShape) => Effect.Effect<A, E>): Effect.Effect<A, E, Writer> =>
  Effect.gen(function*() {
    return yield* f(yield* Writer)
  })

const gemini = (extra: { timeout?: Duration.Input; attempts?: number; temperature?: number; price?: { input: number; output: number } } = {}) =>
  Writer.gemini({
    apiKey: Redacted.make(KEY),
    model: "gemini-3-flash-preview",
    baseUrl: base,
    backoff: { base: "10 millis", jitter: false },
    timeout: extra.timeout ?? "2 seconds",
    attempts: extra.attempts ?? 4,
    ...(extra.temperature !== undefined ? { temperature: extra.temperature } : {}),
    ...(extra.price !== undefined ? { price: extra.price } : {})
  })

const run = (layer: ReturnType<typeof gemini>) =>
  Effect.runPromiseExit(Effect.provide(use((w) => Effect.map(w.premise(story), (p) => p.premise)), layer))

const failure = (exit: Exit.Exit<string, WriterError>): WriterError => {
  if (!Exit.isFailure(exit)) throw new Error("expected a failure")
  const e = exit.cause.reasons.find((r) => r._tag === "Fail")
  if (e === undefined || e._tag !== "Fail") throw new Error(`expected a typed failure, got ${String(exit.cause)}`)
  return e.error
}

describe("Writer.gemini", () => {
  it("sends generateContent with the key header and a JSON schema, and reads the premise", async () => {
    replies = [geminiOk(answer)]
    const exit = await run(gemini())
    expect(exit).toEqual(Exit.succeed(PREMISE))
    expect(seen).toHaveLength(1)
    const req = seen[0]!
    expect(req.method).toBe("POST")
    expect(req.path).toBe("/v1beta/models/gemini-3-flash-preview:generateContent")
    expect(req.headers["x-goog-api-key"]).toBe(KEY)
    expect(req.headers["content-type"]).toContain("application/json")
    expect(req.body.contents).toHaveLength(1)
    expect(req.body.contents[0].role).toBe("user")
    expect(req.body.contents[0].parts[0].text).toContain("Title: THE GIFT OF THE MAGI")
    expect(req.body.contents[0].parts[0].text).toContain("Della counted it three times.")
    expect(req.body.generationConfig.responseMimeType).toBe("application/json")
    expect(req.body.generationConfig.responseJsonSchema).toEqual({
      type: "object",
      properties: { premise: { type: "string" } },
      required: ["premise"],
      propertyOrdering: ["premise"]
    })
    expect(req.body.generationConfig.responseSchema).toBeUndefined()
  })

  it("fingerprints the model and the settings that shape a premise, never the key", async () => {
    const fingerprintOf = (layer: ReturnType<typeof gemini>) => Effect.runPromise(Effect.provide(use((w) => Effect.succeed(w.fingerprint)), layer))
    const fp = await fingerprintOf(gemini())
    expect(fp).toMatch(/^gemini:gemini-3-flash-preview@[0-9a-f]{12}$/)
    expect(fp).not.toContain(KEY)
    expect(await fingerprintOf(gemini())).toBe(fp)
    expect(await fingerprintOf(gemini({ temperature: 0.9 }))).not.toBe(fp)
  })

  it("prices a premise from the reply's usage (thought tokens as output); the price changes no fingerprint", async () => {
    replies = [geminiOk(answer)]
    const price = { input: 0.5, output: 3 }
    const [premise, expected, fp] = await Effect.runPromise(Effect.provide(use((w) => Effect.map(w.premise(story), (p) => [p, w.expectedUsd(story), w.fingerprint] as const)), gemini({ price })))
    // usageMetadata: 812 prompt, 24 candidates, 131 thoughts.
    expect(premise).toEqual({ premise: PREMISE, cost_usd: (812 * 0.5 + (24 + 131) * 3) / 1e6 })
    expect(expected).toBeGreaterThan(0)
    expect(fp).toBe(await Effect.runPromise(Effect.provide(use((w) => Effect.succeed(w.fingerprint)), gemini())))
  })

  it("429 with RetryInfo retryDelay 0.2s: waits at least 200 ms, then succeeds", async () => {
    replies = [quota429("0.2s"), geminiOk(answer)]
    const exit = await run(gemini())
    expect(exit).toEqual(Exit.succeed(PREMISE))
    expect(seen).toHaveLength(2)
    expect(seen[1]!.at - seen[0]!.at).toBeGreaterThanOrEqual(195) // clock granularity
  })

  it("honours a Retry-After header", async () => {
    replies = [json(429, { error: { code: 429, message: "slow down", status: "RESOURCE_EXHAUSTED" } }, { "retry-after": "0.15" }), geminiOk(answer)]
    const exit = await run(gemini())
    expect(exit).toEqual(Exit.succeed(PREMISE))
    expect(seen[1]!.at - seen[0]!.at).toBeGreaterThanOrEqual(145)
  })

  it("503 then success", async () => {
    replies = [overloaded, geminiOk(answer)]
    expect(await run(gemini())).toEqual(Exit.succeed(PREMISE))
    expect(seen).toHaveLength(2)
  })

  it("malformed JSON in the answer text is retried", async () => {
    replies = [geminiOk('{"premise": "Della and Jim'), geminiOk(answer)]
    expect(await run(gemini())).toEqual(Exit.succeed(PREMISE))
    expect(seen).toHaveLength(2)
  })

  it("an answer of the wrong shape, then a reply with no parts (MAX_TOKENS while thinking), are retried", async () => {
    replies = [
      geminiOk(JSON.stringify({ summary: "x" })),
      json(200, { candidates: [{ content: { role: "model" }, finishReason: "MAX_TOKENS", index: 0 }], modelVersion: "gemini-3-flash-preview" }),
      geminiOk(answer)
    ]
    expect(await run(gemini())).toEqual(Exit.succeed(PREMISE))
    expect(seen).toHaveLength(3)
  })

  it("400 fails permanently after one request", async () => {
    replies = [json(400, { error: { code: 400, message: "Invalid JSON payload received.", status: "INVALID_ARGUMENT" } }), geminiOk(answer)]
    const e = failure(await run(gemini()))
    expect(seen).toHaveLength(1)
    expect(e.reason).toBe("BadRequest")
    expect(e.retryable).toBe(false)
    expect(e.status).toBe(400)
    expect(e.origin).toBe(`POST ${base}/v1beta/models/gemini-3-flash-preview:generateContent`)
    expect(e.message).toContain("INVALID_ARGUMENT")
  })

  it("401 / 403 / 404 are permanent", async () => {
    for (const [status, reason] of [[401, "Unauthorized"], [403, "Unauthorized"], [404, "NotFound"]] as const) {
      seen = []
      replies = [json(status, { error: { code: status, message: "no", status: "X" } })]
      const e = failure(await run(gemini()))
      expect([e.reason, seen.length]).toEqual([reason, 1])
    }
  })

  it("a daily quota 429 is not retried", async () => {
    replies = [
      json(429, {
        error: {
          code: 429,
          status: "RESOURCE_EXHAUSTED",
          message: "quota",
          details: [{ "@type": "type.googleapis.com/google.rpc.QuotaFailure", violations: [{ quotaId: "GenerateRequestsPerDayPerProjectPerModel-FreeTier" }] }]
        }
      })
    ]
    const e = failure(await run(gemini()))
    expect([e.reason, e.retryable, seen.length]).toEqual(["QuotaExhausted", false, 1])
  })

  it("a hanging server times out each attempt, then fails with Timeout", async () => {
    replies = [hang, hang]
    const e = failure(await run(gemini({ timeout: "200 millis", attempts: 2 })))
    expect(e.reason).toBe("Timeout")
    expect(e.retryable).toBe(true)
    expect(seen).toHaveLength(2)
  })

  it("gives up after the configured attempts", async () => {
    replies = [overloaded, overloaded, overloaded, geminiOk(answer)]
    const e = failure(await run(gemini({ attempts: 3 })))
    expect([e.reason, e.status, seen.length]).toEqual(["Unavailable", 503, 3])
  })

  it("the key never appears in the error", async () => {
    replies = [json(400, { error: { code: 400, message: "bad", status: "INVALID_ARGUMENT" } })]
    const e = failure(await run(gemini()))
    expect(JSON.stringify({ ...e, cause: undefined })).not.toContain(KEY)
    expect(e.message + e.origin).not.toContain(KEY)
  })
})

describe("Writer.openai", () => {
  const chatOk = json(200, {
    id: "chatcmpl-9f1c",
    object: "chat.completion",
    created: 1767225600,
    model: "Qwen/Qwen3-8B",
    choices: [{ index: 0, message: { role: "assistant", content: answer, reasoning: null }, finish_reason: "stop", stop_reason: null }],
    usage: { prompt_tokens: 640, completion_tokens: 31, total_tokens: 671 }
  })
  const openai = () =>
    Writer.openai({ baseUrl: `${base}/v1`, model: "Qwen/Qwen3-8B", apiKey: Redacted.make("sk-local"), backoff: { base: "10 millis", jitter: false }, timeout: "2 seconds" })

  it("posts a chat completion with json_object output", async () => {
    replies = [chatOk]
    expect(await run(openai())).toEqual(Exit.succeed(PREMISE))
    const req = seen[0]!
    expect(req.path).toBe("/v1/chat/completions")
    expect(req.headers.authorization).toBe("Bearer sk-local")
    expect(req.body.model).toBe("Qwen/Qwen3-8B")
    expect(req.body.response_format).toEqual({ type: "json_object" })
    expect(req.body.messages[0].role).toBe("user")
    const fp = await Effect.runPromise(Effect.provide(use((w) => Effect.succeed(w.fingerprint)), openai()))
    expect(fp).toMatch(/^openai:Qwen\/Qwen3-8B@[0-9a-f]{12}$/)
  })

  it("500 then success", async () => {
    replies = [json(500, { error: { message: "internal", type: "InternalServerError", param: null, code: 500 } }), chatOk]
    expect(await run(openai())).toEqual(Exit.succeed(PREMISE))
    expect(seen).toHaveLength(2)
  })
})

describe("Writer.extractive", () => {
  it("needs no network and fingerprints as extractive", async () => {
    const [fp, premise] = await Effect.runPromise(
      Effect.provide(use((w) => Effect.map(w.premise(story), (p) => [w.fingerprint, p] as const)), Writer.extractive)
    )
    expect(fp).toBe("extractive:1")
    expect(premise).toEqual({ premise: '"The Gift of the Magi": where one dollar and eighty-seven cents; that was all', cost_usd: 0 })
  })
})

describe("a run with a priced LLM writer", () => {
  it("charges every premise to the ledger at its reply's token counts; a rerun pays nothing", async () => {
    const answer = (body: any) => JSON.stringify({ premise: `a ghost in ${String(body.messages[0].content).length} characters` })
    const server = await startFakeOpenAI({ answer, reasoning: 0 })
    try {
      const dir = tempDirInRepo("writer-spend-")
      const store = join(dir, "store")
      const args = ["run", join(ROOT, "recipes", "polaris-data.yaml"), "--store", store, "--json",
        "--set", `data.anthologies=[${join(ROOT, "examples", "anthologies", "pg8486-mrjames-ghost-stories-of-an-antiquary.txt")}]`,
        "--set", `data.writer={backend: openai, model: w-1, base_url: '${server.url}/v1', price_per_million: {input: 1, output: 2}}`]
      const r = await polaris(args)
      expect(r.status, r.stderr).toBe(0)
      const { runId } = JSON.parse(r.stdout)
      const ledger = readFileSync(join(store, "runs", runId, "spend.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))
      expect(ledger.length).toBeGreaterThan(0)
      expect(ledger.length).toBe(server.calls.length)
      expect(ledger.every((l) => l.engine === "writer" && /derive-(heldout-)?prompts$/.test(l.node))).toBe(true)
      // The server's usage: prompt ~ chars/4 of the message, completion ~ chars/4 of the answer.
      const expected = server.calls.reduce((s, c: any) => s + (roughTokens(c.body.messages[0].content) * 1 + roughTokens(answer(c.body)) * 2) / 1e6, 0)
      expect(ledger.reduce((s, l) => s + l.usd, 0)).toBeCloseTo(expected, 12)
      const again = await polaris(args)
      expect(again.status, again.stderr).toBe(0)
      expect(server.calls.length).toBe(ledger.length)
    } finally {
      await server.close()
    }
  }, 300_000)
})
