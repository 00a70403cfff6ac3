import { Schema } from "effect"
import { describe, expect, it } from "vitest"
import { excerpt, Prompt, promptText, requestedWords, sentences } from "../src/data/Prompts.ts"
import { countWords } from "../src/text/WordCount.ts"

describe("requestedWords", () => {
  it("rounds to the nearest step, at least one step", () => {
    expect(requestedWords(2077, 100)).toBe(2100)
    expect(requestedWords(2049, 100)).toBe(2000)
    expect(requestedWords(2050, 100)).toBe(2100)
    expect(requestedWords(30, 100)).toBe(100)
    expect(requestedWords(0, 250)).toBe(250)
    expect(requestedWords(13310, 500)).toBe(13500)
    expect(requestedWords(7, 1)).toBe(7)
  })
})

describe("promptText", () => {
  it("has the paper's shape and no thousands separator", () => {
    expect(promptText(12000, "a lighthouse keeper")).toBe("Write a 12000-word story about a lighthouse keeper.")
    expect(promptText(2100, "Della and Jim.")).toBe("Write a 2100-word story about Della and Jim.")
  })
})

describe("Prompt schema", () => {
  it("accepts a record with or without bucket, rejects a non-positive length", () => {
    const ok = { id: "p1", story_id: "s1", premise: "x", requested_words: 2100 }
    expect(Schema.decodeUnknownSync(Prompt)(ok)).toEqual(ok)
    expect(Schema.decodeUnknownSync(Prompt)({ ...ok, bucket: "1-4k" })).toEqual({ ...ok, bucket: "1-4k" })
    expect(() => Schema.decodeUnknownSync(Prompt)({ ...ok, requested_words: 0 })).toThrow()
    expect(() => Schema.decodeUnknownSync(Prompt)({ ...ok, requested_words: 10.5 })).toThrow()
  })
})

describe("excerpt", () => {
  const text = "One two three.\n\nFour five six seven.\n\nEight nine ten eleven twelve."
  it("keeps whole paragraphs that fit", () => {
    expect(excerpt(text, 100)).toBe(text)
    expect(excerpt(text, 7)).toBe("One two three.\n\nFour five six seven.")
    expect(excerpt(text, 11)).toBe("One two three.\n\nFour five six seven.")
    expect(excerpt(text, 3)).toBe("One two three.")
  })
  it("cuts a too-long first paragraph at a sentence boundary, never mid-sentence", () => {
    const long = "Mr. Holmes sat down. He was tired and cold. Then the bell rang.\n\nNext."
    expect(excerpt(long, 9)).toBe("Mr. Holmes sat down. He was tired and cold.")
    expect(excerpt(long, 4)).toBe("Mr. Holmes sat down.")
  })
  it("falls back to a word cut when the first sentence alone is too long", () => {
    expect(excerpt("One two three four five six.", 4)).toBe("One two three four")
  })
  it("never exceeds the limit", () => {
    for (const n of [1, 2, 5, 8, 13]) expect(countWords(excerpt(text, n))).toBeLessThanOrEqual(n)
  })
})

describe("sentences", () => {
  it("does not split after titles and initials", () => {
    expect(sentences('I called on Mr. Sherlock Holmes. "Come in," said he. J. Wilson waited!')).toEqual([
      "I called on Mr. Sherlock Holmes.",
      '"Come in," said he.',
      "J. Wilson waited!"
    ])
  })
})
