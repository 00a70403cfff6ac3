/**
 * The remote judges against local servers speaking the Gemini and OpenAI-compatible protocols,
 * with injected faults: 20% 429 (half with RetryInfo / Retry-After), 10% 500/503, 5% hangs past
 * the call timeout, 5% malformed or truncated JSON. Every story must end scored with exactly the
 * scores the server's judge gave, or unscorable with a reason; never a made-up 0; and the calls
 * made are counted, bounded by attempts × stories, and equal to what the server saw.
 */
import { createHash } from "node:crypto"
import { Effect, Redacted } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeGemini } from "../src/engines/judge/Gemini.ts"
import { makeGeminiBatch } from "../src/engines/judge/GeminiBatch.ts"
import type { JudgeShape } from "../src/engines/judge/Judge.ts"
import { makeOpenAI } from "../src/engines/judge/OpenAI.ts"
import * as Rubric from "../src/engines/judge/Rubric.ts"
import { FetchHttpClient } from "effect/http"
import { startFakeGemini, type FakeServer, type Faults } from "./support/fakeGemini.ts"
import { startFakeOpenAI } from "./support/fakeOpenAI.ts"
import { storyOf } from "./support/judgePrompts.ts"

const KEY = "AIza-judge-test-key"
const rubric = Effect.runSync(Rubric.load(Rubric.DEFAULT_RUBRIC))
const hash = (s: string) => parseInt(createHash("sha256").update(s).digest("hex").slice(0, 8), 16)

/** The server-side judge: deterministic scores per story, dialogue null for some stories. */
export const scoresFor = (story: string): Record<string, number | null> =>
  Object.fromEntries(rubric.dimensions.map((d) => [d.id, d.nullable === true && hash(story) % 3 === 0 ? null : 1 + (hash(story + d.id) % 10)]))

export const verdictText = (story: string): string =>
  JSON.stringify(Object.fromEntries(Object.entries(scoresFor(story)).map(([id, score]) => [id, { evidence: `"${story.slice(0, 20)}"`, score }])))

const geminiAnswer = (req: any) => verdictText(storyOf(req.contents[0].parts[0].text))
const openaiAnswer = (req: any) => verdictText(storyOf(req.messages.at(-1).content))

const stories = Array.from({ length: 40 }, (_, i) => ({
  prompt: `Write a 300-word story about lighthouse number ${i}.`,
  story: `Story ${i}. The keeper of lighthouse ${i} climbed the stairs at dusk.\n\n"Who is there?" she asked. Nobody answered.`
}))

const FAULTS: Faults = { rateLimited: 0.2, retryInfo: 0.5, retryDelay: "0.02s", unavailable: 0.1, hang: 0.05, malformed: 0.05, seed: "judge-suite" }
const remote = { timeout: "400 millis", attempts: 6, backoff: { base: "5 millis", cap: "40 millis" } } as const

/** Judges every story; a JudgeError becomes an unscorable record with its reason. */
const judgeAll = (judge: JudgeShape) =>
  Effect.forEach(stories, (item) =>
    judge.score(item).pipe(
      Effect.map((verdict) => ({ item, verdict, unscorable: undefined })),
      Effect.catchTag("JudgeError", (e) => Effect.succeed({ item, verdict: undefined, unscorable: e }))
    ), { concurrency: 8 })

