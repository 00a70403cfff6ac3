/**
 * The book's own table of contents: a `CONTENTS` / `Contents:` / `TABLE OF CONTENTS` block
 * near the front, followed by a list of short lines. Entries lose page numbers, numbering,
 * years and author lines (`_Mark Twain_`, `by Mark Twain`); front/back matter and part
 * labels are dropped, since they are not stories.
 */
import type { Block } from "./blocks.ts"
import { isMatter, stripNumbering } from "./titles.ts"

export interface Toc {
  /** Story titles, in contents order. */
  readonly entries: ReadonlyArray<string>
  /** Index of the first block after the contents list. */
  readonly end: number
}

const HEADER = /^\s*(?:table\s+of\s+)?contents\s*[.:]?\s*$/i

/** A contents line that names a person, not a story: `_Mark Twain_`, `by Mark Twain`. */
const AUTHOR_LINE = /^\s*(?:_[^_]+_\.?|by\s+.+)\s*$/i

/** A block that reads like prose (long lines), which ends the list. */
const isProse = (lines: ReadonlyArray<string>): boolean =>
  lines.some((l) => l.trim().length > 80) || lines.filter((l) => l.trim().length > 60).length >= 2

/**
 * Finds the contents within the first 40% of the blocks. The list runs from the header to the
 * first block with prose, or the first block set off by a heading-sized gap (`headingGap`)
 * once entries have been read.
 */
export const findToc = (blocks: ReadonlyArray<Block>, headingGap: number): Toc | undefined => {
  const limit = Math.ceil(blocks.length * 0.4)
  for (let b = 0; b < limit; b++) {
    const block = blocks[b]
    if (block === undefined || !HEADER.test(block.lines[0] ?? "")) continue
    const entries: Array<string> = []
    let end = b + 1
    const take = (lines: ReadonlyArray<string>) => {
      for (const line of lines) {
        if (line.trim() === "" || AUTHOR_LINE.test(line)) continue
        const title = stripNumbering(line)
        if (title !== "" && !isMatter(title)) entries.push(title)
      }
    }
    take(block.lines.slice(1))
    for (; end < blocks.length; end++) {
      const next = blocks[end]
      if (next === undefined) break
      if (entries.length > 0 && next.gap >= headingGap) break
      if (isProse(next.lines)) break
      take(next.lines)
    }
    if (entries.length >= 2) return { entries, end }
  }
  return undefined
}

