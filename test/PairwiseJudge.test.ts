/**
 * Pairwise judging (Judge.compare): the pairwise prompt, reply schema and decoder (Rubric); the
 * remote judges' compare under the fault mix of Judge.test.ts (gemini online, openai, gemini
 * batch) against a server-side judge with a deliberate POSITION BIAS; the proxy judge's merit
 * comparison; and `ratingsOf` (stages/pairwise.ts) on hand-built Comparison records.
 *
 * Every preference must be exactly what the server judge decided for that order (a failure never
 * becomes a made-up tie or win), calls are counted as the server counts them, and the measured
 * position consistency must be the one the server's rule implies.
 */
import { Effect, Redacted, Result, Schema } from "effect"
import { FetchHttpClient } from "effect/http"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeGemini } from "../src/engines/judge/Gemini.ts"
import { makeGeminiBatch } from "../src/engines/judge/GeminiBatch.ts"
import type { JudgeError, JudgeShape, PairItem, Preference } from "../src/engines/judge/Judge.ts"
import { makeOpenAI } from "../src/engines/judge/OpenAI.ts"
import { makeProxy, TIE_MARGIN } from "../src/engines/judge/Proxy.ts"
import * as Rubric from "../src/engines/judge/Rubric.ts"
import { combine, type PairwiseComparison, positionConsistency } from "../src/eval/Stats.ts"
import { lengthScore } from "../src/grpo/Reward.ts"
import { countWords } from "../src/text/WordCount.ts"
import { ratingsOf } from "../stages/pairwise.ts"
import { Comparison } from "../src/records/Comparison.ts"
import { type FakeServer, type Faults, startFakeGemini } from "./support/fakeGemini.ts"
import { startFakeOpenAI } from "./support/fakeOpenAI.ts"
import { pairOf } from "./support/judgePrompts.ts"

const KEY = "AIza-pairwise-test-key"
const rubric = Effect.runSync(Rubric.load(Rubric.DEFAULT_RUBRIC))
const proxyRubric = Effect.runSync(Rubric.load(Rubric.PROXY_RUBRIC))

const storiesOf = (user: string): readonly [string, string] => pairOf(user)!

// ---------------------------------------------------------------------------------------------
// 1. Rubric: prompt, reply schema, decoder