const checkSuite = async (server: FakeServer, judge: JudgeShape, label: string) => {
  const results = await Effect.runPromise(judgeAll(judge))
  const scored = results.filter((r) => r.verdict !== undefined)
  const unscorable = results.filter((r) => r.unscorable !== undefined)
  expect(scored.length + unscorable.length).toBe(stories.length)
  for (const { item, verdict } of scored) {
    // Exactly the server judge's scores: a failure never leaks in as a low score.
    expect(verdict!.scores).toEqual(scoresFor(item.story))
    expect(verdict!.quality).toBeCloseTo(Rubric.quality(rubric, scoresFor(item.story)), 12)
    expect(verdict!.calls).toBeGreaterThanOrEqual(1)
  }
  for (const { unscorable: e } of unscorable) {
    expect(e!.reason).toMatch(/RateLimited|Unavailable|Timeout|Malformed|Transport/)
    expect(e!.calls).toBe(remote.attempts)
  }
  const counts = server.counts()
  const totals = judge.totals()
  // Bounded and reported: what the judge counted is what the server received.
  expect(totals.calls).toBe(counts.total)
  expect(totals.calls).toBeLessThanOrEqual(stories.length * remote.attempts)
  expect(totals.calls - totals.failedCalls).toBe(scored.length)
  expect(counts["429"]! + counts["5xx"]! + counts.hang! + counts.malformed!).toBeGreaterThan(0) // the faults did happen
  console.log(`judge faults (${label}): ${stories.length} stories, ${scored.length} scored, ${unscorable.length} unscorable, ${totals.calls} calls (${counts.ok} ok, ${counts["429"]} 429, ${counts["5xx"]} 5xx, ${counts.hang} hangs, ${counts.malformed} malformed)`)
  return { scored: scored.length, calls: totals.calls, counts }
}

describe("gemini judge (@google/genai) under faults", () => {
  let server: FakeServer
  beforeAll(async () => {
    server = await startFakeGemini({ answer: geminiAnswer, faults: FAULTS, requireKey: KEY })
  })
  afterAll(() => server.close())

  it("scores every story or records why not, with bounded, counted calls", async () => {
    const judge = await Effect.runPromise(makeGemini({ ...remote, apiKey: Redacted.make(KEY), model: "gemini-3-flash-preview", baseUrl: server.url, rubric, thinkingLevel: "LOW", price: { input: 0.5, output: 3 } }))
    const { scored, calls } = await checkSuite(server, judge, "gemini")
    expect(scored).toBeGreaterThanOrEqual(38) // 6 attempts at ~40% failures each: all but a rare story succeed
    expect(calls).toBeGreaterThan(stories.length) // retries happened
    expect(judge.totals().costUsd).toBeGreaterThan(0)
    // Structured output: the rubric's schema (evidence before score), thinking level, our key header.
    const first = server.calls.find((c) => c.outcome === "ok")!
    const body = first.body as any
    expect(body.generationConfig.responseMimeType).toBe("application/json")
    expect(body.generationConfig.responseJsonSchema.properties.plot.propertyOrdering).toEqual(["evidence", "score"])
    expect(body.generationConfig.thinkingConfig).toEqual({ thinkingLevel: "LOW" })
    expect(body.systemInstruction.parts[0].text).toContain("Sustained Engagement")
    expect(first.headers["x-goog-api-key"]).toBe(KEY)
  }, 60_000)

  it("a daily quota is not retried; a bad key fails at once", async () => {
    const quota = await startFakeGemini({ answer: geminiAnswer, faults: { dailyQuota: 1 } })
    const judge = await Effect.runPromise(makeGemini({ ...remote, apiKey: Redacted.make(KEY), model: "m", baseUrl: quota.url, rubric }))
    const e = await Effect.runPromise(Effect.flip(judge.score(stories[0]!)))
    expect([e.reason, e.calls]).toEqual(["QuotaExhausted", 1])
    await quota.close()
    const wrong = await Effect.runPromise(makeGemini({ ...remote, apiKey: Redacted.make("wrong"), model: "m", baseUrl: server.url, rubric }))
    const denied = await Effect.runPromise(Effect.flip(wrong.score(stories[0]!)))
    expect([denied.reason, denied.calls]).toEqual(["Unauthorized", 1])
    expect(denied.message).not.toContain("wrong")
  })
})

describe("openai judge under faults", () => {
  let server: FakeServer
  beforeAll(async () => {
    server = await startFakeOpenAI({ answer: openaiAnswer, faults: FAULTS, requireKey: KEY })
  })
  afterAll(() => server.close())

  it("scores every story or records why not, with bounded, counted calls", async () => {
    const judge = await Effect.runPromise(Effect.provide(makeOpenAI({ ...remote, baseUrl: server.url, model: "Qwen/Qwen3-32B", apiKey: Redacted.make(KEY), rubric }), FetchHttpClient.layer))
    const { scored } = await checkSuite(server, judge, "openai")
    expect(scored).toBeGreaterThanOrEqual(38)
    const body = server.calls.find((c) => c.outcome === "ok")!.body as any
    expect(body.response_format.type).toBe("json_schema")
    expect(JSON.stringify(body.response_format.json_schema.schema)).not.toContain("propertyOrdering")
    expect(body.messages[0].role).toBe("system")
  }, 60_000)
})

