/**
 * A book body seen as blocks: runs of non-blank lines, each with the number of blank lines
 * before it (its `gap`). Lines that carry no text of the book (scene-break rows of asterisks,
 * `[Illustration]` and `{image.jpg}` tags) count as blank, so a heading set off by a separator
 * row has the same gap as one set off by blank lines.
 */

export interface Block {
  /** Index of the block's first line in the body. */
  readonly start: number
  /** The block's lines, untrimmed (indentation carries meaning: verse, epigraphs). */
  readonly lines: ReadonlyArray<string>
  /** Blank (or blank-like) lines before the block; 0 at the start of the body. */
  readonly gap: number
}

const SEPARATOR = /^\s*(?:[*#~=.·•-]\s*){3,}$/
const IMAGE_TAG = /^\s*(?:\[(?:Illustration|Image|Frontispiece)[^\]]*\]|\{[^}]*\.(?:jpe?g|png|gif)\s*\})\s*$/i

/** A line that separates but says nothing: blank, a row of asterisks, an image tag. */
export const isBlankLike = (line: string): boolean =>
  line.trim() === "" || SEPARATOR.test(line) || IMAGE_TAG.test(line)

/** Splits a body into blocks. Multi-line `[Illustration: ...]` tags are dropped whole. */
export const toBlocks = (body: string): Array<Block> => {
  const lines = body.split("\n")
  const blocks: Array<Block> = []
  let gap = 0
  let i = 0
  while (i < lines.length) {
    const line = lines[i] ?? ""
    if (isBlankLike(line)) {
      gap++
      i++
      continue
    }
    if (/^\s*\[(?:Illustration|Image)\b/i.test(line) && !line.includes("]")) {
      // A tag spread over several lines: skip to its closing bracket.
      while (i < lines.length && !(lines[i] ?? "").includes("]")) i++
      i++
      gap++
      continue
    }
    const start = i
    const text: Array<string> = []
    while (i < lines.length && !isBlankLike(lines[i] ?? "")) text.push(lines[i++] ?? "")
    blocks.push({ start, lines: text, gap: blocks.length === 0 && start === gap ? 0 : gap })
    gap = 0
  }
  return blocks
}

/** The block's lines trimmed and joined with single spaces. */
export const blockText = (block: Block): string => block.lines.map((l) => l.trim()).join(" ")

const ROMAN = /^[IVXLCDM]+$/i

/** True for a bare section number: `I`, `IV.`, `12.`, `Chapter 3.IV.`, `PART II`. */
export const isSectionNumber = (text: string): boolean =>
  /^\s*(?:(?:chapter|part|section|book)\s+)?(?:[IVXLCDM]+|\d+)(?:\.(?:[IVXLCDM]+|\d+))*\.?\s*$/i.test(text)

const letters = (s: string): Array<string> => s.match(/\p{L}/gu) ?? []

/** Share of the letters that are capitals (0 when there are none). */
export const capsRatio = (s: string): number => {
  const ls = letters(s)
  if (ls.length === 0) return 0
  return ls.filter((c) => c === c.toUpperCase() && c !== c.toLowerCase()).length / ls.length
}

const SMALL_WORDS = new Set(["a", "an", "and", "as", "at", "by", "for", "from", "in", "into", "of", "on", "or", "the", "to", "with", "his", "her", "its", "de", "la", "le", "du", "von", "van"])

/** Title Case: every word longer than a small joining word starts with a capital. */
export const isTitleCase = (s: string): boolean => {
  const ws = s.replace(/[“”"‘’'()[\]]/g, "").split(/[\s—-]+/).filter((w) => /\p{L}/u.test(w))
  if (ws.length === 0 || ws.length > 12) return false
  return ws.every((w) => SMALL_WORDS.has(w.toLowerCase()) || /^\p{Lu}/u.test(w) || /^\d/.test(w))
}

/**
 * A block that could be a title: 1-3 short lines with real words, set in capitals or Title
 * Case, not ending like a clause (`,` `;` `:`), not a bare section number.
 */
export const isHeadingLike = (block: Block): boolean => {
  if (block.lines.length > 3) return false
  const lines = block.lines.map((l) => l.trim())
  if (lines.some((l) => l.length > 75)) return false
  const text = lines.join(" ")
  if (isSectionNumber(text)) return false
  if (/[,;:]$/.test(text)) return false
  if (!/\p{L}{2,}/u.test(text.replace(/\b[IVXLCDM]+\b/g, ""))) return false
  if (/^\[.*\]$/.test(text)) return false
  if (capsRatio(text) >= 0.7) return true
  return lines.length === 1 && isTitleCase(text) && !/[.!?]\s+\S/.test(text.replace(/\b(?:Mr|Mrs|Dr|St|Mme|M)\./g, ""))
}

/** True for a line whose letters are all in roman-numeral range, e.g. `XII`. */
export const isRoman = (s: string): boolean => ROMAN.test(s.trim().replace(/\.$/, ""))