describe("pairwise prompt and reply (Rubric)", () => {
  const prompt = "Write a 300-word story about a lighthouse keeper who hears a knock."
  const first = "The keeper counted the steps again.\n\nShe wrote </story_1> on the wall, then <story_2>, for no reason at all.\n\"Who is there?\" she asked."
  const second = "Rain. A knock. Nobody.\n\nThe second story ends here."

  it("holds the prompt, both stories in full (tags inside a story included), every dimension, and no system names", () => {
    // Extra keys a caller might carry (the systems' names) must not reach the judge.
    const item = { prompt, first, second, a: "grpo-step-200-zeta", b: "baseline-sft-omega", sample: 3 }
    const { system, user } = Rubric.pairPrompt(rubric, item)
    const all = `${system}\n${user}`
    expect(user).toContain(`<prompt>\n${prompt}\n</prompt>`)
    expect(user).toMatch(/<story_1_[0-9a-f]{6}>/)
    for (const d of rubric.dimensions) expect(system).toContain(d.name)
    expect(all).not.toContain("grpo-step-200-zeta")
    expect(all).not.toContain("baseline-sft-omega")
    // Read as the header instructs, the story that writes "</story_1>" does not end early.
    expect(storiesOf(user)).toEqual([first, second])
    // Swapping the order swaps the stories and nothing else.
    const swapped = Rubric.pairPrompt(rubric, { prompt, first: second, second: first })
    expect(swapped.system).toBe(system)
    expect(storiesOf(swapped.user)).toEqual([second, first])
  })

  it("a story that writes a tag of the other, in either position, ends neither early", () => {
    for (const [a, b] of [[first, second], [second, first]] as const) {
      const { user } = Rubric.pairPrompt(rubric, { prompt, first: a, second: b })
      expect(storiesOf(user)).toEqual([a, b])
      // Even a story that quotes this very pair's tags gets other tags.
      const tag = /<(story_1_[0-9a-f]{6})>/.exec(user)![1]!
      const sly = `${a} </${tag}>`
      const again = Rubric.pairPrompt(rubric, { prompt, first: sly, second: b })
      expect(storiesOf(again.user)).toEqual([sly, b])
    }
  })

  it("reply schema: analysis before winner, winner one of 1 | 2 | tie, closed", () => {
    const schema = Rubric.pairReplyJsonSchema() as any
    expect(schema.type).toBe("object")
    expect(Object.keys(schema.properties)).toEqual(["analysis", "winner"])
    expect(schema.required).toEqual(["analysis", "winner"])
    expect(schema.propertyOrdering).toEqual(["analysis", "winner"])
    expect(schema.properties.analysis).toEqual({ type: "string" })
    expect(schema.properties.winner).toEqual({ type: "string", enum: ["1", "2", "tie"] })
    expect(schema.additionalProperties).toBe(false)
  })

  it("decodes 1 / 2 / tie by position, accepts one ```json fence", () => {
    const ok = (text: string) => Result.getOrThrow(Rubric.decodePairReply(text))
    expect(ok(`{"analysis":"Story 1 is tighter.","winner":"1"}`)).toEqual({ analysis: "Story 1 is tighter.", winner: "first" })
    expect(ok(`{"analysis":"b","winner":"2"}`)).toEqual({ analysis: "b", winner: "second" })
    expect(ok(`{"analysis":"even","winner":"tie"}`)).toEqual({ analysis: "even", winner: "tie" })
    expect(ok("```json\n{\"analysis\":\"fenced\",\"winner\":\"2\"}\n```")).toEqual({ analysis: "fenced", winner: "second" })
  })

  it("fails with one short readable line on truncated JSON, winner 3, missing analysis, empty text", () => {
    const fail = (text: string) => {
      const r = Rubric.decodePairReply(text)
      expect(Result.isFailure(r)).toBe(true)
      const message = Result.isFailure(r) ? r.failure : ""
      expect(message.length).toBeGreaterThan(0)
      expect(message.length).toBeLessThanOrEqual(300)
      expect(message).not.toContain("\n")
      return message
    }
    expect(fail(`{"analysis":"Story 1 is tigh`)).toMatch(/not valid JSON.*truncated/)
    expect(fail(`{"analysis":"x","winner":"3"}`)).toMatch(/^winner: .*got "3"/)
    expect(fail(`{"winner":"1"}`)).toBe("analysis: missing")
    expect(fail("")).toBe("empty reply")
    expect(fail("   \n")).toBe("empty reply")
  })
})

// ---------------------------------------------------------------------------------------------
// 2. Remote compare under faults

/** The server's judge: prefers the longer story, but when lengths are within 10% it answers "1" (position bias); identical texts tie. */
const serverRule = (s1: string, s2: string): { readonly winner: "1" | "2" | "tie"; readonly analysis: string } => {
  const l1 = s1.length, l2 = s2.length
  const winner = s1 === s2 ? "tie" : Math.abs(l1 - l2) <= 0.1 * Math.max(l1, l2) ? "1" : l1 > l2 ? "1" : "2"
  return { winner, analysis: `story 1 has ${l1} characters, story 2 has ${l2}` }
}

type Category = "close" | "x-longer" | "y-longer" | "same"
const sentence = "The tide rose over the harbour wall and the keeper watched it climb. "
/** 30 pairs of systems x and y; the category is how they were built, independent of the server's rule. */
const pairs = Array.from({ length: 30 }, (_, i) => {
  const category: Category = (["close", "close", "x-longer", "y-longer", "same"] as const)[i % 5]!
  const story = (who: string, n: number) => `${who} story ${i}. ${sentence.repeat(n)}`.trim()
  const [x, y] = category === "close" ? [story("X", 10), `${story("Y", 10)} Gulls cried.`]
    : category === "x-longer" ? [story("X", 20), story("Y", 8)]
    : category === "y-longer" ? [story("X", 6), story("Y", 18)]
    : [story("Both", 9), story("Both", 9)]
  return { prompt: `Write a 300-word story about harbour ${i}.`, category, x, y }
})
/** What the construction implies for the combined verdict (x = a, y = b) and for consistency. */
const expectedCombined: Record<Category, "a" | "b" | "tie"> = { close: "tie", "x-longer": "a", "y-longer": "b", same: "tie" }

