/**
 * What stands between a story's heading and its first sentence: a subtitle, a byline, a
 * bracketed source note, an epigraph with its attribution, a section number. These blocks
 * are paratext, not the story, and are dropped from the story text.
 *
 * An indented block (verse, a motto, a letter) is only dropped when an attribution closes the
 * indented run; a story may itself open with indented lines (a letter, a song), and those stay.
 */
import { type Block, blockText, capsRatio, isSectionNumber } from "./blocks.ts"

const BYLINE = /^\s*by\s+\S/i
const BRACKETED = /^\s*\[[\s\S]*\]\s*$/
/** An attribution at the end of a line: `--_Herrick_.`, `—Seneca`, `--NARRATIVE OF SHORTY.` */
const TRAILING_ATTRIBUTION = /(?:--|—)\s*_?[\p{Lu}][^.!?]{0,60}_?\.?\s*$/u
/** A whole-line attribution: `_Seneca_.`, `--Proverb`, `The Convert.` set far right. */
const ATTRIBUTION_LINE = /^\s*(?:--|—|_)/
/** A line that is only a name: up to five capitalised words and a full stop. */
const NAME_LINE = /^\s*(?:[\p{Lu}][\p{L}'’-]*\.?\s+){0,4}[\p{Lu}][\p{L}'’-]*\.\s*$/u

const indentOf = (line: string): number => line.length - line.trimStart().length

const isIndented = (block: Block): boolean => block.lines.every((l) => indentOf(l) >= 2)

const isAttribution = (block: Block, previous: Block | undefined): boolean => {
  if (!isIndented(block) && block.lines.length !== 1) return false
  if (TRAILING_ATTRIBUTION.test(blockText(block))) return true
  // Verse whose last line is a bare name: "...sparkle in the evening blue. / Giles Fletcher."
  if (block.lines.length > 2 && NAME_LINE.test(block.lines[block.lines.length - 1] ?? "")) return true
  if (block.lines.length !== 1) return false
  const line = block.lines[0] ?? ""
  if (ATTRIBUTION_LINE.test(line) || indentOf(line) >= 12) return true
  // A one-line, full-stopped note right after indented verse: "From the Unpublished Papers..."
  return previous !== undefined && isIndented(previous) && previous.lines.length > 1 && /\.\s*$/.test(line) && line.trim().length <= 70
}

/** A short title-like line right under the heading: `A CHAPTER IN ACCLIMATIZATION`. */
const isSubtitle = (block: Block): boolean =>
  block.lines.length === 1 && blockText(block).length <= 60 && capsRatio(blockText(block)) >= 0.7

/** How many of the story's first blocks are paratext (at most the first eight are examined). */
export const openingLength = (blocks: ReadonlyArray<Block>): number => {
  let cut = 0
  for (let i = 0; i < Math.min(blocks.length, 8); i++) {
    const block = blocks[i]
    if (block === undefined) break
    const text = blockText(block)
    if (isSectionNumber(text) || BRACKETED.test(text) || (BYLINE.test(text) && block.lines.length <= 2 && text.length <= 80)) {
      cut = i + 1
    } else if (i === cut && i === 0 && isSubtitle(block)) {
      cut = i + 1
    } else if (isIndented(block) || isAttribution(block, blocks[i - 1])) {
      if (isAttribution(block, blocks[i - 1])) cut = i + 1
    } else break
  }
  return cut
}
