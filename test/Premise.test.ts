import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { gutenbergBody } from "../src/data/Gutenberg.ts"
import { mainCharacters, premise, titleCase } from "../src/data/Premise.ts"
import { splitStories } from "../src/data/Splitter.ts"

const dir = fileURLToPath(new URL("../examples/anthologies/", import.meta.url))
const story = (file: string, title: string) => {
  const found = splitStories(gutenbergBody(readFileSync(dir + file))).find((s) => s.title === title)
  if (found === undefined) throw new Error(`${title} not found in ${file}`)
  return found
}

describe("premise on bundled stories (pinned)", () => {
  it.each([
    ["pg2776-ohenry-the-four-million.txt", "THE GIFT OF THE MAGI", '"The Gift of the Magi": Jim and Della, where one dollar and eighty-seven cents; that was all'],
    [
      "pg13415-chekhov-the-lady-with-the-dog.txt",
      "THE LADY WITH THE DOG",
      '"The Lady with the Dog": Gurov and Anna, at Yalta, where it was said that a new person had appeared on the sea-front: a lady with a little dog'
    ],
    [
      "pg1661-doyle-the-adventures-of-sherlock-holmes.txt",
      "THE RED-HEADED LEAGUE",
      '"The Red-Headed League": Holmes and Wilson, where I had called upon my friend, Mr. Sherlock Holmes, one day in the autumn of last year and found him in deep conversation'
    ],
    [
      "pg2814-joyce-dubliners.txt",
      "ARABY",
      '"Araby": Mercer, where North Richmond Street, being blind, was a quiet street except at the hour when the Christian Brothers School set the boys free'
    ],
    [
      "pg2148-poe-works-volume-2.txt",
      "THE PURLOINED LETTER",
      '"The Purloined Letter": Dupin, where at Paris, just after dark one gusty evening in the autumn of 18-, I was enjoying the twofold luxury of meditation and a meerschaum'
    ]
  ])("%s / %s", (file, title, expected) => {
    const s = story(file, title)
    expect(premise(s)).toBe(expected)
    expect(premise(s)).toBe(premise({ title: s.title, text: s.text })) // deterministic, pure
  })
})

describe("premise edge cases", () => {
  it("no names: title and opening only", () => {
    expect(premise({ title: "NIGHT", text: "It rained all night on the empty road, and nobody came to the house at the end of it." })).toBe(
      '"Night": where it rained all night on the empty road, and nobody came to the house at the end of it'
    )
  })
  it("a very short story", () => {
    expect(premise({ title: "A Short One", text: "Tom ran." })).toBe('"A Short One": where Tom ran')
  })
  it("empty story and title", () => {
    expect(premise({ title: "", text: "" })).toBe("an untitled story")
    expect(premise({ title: "EMPTY", text: "" })).toBe('"Empty"')
  })
  it("names counted with their sentence-initial uses; a place cue already in the opening is not repeated", () => {
    const text = "Anna came home in Vienna one cold winter evening. She found Karl asleep. Anna woke Karl and they talked. Later Anna left Karl a note."
    expect(mainCharacters(text)).toEqual(["Anna", "Karl"])
    expect(premise({ title: "THE VISIT", text })).toBe('"The Visit": Anna and Karl, where Anna came home in Vienna one cold winter evening')
  })
  it("a setting cue from the opening is kept when the first sentence lacks it", () => {
    const text = "The letter came on Monday. Mary read it twice. Mary had lived in Dublin since the war, and Mary knew the hand."
    expect(premise({ title: "THE LETTER", text })).toBe('"The Letter": Mary, in Dublin, where the letter came on Monday; Mary read it twice')
  })
})

describe("titleCase", () => {
  it("title-cases capitals, keeps mixed case", () => {
    expect(titleCase("THE GIFT OF THE MAGI")).toBe("The Gift of the Magi")
    expect(titleCase("TOBIN'S PALM")).toBe("Tobin's Palm")
    expect(titleCase("A DESCENT INTO THE MAELSTRÖM")).toBe("A Descent Into the Maelström")
    expect(titleCase("The Lady with the Dog")).toBe("The Lady with the Dog")
  })
})

describe("premise titles", () => {
  it("quotes a title that is itself a quotation once", async () => {
    const { premise } = await import("../src/data/Premise.ts")
    expect(premise({ title: '"MINISTERS OF GRACE"', text: "Belturbet walked in. Belturbet sat down at once." })).toMatch(/^"Ministers of Grace"/)
  })
})
