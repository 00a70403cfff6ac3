/**
 * "Did you mean": the closest allowed word to a misspelt one, by optimal-string-alignment
 * (Damerau-Levenshtein with adjacent transpositions) distance, or else by prefix.
 */

/** Edits (insert, delete, substitute, swap adjacent) turning `a` into `b`. */
export const distance = (a: string, b: string): number => {
  // d[i][j]: distance between a[0, i) and b[0, j), kept as three rolling rows.
  let before: Array<number> = []
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let d = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, before[j - 2]! + 1)
      row.push(d)
    }
    before = prev
    prev = row
  }
  return prev[b.length]!
}

/**
 * The candidate `word` was most likely meant to be: the nearest within 2 edits (1 for words
 * shorter than 5), else the shortest one that `word` is a prefix of or that is a prefix of it.
 */
export const didYouMean = (word: string, candidates: Iterable<string>): string | undefined => {
  const lower = word.toLowerCase()
  const limit = word.length < 5 ? 1 : 2
  let best: { word: string; d: number } | undefined
  const prefixed: Array<string> = []
  for (const candidate of candidates) {
    const d = distance(lower, candidate.toLowerCase())
    if (d <= limit && (best === undefined || d < best.d)) best = { word: candidate, d }
    if (lower.length >= 3 && (candidate.startsWith(lower) || lower.startsWith(candidate))) prefixed.push(candidate)
  }
  return best?.word ?? prefixed.sort((x, y) => x.length - y.length)[0]
}
