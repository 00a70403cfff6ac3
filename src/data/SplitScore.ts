/**
 * Scores a split against a hand-checked answer key (examples/anthologies/toc/*.json).
 *
 * A key story is found when a split story has the same title (case-insensitive, quotes,
 * dashes, punctuation and whitespace normalised; numbering prefixes and trailing periods
 * off) and the key's `first_words` appear within the first `window` characters of that
 * story's normalised text. Each split story can find at most one key story.
 * precision = found / stories returned, recall = found / stories in the key.
 *
 * @example
 * ```ts
 * const s = scoreSplit(splitStories(body), key)
 * s.precision // 1
 * ```
 */
import { normalizeTitle, stripNumbering } from "./internal/titles.ts"

/** One answer-key entry. */
export interface KeyStory {
  readonly title: string
  readonly first_words: string
  readonly approx_words?: number
}

export interface SplitScore {
  readonly keyStories: number
  readonly returned: number
  readonly found: number
  readonly precision: number
  readonly recall: number
  /** Key titles not found, for diagnostics. */
  readonly missed: ReadonlyArray<string>
}

/** Characters of normalised story text searched for `first_words`. */
export const FIRST_WORDS_WINDOW = 200

/** Text normalisation for matching: accents, quotes, underscores, punctuation, case. */
export const normalizeForMatch = (s: string): string => normalizeTitle(s)

/** Scores split stories (title + text) against a key; see the module doc. */
export const scoreSplit = (
  stories: ReadonlyArray<{ readonly title: string; readonly text: string }>,
  key: ReadonlyArray<KeyStory>,
  window: number = FIRST_WORDS_WINDOW
): SplitScore => {
  const used = new Set<number>()
  const missed: Array<string> = []
  let found = 0
  for (const entry of key) {
    const title = normalizeTitle(stripNumbering(entry.title))
    const first = normalizeForMatch(entry.first_words)
    const hit = stories.findIndex((s, i) => {
      if (used.has(i) || normalizeTitle(stripNumbering(s.title)) !== title) return false
      const at = normalizeForMatch(s.text).indexOf(first)
      return at >= 0 && at <= window
    })
    if (hit >= 0) {
      used.add(hit)
      found++
    } else missed.push(entry.title)
  }
  return {
    keyStories: key.length,
    returned: stories.length,
    found,
    precision: stories.length === 0 ? 0 : found / stories.length,
    recall: key.length === 0 ? 1 : found / key.length,
    missed
  }
}
