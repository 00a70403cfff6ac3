/**
 * Source files -> Story records (the `ingest` and `split-stories` steps of ARCHITECTURE.md §4).
 *
 * A source path is one of:
 *
 * - a **Project Gutenberg `.txt`** (it has a `START OF ... PROJECT GUTENBERG` marker): header and
 *   footer stripped (Gutenberg.ts), split into stories (Splitter.ts), cleaned (Clean.ts);
 * - a **`.txt` / `.md` file without PG markers**: one story; its title is the first `# Title`
 *   line, else the file name (dashes and underscores read as spaces); the text is the rest;
 * - a **`.jsonl`** of `{ "title": ..., "text": ... }` objects, one per line (other keys are
 *   ignored, blank lines skipped); a bad line fails with `file:line` and the Schema message;
 * - an **`.epub`**: one story per spine XHTML section, titled by its first h1/h2 (else its
 *   <title>), text from its <p> paragraphs; front and back matter (cover, table of contents,
 *   copyright, title page, colophon, navigation) and sections under 100 words are skipped;
 * - a **folder**: when any `.txt` in it is a PG book, every `.txt` is a book (its own
 *   anthology); otherwise each `.txt` / `.md` is one story of the folder's anthology. `.jsonl`
 *   and `.epub` files in the folder are read as their own sources. Sub-folders are not entered.
 *
 * The anthology name is the file or folder name without its extension. Files are read in name
 * order, so the result does not depend on the file system's listing order. The parsers are pure
 * functions of bytes; only {@link ingest} touches the disk.
 *
 * @example
 * ```ts
 * const stories = await Effect.runPromise(ingest("examples/anthologies")) // 12 books, 231 stories
 * const one = fromStoryFile("my-stories", "the-visit.md", "# The Visit\n\nShe came at noon.")
 * // { id: "…", anthology: "my-stories", title: "The Visit", text: "She came at noon.", words: 4 }
 * ```
 */
import { readdir, readFile, stat } from "node:fs/promises"
import { basename, extname, join } from "node:path"
import { Data, Effect, Result, Schema } from "effect"
import { cleanText } from "./Clean.ts"
import { decodeText, gutenbergBody, normalizeNewlines } from "./Gutenberg.ts"
import { epubSections, type EpubSection } from "./internal/epub.ts"
import { ZipFormatError } from "./internal/zip.ts"
import { MIN_STORY_WORDS, splitStories } from "./Splitter.ts"
import { makeStory, type Story } from "./Story.ts"
import { countWords } from "../text/WordCount.ts"

/** Why a source could not be read. */
export type IngestReason = "unreadable" | "unsupported" | "bad-record" | "bad-archive"

/** A source that could not be turned into stories; `file` is a path, or `path:line` for JSONL. */
export class IngestError extends Data.TaggedError("IngestError")<{
  readonly file: string
  readonly reason: IngestReason
  readonly detail: string
  readonly cause?: unknown
}> {
  override get message() {
    return `${this.file}: ${this.detail}`
  }
}

/** A `{ title, text }` line of a JSONL source. */
export const StoryLine = Schema.Struct({ title: Schema.String, text: Schema.String })

const PG_MARKER = /START\s+OF\s+(?:THIS|THE)\s+PROJECT\s+GUTENBERG|\*END\*?\s*THE\s+SMALL\s+PRINT/i

/** Does this text carry a Project Gutenberg start marker (in its first 64 KiB)? */
export const isGutenberg = (text: string): boolean => PG_MARKER.test(text.slice(0, 65536))

/** {@link isGutenberg} on the first 64 KiB of a file's bytes. */
const looksGutenberg = (bytes: Uint8Array): boolean => isGutenberg(decodeText(bytes.subarray(0, 65536)))

/** The anthology name of a path: its base name without the extension. */
export const anthologyOf = (path: string): string => basename(path.replace(/[\\/]+$/, ""), extname(path.replace(/[\\/]+$/, "")))

/** The stories of a Project Gutenberg book (already decoded or as bytes). */
export const fromGutenberg = (anthology: string, book: Uint8Array | string): Array<Story> => {
  const body = typeof book === "string" ? gutenbergBody(new TextEncoder().encode(book)) : gutenbergBody(book)
  return splitStories(body).map((s) => makeStory({ anthology, title: s.title, text: s.text }))
}

const HEADING = /^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$/

/** One story from a one-story file: title from the first `# Title` line, else the file name. */
export const fromStoryFile = (anthology: string, fileName: string, content: string): Story => {
  const lines = normalizeNewlines(content).split("\n")
  const first = lines.findIndex((l) => l.trim() !== "")
  const heading = first >= 0 ? HEADING.exec(lines[first] ?? "") : null
  const title = heading !== null ? (heading[1] ?? "").trim() : basename(fileName, extname(fileName)).replace(/[-_]+/g, " ").trim()
  const rest = heading !== null ? lines.slice(first + 1) : lines
  return makeStory({ anthology, title, text: cleanText(rest.join("\n")) })
}

