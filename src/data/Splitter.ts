/**
 * Splits the body of a short-story collection (Project Gutenberg boilerplate already
 * stripped, see Gutenberg.ts) into its stories.
 *
 * The rules are general on purpose: nothing here names a particular book, title, author or
 * ebook id, because the splitter is scored on collections it has never seen. Rules:
 *
 * 1. The body is read as blocks of non-blank lines, each with the count of blank lines before
 *    it (rows of asterisks and image tags count as blank).
 * 2. The book's heading gap G is the largest gap that sets off at least three title-like
 *    blocks (short lines in capitals or Title Case). Story headings get the deepest gaps in
 *    every collection we have seen; scene breaks inside stories get fewer blank lines.
 * 3. With a table of contents (a `CONTENTS` block and a list of short lines): entries are
 *    matched, in order, to title-like blocks after the list, first to blocks set off by G
 *    blank lines, then, for entries still unmatched, to any title-like block between the
 *    neighbouring matches. Titles compare after normalising case, punctuation, numbering
 *    (`ADVENTURE I.`, `VII.`, `1.`) and with an edit-distance tolerance, so typos and
 *    spelling differences between contents and body still match. Entries absent from the
 *    body are skipped; front/back matter and part labels in the contents are ignored. A
 *    G-gap title block between two matched stories that the contents missed is also a story.
 * 4. Without contents: every title-like block set off by G blank lines is a story heading,
 *    except front/back matter (preface, introduction, notes, index, ...) and part labels.
 * 5. Blocks with fewer blank lines before them never start a story: in-story section
 *    numbers, `Chapter 1.I.` markers, letters, headlines and capitals stay inside.
 * 6. A story runs to the next story heading, to a G-gap heading that is not a story, or to a
 *    back-matter heading (`NOTES`, `INDEX`, `THE END`, ...). Its opening paratext (subtitle,
 *    byline, source note, epigraph with attribution, section number) is dropped, as are
 *    footnotes, illustration tags and transcriber notes; the text is then cleaned (Clean.ts).
 *    A "story" under 100 words is a stray heading, not a story, and is dropped.
 *
 * @example
 * ```ts
 * import { readFileSync } from "node:fs"
 * import { gutenbergBody } from "./Gutenberg.ts"
 * const stories = splitStories(gutenbergBody(readFileSync("examples/anthologies/pg2776-ohenry-the-four-million.txt")))
 * stories[1] // { title: "THE GIFT OF THE MAGI", text: "One dollar and eighty-seven cents. ...", words: 2077 }
 * ```
 */
import { countWords } from "../text/WordCount.ts"
import { cleanText } from "./Clean.ts"
import { type Block, blockText, isHeadingLike, isSectionNumber, toBlocks } from "./internal/blocks.ts"
import { openingLength } from "./internal/opening.ts"
import { isBackMatter, isMatter, SAME_TITLE, stripNumbering, titleSimilarity } from "./internal/titles.ts"
import { findToc } from "./internal/toc.ts"

/** One story of a collection. `words` is counted with the project's one word counter. */
export interface SplitStory {
  readonly title: string
  readonly text: string
  readonly words: number
}

/** Stories shorter than this are stray headings (a part title, an empty section). */
export const MIN_STORY_WORDS = 100

const BYLINE = /^\s*by\s+\S/i

/** The title a heading block carries: numbering and bylines off, lines joined. */
const headingTitle = (block: Block): string => {
  const lines = block.lines.map((l) => l.trim()).filter((l, i) => i === 0 || !BYLINE.test(l))
  const titled = lines.length > 1 && isSectionNumber(lines[0] ?? "") ? lines.slice(1) : lines
  return stripNumbering(titled.join(" "))
}

/** Rule 2: the largest gap that sets off at least three title-like blocks. */
export const headingGap = (blocks: ReadonlyArray<Block>): number => {
  const gaps = blocks.filter((b, i) => i > 0 && isHeadingLike(b)).map((b) => b.gap)
  for (let g = Math.max(2, ...gaps); g > 2; g--) {
    if (gaps.filter((x) => x >= g).length >= 3) return g
  }
  return 2
}

/** Does the heading block carry this contents title (whole block or its first line)? */
const carries = (block: Block, entry: string): boolean =>
  titleSimilarity(headingTitle(block), entry) >= SAME_TITLE ||
  (block.lines.length > 1 && titleSimilarity(block.lines[0] ?? "", entry) >= SAME_TITLE)

