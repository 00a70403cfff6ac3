import { readdirSync, readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { cleanText } from "../src/data/Clean.ts"
import { decodeText, gutenbergBody, stripGutenberg } from "../src/data/Gutenberg.ts"
import { type KeyStory, scoreSplit } from "../src/data/SplitScore.ts"
import { splitStories } from "../src/data/Splitter.ts"
import { countWords } from "../src/text/WordCount.ts"

const dir = fileURLToPath(new URL("../examples/anthologies/", import.meta.url))
const books = readdirSync(dir).filter((f) => f.endsWith(".txt")).sort()

describe("splitter against the bundled answer keys", () => {
  const rows = books.map((file) => {
    const stories = splitStories(gutenbergBody(readFileSync(dir + file)))
    const key = JSON.parse(readFileSync(`${dir}toc/${file.replace(/\.txt$/, ".json")}`, "utf8")) as Array<KeyStory>
    return { file, stories, score: scoreSplit(stories, key) }
  })

  it("finds the stories of every book (precision and recall >= 0.9 per book, >= 0.97 overall)", () => {
    const table = rows.map(({ file, score }) => ({
      book: file.replace(/\.txt$/, ""),
      key: score.keyStories,
      returned: score.returned,
      found: score.found,
      precision: Number(score.precision.toFixed(3)),
      recall: Number(score.recall.toFixed(3))
    }))
    const found = rows.reduce((n, r) => n + r.score.found, 0)
    const returned = rows.reduce((n, r) => n + r.score.returned, 0)
    const inKey = rows.reduce((n, r) => n + r.score.keyStories, 0)
    console.table(table)
    console.log(`overall: key ${inKey}, returned ${returned}, found ${found}, precision ${(found / returned).toFixed(3)}, recall ${(found / inKey).toFixed(3)}`)
    for (const { file, score } of rows) {
      expect({ file, precision: score.precision >= 0.9, recall: score.recall >= 0.9, missed: score.missed }).toEqual({
        file,
        precision: true,
        recall: true,
        missed: score.missed
      })
    }
    expect(found / returned).toBeGreaterThanOrEqual(0.97)
    expect(found / inKey).toBeGreaterThanOrEqual(0.97)
    expect(inKey).toBe(231)
  })

  it("counts words with the project's word counter and leaves no boilerplate in stories", () => {
    for (const { stories } of rows) {
      for (const s of stories) {
        expect(s.words).toBe(countWords(s.text))
        expect(s.text).not.toMatch(/Project Gutenberg|\[Illustration|_[A-Za-z]+_/)
      }
    }
  })

  it("keeps traps inside their stories", () => {
    const titles = (part: string) => rows.find((r) => r.file.includes(part))!.stories.map((s) => s.title)
    // A newspaper headline repeating a story title, and in-story sections, do not split.
    expect(titles("dubliners").filter((t) => /painful case/i.test(t))).toHaveLength(1)
    expect(titles("garden-party").some((t) => /chapter/i.test(t))).toBe(false)
    // Back matter after the last story is not a story.
    expect(titles("poe").some((t) => /notes/i.test(t))).toBe(false)
    expect(titles("clovis").some((t) => /acknowledg/i.test(t))).toBe(false)
  })
})

describe("Gutenberg stripper", () => {
  const wrap = (start: string, end: string) =>
    `The Project Gutenberg EBook of X\nLicence blah\n\n${start}\n\nProduced by Someone\nand friends\n\n\nTHE BOOK\n\nIt was a dark night.\n\n${end}\n\nLicence text.\n`
  it.each([
    ["*** START OF THIS PROJECT GUTENBERG EBOOK X ***", "*** END OF THIS PROJECT GUTENBERG EBOOK X ***"],
    ["***START OF THE PROJECT GUTENBERG EBOOK X***", "***END OF THE PROJECT GUTENBERG EBOOK X***"],
    ["*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*", "End of the Project Gutenberg EBook of X"],
    ["*** START OF THIS PROJECT GUTENBERG EBOOK X ***", "End of Project Gutenberg's X, by Y"],
    ["**The Project Gutenberg Etext of X** gutenberg.net\n*END*THE SMALL PRINT!", "End of this Project Gutenberg Etext of X"]
  ])("%s ... %s", (start, end) => {
    expect(stripGutenberg(wrap(start, end))).toBe("THE BOOK\n\nIt was a dark night.\n")
  })

  it("stops at the 'End of the Project Gutenberg EBook' line before the end marker", () => {
    const text = "*** START OF THIS PROJECT GUTENBERG EBOOK X ***\nBody.\n\nEnd of the Project Gutenberg EBook of X\n\n*** END OF THIS PROJECT GUTENBERG EBOOK X ***\nlicence"
    expect(stripGutenberg(text)).toBe("Body.\n")
  })

  it("decodes UTF-8 with a BOM and normalises CRLF and CR", () => {
    const bytes = new Uint8Array([0xef, 0xbb, 0xbf, ...new TextEncoder().encode("“Hi”\r\nthere\rnow")])
    const text = decodeText(bytes)
    expect(text).toBe("“Hi”\r\nthere\rnow")
    expect(gutenbergBody(bytes)).toBe("“Hi”\nthere\nnow\n")
  })

  it("reads bytes that are not UTF-8 as latin-1 / windows-1252", () => {
    // "café – naïve" in windows-1252: é = E9, en dash = 96, ï = EF
    const bytes = new Uint8Array([0x63, 0x61, 0x66, 0xe9, 0x20, 0x96, 0x20, 0x6e, 0x61, 0xef, 0x76, 0x65])
    expect(decodeText(bytes)).toBe("café – naïve")
  })

  it("returns text without markers whole", () => {
    expect(stripGutenberg("Just a story.\r\n")).toBe("Just a story.\n")
  })

  it("strips the bundled files' boilerplate", () => {
    for (const file of books) {
      const body = gutenbergBody(readFileSync(dir + file))
      expect(body).not.toMatch(/\*\*\* ?(START|END) OF|End of (the )?Project Gutenberg|\r|^\uFEFF/)
    }
  })
})

describe("cleaning", () => {
  it("straightens quotes, keeps em dashes, drops italics, re-flows paragraphs", () => {
    expect(cleanText("“Well,”  said _he_—‘no,’\nsmiling.\n\n\n\nNext  line\tend.")).toBe(
      "\"Well,\" said he—'no,' smiling.\n\nNext line end."
    )
  })

  it("keeps line breaks of indented verse and drops its indentation", () => {
    expect(cleanText("Prose runs\non here.\n\n     Roses are red,\n     Violets blue.\n\nMore.")).toBe(
      "Prose runs on here.\n\nRoses are red,\nViolets blue.\n\nMore."
    )
  })

  it("keeps -- dashes and inner underscores-free text as is", () => {
    expect(cleanText("TRUE!--nervous--very")).toBe("TRUE!--nervous--very")
  })
})
