import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Effect, Exit, Result, Schema } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { sha256 } from "../src/dag/Canonical.ts"
import { gutenbergBody } from "../src/data/Gutenberg.ts"
import { fromEpub, fromJsonl, fromStoryFile, type IngestError, ingest, ingestAll } from "../src/data/Ingest.ts"
import { crc32, listEntries, readEntry } from "../src/data/internal/zip.ts"
import { splitStories } from "../src/data/Splitter.ts"
import { makeStory, Story, storyId } from "../src/data/Story.ts"
import { countWords } from "../src/text/WordCount.ts"
import { tempDir } from "./support/store.ts"
import { type Chapter, writeEpub, writeZip } from "./support/zip.ts"

const corpus = fileURLToPath(new URL("../examples/anthologies/", import.meta.url))
const scratch = tempDir("polaris-ingest-")
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

/** A paragraph of `n` distinct words, "w0 w1 ..." with a tag so stories differ. */
const para = (tag: string, n: number) => Array.from({ length: n }, (_, i) => `${tag}${i}`).join(" ") + "."

const failureOf = <A>(effect: Effect.Effect<A, IngestError>): Promise<IngestError> =>
  Effect.runPromiseExit(effect).then((exit) => {
    if (Exit.isSuccess(exit)) throw new Error("expected a failure")
    const reason = exit.cause.reasons[0]
    if (reason?._tag !== "Fail") throw new Error(`expected a typed failure, got ${String(exit.cause)}`)
    return reason.error
  })

describe("Story ids", () => {
  it("are the first 16 hex digits of sha256(anthology \\n title \\n text)", () => {
    const s = makeStory({ anthology: "a", title: "T", text: "Some words here." })
    expect(s.id).toBe(sha256("a\nT\nSome words here.").slice(0, 16))
    expect(s.id).toBe(storyId("a", "T", "Some words here."))
    expect(s.words).toBe(3)
    expect(Schema.decodeUnknownSync(Story)(JSON.parse(JSON.stringify(s)))).toEqual(s)
    // Each part moves the id; the separator keeps ("ab", "c") apart from ("a", "bc").
    expect(storyId("ab", "c", "x")).not.toBe(storyId("a", "bc", "x"))
    expect(storyId("a", "T", "x")).not.toBe(storyId("b", "T", "x"))
  })
})

describe("zip reader", () => {
  it("computes the standard CRC-32 check value", () => {
    expect(crc32(new TextEncoder().encode("123456789"))).toBe(0xcbf43926)
  })

  it("reads stored and deflated entries and refuses a corrupt one", () => {
    const zip = writeZip([
      { name: "a.txt", data: "stored text", method: 0 },
      { name: "b.txt", data: "deflated ".repeat(100), method: 8 }
    ])
    expect(listEntries(zip).map((e) => [e.name, e.method, e.size])).toEqual([["a.txt", 0, 11], ["b.txt", 8, 900]])
    const bad = zip.slice()
    const at = 30 + "a.txt".length // first data byte of a.txt
    bad[at] = bad[at]! ^ 0xff
    const [a, b] = listEntries(bad)
    expect(new TextDecoder().decode(readEntry(zip, a!))).toBe("stored text")
    expect(new TextDecoder().decode(readEntry(zip, b!))).toBe("deflated ".repeat(100))
    expect(() => readEntry(bad, a!)).toThrow(/a\.txt: CRC-32 mismatch/)
    // Not an EPUB at all (no container.xml) is a bad archive too, not a crash.
    const none = fromEpub("x.epub", "x", zip)
    expect(Result.isFailure(none) && none.failure.reason).toBe("bad-archive")
  })
})

describe("EPUB", () => {
  const chapters: ReadonlyArray<Chapter> = [
    { file: "cover.xhtml", title: "Cover", paragraphs: [para("cover", 150)] },
    { file: "nav.xhtml", title: "Contents", paragraphs: [para("nav", 150)], properties: "nav" },
    { file: "titlepage.xhtml", title: "Test Book", paragraphs: [para("tp", 150)] },
    { file: "copyright.xhtml", title: "Copyright", paragraphs: [para("copy", 150)] },
    {
      file: "ch01.xhtml",
      title: "The First &amp; Best",
      paragraphs: ["&#8220;Hello,&#8221; she said &mdash; <em>softly</em>.", para("alpha", 120), `Caf&eacute; at &#x31;0 o&#8217;clock.`]
    },
    { file: "chapter 2.xhtml", title: "Second Story", heading: "h2", paragraphs: [para("beta", 60), para("gamma", 60)] },
    { file: "ch03.xhtml", title: "Only In Title", heading: "title", paragraphs: [para("delta", 130)] },
    { file: "short.xhtml", title: "A Note", paragraphs: [para("short", 40)] }
  ]

  for (const method of [0, 8] as const) {
    it(`reads chapters from a ${method === 0 ? "stored" : "deflated"} archive, skipping front matter and short sections`, async () => {
      const file = join(scratch, `book-${method}.epub`)
      writeFileSync(file, writeEpub(chapters, method))
      const stories = await Effect.runPromise(ingest(file))
      expect(stories.map((s) => s.title)).toEqual(["The First & Best", "Second Story", "Only In Title"])
      expect(stories.every((s) => s.anthology === `book-${method}`)).toBe(true)
      const first = stories[0]!
      expect(first.text.split("\n\n")[0]).toBe('"Hello," she said — softly.')
      expect(first.text.split("\n\n")[2]).toBe("Café at 10 o'clock.")
      expect(first.words).toBe(countWords(first.text))
      expect(first.words).toBe(4 + 120 + 4)
      expect(stories[1]!.text).toBe(`${para("beta", 60)}\n\n${para("gamma", 60)}`)
    })
  }

  it("gives the same stories for stored and deflated archives", async () => {
    const [a, b] = await Promise.all([0, 8].map((m) => Effect.runPromise(ingest(join(scratch, `book-${m}.epub`)))))
    expect(a!.map((s) => [s.title, s.text])).toEqual(b!.map((s) => [s.title, s.text]))
  })
})