/** Rule 3: block indices of story headings, aligned with the contents. */
const alignContents = (
  blocks: ReadonlyArray<Block>,
  entries: ReadonlyArray<string>,
  from: number,
  gap: number
): Array<number> => {
  const candidates: Array<number> = []
  for (let i = from; i < blocks.length; i++) {
    const b = blocks[i]
    if (b !== undefined && b.gap >= 1 && isHeadingLike(b)) candidates.push(i)
  }
  const strong = candidates.filter((i) => (blocks[i]?.gap ?? 0) >= gap)
  const matched: Array<number | undefined> = entries.map(() => undefined)
  // Pass 1: strong candidates, in order.
  let c = 0
  entries.forEach((entry, e) => {
    for (let k = c; k < strong.length; k++) {
      const idx = strong[k] ?? -1
      if (carries(blocks[idx]!, entry)) {
        matched[e] = idx
        c = k + 1
        return
      }
    }
  })
  // Pass 2: unmatched entries, any candidate between the neighbouring matches.
  entries.forEach((entry, e) => {
    if (matched[e] !== undefined) return
    const lo = matched.slice(0, e).reduce<number>((m, x) => (x === undefined ? m : Math.max(m, x)), from - 1)
    const hi = matched.slice(e + 1).find((x) => x !== undefined) ?? blocks.length
    const idx = candidates.find((i) => i > lo && i < hi && carries(blocks[i]!, entry))
    if (idx !== undefined) matched[e] = idx
  })
  const starts = matched.filter((x): x is number => x !== undefined)
  if (starts.length === 0) return starts
  // Strong title blocks between matched stories that the contents missed.
  const first = starts[0] ?? 0
  const last = starts[starts.length - 1] ?? 0
  const extra = strong.filter((i) => i > first && i < last && !starts.includes(i) && !isMatter(headingTitle(blocks[i]!)))
  return [...starts, ...extra].sort((a, b) => a - b)
}

/** Rule 4: block indices of story headings from heading structure alone. */
const headingsByGap = (blocks: ReadonlyArray<Block>, gap: number): Array<number> => {
  const starts: Array<number> = []
  blocks.forEach((b, i) => {
    if (i > 0 && b.gap >= gap && isHeadingLike(b) && !isMatter(headingTitle(b))) starts.push(i)
  })
  return starts
}

const FOOTNOTE = /^\s*(?:\[\s*(?:\d+|\*)\s*\]|\[(?:Footnote|Transcriber|Note\b|Editor)|\((?:\*\d+|\d+)\)\s)/i
const THE_END = /^\s*(?:the end|finis)\.?\s*$/i

/** Rule 6: the story text of the blocks after a heading. */
const storyText = (blocks: ReadonlyArray<Block>): string => {
  const body = blocks.slice(openingLength(blocks))
  const kept = body.filter((b) => !FOOTNOTE.test(b.lines[0] ?? "") && !THE_END.test(blockText(b)))
  const raw = kept.map((b) => b.lines.join("\n")).join("\n\n")
  return cleanText(raw.replace(/\[\d+\]|\(\*\d+\)/g, ""))
}

/** Splits a collection's body into its stories, in book order (see the module doc). */
export const splitStories = (body: string): Array<SplitStory> => {
  const blocks = toBlocks(body)
  const gap = headingGap(blocks)
  const toc = findToc(blocks, gap)
  const starts = toc === undefined ? headingsByGap(blocks, gap) : alignContents(blocks, toc.entries, toc.end, gap)
  const startSet = new Set(starts)
  const stories: Array<SplitStory> = []
  starts.forEach((start, k) => {
    const next = starts[k + 1] ?? blocks.length
    let end = start + 1
    for (; end < next; end++) {
      const b = blocks[end]!
      if (startSet.has(end)) break
      if (b.gap >= gap && isHeadingLike(b)) break
      if (b.gap >= 2 && isHeadingLike(b) && isBackMatter(headingTitle(b))) break
    }
    const text = storyText(blocks.slice(start + 1, end))
    const words = countWords(text)
    if (words >= MIN_STORY_WORDS) stories.push({ title: headingTitle(blocks[start]!), text, words })
  })
  return stories
}