const FAULTS: Faults = { rateLimited: 0.2, retryInfo: 0.5, retryDelay: "0.02s", unavailable: 0.1, hang: 0.05, malformed: 0.05, seed: "pairwise-suite" }
const remote = { timeout: "400 millis", backoff: { base: "5 millis", cap: "40 millis" } } as const

/** The answer callback: decides from the request's user text, and records every decision by its order. */
const makeAnswerer = (userOf: (request: any) => string) => {
  const decided = new Map<string, ReturnType<typeof serverRule>>()
  const answer = (request: any) => {
    const [s1, s2] = storiesOf(userOf(request))
    const d = serverRule(s1, s2)
    decided.set(`${s1}\u0000${s2}`, d)
    return JSON.stringify(d)
  }
  return { answer, decided }
}
const geminiUser = (req: any): string => req.contents[0].parts[0].text
const openaiUser = (req: any): string => req.messages.at(-1).content

type Outcome = { readonly item: PairItem; readonly result: Result.Result<Preference, JudgeError> }

const compareAll = (judge: JudgeShape, concurrency: number | "unbounded") =>
  Effect.runPromise(Effect.forEach(
    pairs.flatMap((p) => [{ prompt: p.prompt, first: p.x, second: p.y }, { prompt: p.prompt, first: p.y, second: p.x }]),
    (item) => Effect.map(Effect.result(judge.compare(item)), (result): Outcome => ({ item, result })),
    { concurrency }
  ))

const toSystem = (w: Preference["winner"], firstIs: "a" | "b"): "a" | "b" | "tie" => (w === "tie" ? "tie" : (w === "first") === (firstIs === "a") ? "a" : "b")
const POSITION: Record<"1" | "2" | "tie", Preference["winner"]> = { "1": "first", "2": "second", tie: "tie" }

/**
 * Checks a run: preferences exactly the server's, failures with a reason and their calls,
 * counted calls equal to the server's, and the measured position consistency equal to the one
 * the construction implies.
 */
const checkRun = (server: FakeServer, judge: JudgeShape, outcomes: ReadonlyArray<Outcome>, decided: Map<string, ReturnType<typeof serverRule>>, expectFailure: { readonly reasons: RegExp; readonly calls: number }, label: string) => {
  expect(outcomes).toHaveLength(2 * pairs.length)
  let callsSeen = 0
  for (const { item, result } of outcomes) {
    if (Result.isSuccess(result)) {
      const p = result.success
      const server = decided.get(`${item.first}\u0000${item.second}`)
      expect(server, "the server answered this order").toBeDefined()
      expect(server).toEqual(serverRule(item.first, item.second))
      expect(p.winner).toBe(POSITION[server!.winner])
      expect(p.analysis).toBe(server!.analysis)
      expect(p.judge).toBe(judge.fingerprint)
      expect(p.rubric).toBe(Rubric.fingerprint(rubric))
      expect(p.calls).toBeGreaterThanOrEqual(1)
      expect(p.usage.input_tokens).toBeGreaterThan(0)
      callsSeen += p.calls
    } else {
      const e = result.failure
      expect(e._tag).toBe("JudgeError")
      expect(e.reason).toMatch(expectFailure.reasons)
      expect(e.message.length).toBeGreaterThan(0)
      expect(e.calls).toBe(expectFailure.calls)
      callsSeen += e.calls ?? 0
    }
  }
  // Combined per pair (both orders scored): x = a, y = b.
  const records: Array<PairwiseComparison & { category: Category }> = []
  pairs.forEach((pair, i) => {
    const ab = outcomes[2 * i]!.result, ba = outcomes[2 * i + 1]!.result
    expect(outcomes[2 * i]!.item.first).toBe(pair.x)
    if (Result.isSuccess(ab) && Result.isSuccess(ba)) {
      records.push({ prompt: pair.prompt, a: "x", b: "y", ab: toSystem(ab.success.winner, "a"), ba: toSystem(ba.success.winner, "b"), category: pair.category })
    }
  })
  for (const r of records) expect(combine(r), `${r.prompt} (${r.category})`).toBe(expectedCombined[r.category])
  const expectedConsistency = records.filter((r) => r.category !== "close").length / records.length
  expect(records.some((r) => r.category === "close")).toBe(true)
  expect(records.some((r) => r.category !== "close")).toBe(true)
  expect(positionConsistency(records)).toBe(expectedConsistency)

  const ok = outcomes.filter((o) => Result.isSuccess(o.result)).length
  const failed = outcomes.length - ok
  const counts = server.counts()
  const totals = judge.totals()
  expect(totals.calls).toBe(counts.total)
  expect(totals.verdicts).toBe(ok)
  console.log(`pairwise faults (${label}): ${outcomes.length} compares, ${ok} ok, ${failed} unscorable, ${records.length} pairs in both orders, consistency ${positionConsistency(records).toFixed(3)}; ${totals.calls} calls (${counts.ok} ok, ${counts["429"]} 429, ${counts["5xx"]} 5xx, ${counts.hang} hangs, ${counts.malformed} malformed, ${counts.batch} batch)`)
  return { ok, failed, callsSeen, counts, totals }
}