describe("JSONL", () => {
  it("reads {title, text} lines, skipping blank lines and ignoring other keys", async () => {
    const file = join(scratch, "mine.jsonl")
    writeFileSync(file, [JSON.stringify({ title: "One", text: "First  story,\ntold “well”.", author: "x" }), "", JSON.stringify({ title: "Two", text: "Second." })].join("\n") + "\n")
    const stories = await Effect.runPromise(ingest(file))
    expect(stories.map((s) => [s.anthology, s.title, s.text, s.words])).toEqual([
      ["mine", "One", 'First story, told "well".', 4],
      ["mine", "Two", "Second.", 1]
    ])
  })

  it("names file:line of a record that fails the schema, or is not JSON", async () => {
    const file = join(scratch, "bad.jsonl")
    writeFileSync(file, [JSON.stringify({ title: "One", text: "ok" }), "", JSON.stringify({ title: "Two", text: 3 })].join("\n"))
    const e = await failureOf(ingest(file))
    expect(e._tag).toBe("IngestError")
    expect(e.reason).toBe("bad-record")
    expect(e.file).toBe(`${file}:3`)
    expect(e.message).toMatch(/bad\.jsonl:3: .*text/)
    const r = fromJsonl("x.jsonl", "x", '{"title": "a", "text": "b"}\n{"title": "a",')
    expect(Result.isFailure(r) && [r.failure.file, r.failure.reason, r.failure.detail.startsWith("not JSON")]).toEqual(["x.jsonl:2", "bad-record", true])
  })
})

describe("one-story-per-file folders", () => {
  it("takes the title from the first # heading, else the file name", async () => {
    const dir = join(scratch, "my-stories")
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, "b-visit.md"), "\n# The Visit\n\nShe came\nat noon.\n\nHe left.\n")
    writeFileSync(join(dir, "a_night_walk.txt"), "It was dark.   Very dark.\n")
    writeFileSync(join(dir, "notes.json"), "{}") // neither .txt nor .md: ignored
    const stories = await Effect.runPromise(ingest(dir))
    expect(stories.map((s) => [s.anthology, s.title, s.text])).toEqual([
      ["my-stories", "a night walk", "It was dark. Very dark."],
      ["my-stories", "The Visit", "She came at noon.\n\nHe left."]
    ])
    expect(fromStoryFile("x", "f.md", "## Sub Title ##\ntext").title).toBe("Sub Title")
  })

  it("fails with a tagged error naming the path", async () => {
    const missing = await failureOf(ingest(join(scratch, "nope")))
    expect([missing.reason, missing.file]).toEqual(["unreadable", join(scratch, "nope")])
    writeFileSync(join(scratch, "x.pdf"), "%PDF")
    const unsupported = await failureOf(ingest(join(scratch, "x.pdf")))
    expect(unsupported.reason).toBe("unsupported")
  })
})

describe("the bundled corpus", () => {
  const books = readdirSync(corpus).filter((f) => f.endsWith(".txt")).sort()

  it("a Gutenberg .txt gives the splitter's stories, named after the file", async () => {
    const file = join(corpus, "pg2776-ohenry-the-four-million.txt")
    const stories = await Effect.runPromise(ingest(file))
    const split = splitStories(gutenbergBody(readFileSync(file)))
    expect(stories.map((s) => [s.title, s.text, s.words])).toEqual(split.map((s) => [s.title, s.text, s.words]))
    expect(new Set(stories.map((s) => s.anthology))).toEqual(new Set(["pg2776-ohenry-the-four-million"]))
  })

  it("a folder of Gutenberg books: 231 stories with distinct, stable ids", async () => {
    const stories = await Effect.runPromise(ingest(corpus))
    expect(stories).toHaveLength(231)
    expect(new Set(stories.map((s) => s.id)).size).toBe(231)
    expect(new Set(stories.map((s) => s.anthology))).toEqual(new Set(books.map((b) => b.replace(/\.txt$/, ""))))
    for (const s of stories) {
      expect(s.id).toBe(storyId(s.anthology, s.title, s.text))
      expect(s.words).toBe(countWords(s.text))
    }
    // Same ids on a second read and when the books are given one by one, in another order.
    const again = await Effect.runPromise(ingestAll([...books].reverse().map((b) => join(corpus, b))))
    expect(new Set(again.map((s) => s.id))).toEqual(new Set(stories.map((s) => s.id)))
    // A fixed id pins the hash inputs: anthology, title and cleaned text.
    const magi = stories.find((s) => s.title === "THE GIFT OF THE MAGI")!
    expect(magi.id).toBe(sha256(`pg2776-ohenry-the-four-million\nTHE GIFT OF THE MAGI\n${magi.text}`).slice(0, 16))
  })

  it("a folder with one Gutenberg book among other .txt files reads every .txt as a book", async () => {
    const dir = join(scratch, "shelf")
    mkdirSync(dir, { recursive: true })
    copyFileSync(join(corpus, "pg2814-joyce-dubliners.txt"), join(dir, "dubliners.txt"))
    writeFileSync(join(dir, "zz.jsonl"), JSON.stringify({ title: "Extra", text: "An extra story." }) + "\n")
    const stories = await Effect.runPromise(ingest(dir))
    expect(stories.at(-1)!.anthology).toBe("zz")
    expect(stories.slice(0, -1).every((s) => s.anthology === "dubliners")).toBe(true)
    expect(stories.length).toBeGreaterThan(10)
  })
})
