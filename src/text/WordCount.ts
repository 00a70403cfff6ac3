/**
 * The one word counter of the project (ARCHITECTURE.md §4): a word is a maximal run of letters
 * or digits, with inner apostrophes and hyphens (`don't`, `twenty-one`, `o'clock`). Length
 * ratios, buckets, rewards and filters all count with this function, so they agree.
 */

const WORD = /[\p{L}\p{N}]+(?:['’\-‐][\p{L}\p{N}]+)*/gu

/** The words of a text, in order. */
export const words = (text: string): Array<string> => text.match(WORD) ?? []

/** How many words a text has. */
export const countWords = (text: string): number => {
  let n = 0
  WORD.lastIndex = 0
  while (WORD.exec(text) !== null) n++
  return n
}
