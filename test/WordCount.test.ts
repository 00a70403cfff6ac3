import { describe, expect, it } from "vitest"
import { countWords, words } from "../src/text/WordCount.ts"

describe("word counter", () => {
  it.each([
    ["", 0],
    ["One dollar and eighty-seven cents.", 5],
    ["Don't stop—it's twenty-one o'clock!", 5],
    ["“Well,” said he, ‘it’s 1895.’", 5],
    ["a - b -- c", 3],
    ["trailing- -leading 'quoted'", 3],
    ["Ça va? Été, naïve café.", 5],
    ["  \n\n  ", 0],
    ["3.14 and 2,000", 5]
  ])("%j has %d words", (text, n) => {
    expect(countWords(text)).toBe(n)
    expect(words(text)).toHaveLength(n)
  })

  it("keeps inner apostrophes and hyphens in the word", () => {
    expect(words("Don't stop—it's twenty-one")).toEqual(["Don't", "stop", "it's", "twenty-one"])
  })
})

describe("firstWords and wordSpans", () => {
  it("cut at a word boundary and keep no state between calls", async () => {
    const { firstWords, wordSpans } = await import("../src/text/WordCount.ts")
    const text = "One dollar and eighty-seven cents. That was all."
    expect(firstWords(text, 3)).toBe("One dollar and ")
    expect(firstWords(text, 100)).toBe(text)
    // A call that stopped early must not shift the next one.
    expect(wordSpans(text).map((w) => w.word)).toEqual(["One", "dollar", "and", "eighty-seven", "cents", "That", "was", "all"])
    expect(wordSpans(text)[3]).toEqual({ word: "eighty-seven", index: 15 })
  })
})
