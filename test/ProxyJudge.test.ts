/**
 * The proxy judge: deterministic text statistics under its own rubric. Each metric moves the
 * way its definition says on hand-built texts, and the literary rubric is refused.
 */
import { join } from "node:path"
import { codeFingerprint } from "../src/dag/Fingerprint.ts"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { makeProxy, MIN_WORDS, mattr, PROXY_DIMENSIONS, promptTerms, proxyScores } from "../src/engines/judge/Proxy.ts"
import * as Rubric from "../src/engines/judge/Rubric.ts"

const PROMPT = "Write a 300-word story about a lighthouse keeper who finds a whale."

const VARIED = [
  "The lighthouse keeper woke before dawn, as he had every morning for eleven years.",
  "Salt crusted the windows.",
  "Below the rocks, something enormous rolled in the grey swell, and he watched it for a long time without moving.",
  "It was a whale, stranded, its breath loud as a bellows.",
  "He ran down the iron stairs.",
  "All day he carried buckets of seawater, talking to it about his wife, about the winter, about nothing at all.",
  "When the tide finally rose, the animal shuddered and slid free.",
  "He stood in the shallows, soaked and laughing, until the light above him came on by itself."
].join(" ")

const REPETITIVE = Array.from({ length: 12 }, () => "The keeper looked at the sea and the sea looked at the keeper.").join(" ")

describe("proxyScores", () => {
  it("scores a repetitive story lower on repetition, distinct and lexical variety than a varied one", () => {
    const varied = proxyScores(PROMPT, VARIED)
    const repetitive = proxyScores(PROMPT, REPETITIVE)
    expect(repetitive.repetition).toBeLessThan(varied.repetition)
    expect(repetitive.distinct).toBeLessThan(varied.distinct)
    expect(repetitive.lexical_variety).toBeLessThan(varied.lexical_variety)
    expect(varied.repetition).toBe(10) // no 4-gram repeats
    expect(repetitive.repetition).toBe(1) // 92% of its 4-grams repeat: 1 - share < 0.5
  })

  it("pins repetition and distinct-2 on a small hand-counted text", () => {
    // 24 words: "a b c d" x 6 -> 21 4-grams, 4 distinct: share repeated 17/21; 23 bigrams, 4 distinct.
    const text = Array.from({ length: 6 }, () => "alpha beta gamma delta").join(" ") + "."
    const s = proxyScores(PROMPT, text)
    expect(s.repetition).toBe(1) // 1 - 17/21 = 0.19 < 0.5
    expect(s.distinct).toBe(1) // 4/23 = 0.17 < 0.3
    // 20 distinct words, the same 20 again, then 37 new ones: 77 words, 74 4-grams, of which the
    // 17 lying inside the second copy repeat: 1 - share = 57/74 = 0.770 -> 1 + 9 * 0.270 / 0.5 = 5.86.
    const twenty = Array.from({ length: 20 }, (_, i) => `w${i}`)
    const half = [...twenty, ...twenty, ...Array.from({ length: 37 }, (_, i) => `x${i}`)].join(" ")
    expect(proxyScores(PROMPT, `${half}.`).repetition).toBe(5.86)
  })

  it("MATTR-50 is the mean TTR of every 50-word window", () => {
    const distinct60 = Array.from({ length: 60 }, (_, i) => `w${i}`)
    expect(mattr(distinct60)).toBe(1)
    // 50 distinct words then the first one again: windows [0,50) TTR 1 and [1,51) TTR 1 (w0 left the window).
    expect(mattr([...distinct60.slice(0, 50), "w0"])).toBe(1)
    // 50 distinct then w1: the second window holds w1 twice -> (1 + 49/50) / 2.
    expect(mattr([...distinct60.slice(0, 50), "w1"])).toBeCloseTo((1 + 49 / 50) / 2, 12)
    expect(mattr(["a", "a", "b", "b"])).toBe(0.5)
  })

  it("scores an ending cut mid-sentence lower than a complete one; an ellipsis in between", () => {
    expect(proxyScores(PROMPT, VARIED).ending).toBe(10)
    expect(proxyScores(PROMPT, `${VARIED} "Goodbye," he said.”`).ending).toBe(10)
    expect(proxyScores(PROMPT, `${VARIED} He turned toward the`).ending).toBe(1)
    expect(proxyScores(PROMPT, `${VARIED} And then,`).ending).toBe(1)
    expect(proxyScores(PROMPT, `${VARIED} And then...`).ending).toBe(5)
  })

  it("scores sentence rhythm low when uniform, high when varied, lower again when erratic", () => {
    const uniform = Array.from({ length: 8 }, (_, i) => `The ship number ${i} sailed away from here.`).join(" ")
    expect(proxyScores(PROMPT, uniform).sentence_rhythm).toBe(1) // cv = 0
    expect(proxyScores(PROMPT, VARIED).sentence_rhythm).toBe(10)
    // Lengths 8, 12, 8, 12: mean 10, sd 2, cv 0.2 -> 1 + 9 * 0.2 / 0.35 = 6.14.
    const sentence = (n: number, tag: string) => `${Array.from({ length: n }, (_, i) => `${tag}${i}`).join(" ")}.`
    const mild = [sentence(8, "a"), sentence(12, "b"), sentence(8, "c"), sentence(12, "d")].map((s) => s[0]!.toUpperCase() + s.slice(1)).join(" ")
    expect(proxyScores(PROMPT, mild).sentence_rhythm).toBe(6.14)
    // Lengths 1,1,1,1,1,1,1,1,1,60: mean 6.9, sd 17.7, cv 2.57 > 1.8 -> 1.
    const erratic = `${Array.from({ length: 9 }, () => "Stop.").join(" ")} ${Array.from({ length: 60 }, (_, i) => `w${i}`).join(" ")}.`
    expect(proxyScores(PROMPT, erratic).sentence_rhythm).toBe(1)
    // Two sentences only: too few.
    expect(proxyScores(PROMPT, `${Array.from({ length: 30 }, (_, i) => `w${i}`).join(" ")}. The end came.`).sentence_rhythm).toBe(1)
  })

  it("pins prompt coverage on a tiny example", () => {
    expect(promptTerms("Write a 300-word story about a lighthouse keeper's whale, 1900.")).toEqual(["lighthouse", "keeper", "whale"])
    expect(promptTerms(PROMPT)).toEqual(["lighthouse", "keeper", "finds", "whale"])
    // "lighthouse" and "whale" appear (case-insensitively); "keeper" and "finds" do not: 2/4 -> 1 + 9 * 0.5.
    const story = `${Array.from({ length: 20 }, (_, i) => `w${i}`).join(" ")}. The Lighthouse stood. A whale's song rose.`
    expect(proxyScores(PROMPT, story).prompt_coverage).toBe(5.5)
    expect(proxyScores(PROMPT, VARIED).prompt_coverage).toBe(1 + 9 * 3 / 4) // "finds" is missing
  })

  it("gives an empty or near-empty story the minimum on every dimension", () => {
    for (const story of ["", "   ", "The keeper found a whale.", Array.from({ length: MIN_WORDS - 1 }, (_, i) => `w${i}`).join(" ") + "."]) {
      expect(Object.values(proxyScores(PROMPT, story))).toEqual(PROXY_DIMENSIONS.map(() => 1))
    }
  })

  it("is deterministic", () => {
    const a = proxyScores(PROMPT, VARIED)
    const b = proxyScores(PROMPT, `${VARIED}`)
    expect(b).toEqual(a)
    expect(Object.keys(a)).toEqual([...PROXY_DIMENSIONS])
  })
})