describe("judge rate limit", () => {
  it("holds calls to R requests/min under load: the steady rate is between 0.9 R and R", async () => {
    const server = await startFakeGemini({ answer: geminiAnswer })
    const R = 1200 // per minute: 20 per second, burst of 1 second (20 calls)
    const judge = await Effect.runPromise(makeGemini({ ...remote, apiKey: Redacted.make(KEY), model: "m", baseUrl: server.url, rubric, limits: { requestsPerMinute: R, maxInFlight: 64 } }))
    const items = Array.from({ length: 100 }, (_, i) => ({ prompt: "Write a story.", story: `Story number ${i}.` }))
    await Effect.runPromise(Effect.forEach(items, (item) => judge.score(item), { concurrency: 64 }))
    await server.close()
    const at = server.calls.map((c) => c.at).sort((a, b) => a - b)
    expect(at).toHaveLength(100)
    // The first second's burst is part of the limiter's budget (every 60 s window stays within R);
    // after it, calls arrive at the refill rate.
    const steady = at.slice(20)
    const perSecond = (steady.length - 1) / ((steady.at(-1)! - steady[0]!) / 1000)
    expect(perSecond).toBeLessThanOrEqual(R / 60)
    expect(perSecond).toBeGreaterThan(0.9 * R / 60)
    // No one-second window holds more than the burst plus a second of refill.
    for (let i = 0; i < at.length; i++) expect(at.filter((t) => t >= at[i]! && t < at[i]! + 1000).length).toBeLessThanOrEqual(20 + 20)
  }, 30_000)
})

describe("gemini batch judge (Batch API)", () => {
  it("collects judgements into one job, polls it, and reads each result like a generateContent reply", async () => {
    const server = await startFakeGemini({ answer: geminiAnswer, batchPolls: 2, faults: { batchItemError: 0.1, seed: "batch" } })
    const judge = await Effect.runPromise(makeGeminiBatch({ apiKey: Redacted.make(KEY), model: "gemini-3-flash-preview", baseUrl: server.url, rubric, collectFor: "50 millis", pollEvery: "20 millis" }))
    expect(judge.preferredConcurrency).toBe(Number.POSITIVE_INFINITY)
    const results = await Effect.runPromise(Effect.forEach(stories, (item) => Effect.result(judge.score(item)), { concurrency: "unbounded" }))
    await server.close()
    const ok = results.filter((r) => r._tag === "Success")
    const failed = results.filter((r) => r._tag === "Failure")
    expect(ok.length + failed.length).toBe(stories.length)
    expect(failed.length).toBeGreaterThan(0) // the injected per-item errors...
    for (const f of failed) expect(f.failure.reason).toBe("Unavailable") // ...become unscorable, retried by a later run
    results.forEach((r, i) => {
      if (r._tag === "Success") expect(r.success.scores).toEqual(scoresFor(stories[i]!.story))
    })
    // One job: create, then polls until it succeeded; no generateContent calls.
    const paths = server.calls.map((c) => `${c.method} ${c.path.replace(/\?.*/, "")}`)
    expect(paths.filter((p) => p.endsWith(":batchGenerateContent"))).toHaveLength(1)
    expect(paths.filter((p) => p.includes(":generateContent"))).toHaveLength(0)
    expect(paths.filter((p) => p.startsWith("GET")).length).toBeGreaterThanOrEqual(2)
    // The same fingerprint as the online judge with the same settings: verdicts memoize under one key.
    const online = await Effect.runPromise(makeGemini({ apiKey: Redacted.make(KEY), model: "gemini-3-flash-preview", baseUrl: server.url, rubric }))
    expect(judge.fingerprint).toBe(online.fingerprint)
  })
})