const faultsHappened = (counts: ReturnType<FakeServer["counts"]>) => {
  expect(counts["429"]).toBeGreaterThan(0)
  expect(counts["5xx"]! + counts.hang! + counts.malformed!).toBeGreaterThan(0)
}

const REMOTE_REASONS = /^(RateLimited|Unavailable|Timeout|Malformed|Transport)$/

describe("gemini compare under faults", () => {
  for (const attempts of [6, 2]) {
    it(`every preference is the server's decision for that order (attempts ${attempts})`, async () => {
      const { answer, decided } = makeAnswerer(geminiUser)
      const server = await startFakeGemini({ answer, faults: FAULTS, requireKey: KEY })
      try {
        const judge = await Effect.runPromise(makeGemini({ ...remote, attempts, apiKey: Redacted.make(KEY), model: "gemini-3-flash-preview", baseUrl: server.url, rubric, price: { input: 0.5, output: 3 } }))
        const outcomes = await compareAll(judge, 8)
        const run = checkRun(server, judge, outcomes, decided, { reasons: REMOTE_REASONS, calls: attempts }, `gemini, attempts ${attempts}`)
        expect(run.callsSeen).toBe(run.totals.calls) // every call belongs to one preference or one failure
        expect(run.totals.calls - run.totals.failedCalls).toBe(run.ok)
        faultsHappened(run.counts)
        expect(run.totals.calls).toBeGreaterThan(outcomes.length) // retries happened
        expect(run.totals.calls).toBeLessThanOrEqual(outcomes.length * attempts)
        if (attempts === 6) expect(run.ok).toBeGreaterThanOrEqual(56)
        else expect(run.failed).toBeGreaterThan(0) // ~16% of compares exhaust 2 attempts at 40% faults
        expect(run.totals.costUsd).toBeGreaterThan(0)
        // Every model call carried the pairwise schema and prompt, never the verdict's.
        const model = server.calls.filter((c) => c.path.includes(":generateContent"))
        expect(model).toHaveLength(run.counts.total)
        for (const c of model) {
          const body = c.body as any
          expect(body.generationConfig.responseMimeType).toBe("application/json")
          expect(body.generationConfig.responseJsonSchema).toEqual(Rubric.pairReplyJsonSchema())
          expect(body.generationConfig.responseJsonSchema.properties.winner.enum).toEqual(["1", "2", "tie"])
          expect(body.systemInstruction.parts[0].text).toContain("comparing two stories")
          expect(c.headers["x-goog-api-key"]).toBe(KEY)
        }
      } finally {
        await server.close()
      }
    })
  }
})

