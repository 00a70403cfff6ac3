/**
 * Title comparison: headings and contents entries are spelled differently (case, quotes,
 * dashes, numbering, typos), so titles are compared after normalisation and with an edit
 * distance tolerance.
 */

/** Lower case, accents off, quotes/underscores dropped, other punctuation -> one space. */
export const normalizeTitle = (s: string): string =>
  s
    .normalize("NFKD")
    .replace(/\p{M}/gu, "")
    .toLowerCase()
    .replace(/[_'’‘`"“”]/g, "")
    .replace(/[^\p{L}\p{N}]+/gu, " ")
    .trim()

const NUMBER = String.raw`(?:[IVXLCDM]+|\d+)`

/**
 * A heading's own title: without a numbering prefix (`ADVENTURE I.`, `VII.`, `1.`,
 * `Chapter 3.`), a trailing page number or year, a trailing period and surrounding blanks.
 */
export const stripNumbering = (s: string): string =>
  s
    .trim()
    .replace(new RegExp(String.raw`^(?:(?:adventure|chapter|story|tale|part|book|no\.?)\s+)?${NUMBER}(?:[.):]|\s+[-—–])\s*(?=\S)`, "i"), "")
    .replace(/(?:\s*\.{2,}\s*|\s{2,})\d+\s*$/, "")
    .replace(/\s*\(\s*\d{4}\s*\)\s*$/, "")
    .replace(/\.\s*$/, "")
    .trim()

/** Levenshtein distance (two rows). */
const distance = (a: string, b: string): number => {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const cur = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost)
    }
    prev = cur
  }
  return prev[b.length] ?? 0
}

/** 1 for equal normalised titles, falling with edit distance; spaces are ignored. */
export const titleSimilarity = (a: string, b: string): number => {
  const x = normalizeTitle(stripNumbering(a)).replace(/ /g, "")
  const y = normalizeTitle(stripNumbering(b)).replace(/ /g, "")
  if (x.length === 0 || y.length === 0) return 0
  return 1 - distance(x, y) / Math.max(x.length, y.length)
}

/** Titles are taken as the same at this similarity or above (one typo in ~6 letters). */
export const SAME_TITLE = 0.8

/** Front and back matter: headings that are not stories. */
export const MATTER =
  /^(?:(?:table of )?contents|preface|foreword|fore-word|introduction|introductory(?: note)?|prefatory(?: note)?|(?:author|editor|translator|publisher|redactor)s? ?(?:note|preface)s?|notes?(?: (?:to|on) .*)?|end ?notes|foot ?notes|dedication|acknowledge?ments?|appendix(?: .*)?|index|glossary|bibliography|errata|illustrations|list of illustrations|advertisements?|the end|finis|transcribers? notes?|biographical(?: note)?|memoir|postscript|epilogue|prologue|chronology)$/

/** Book/part/volume labels, e.g. `PART 1: GHOST STORIES OF AN ANTIQUARY`, `VOLUME 3`. */
export const PART_LABEL = /^(?:part|book|volume|vol|series)\s+(?:[ivxlcdm]+|\d+|one|two|three|four|five|six|first|second|third)\b/

/** Normalised title test for front/back matter or a part label. */
export const isMatter = (title: string): boolean => {
  const n = normalizeTitle(stripNumbering(title))
  return MATTER.test(n) || PART_LABEL.test(n)
}

/** Back matter that ends the last story (a subset of MATTER). */
export const isBackMatter = (title: string): boolean =>
  /^(?:notes?(?: (?:to|on) .*)?|end ?notes|foot ?notes|acknowledge?ments?|appendix(?: .*)?|index|glossary|bibliography|errata|advertisements?|the end|finis|transcribers? notes?)$/.test(
    normalizeTitle(stripNumbering(title))
  )
