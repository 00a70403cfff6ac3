/**
 * Stories -> the training set and the held-out set (the `dataset` step of ARCHITECTURE.md §4),
 * as pure functions: length filters, de-duplication, and a deterministic split by id hash.
 *
 * - **Filters**: a story is kept when `min_words <= words <= max_words` (either bound optional).
 * - **De-duplication** (the first occurrence is kept): the same normalised text anywhere (case,
 *   punctuation and spacing ignored: the texts' word sequences compared), or, within one
 *   anthology, the same normalised title and the same first 200 characters of normalised text
 *   (a story printed twice with small edits further on).
 * - **Split**: held out when `u(id) < heldout_fraction`, with u(id) = the first 8 hex digits of
 *   sha256("split:" + id) read as an integer, divided by 2^32. A story's side depends on its id
 *   alone: not on the input order, the other stories or the run.
 *
 * @example
 * ```ts
 * // stories: the 231 of the bundled corpus (Ingest.ts)
 * const { train, heldout, report } = prepareDataset(stories, { min_words: 500, max_words: 4000, heldout_fraction: 0.1 })
 * report // { input: 231, too_short: 0, too_long: 64, duplicate_text: 0, duplicate_title: 0, train: 149, heldout: 18 }
 * ```
 */
import { Schema } from "effect"
import { sha256 } from "../dag/Canonical.ts"
import { words } from "../text/WordCount.ts"
import type { Story } from "./Story.ts"

/** Dataset parameters, as a recipe gives them. */
export const DatasetParams = Schema.Struct({
  /** Shortest story kept, in words (inclusive). Default: no lower bound. */
  min_words: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))),
  /** Longest story kept, in words (inclusive). Default: no upper bound. */
  max_words: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))),
  /** Share of stories held out for evaluation, in [0, 1]. Default 0 (none). */
  heldout_fraction: Schema.optionalKey(Schema.Number.check(Schema.isBetween({ minimum: 0, maximum: 1 })))
})
export type DatasetParams = typeof DatasetParams.Type

/** Counts of what each step kept and dropped. */
export interface DatasetReport {
  readonly input: number
  readonly too_short: number
  readonly too_long: number
  readonly duplicate_text: number
  readonly duplicate_title: number
  readonly train: number
  readonly heldout: number
}

/** Stories kept by the word-count bounds, and the counts of those dropped. */
export const filterByWords = (
  stories: ReadonlyArray<Story>,
  bounds: { readonly min_words?: number; readonly max_words?: number }
): { readonly kept: Array<Story>; readonly tooShort: number; readonly tooLong: number } => {
  const min = bounds.min_words ?? 0
  const max = bounds.max_words ?? Infinity
  let tooShort = 0
  let tooLong = 0
  const kept: Array<Story> = []
  for (const s of stories) {
    if (s.words < min) tooShort++
    else if (s.words > max) tooLong++
    else kept.push(s)
  }
  return { kept, tooShort, tooLong }
}

/** Text compared for duplicates: its words, lower-cased, joined by single spaces. */
export const normalizeForDedup = (text: string): string => words(text.toLowerCase()).join(" ")

/** Stories without duplicates (the first occurrence kept), and the counts of each kind dropped. */
export const dedupe = (
  stories: ReadonlyArray<Story>
): { readonly kept: Array<Story>; readonly duplicateText: number; readonly duplicateTitle: number } => {
  const texts = new Set<string>()
  const titles = new Set<string>()
  let duplicateText = 0
  let duplicateTitle = 0
  const kept: Array<Story> = []
  for (const s of stories) {
    const text = normalizeForDedup(s.text)
    // JSON of a tuple: no separator can collide with the parts.
    const titleKey = JSON.stringify([s.anthology, normalizeForDedup(s.title), text.slice(0, 200)])
    if (texts.has(text)) duplicateText++
    else if (titles.has(titleKey)) duplicateTitle++
    else {
      kept.push(s)
      texts.add(text)
      titles.add(titleKey)
    }
  }
  return { kept, duplicateText, duplicateTitle }
}

/** u(id) in [0, 1): the first 8 hex digits of sha256("split:" + id) / 2^32. */
export const splitPoint = (id: string): number => parseInt(sha256(`split:${id}`).slice(0, 8), 16) / 2 ** 32

/** Is this story held out at this fraction? (u(id) < fraction; see the module doc.) */
export const isHeldOut = (id: string, fraction: number): boolean => splitPoint(id) < fraction

/** Train and held-out stories, each in input order. */
export const splitByHash = (
  stories: ReadonlyArray<Story>,
  heldoutFraction: number
): { readonly train: Array<Story>; readonly heldout: Array<Story> } => {
  const train: Array<Story> = []
  const heldout: Array<Story> = []
  for (const s of stories) (isHeldOut(s.id, heldoutFraction) ? heldout : train).push(s)
  return { train, heldout }
}

/** Filters, de-duplicates, then splits: the whole `dataset` step, with its report. */
export const prepareDataset = (
  stories: ReadonlyArray<Story>,
  params: DatasetParams = {}
): { readonly train: Array<Story>; readonly heldout: Array<Story>; readonly report: DatasetReport } => {
  const filtered = filterByWords(stories, params)
  const unique = dedupe(filtered.kept)
  const { train, heldout } = splitByHash(unique.kept, params.heldout_fraction ?? 0)
  return {
    train,
    heldout,
    report: {
      input: stories.length,
      too_short: filtered.tooShort,
      too_long: filtered.tooLong,
      duplicate_text: unique.duplicateText,
      duplicate_title: unique.duplicateTitle,
      train: train.length,
      heldout: heldout.length
    }
  }
}
