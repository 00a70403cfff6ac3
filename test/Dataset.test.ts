import { createHash } from "node:crypto"
import { fileURLToPath } from "node:url"
import { Effect, Schema } from "effect"
import { beforeAll, describe, expect, it } from "vitest"
import { DatasetParams, dedupe, filterByWords, isHeldOut, prepareDataset, splitByHash, splitPoint } from "../src/data/Dataset.ts"
import { ingest } from "../src/data/Ingest.ts"
import { makeStory, type Story } from "../src/data/Story.ts"

const corpus = fileURLToPath(new URL("../examples/anthologies/", import.meta.url))

const story = (anthology: string, title: string, text: string) => makeStory({ anthology, title, text })
const ofWords = (n: number, tag = "w") => story("a", `${tag}${n}`, Array.from({ length: n }, (_, i) => `${tag}${i}`).join(" "))

/** A deterministic shuffle (LCG-driven Fisher-Yates), independent of the code under test. */
const shuffle = <A>(xs: ReadonlyArray<A>, seed: number): Array<A> => {
  const out = [...xs]
  let s = seed >>> 0
  for (let i = out.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    const j = s % (i + 1)
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

describe("word-count filters", () => {
  it("keeps min <= words <= max (both inclusive) and counts what it drops", () => {
    const stories = [ofWords(5), ofWords(10), ofWords(20), ofWords(30), ofWords(31)]
    const r = filterByWords(stories, { min_words: 10, max_words: 30 })
    expect(r.kept.map((s) => s.words)).toEqual([10, 20, 30])
    expect([r.tooShort, r.tooLong]).toEqual([1, 1])
    expect(filterByWords(stories, {}).kept).toHaveLength(5)
    expect(filterByWords(stories, { max_words: 9 }).kept.map((s) => s.words)).toEqual([5])
  })
})

describe("de-duplication", () => {
  it("drops the same text (case, punctuation, spacing ignored) anywhere, keeping the first", () => {
    const first = story("a", "One", "The cat sat. On the mat!")
    const r = dedupe([first, story("b", "Other", "the  cat sat on\n\nthe MAT"), story("a", "Two", "The cat sat on a mat.")])
    expect(r.kept.map((s) => s.title)).toEqual(["One", "Two"])
    expect([r.duplicateText, r.duplicateTitle]).toEqual([1, 0])
  })

  it("drops the same title and first 200 characters within an anthology only", () => {
    const opening = "x".repeat(10) + " " + Array.from({ length: 60 }, (_, i) => `word${i}`).join(" ") // > 200 chars normalised
    const a1 = story("a", "The Visit", `${opening} and it ended one way.`)
    const a2 = story("a", "THE VISIT.", `${opening} and it ended another way.`) // same title, same opening, later edits
    const b1 = story("b", "The Visit", `${opening} and it ended a third way.`) // other anthology: kept
    const a3 = story("a", "The Visit", `A different opening. ${opening}`) // same title, other opening: kept
    const r = dedupe([a1, a2, b1, a3])
    expect(r.kept).toEqual([a1, b1, a3])
    expect([r.duplicateText, r.duplicateTitle]).toEqual([0, 1])
  })
})

describe("train / held-out split", () => {
  let stories: Array<Story> = []
  beforeAll(async () => {
    stories = await Effect.runPromise(ingest(corpus))
  })

  it("u(id) is the first 8 hex digits of sha256(\"split:\" + id) over 2^32", () => {
    const id = "0123456789abcdef"
    const hex = createHash("sha256").update("split:0123456789abcdef").digest("hex").slice(0, 8)
    expect(splitPoint(id)).toBe(Number.parseInt(hex, 16) / 4294967296)
    expect(isHeldOut(id, splitPoint(id))).toBe(false) // strict <
    expect(isHeldOut(id, splitPoint(id) + 1e-12)).toBe(true)
    expect(isHeldOut(id, 0)).toBe(false)
    expect(isHeldOut(id, 1)).toBe(true)
  })

  it("holds out about `fraction` of the 231 bundled stories (within 3 binomial sd)", () => {
    expect(stories).toHaveLength(231)
    for (const f of [0.05, 0.1, 0.2, 0.5]) {
      const { train, heldout } = splitByHash(stories, f)
      expect(train.length + heldout.length).toBe(231)
      const sd = Math.sqrt(231 * f * (1 - f))
      expect(Math.abs(heldout.length - 231 * f)).toBeLessThanOrEqual(3 * sd)
    }
    // Over many ids the proportion is tight: 20,000 synthetic ids, 1 sd = 0.0021 at f = 0.1.
    const ids = Array.from({ length: 20000 }, (_, i) => createHash("sha256").update(`id${i}`).digest("hex").slice(0, 16))
    expect(Math.abs(ids.filter((id) => isHeldOut(id, 0.1)).length / ids.length - 0.1)).toBeLessThan(0.0065)
  })

  it("is stable under input reordering, and nested as the fraction grows", () => {
    const ids = (xs: ReadonlyArray<Story>) => new Set(xs.map((s) => s.id))
    const base = splitByHash(stories, 0.2)
    for (const seed of [1, 2, 3]) {
      const shuffled = splitByHash(shuffle(stories, seed), 0.2)
      expect(ids(shuffled.heldout)).toEqual(ids(base.heldout))
      expect(ids(shuffled.train)).toEqual(ids(base.train))
    }
    const small = ids(splitByHash(stories, 0.1).heldout)
    for (const id of small) expect(ids(base.heldout).has(id)).toBe(true)
    // Output keeps input order.
    expect(base.train).toEqual(stories.filter((s) => !isHeldOut(s.id, 0.2)))
  })

  it("prepareDataset filters, de-duplicates and splits, and reports each count", () => {
    const dup = { ...stories[0]!, id: "ffffffffffffffff" }
    const input = [...stories, dup]
    const params = Schema.decodeUnknownSync(DatasetParams)({ min_words: 500, max_words: 12000, heldout_fraction: 0.1 })
    const { train, heldout, report } = prepareDataset(input, params)
    const inRange = stories.filter((s) => s.words >= 500 && s.words <= 12000)
    expect(report.input).toBe(232)
    expect(report.too_short).toBe(stories.filter((s) => s.words < 500).length + (dup.words < 500 ? 1 : 0))
    expect(report.too_long).toBe(stories.filter((s) => s.words > 12000).length + (dup.words > 12000 ? 1 : 0))
    expect(report.duplicate_text + report.duplicate_title).toBe(dup.words >= 500 && dup.words <= 12000 ? 1 : 0)
    expect([report.train, report.heldout]).toEqual([train.length, heldout.length])
    expect(train.length + heldout.length).toBe(inRange.length)
    expect(heldout.every((s) => isHeldOut(s.id, 0.1))).toBe(true)
    expect(() => Schema.decodeUnknownSync(DatasetParams)({ heldout_fraction: 1.5 })).toThrow()
  })
})
