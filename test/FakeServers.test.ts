/** The reusable fake Gemini / OpenAI-compatible servers (test/support), exercised directly with fetch. */
import { afterEach, describe, expect, it } from "vitest"
import { type FakeServer, type Outcome, BATCH_METADATA_TYPE, startFakeGemini } from "./support/fakeGemini.ts"
import { startFakeOpenAI } from "./support/fakeOpenAI.ts"

const KEY = "AIza-test-key-123"
const MODEL = "gemini-3-flash-preview"
const ANSWER = JSON.stringify({ evidence: "The ending lands.", score: 7 })

const open: Array<FakeServer> = []
const track = async (s: Promise<FakeServer>) => {
  const server = await s
  open.push(server)
  return server
}
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()))
})

interface Got {
  readonly status: number
  readonly headers: Headers
  readonly text: string
  readonly json: any
}
const call = async (url: string, init: { method?: string; body?: unknown; headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<Got> => {
  const res = await fetch(url, {
    method: init.method ?? (init.body === undefined ? "GET" : "POST"),
    headers: { "content-type": "application/json", ...init.headers },
    ...(init.body !== undefined ? { body: typeof init.body === "string" ? init.body : JSON.stringify(init.body) } : {}),
    ...(init.signal !== undefined ? { signal: init.signal } : {})
  })
  const text = await res.text()
  let json: any = undefined
  try {
    json = JSON.parse(text)
  } catch {
    // not JSON
  }
  return { status: res.status, headers: res.headers, text, json }
}

const geminiRequest = (text = "Rate this story: One dollar and eighty-seven cents.") => ({
  contents: [{ role: "user", parts: [{ text }] }],
  systemInstruction: { role: "user", parts: [{ text: "You are a strict literary judge." }] },
  generationConfig: { temperature: 1, responseMimeType: "application/json", maxOutputTokens: 1024 }
})
const chatRequest = { model: "Qwen/Qwen3-8B", messages: [{ role: "user", content: "Rate this story." }], response_format: { type: "json_object" }, temperature: 1 }

/** The answer text as the SDK's `.text` getter reads it: parts' text, thoughts skipped. */
const sdkText = (body: any): string | undefined => {
  const parts = body?.candidates?.[0]?.content?.parts
  return Array.isArray(parts) ? parts.filter((p: any) => p.thought !== true).map((p: any) => p.text ?? "").join("") : undefined
}
const isJson = (s: string) => {
  try {
    JSON.parse(s)
    return true
  } catch {
    return false
  }
}

describe("fake Gemini", () => {
  it("answers generateContent in the recorded shape, with a skippable thought part and usageMetadata", async () => {
    const seen: Array<any> = []
    const s = await track(startFakeGemini({ answer: (r) => (seen.push(r), ANSWER), faults: {}, thoughtParts: 1, usage: () => ({ promptTokenCount: 812, candidatesTokenCount: 24, thoughtsTokenCount: 131 }) }))
    const r = await call(`${s.url}/v1beta/models/${MODEL}:generateContent`, { body: geminiRequest(), headers: { "x-goog-api-key": KEY } })
    expect(r.status).toBe(200)
    expect(r.headers.get("content-type")).toContain("application/json")
    expect(r.json.candidates).toHaveLength(1)
    const cand = r.json.candidates[0]
    expect(cand.finishReason).toBe("STOP")
    expect(cand.index).toBe(0)
    expect(cand.content.role).toBe("model")
    expect(cand.content.parts).toHaveLength(2)
    expect(cand.content.parts[0].thought).toBe(true)
    expect(cand.content.parts[1]).toEqual({ text: ANSWER, thoughtSignature: expect.any(String) })
    expect(sdkText(r.json)).toBe(ANSWER)
    expect(r.json.usageMetadata).toEqual({
      promptTokenCount: 812,
      candidatesTokenCount: 24,
      thoughtsTokenCount: 131,
      totalTokenCount: 967,
      promptTokensDetails: [{ modality: "TEXT", tokenCount: 812 }]
    })
    expect(r.json.modelVersion).toBe(MODEL)
    expect(typeof r.json.responseId).toBe("string")
    // the answer function saw the request body
    expect(seen[0].contents[0].parts[0].text).toContain("One dollar")
    // no thought part at thoughtParts 0; the SDK's empty apiVersion path works too
    const t = await track(startFakeGemini({ answer: () => ANSWER, thoughtParts: 0 }))
    const r2 = await call(`${t.url}/models/${MODEL}:generateContent`, { body: geminiRequest() })
    expect(r2.json.candidates[0].content.parts).toEqual([{ text: ANSWER, thoughtSignature: expect.any(String) }])
    expect(r2.json.usageMetadata.totalTokenCount).toBe(
      r2.json.usageMetadata.promptTokenCount + r2.json.usageMetadata.candidatesTokenCount + r2.json.usageMetadata.thoughtsTokenCount
    )
    expect(s.calls[0]).toMatchObject({ method: "POST", path: `/v1beta/models/${MODEL}:generateContent`, outcome: "ok" })
    expect(s.calls[0]!.headers["x-goog-api-key"]).toBe(KEY)
    expect((s.calls[0]!.body as any).generationConfig.responseMimeType).toBe("application/json")
  })

  it("rejects unknown paths (404), non-JSON bodies and missing contents (400), in google.rpc.Status shape", async () => {
    const s = await track(startFakeGemini({ answer: () => ANSWER, faults: { rateLimited: 1 } }))
    const nf = await call(`${s.url}/v1beta/models/${MODEL}:countTokens`, { body: geminiRequest() })
    expect(nf.status).toBe(404)
    expect(nf.json.error).toMatchObject({ code: 404, status: "NOT_FOUND", message: expect.any(String) })
    const bad = await call(`${s.url}/v1beta/models/${MODEL}:generateContent`, { body: "{not json" })
    expect(bad.status).toBe(400)
    expect(bad.json.error).toMatchObject({ code: 400, status: "INVALID_ARGUMENT" })
    const empty = await call(`${s.url}/v1beta/models/${MODEL}:generateContent`, { body: { contents: [] } })
    expect(empty.status).toBe(400)
    expect(s.counts()).toMatchObject({ total: 3, rejected: 3, "429": 0 })
    expect(s.calls[1]!.body).toBe("{not json")
  })

  it("checks the x-goog-api-key header", async () => {
    const s = await track(startFakeGemini({ answer: () => ANSWER, requireKey: KEY }))
    const url = `${s.url}/v1beta/models/${MODEL}:generateContent`
    const missing = await call(url, { body: geminiRequest() })
    expect(missing.status).toBe(403)
    expect(missing.json.error).toMatchObject({ code: 403, status: "PERMISSION_DENIED" })
    const wrong = await call(url, { body: geminiRequest(), headers: { "x-goog-api-key": "AIza-wrong" } })
    expect(wrong.status).toBe(401)
    expect(wrong.json.error).toMatchObject({ code: 401, status: "UNAUTHENTICATED" })
    expect(wrong.json.error.details[0]).toMatchObject({ "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "API_KEY_INVALID" })
    const ok = await call(url, { body: geminiRequest(), headers: { "x-goog-api-key": KEY } })
    expect(ok.status).toBe(200)
    expect(s.counts()).toMatchObject({ total: 3, rejected: 2, ok: 1 })
  })

  it("injects each fault at its configured rate, deterministically per seed, with protocol-shaped bodies", async () => {
    const faults = { rateLimited: 0.1, dailyQuota: 0.05, unavailable: 0.1, malformed: 0.1, maxTokensNoParts: 0.05, retryInfo: 0.5, retryDelay: "0.25s", seed: "rates-1" }
    const s = await track(startFakeGemini({ answer: () => ANSWER, faults }))
    const url = `${s.url}/v1beta/models/${MODEL}:generateContent`
    const N = 400
    const replies: Array<Got> = []
    for (let i = 0; i < N; i++) replies.push(await call(url, { body: geminiRequest() }))
    const counts = s.counts()
    expect(counts.total).toBe(N)
    const expected: Partial<Record<Outcome, number>> = { "429": 0.1, "429-daily": 0.05, "5xx": 0.1, malformed: 0.1, "max-tokens": 0.05, ok: 0.6 }
    for (const [outcome, p] of Object.entries(expected) as Array<[Outcome, number]>) {
      const sd = Math.sqrt(N * p * (1 - p))
      expect(Math.abs(counts[outcome] - N * p), `${outcome}: ${counts[outcome]}`).toBeLessThan(4 * sd)
    }
    expect(counts.hang + counts.batch + counts.rejected).toBe(0)
    // Pinned: the same seed and call order always give these counts.
    expect(counts).toEqual({ total: 400, ok: 259, "429": 41, "429-daily": 19, "5xx": 32, hang: 0, malformed: 34, "max-tokens": 15, batch: 0, rejected: 0 })

    const seq = s.calls.map((c) => c.outcome)
    replies.forEach((r, i) => {
      const outcome = seq[i]!
      if (outcome === "ok") {
        expect(r.status).toBe(200)
        expect(sdkText(r.json)).toBe(ANSWER)
      } else if (outcome === "429" || outcome === "429-daily") {
        expect(r.status).toBe(429)
        expect(r.json.error).toMatchObject({ code: 429, status: "RESOURCE_EXHAUSTED" })
        const details: Array<any> = r.json.error.details
        const qf = details.find((d) => d["@type"] === "type.googleapis.com/google.rpc.QuotaFailure")
        expect(qf.violations[0].quotaId).toContain(outcome === "429" ? "PerMinute" : "PerDay")
        expect(details.some((d) => d["@type"] === "type.googleapis.com/google.rpc.Help")).toBe(true)
      } else if (outcome === "5xx") {
        expect([500, 503]).toContain(r.status)
        expect(r.json.error).toMatchObject(r.status === 503 ? { code: 503, status: "UNAVAILABLE" } : { code: 500, status: "INTERNAL" })
      } else if (outcome === "malformed") {
        expect(r.status).toBe(200)
        expect(isJson(sdkText(r.json)!)).toBe(false)
      } else if (outcome === "max-tokens") {
        expect(r.status).toBe(200)
        expect(r.json.candidates[0].finishReason).toBe("MAX_TOKENS")
        expect(r.json.candidates[0].content.parts).toBeUndefined()
        expect(r.json.usageMetadata.thoughtsTokenCount).toBe(1024)
      }
    })
    // RetryInfo on about half the 429s, with the configured delay
    const retry429 = replies.filter((r) => r.status === 429)
    const withRetry = retry429.filter((r) => r.json.error.details.some((d: any) => d["@type"] === "type.googleapis.com/google.rpc.RetryInfo" && d.retryDelay === "0.25s"))
    expect(withRetry.length).toBeGreaterThan(retry429.length * 0.25)
    expect(withRetry.length).toBeLessThan(retry429.length * 0.75)
    // 5xx alternate 503, 500, 503, …
    const fives = replies.filter((r) => r.status >= 500).map((r) => r.status)
    expect(fives.slice(0, 4)).toEqual([503, 500, 503, 500])
    // malformed: both truncated JSON and prose
    const bad = replies.filter((_, i) => seq[i] === "malformed").map((r) => sdkText(r.json)!)
    expect(bad.some((t) => ANSWER.startsWith(t))).toBe(true)
    expect(bad.some((t) => !t.startsWith("{"))).toBe(true)

    // reset() replays the same sequence; another seed gives another one
    s.reset()
    expect(s.calls).toHaveLength(0)
    for (let i = 0; i < 60; i++) await call(url, { body: geminiRequest() })
    expect(s.calls.map((c) => c.outcome)).toEqual(seq.slice(0, 60))
    s.setFaults({ ...faults, seed: "rates-2" })
    s.reset()
    for (let i = 0; i < 60; i++) await call(url, { body: geminiRequest() })
    expect(s.calls.map((c) => c.outcome)).not.toEqual(seq.slice(0, 60))
  })

  it("a hanging request is read, never answered, and ended by close()", async () => {
    const s = await startFakeGemini({ answer: () => ANSWER, faults: { hang: 0.3, seed: "hang" } })
    const url = `${s.url}/v1beta/models/${MODEL}:generateContent`
    const N = 40
    const settled = Array.from({ length: N }, () =>
      call(url, { body: geminiRequest() }).then((r) => r.status, () => "ended" as const)
    )
    while (s.calls.length < N) await new Promise((r) => setTimeout(r, 5))
    const hung = s.counts().hang
    expect(hung).toBeGreaterThan(4)
    expect(hung).toBeLessThan(24)
    await new Promise((r) => setTimeout(r, 20))
    await s.close()
    const results = await Promise.all(settled) // close() ended every hanging request, or this would hang
    expect(results.filter((r) => r === "ended")).toHaveLength(hung)
    expect(results.filter((r) => r === 200)).toHaveLength(N - hung)
    await s.close() // idempotent
  })

  it("latencyMs delays answers; close() also ends delayed ones", async () => {
    const s = await track(startFakeGemini({ answer: () => ANSWER, latencyMs: 60 }))
    const t0 = Date.now()
    const r = await call(`${s.url}/v1beta/models/${MODEL}:generateContent`, { body: geminiRequest() })
    expect(r.status).toBe(200)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(50)
    const pending = call(`${s.url}/v1beta/models/${MODEL}:generateContent`, { body: geminiRequest() }).then(() => "answered", () => "ended")
    while (s.calls.length < 2) await new Promise((res) => setTimeout(res, 2))
    await s.close()
    expect(await pending).toBe("ended")
  })

  it("runs the inline Batch API: create (pending) → poll (running) → succeeded, one response per request, keys kept in order", async () => {
    const s = await track(startFakeGemini({
      answer: (r) => JSON.stringify({ echo: r.contents[0].parts[0].text }),
      requireKey: KEY,
      faults: { rateLimited: 1 } // faults never touch the Batch API
    }))
    const headers = { "x-goog-api-key": KEY }
    const keys = ["item-1", "item-2", "item-3"]
    const create = await call(`${s.url}/v1beta/models/${MODEL}:batchGenerateContent`, {
      headers,
      body: { batch: { displayName: "eval-42", inputConfig: { requests: { requests: keys.map((key) => ({ request: geminiRequest(`story ${key}`), metadata: { key } })) } } } }
    })
    expect(create.status).toBe(200)
    const op = create.json
    expect(op.name).toMatch(/^batches\/[a-z0-9]+$/)
    expect(op.done).toBeUndefined()
    expect(op.metadata).toMatchObject({
      "@type": BATCH_METADATA_TYPE,
      model: `models/${MODEL}`,
      displayName: "eval-42",
      state: "BATCH_STATE_PENDING",
      createTime: expect.any(String),
      updateTime: expect.any(String),
      batchStats: { requestCount: "3", pendingRequestCount: "3" }
    })
    expect(op.metadata.output).toBeUndefined()

    const poll1 = await call(`${s.url}/v1beta/${op.name}`, { headers })
    expect(poll1.json.metadata.state).toBe("BATCH_STATE_RUNNING")
    expect(poll1.json.done).toBeUndefined()
    const poll2 = await call(`${s.url}/v1beta/${op.name}`, { headers })
    expect(poll2.status).toBe(200)
    const done = poll2.json
    expect(done.name).toBe(op.name)
    expect(done.done).toBe(true)
    expect(done.metadata.state).toBe("BATCH_STATE_SUCCEEDED")
    expect(done.metadata.endTime).toEqual(expect.any(String))
    expect(done.metadata.batchStats).toEqual({ requestCount: "3", successfulRequestCount: "3" })
    const items: Array<any> = done.metadata.output.inlinedResponses.inlinedResponses
    expect(items).toHaveLength(3)
    expect(items.map((i) => i.metadata)).toEqual(keys.map((key) => ({ key })))
    items.forEach((item, i) => {
      expect(item.error).toBeUndefined()
      expect(item.response.candidates[0].finishReason).toBe("STOP")
      expect(JSON.parse(sdkText(item.response)!)).toEqual({ echo: `story ${keys[i]}` })
      expect(item.response.usageMetadata.totalTokenCount).toEqual(expect.any(Number))
    })
    // stays done on later polls; listed; deletable
    expect((await call(`${s.url}/v1beta/${op.name}`, { headers })).json.metadata.state).toBe("BATCH_STATE_SUCCEEDED")
    const list = await call(`${s.url}/v1beta/batches?pageSize=10`, { headers })
    expect(list.json.operations.map((o: any) => o.name)).toEqual([op.name])
    expect((await call(`${s.url}/v1beta/${op.name}`, { method: "DELETE", headers })).status).toBe(200)
    expect((await call(`${s.url}/v1beta/${op.name}`, { headers })).status).toBe(404)
    expect((await call(`${s.url}/v1beta/${op.name}`)).status).toBe(403)
    expect(s.counts()).toMatchObject({ batch: 6, rejected: 2, "429": 0 })
  })

  it("batch: per-item errors, cancel, configurable polls, file input refused", async () => {
    const s = await track(startFakeGemini({ answer: () => ANSWER, batchPolls: 1, faults: { batchItemError: 0.5, seed: "b" } }))
    const requests = Array.from({ length: 20 }, (_, i) => ({ request: geminiRequest(`s${i}`), metadata: { key: `k${i}` } }))
    const op = (await call(`${s.url}/v1beta/models/${MODEL}:batchGenerateContent`, { body: { batch: { inputConfig: { requests: { requests } } } } })).json
    const done = (await call(`${s.url}/v1beta/${op.name}`)).json
    expect(done.metadata.state).toBe("BATCH_STATE_SUCCEEDED")
    const items: Array<any> = done.metadata.output.inlinedResponses.inlinedResponses
    expect(items.map((i) => i.metadata.key)).toEqual(requests.map((r) => r.metadata.key))
    const errors = items.filter((i) => i.error !== undefined)
    expect(errors.length).toBeGreaterThan(3)
    expect(errors.length).toBeLessThan(17)
    expect(errors[0].error).toEqual({ code: 13, message: expect.any(String) })
    expect(errors[0].response).toBeUndefined()
    expect(done.metadata.batchStats).toEqual({ requestCount: "20", successfulRequestCount: String(20 - errors.length), failedRequestCount: String(errors.length) })

    const op2 = (await call(`${s.url}/v1beta/models/${MODEL}:batchGenerateContent`, { body: { batch: { inputConfig: { requests: { requests } } } } })).json
    expect(op2.name).not.toBe(op.name)
    expect((await call(`${s.url}/v1beta/${op2.name}:cancel`, { body: {} })).json).toEqual({})
    const cancelled = (await call(`${s.url}/v1beta/${op2.name}`)).json
    expect(cancelled.metadata.state).toBe("BATCH_STATE_CANCELLED")
    expect(cancelled.done).toBe(true)
    expect(cancelled.metadata.output).toBeUndefined()

    const file = await call(`${s.url}/v1beta/models/${MODEL}:batchGenerateContent`, { body: { batch: { inputConfig: { fileName: "files/abc" } } } })
    expect(file.status).toBe(400)
    expect(file.json.error.status).toBe("INVALID_ARGUMENT")
    expect((await call(`${s.url}/v1beta/batches/nope`)).status).toBe(404)
  })
})

describe("fake OpenAI-compatible server", () => {
  it("answers chat completions in the vLLM shape and lists models", async () => {
    const seen: Array<any> = []
    const s = await track(startFakeOpenAI({ answer: (r) => (seen.push(r), ANSWER), reasoning: 1 }))
    const r = await call(`${s.url}/v1/chat/completions`, { body: { ...chatRequest, n: 2 } })
    expect(r.status).toBe(200)
    expect(r.json).toMatchObject({ id: expect.stringMatching(/^chatcmpl-/), object: "chat.completion", created: expect.any(Number), model: "Qwen/Qwen3-8B" })
    expect(r.json.choices).toHaveLength(2)
    expect(r.json.choices[1]).toEqual({
      index: 1,
      message: { role: "assistant", content: ANSWER, reasoning: expect.any(String) },
      logprobs: null,
      finish_reason: "stop",
      stop_reason: null
    })
    const u = r.json.usage
    expect(u.total_tokens).toBe(u.prompt_tokens + u.completion_tokens)
    expect(seen[0].response_format).toEqual({ type: "json_object" })
    const models = await call(`${s.url}/v1/models`)
    expect(models.json).toMatchObject({ object: "list", data: [{ id: "Qwen/Qwen3-8B", object: "model", owned_by: "vllm" }] })
    expect((await call(`${s.url}/health`)).status).toBe(200)
    const nf = await call(`${s.url}/v1/completions`, { body: { prompt: "x" } })
    expect(nf.status).toBe(404)
    expect(nf.json.error).toEqual({ message: expect.any(String), type: "NotFoundError", param: null, code: 404 })
    const bad = await call(`${s.url}/v1/chat/completions`, { body: "nope" })
    expect(bad.status).toBe(400)
    expect(bad.json.error.code).toBe(400)
  })

  it("checks the bearer key", async () => {
    const s = await track(startFakeOpenAI({ answer: () => ANSWER, requireKey: "sk-local" }))
    expect((await call(`${s.url}/v1/chat/completions`, { body: chatRequest })).status).toBe(401)
    const wrong = await call(`${s.url}/v1/chat/completions`, { body: chatRequest, headers: { authorization: "Bearer sk-other" } })
    expect(wrong.status).toBe(401)
    expect(wrong.json.error).toMatchObject({ code: 401, param: null })
    expect((await call(`${s.url}/v1/chat/completions`, { body: chatRequest, headers: { authorization: "Bearer sk-local" } })).status).toBe(200)
    expect(s.calls[2]!.headers["authorization"]).toBe("Bearer sk-local")
  })

  it("injects faults at their rates with Retry-After when configured", async () => {
    const s = await track(startFakeOpenAI({
      answer: () => ANSWER,
      faults: { rateLimited: 0.15, dailyQuota: 0.05, unavailable: 0.1, malformed: 0.1, maxTokensNoParts: 0.5, retryInfo: 1, seed: "oa" }
    }))
    const N = 400
    const replies: Array<Got> = []
    for (let i = 0; i < N; i++) replies.push(await call(`${s.url}/v1/chat/completions`, { body: chatRequest }))
    const counts = s.counts()
    const expected: Partial<Record<Outcome, number>> = { "429": 0.15, "429-daily": 0.05, "5xx": 0.1, malformed: 0.1, ok: 0.6 }
    for (const [outcome, p] of Object.entries(expected) as Array<[Outcome, number]>) {
      const sd = Math.sqrt(N * p * (1 - p))
      expect(Math.abs(counts[outcome] - N * p), `${outcome}: ${counts[outcome]}`).toBeLessThan(4 * sd)
    }
    expect(counts["max-tokens"]).toBe(0) // Gemini-only
    expect(counts).toEqual({ total: 400, ok: 231, "429": 61, "429-daily": 20, "5xx": 41, hang: 0, malformed: 47, "max-tokens": 0, batch: 0, rejected: 0 })
    replies.forEach((r, i) => {
      const outcome = s.calls[i]!.outcome
      if (outcome === "429" || outcome === "429-daily") {
        expect(r.status).toBe(429)
        expect(r.json.error).toMatchObject({ code: 429, param: null, message: expect.any(String), type: expect.any(String) })
        expect(r.headers.get("retry-after")).toBe("0.05")
        expect(r.headers.get("retry-after-ms")).toBe("50")
        if (outcome === "429-daily") expect(r.json.error.message).toContain("per day")
      } else if (outcome === "5xx") {
        expect([500, 503]).toContain(r.status)
        expect(r.json.error.code).toBe(r.status)
      } else if (outcome === "malformed") {
        expect(isJson(r.json.choices[0].message.content)).toBe(false)
      } else {
        expect(r.json.choices[0].message.content).toBe(ANSWER)
      }
    })
    // without retryInfo, no Retry-After
    s.setFaults({ rateLimited: 1 })
    const plain = await call(`${s.url}/v1/chat/completions`, { body: chatRequest })
    expect(plain.status).toBe(429)
    expect(plain.headers.get("retry-after")).toBeNull()
  })

  it("hangs until close()", async () => {
    const s = await startFakeOpenAI({ answer: () => ANSWER, faults: { hang: 1 } })
    const pending = call(`${s.url}/v1/chat/completions`, { body: chatRequest }).then(() => "answered", () => "ended")
    while (s.calls.length < 1) await new Promise((r) => setTimeout(r, 2))
    expect(s.calls[0]!.outcome).toBe("hang")
    await s.close()
    expect(await pending).toBe("ended")
  })
})