describe("makeProxy", () => {
  it("scores under the proxy rubric with evidence, no cost and no calls", async () => {
    const rubric = await Effect.runPromise(Rubric.load(Rubric.PROXY_RUBRIC))
    const judge = makeProxy(rubric)
    // The scoring code's fingerprint, then the rubric's: editing the formula or the rubric is a new key.
    expect(judge.fingerprint).toBe(`proxy@${codeFingerprint(join(import.meta.dirname, "..", "src", "engines", "judge", "Proxy.ts")).slice(0, 12)}:${Rubric.fingerprint(rubric)}`)
    expect(judge.rubric).toBe(rubric)
    expect(judge.totals().verdicts).toBe(0)
    const verdict = await Effect.runPromise(judge.score({ prompt: PROMPT, story: VARIED }))
    const again = await Effect.runPromise(judge.score({ prompt: PROMPT, story: VARIED }))
    expect(again).toEqual(verdict)
    expect(verdict.rubric).toBe(Rubric.fingerprint(rubric))
    expect(verdict.judge).toBe(judge.fingerprint)
    expect(verdict.scores).toEqual(proxyScores(PROMPT, VARIED))
    expect(verdict.quality).toBeCloseTo(Rubric.quality(rubric, verdict.scores), 12)
    expect(verdict.evidence.distinct).toMatch(/^distinct-2 = \d\.\d\d/)
    expect(verdict.evidence.ending).toMatch(/^ends with a complete sentence/)
    expect(Object.keys(verdict.evidence)).toEqual([...PROXY_DIMENSIONS])
    expect(verdict.usage).toEqual({ input_tokens: 0, output_tokens: 0, thought_tokens: 0 })
    expect([verdict.cost_usd, verdict.calls]).toEqual([0, 0])
    expect(judge.totals()).toEqual({ calls: 0, failedCalls: 0, verdicts: 2, usage: { input_tokens: 0, output_tokens: 0, thought_tokens: 0 }, costUsd: 0 })
  })

  it("maps 1..10 onto its rubric's scale", async () => {
    const rubric = await Effect.runPromise(Rubric.load(Rubric.PROXY_RUBRIC))
    const judge = makeProxy({ ...rubric, scale: { min: 0, max: 100 } })
    const verdict = await Effect.runPromise(judge.score({ prompt: PROMPT, story: `${VARIED} He turned toward the` }))
    expect(verdict.scores.ending).toBe(0)
    expect(verdict.scores.repetition).toBe(100)
  })

  it("refuses the literary rubric and any rubric whose ids are not exactly the proxy's", async () => {
    const literary = await Effect.runPromise(Rubric.load(Rubric.DEFAULT_RUBRIC))
    expect(() => makeProxy(literary)).toThrow(/cannot score rubric "story-quality"/)
    const proxy = await Effect.runPromise(Rubric.load(Rubric.PROXY_RUBRIC))
    expect(() => makeProxy({ ...proxy, dimensions: proxy.dimensions.slice(1) })).toThrow(/missing: repetition/)
    expect(() => makeProxy({ ...proxy, dimensions: [...proxy.dimensions, { id: "prose", name: "Prose", definition: "x" }] })).toThrow(/not measurable: prose/)
    expect(() => makeProxy({ ...proxy, dimensions: [...proxy.dimensions, proxy.dimensions[0]!] })).toThrow(/repeated/)
    // The same ids in another order are accepted.
    expect(makeProxy({ ...proxy, dimensions: [...proxy.dimensions].reverse() }).fingerprint).toMatch(/^proxy@[0-9a-f]{12}:proxy-text-stats@1:/)
  })
})
