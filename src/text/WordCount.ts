/**
 * The one word counter of the project (ARCHITECTURE.md §4): a word is a maximal run of letters
 * or digits, with inner apostrophes and hyphens (`don't`, `twenty-one`, `o'clock`). Length
 * ratios, buckets, rewards, filters and premises all count with these functions, so they agree.
 */

// Only ever used through matchAll / match, which never move its lastIndex: no shared state.
const WORD = /[\p{L}\p{N}]+(?:['’\-‐][\p{L}\p{N}]+)*/gu

/** The words of a text, in order. */
export const words = (text: string): Array<string> => text.match(WORD) ?? []

/** How many words a text has. */
export const countWords = (text: string): number => {
  let n = 0
  for (const _ of text.matchAll(WORD)) n++
  return n
}

/** The prefix of `text` that holds its first `n` words (the whole text when it has fewer). */
export const firstWords = (text: string, n: number): string => {
  let count = 0
  for (const m of text.matchAll(WORD)) if (++count > n) return text.slice(0, m.index)
  return text
}

/** Each word with where it starts in `text` (for code that reads the gaps between words). */
export const wordSpans = (text: string): Array<{ readonly word: string; readonly index: number }> =>
  Array.from(text.matchAll(WORD), (m) => ({ word: m[0], index: m.index }))