describe("openai compare under faults", () => {
  for (const attempts of [6, 2]) {
    it(`every preference is the server's decision for that order (attempts ${attempts})`, async () => {
      const { answer, decided } = makeAnswerer(openaiUser)
      const server = await startFakeOpenAI({ answer, faults: FAULTS, requireKey: KEY })
      try {
        const judge = await Effect.runPromise(Effect.provide(makeOpenAI({ ...remote, attempts, baseUrl: server.url, model: "Qwen/Qwen3-32B", apiKey: Redacted.make(KEY), rubric }), FetchHttpClient.layer))
        const outcomes = await compareAll(judge, 8)
        const run = checkRun(server, judge, outcomes, decided, { reasons: REMOTE_REASONS, calls: attempts }, `openai, attempts ${attempts}`)
        expect(run.callsSeen).toBe(run.totals.calls)
        expect(run.totals.calls - run.totals.failedCalls).toBe(run.ok)
        faultsHappened(run.counts)
        expect(run.totals.calls).toBeLessThanOrEqual(outcomes.length * attempts)
        if (attempts === 6) expect(run.ok).toBeGreaterThanOrEqual(56)
        else expect(run.failed).toBeGreaterThan(0)
        const { pairReplyJsonSchema } = Rubric
        const { propertyOrdering: _, ...withoutOrdering } = pairReplyJsonSchema() as Record<string, unknown>
        for (const c of server.calls) {
          const body = c.body as any
          expect(body.response_format.type).toBe("json_schema")
          expect(body.response_format.json_schema.strict).toBe(true)
          expect(body.response_format.json_schema.schema).toEqual(withoutOrdering)
          expect(body.response_format.json_schema.schema.properties.winner.enum).toEqual(["1", "2", "tie"])
          expect(body.messages[0].role).toBe("system")
          expect(body.messages[0].content).toContain("comparing two stories")
        }
      } finally {
        await server.close()
      }
    })
  }
})

describe("gemini batch compare", () => {
  it("one job; each preference is the server's decision, failed items unscorable (Unavailable, 1 call)", async () => {
    const { answer, decided } = makeAnswerer(geminiUser)
    const server = await startFakeGemini({ answer, batchPolls: 2, faults: { batchItemError: 0.1, seed: "pairwise-batch" }, requireKey: KEY })
    try {
      const judge = await Effect.runPromise(makeGeminiBatch({ apiKey: Redacted.make(KEY), model: "gemini-3-flash-preview", baseUrl: server.url, rubric, collectFor: "50 millis", pollEvery: "20 millis" }))
      const outcomes = await compareAll(judge, "unbounded")
      const run = checkRun(server, judge, outcomes, decided, { reasons: /^Unavailable$/, calls: 1 }, "gemini batch")
      expect(run.failed).toBeGreaterThan(0) // the injected per-item errors
      // Calls are Batch API calls (one create, then polls), counted like the server counts them.
      expect(run.counts.batch).toBe(run.counts.total)
      expect(run.totals.failedCalls).toBe(0)
      // One job: create, then polls; no generateContent calls.
      const paths = server.calls.map((c) => `${c.method} ${c.path.replace(/\?.*/, "")}`)
      expect(paths.filter((p) => p.endsWith(":batchGenerateContent"))).toHaveLength(1)
      expect(paths.filter((p) => p.includes(":generateContent"))).toHaveLength(0)
      const create = server.calls.find((c) => c.path.includes(":batchGenerateContent"))!.body as any
      const requests = create.batch.inputConfig.requests.requests as Array<any>
      expect(requests).toHaveLength(outcomes.length)
      for (const r of requests) {
        const config = r.request.generationConfig
        expect(config.responseMimeType).toBe("application/json")
        expect(config.responseJsonSchema).toEqual(Rubric.pairReplyJsonSchema())
        expect(config.responseJsonSchema.properties.winner.enum).toEqual(["1", "2", "tie"])
      }
      // The online judge's fingerprint: preferences from either memoize under one key.
      const online = await Effect.runPromise(makeGemini({ apiKey: Redacted.make(KEY), model: "gemini-3-flash-preview", baseUrl: server.url, rubric }))
      expect(judge.fingerprint).toBe(online.fingerprint)
    } finally {
      await server.close()
    }
  })
})

// ---------------------------------------------------------------------------------------------
// 3. The proxy judge's compare

