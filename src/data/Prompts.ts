/**
 * Prompt records and the pure functions that build them (ARCHITECTURE.md §2, §4).
 *
 * A POLARIS prompt names an explicit length: `Write a N-word story about <premise>.` N is the
 * reference story's word count rounded to a step (`requestedWords`), so prompts fall on a grid
 * the length buckets can stratify. In the `excerpt` mode the reference is a story's opening,
 * cut at a paragraph boundary (`excerpt`).
 *
 * @example
 * ```ts
 * const n = requestedWords(2077, 100)           // 2100
 * promptText(n, "a young couple's Christmas")   // "Write a 2100-word story about a young couple's Christmas."
 * ```
 */
import { Schema } from "effect"
import { countWords } from "../text/WordCount.ts"

/** One prompt derived from one story (`bucket`: optional, for records that carry theirs). */
export const Prompt = Schema.Struct({
  id: Schema.String,
  story_id: Schema.String,
  premise: Schema.String,
  requested_words: Schema.Int.check(Schema.isGreaterThan(0)),
  bucket: Schema.optionalKey(Schema.String)
})
export type Prompt = typeof Prompt.Type

/**
 * The length a prompt asks for: `words` rounded to the nearest multiple of `roundTo`, and at
 * least one step (a 30-word story with step 100 asks for 100 words). A step below 1 counts as 1.
 *
 * @example
 * requestedWords(2077, 100) // 2100
 * requestedWords(2049, 100) // 2000
 * requestedWords(30, 100)   // 100
 */
export const requestedWords = (words: number, roundTo: number): number => {
  const step = Math.max(1, Math.round(roundTo))
  return Math.max(step, Math.round(words / step) * step)
}

/**
 * The prompt text, exactly as the paper phrases it; N has no thousands separator.
 *
 * @example
 * promptText(4000, "a lighthouse keeper") // "Write a 4000-word story about a lighthouse keeper."
 */
export const promptText = (requested: number, premise: string): string =>
  `Write a ${Math.round(requested)}-word story about ${premise.trim().replace(/[.\s]+$/, "")}.`

const PARAGRAPH = /\n[ \t]*\n+/
/** A sentence ends at . ! ? (with closing quotes/brackets) followed by space and a capital or opening quote. */
const SENTENCE_END = /(?<=[.!?…]["'”’)\]]*)\s+(?=["'“‘(\[]?[\p{Lu}\p{N}])/u

/** Titles and abbreviations whose period does not end a sentence. */
const ABBREVIATION = /(?:^|[\s("'“‘])(?:Mr|Mrs|Ms|Dr|St|Mme|Mlle|Messrs|Rev|Prof|Capt|Col|Gen|Jr|Sr|No|vs|[A-Z])\.$/

/** The sentences of a paragraph; a period after "Mr", "Dr", "St" or an initial does not end one. */
export const sentences = (paragraph: string): Array<string> => {
  const out: Array<string> = []
  for (const piece of paragraph.split(SENTENCE_END)) {
    const last = out[out.length - 1]
    if (last !== undefined && ABBREVIATION.test(last)) out[out.length - 1] = `${last} ${piece.trim()}`
    else out.push(piece.trim())
  }
  return out.filter((s) => s.length > 0)
}

/** The first `maxWords` words of a text (a hard cut at a word boundary; the last resort). */
const firstWords = (text: string, maxWords: number): string => {
  const re = /[\p{L}\p{N}]+(?:['’\-‐][\p{L}\p{N}]+)*/gu
  let n = 0
  let end = 0
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    if (++n > maxWords) break
    end = m.index + m[0].length
  }
  return text.slice(0, end)
}

/**
 * A story's opening that fits in `maxWords` (counted with `countWords`): whole paragraphs,
 * as many as fit. Only when the first paragraph alone is too long is it cut, at a sentence
 * boundary (and only when its first sentence alone is too long, at a word boundary). A text
 * that fits is returned unchanged.
 *
 * @example
 * excerpt("One two.\n\nThree four five.", 3) // "One two."
 * excerpt("One two. Three four five.", 3)   // "One two."
 */
export const excerpt = (text: string, maxWords: number): string => {
  const limit = Math.max(0, Math.floor(maxWords))
  if (countWords(text) <= limit) return text.trim()
  const paragraphs = text.trim().split(PARAGRAPH)
  const kept: Array<string> = []
  let used = 0
  for (const p of paragraphs) {
    const n = countWords(p)
    if (used + n > limit) break
    kept.push(p)
    used += n
  }
  if (kept.length > 0) return kept.join("\n\n")
  const first = paragraphs[0] ?? ""
  const out: Array<string> = []
  used = 0
  for (const s of sentences(first)) {
    const n = countWords(s)
    if (used + n > limit) break
    out.push(s)
    used += n
  }
  return out.length > 0 ? out.join(" ") : firstWords(first, limit)
}