/** The stories of a JSONL source; the first bad line fails with `file:line`. */
export const fromJsonl = (file: string, anthology: string, content: string): Result.Result<Array<Story>, IngestError> => {
  const decode = Schema.decodeUnknownResult(StoryLine)
  const stories: Array<Story> = []
  const lines = normalizeNewlines(content).split("\n")
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? ""
    if (line.trim() === "") continue
    let value: unknown
    try {
      value = JSON.parse(line)
    } catch (e) {
      return Result.fail(new IngestError({ file: `${file}:${i + 1}`, reason: "bad-record", detail: `not JSON (${e instanceof Error ? e.message : String(e)})`, cause: e }))
    }
    const decoded = decode(value)
    if (Result.isFailure(decoded)) {
      return Result.fail(new IngestError({ file: `${file}:${i + 1}`, reason: "bad-record", detail: decoded.failure.message.replace(/\s*\n\s*/g, " "), cause: decoded.failure }))
    }
    stories.push(makeStory({ anthology, title: decoded.success.title.trim(), text: cleanText(decoded.success.text) }))
  }
  return Result.succeed(stories)
}

const MATTER_FILE = /(?:^|[^a-z])(?:cover|toc|nav|contents|copyright|title-?page|colophon|imprint|frontmatter|backmatter)(?:[^a-z]|$)/i
const MATTER_TITLE = /^(?:cover|(?:table of )?contents|copyright(?: page)?|title ?page|colophon|imprint)$/i

/** Is this EPUB section front or back matter (by file name, manifest id, properties or title)? */
const isEpubMatter = (s: EpubSection): boolean =>
  /\bnav\b/.test(s.properties) || MATTER_FILE.test(basename(s.href)) || MATTER_FILE.test(s.id) || MATTER_TITLE.test(s.title.trim())

/** The stories of an EPUB: one per chapter-like spine section (see the module doc). */
export const fromEpub = (file: string, anthology: string, bytes: Uint8Array): Result.Result<Array<Story>, IngestError> => {
  let sections: Array<EpubSection>
  try {
    sections = epubSections(bytes)
  } catch (e) {
    if (e instanceof ZipFormatError) return Result.fail(new IngestError({ file, reason: "bad-archive", detail: e.reason, cause: e }))
    throw e
  }
  const stories: Array<Story> = []
  for (const s of sections) {
    if (isEpubMatter(s)) continue
    const paragraphs = s.paragraphs[0]?.trim() === s.title ? s.paragraphs.slice(1) : s.paragraphs
    const text = cleanText(paragraphs.join("\n\n"))
    if (countWords(text) < MIN_STORY_WORDS) continue
    stories.push(makeStory({ anthology, title: s.title, text }))
  }
  return Result.succeed(stories)
}

const unreadable = (file: string) => (e: unknown) =>
  new IngestError({ file, reason: "unreadable", detail: e instanceof Error ? e.message : String(e), cause: e })

const read = (file: string) => Effect.tryPromise({ try: () => readFile(file), catch: unreadable(file) })

/** One file: dispatch on its extension (and on PG markers for `.txt`). */
const ingestFile = (file: string, anthology: string = anthologyOf(file)): Effect.Effect<Array<Story>, IngestError> =>
  Effect.flatMap(read(file), (bytes) => {
    const ext = extname(file).toLowerCase()
    if (ext === ".epub") return Effect.fromResult(fromEpub(file, anthology, bytes))
    if (ext === ".jsonl") return Effect.fromResult(fromJsonl(file, anthology, decodeText(bytes)))
    if (ext === ".txt" || ext === ".md") {
      return Effect.succeed(ext === ".txt" && looksGutenberg(bytes) ? fromGutenberg(anthology, bytes) : [fromStoryFile(anthology, basename(file), decodeText(bytes))])
    }
    return Effect.fail(new IngestError({ file, reason: "unsupported", detail: `unsupported file type "${ext || "(none)"}"; expected .txt, .md, .jsonl or .epub` }))
  })

/** A folder: a set of PG books, or one story per file (see the module doc). */
const ingestFolder = (dir: string): Effect.Effect<Array<Story>, IngestError> =>
  Effect.gen(function*() {
    const entries = yield* Effect.tryPromise({ try: () => readdir(dir, { withFileTypes: true }), catch: unreadable(dir) })
    const files = entries.filter((e) => e.isFile() && !e.name.startsWith(".")).map((e) => e.name).sort()
    const ext = (name: string) => extname(name).toLowerCase()
    const texts = files.filter((f) => ext(f) === ".txt" || ext(f) === ".md")
    const contents = yield* Effect.forEach(texts, (f) => Effect.map(read(join(dir, f)), (bytes) => [f, bytes] as const))
    const books = contents.some(([f, bytes]) => ext(f) === ".txt" && looksGutenberg(bytes))
    const anthology = anthologyOf(dir)
    const stories: Array<Story> = []
    for (const [f, bytes] of contents) {
      if (books) {
        if (ext(f) === ".txt") stories.push(...fromGutenberg(anthologyOf(f), bytes))
      } else stories.push(fromStoryFile(anthology, f, decodeText(bytes)))
    }
    for (const f of files.filter((f) => ext(f) === ".jsonl" || ext(f) === ".epub")) {
      stories.push(...(yield* ingestFile(join(dir, f))))
    }
    return stories
  })

/** Reads a source path (file or folder) into stories; see the module doc for the formats. */
export const ingest = (path: string): Effect.Effect<Array<Story>, IngestError> =>
  Effect.flatMap(
    Effect.tryPromise({ try: () => stat(path), catch: unreadable(path) }),
    (s) => (s.isDirectory() ? ingestFolder(path) : ingestFile(path))
  )

/** Several sources, in the order given; their stories concatenated. */
export const ingestAll = (paths: ReadonlyArray<string>): Effect.Effect<Array<Story>, IngestError> =>
  Effect.map(Effect.forEach(paths, ingest), (lists) => lists.flat())