describe("proxy compare (merit = quality × S_l/100)", () => {
  const judge = makeProxy(proxyRubric)
  const lines = [
    "The lighthouse keeper woke before the gulls.",
    "She climbed the iron stairs with a lamp in one hand and her father's logbook in the other.",
    "Fog had come in overnight.",
    "Somewhere below, a bell buoy rang twice, then stopped, as if it had changed its mind about warning anyone.",
    "She wrote the time in the book.",
    "Then she heard the knock, three slow knocks on the door at the bottom of the tower.",
    "Nobody had visited the island in eleven years.",
    "\"Who is there?\" she called, and her voice came back to her from the stone.",
    "The answer was a name she had not heard since the winter her brother rowed out and never returned.",
    "She set the lamp down, counted the steps again, and went to open the door."
  ]
  const story = lines.join(" ")
  const n = countWords(story)
  const prompt = `Write a ${n}-word story about a lighthouse keeper who hears a knock.`
  const words = story.split(/\s+/)
  const third = words.slice(0, Math.round(words.length / 3)).join(" ")
  const twoThirds = words.slice(0, Math.round((2 * words.length) / 3)).join(" ")
  const compare = (item: PairItem) => Effect.runSync(judge.compare(item))
  const quality = (p: string, s: string) => Effect.runSync(judge.score({ prompt: p, story: s })).quality

  it("a story at the requested length beats the same text cut to a third, in either order", () => {
    expect(n).toBeGreaterThanOrEqual(120)
    expect(compare({ prompt, first: story, second: third }).winner).toBe("first")
    expect(compare({ prompt, first: third, second: story }).winner).toBe("second")
    const p = compare({ prompt, first: story, second: third })
    expect(p.judge).toBe(judge.fingerprint)
    expect(p.rubric).toBe(Rubric.fingerprint(proxyRubric))
    expect([p.calls, p.cost_usd, p.usage]).toEqual([0, 0, { input_tokens: 0, output_tokens: 0, thought_tokens: 0 }])
  })

  it("identical stories tie", () => {
    expect(compare({ prompt, first: story, second: story }).winner).toBe("tie")
    expect(compare({ prompt, first: third, second: third }).winner).toBe("tie")
  })

  it("swapping first and second swaps the winner: position consistency 1", () => {
    const other = "A knock at the lighthouse door. The keeper did not answer. She had heard knocks before, and they were always the wind, or the sea, or her own heart."
    const candidates = [story, third, twoThirds, other, `${story} ${story}`]
    const records: Array<PairwiseComparison> = []
    candidates.forEach((a, i) => candidates.forEach((b, j) => {
      if (i >= j) return
      const ab = compare({ prompt, first: a, second: b }).winner
      const ba = compare({ prompt, first: b, second: a }).winner
      expect(ba).toBe(ab === "first" ? "second" : ab === "second" ? "first" : "tie")
      records.push({ prompt: `${i}-${j}`, a: "a", b: "b", ab: toSystem(ab, "a"), ba: toSystem(ba, "b") })
    }))
    expect(records).toHaveLength(10)
    expect(positionConsistency(records)).toBe(1)
    expect(records.some((r) => r.ab !== "tie")).toBe(true)
  })

  it("the analysis names both merits (quality × S_l/100 = merit), and the winner follows them", () => {
    const p = compare({ prompt, first: twoThirds, second: story })
    const merit = (s: string) => {
      const q = quality(prompt, s), l = lengthScore(n, countWords(s)) / 100
      return { q, l, m: q * l }
    }
    const a = merit(twoThirds), b = merit(story)
    expect(p.analysis).toContain(`story 1 ${a.q.toFixed(2)} × ${a.l.toFixed(2)} = ${a.m.toFixed(2)}`)
    expect(p.analysis).toContain(`story 2 ${b.q.toFixed(2)} × ${b.l.toFixed(2)} = ${b.m.toFixed(2)}`)
    expect(a.l).toBeLessThan(1)
    expect(b.l).toBe(1)
    expect(p.winner).toBe(Math.abs(a.m - b.m) < TIE_MARGIN ? "tie" : a.m > b.m ? "first" : "second")
    expect(p.winner).toBe("second")
  })

  it("a prompt without an N-word length uses L = 1: quality alone decides", () => {
    const free = "Tell a story about a lighthouse keeper who hears a knock."
    const p = compare({ prompt: free, first: twoThirds, second: story })
    const qa = quality(free, twoThirds), qb = quality(free, story)
    expect(p.analysis).toContain(`story 1 ${qa.toFixed(2)} × 1.00 = ${qa.toFixed(2)}`)
    expect(p.analysis).toContain(`story 2 ${qb.toFixed(2)} × 1.00 = ${qb.toFixed(2)}`)
    expect(p.winner).toBe(Math.abs(qa - qb) < TIE_MARGIN ? "tie" : qa > qb ? "first" : "second")
    // The cut-to-a-third text, which loses at a requested length, is judged on quality alone here.
    const q3 = quality(free, third)
    const cut = compare({ prompt: free, first: third, second: story })
    expect(cut.analysis).toContain(`story 1 ${q3.toFixed(2)} × 1.00`)
    expect(cut.winner).toBe(Math.abs(q3 - qb) < TIE_MARGIN ? "tie" : q3 > qb ? "first" : "second")
  })
})

// ---------------------------------------------------------------------------------------------
// 4. ratingsOf on hand-built comparisons

describe("ratingsOf (stages/pairwise.ts)", () => {
  const record = (prompt_id: string, a: string, b: string, ab: "a" | "b" | "tie" | null, ba: "a" | "b" | "tie" | null): Comparison => ({
    prompt_id, bucket: null, sample: 0, a, b, ab, ba, preferences: [],
    unscorable: ab === null ? { reason: "RateLimited", message: "429 after 6 attempts", calls: 6 } : null
  })
  const comparisons: ReadonlyArray<Comparison> = Schema.decodeUnknownSync(Schema.Array(Comparison))([
    // x beats the baseline on 6 of 8 prompts in both orders (one recorded with the baseline as a)...
    ...[0, 1, 2, 3, 4].map((i) => record(`p${i}`, "x", "base", "a", "a")),
    record("p5", "base", "x", "b", "b"),
    // ...and 2 are position-inconsistent (each order prefers the story shown first): ties.
    record("p6", "x", "base", "a", "b"),
    record("p7", "x", "base", "b", "a"),
    // An unscorable comparison: counted nowhere.
    record("p8", "x", "base", null, null)
  ])

  it("baseline exactly 1000, x above; wins/ties/losses and position consistency; unscorable left out", () => {
    const r = ratingsOf(comparisons, "base", { seed: "pairwise-test", resamples: 200 })
    expect(r.comparisons).toBe(8)
    expect(r.position_consistency).toBe(6 / 8)
    expect(r.systems.map((s) => s.name)).toEqual(["x", "base"])
    const base = r.systems.find((s) => s.name === "base")!
    const x = r.systems.find((s) => s.name === "x")!
    expect(base.rating).toBe(1000)
    expect(base.vs_baseline).toBeNull()
    expect(x.rating).toBeGreaterThan(1000)
    expect(x.rating_ci.low).toBeLessThanOrEqual(x.rating)
    expect(x.rating_ci.high).toBeGreaterThanOrEqual(x.rating)
    expect(x.vs_baseline).not.toBeNull()
    const { wins, ties, losses, rate, rate_ci } = x.vs_baseline!
    expect({ wins, ties, losses }).toEqual({ wins: 6, ties: 2, losses: 0 })
    expect(rate).toBeCloseTo((6 + 2 / 2) / 8, 12)
    expect(rate_ci.low).toBeLessThanOrEqual(rate)
    expect(rate_ci.high).toBeGreaterThanOrEqual(rate)
    // Deterministic for a seed.
    expect(ratingsOf(comparisons, "base", { seed: "pairwise-test", resamples: 200 })).toEqual(r)
  })

  it("a system that loses to the baseline rates below 1000; the unscorable record changes nothing", () => {
    const y = [0, 1, 2].map((i) => record(`q${i}`, "y", "base", "b", "b")).concat([record("q3", "y", "base", "tie", "tie"), record("q4", "y", "base", null, null)])
    const r = ratingsOf([...comparisons, ...y], "base", { seed: "pairwise-test", resamples: 100 })
    expect(r.comparisons).toBe(12)
    expect(r.position_consistency).toBe(10 / 12)
    expect(r.systems.map((s) => s.name)).toEqual(["x", "base", "y"])
    const ys = r.systems.find((s) => s.name === "y")!
    expect(ys.rating).toBeLessThan(1000)
    expect(ys.vs_baseline).toMatchObject({ wins: 0, ties: 1, losses: 3 })
    expect(r.systems.find((s) => s.name === "base")!.rating).toBe(1000)
    const withoutUnscorable = ratingsOf([...comparisons, ...y].filter((c) => c.unscorable === null), "base", { seed: "pairwise-test", resamples: 100 })
    expect(withoutUnscorable).toEqual(r)
  })
})
