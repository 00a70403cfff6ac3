/**
 * The embedded proxy judge (ARCHITECTURE.md §6): deterministic, no network, and honest about
 * what it is. It measures text statistics only, under its own rubric (`proxy-text-stats`,
 * `Rubric.PROXY_RUBRIC`), and refuses any other rubric, so it can never pass for the literary one.
 *
 * Words are those of `text/WordCount.ts` (lower-cased, `’` read as `'`); sentences are those of
 * `data/Prompts.ts`, taken line by line. `lin(x, lo, hi)` below is `1 + 9 * clamp((x - lo) /
 * (hi - lo), 0, 1)`: 1 at or below `lo`, 10 at or above `hi`, linear between. Scores are on 1..10,
 * continuous, rounded to 2 decimals (integers would tie whole GRPO groups); `makeProxy` maps them
 * linearly onto its rubric's scale. A story under `MIN_WORDS` words gets 1 on every dimension.
 *
 * - `repetition`: with `share` = word 4-gram occurrences that repeat an earlier 4-gram / all
 *   4-grams, `lin(1 - share, 0.5, 1.0)`.
 * - `distinct`: distinct-2 = distinct word bigrams / bigrams; `lin(d, 0.3, 0.9)`.
 * - `lexical_variety`: MATTR-50, the mean type-token ratio over every window of 50 consecutive
 *   words (the whole text's TTR when it has fewer); `lin(m, 0.4, 0.85)`.
 * - `sentence_rhythm`: cv = population standard deviation / mean of the sentence lengths in words
 *   (sentences without words dropped). Fewer than 3 sentences: 1. cv < 0.35 (too uniform):
 *   `1 + 9 * cv / 0.35`; 0.35..0.9: 10; cv > 0.9 (erratic): `10 - 9 * min(1, (cv - 0.9) / 0.9)`.
 * - `ending`: the trimmed text ends with `.`, `!` or `?` optionally followed by closing quotes or
 *   brackets: 10; with an ellipsis (`...`, `…`) instead: 5 (a trailing-off ending); anything
 *   else (a cut-off sentence, a bare heading): 1.
 * - `prompt_coverage`: the prompt's content words (after "Write a N-word story about", lower-
 *   cased, possessive `'s` dropped, stop words and numbers removed, distinct) found among the
 *   story's words (same normalisation, exact match): `1 + 9 * found / all`; 10 when the prompt
 *   has no content words.
 *
 * `compare` (pairwise evaluation) prefers the story with the higher merit = quality × S_l / 100,
 * S_l being LongWriter's length score against the N of "Write a N-word story" (1 when the prompt
 * names no length), the same figure the reward uses; a gap under `TIE_MARGIN` is a tie. Being a
 * formula, it ignores the order the stories come in: its position consistency is 1 by design.
 *
 * @example
 * ```ts
 * const rubric = yield* Rubric.load(Rubric.PROXY_RUBRIC)
 * const judge = makeProxy(rubric)
 * const verdict = yield* judge.score({ prompt, story }) // verdict.evidence.distinct: "distinct-2 = 0.81"
 * ```
 */
import { codeFingerprint } from "../../dag/Fingerprint.ts"
import { Effect } from "effect"
import { sentences } from "../../data/Prompts.ts"
import { lengthScore } from "../../grpo/Reward.ts"
import { countWords, words } from "../../text/WordCount.ts"
import type { JudgeShape, PairItem, Preference, Verdict } from "./Judge.ts"
import * as Rubric from "./Rubric.ts"

/** The proxy's dimensions, in rubric order. */
export const PROXY_DIMENSIONS = ["repetition", "distinct", "lexical_variety", "sentence_rhythm", "ending", "prompt_coverage"] as const
export type ProxyDimension = (typeof PROXY_DIMENSIONS)[number]

/** Stories with fewer words score 1 on every dimension. */
export const MIN_WORDS = 20

/** A measurement: the score on 1..10 and what was measured, for people. */
interface Measure {
  readonly score: number
  readonly evidence: string
}

const clamp01 = (x: number) => Math.min(1, Math.max(0, x))
const lin = (x: number, lo: number, hi: number) => 1 + 9 * clamp01((x - lo) / (hi - lo))
const round2 = (x: number) => Math.round(x * 100) / 100
const fixed = (x: number, digits = 2) => x.toFixed(digits)

const normalise = (word: string) => word.toLowerCase().replace(/’/g, "'")

const ngrams = (tokens: ReadonlyArray<string>, n: number): Array<string> => {
  const out: Array<string> = []
  for (let i = 0; i + n <= tokens.length; i++) out.push(tokens.slice(i, i + n).join(" "))
  return out
}

const repetition = (tokens: ReadonlyArray<string>): Measure => {
  const grams = ngrams(tokens, 4)
  const share = grams.length === 0 ? 0 : (grams.length - new Set(grams).size) / grams.length
  return { score: lin(1 - share, 0.5, 1), evidence: `repeated word 4-grams = ${fixed(share * 100, 1)}% of ${grams.length} (1 - share = ${fixed(1 - share, 3)})` }
}

const distinct = (tokens: ReadonlyArray<string>): Measure => {
  const grams = ngrams(tokens, 2)
  const d = grams.length === 0 ? 0 : new Set(grams).size / grams.length
  return { score: lin(d, 0.3, 0.9), evidence: `distinct-2 = ${fixed(d)} (${new Set(grams).size} of ${grams.length} bigrams)` }
}

const WINDOW = 50

/** Moving-average type-token ratio over windows of `WINDOW` words. */
export const mattr = (tokens: ReadonlyArray<string>): number => {
  if (tokens.length === 0) return 0
  if (tokens.length <= WINDOW) return new Set(tokens).size / tokens.length
  const counts = new Map<string, number>()
  let types = 0
  const add = (w: string) => {
    const c = counts.get(w) ?? 0
    if (c === 0) types++
    counts.set(w, c + 1)
  }
  const remove = (w: string) => {
    const c = counts.get(w)!
    if (c === 1) types--
    counts.set(w, c - 1)
  }
  for (let i = 0; i < WINDOW; i++) add(tokens[i]!)
  let sum = types
  for (let i = WINDOW; i < tokens.length; i++) {
    add(tokens[i]!)
    remove(tokens[i - WINDOW]!)
    sum += types
  }
  return sum / (tokens.length - WINDOW + 1) / WINDOW
}

const lexicalVariety = (tokens: ReadonlyArray<string>): Measure => {
  const m = mattr(tokens)
  return { score: lin(m, 0.4, 0.85), evidence: `MATTR-${WINDOW} = ${fixed(m)}` }
}

/** Sentence lengths in words: each line split into sentences; sentences without words dropped. */
export const sentenceLengths = (story: string): Array<number> =>
  story.split(/\n+/).flatMap((line) => sentences(line)).map((s) => words(s).length).filter((n) => n > 0)

const sentenceRhythm = (story: string): Measure => {
  const lengths = sentenceLengths(story)
  if (lengths.length < 3) return { score: 1, evidence: `${lengths.length} sentence${lengths.length === 1 ? "" : "s"}: too few to have a rhythm` }
  const mean = lengths.reduce((a, b) => a + b, 0) / lengths.length
  const sd = Math.sqrt(lengths.reduce((a, b) => a + (b - mean) ** 2, 0) / lengths.length)
  const cv = sd / mean
  const score = cv < 0.35 ? 1 + 9 * cv / 0.35 : cv <= 0.9 ? 10 : 10 - 9 * Math.min(1, (cv - 0.9) / 0.9)
  const verdict = cv < 0.35 ? "too uniform" : cv <= 0.9 ? "varied" : "erratic"
  return { score, evidence: `sentence length cv = ${fixed(cv)} (${lengths.length} sentences, mean ${fixed(mean, 1)} words): ${verdict}` }
}

const COMPLETE = /[.!?]["'”’»)\]]*$/u
const TRAILING_OFF = /(?:\.\.\.|…)["'”’»)\]]*$/u

const ending = (story: string): Measure => {
  const text = story.trimEnd()
  const tail = JSON.stringify(text.length > 40 ? `...${text.slice(-40)}` : text)
  if (TRAILING_OFF.test(text)) return { score: 5, evidence: `ends trailing off with an ellipsis: ${tail}` }
  if (COMPLETE.test(text)) return { score: 10, evidence: `ends with a complete sentence: ${tail}` }
  return { score: 1, evidence: `ends mid-sentence (no terminal punctuation): ${tail}` }
}

/** English function words that carry no premise content. */
const STOP_WORDS = new Set(`
a about above after again against all am an and any are as at be because been before being below between both but by
can could did do does doing down during each few for from further had has have having he her here hers herself him
himself his how i if in into is it its itself just let me more most my myself no nor not now of off on once only or
other our ours ourselves out over own same she should so some such than that the their theirs them themselves then
there these they this those through to too under until up upon very was we were what when where which while who whom
whose why will with within without would you your yours yourself yourselves one ones who's it's that's story write
written word words
`.trim().split(/\s+/))

const PROMPT_PREFIX = /^\s*write\s+an?\s+[\d,]+[-\s]word\s+story\s+about\s+/i
const REQUESTED = /^\s*write\s+an?\s+([\d,]+)[-\s]word\s+story/i

/** Merit gaps below this are ties in `compare` (one point of reward on a 0..100 scale). */
export const TIE_MARGIN = 0.01

const contentForm = (word: string): string => normalise(word).replace(/'s$/, "")

/** The prompt's content words: after "Write a N-word story about", stop words and numbers removed. */
export const promptTerms = (prompt: string): Array<string> => {
  const premise = prompt.replace(PROMPT_PREFIX, "")
  const terms = words(premise).map(contentForm).filter((w) => !STOP_WORDS.has(w) && !/^\p{N}+$/u.test(w))
  return [...new Set(terms)]
}

const promptCoverage = (prompt: string, story: string): Measure => {
  const terms = promptTerms(prompt)
  if (terms.length === 0) return { score: 10, evidence: "the prompt has no content words" }
  const present = new Set(words(story).map(contentForm))
  const found = terms.filter((t) => present.has(t))
  const missing = terms.filter((t) => !present.has(t))
  const share = found.length / terms.length
  return {
    score: 1 + 9 * share,
    evidence: `prompt coverage = ${found.length}/${terms.length} = ${fixed(share)}${missing.length > 0 ? `; missing: ${missing.slice(0, 12).join(", ")}` : ""}`
  }
}

/** Every dimension's measurement, on 1..10. */
const measure = (prompt: string, story: string): Record<ProxyDimension, Measure> => {
  const tokens = words(story).map(normalise)
  if (tokens.length < MIN_WORDS) {
    const evidence = `${tokens.length} word${tokens.length === 1 ? "" : "s"}: under ${MIN_WORDS}, the minimum on every dimension`
    return Object.fromEntries(PROXY_DIMENSIONS.map((d) => [d, { score: 1, evidence }])) as Record<ProxyDimension, Measure>
  }
  return {
    repetition: repetition(tokens),
    distinct: distinct(tokens),
    lexical_variety: lexicalVariety(tokens),
    sentence_rhythm: sentenceRhythm(story),
    ending: ending(story),
    prompt_coverage: promptCoverage(prompt, story)
  }
}

/**
 * The proxy's scores on 1..10 (rounded to 2 decimals), by dimension id. Pure and deterministic.
 *
 * @example
 * proxyScores("Write a 300-word story about a fox.", story).ending // 10 when it ends on a full stop
 */
export const proxyScores = (prompt: string, story: string): Record<ProxyDimension, number> => {
  const m = measure(prompt, story)
  return Object.fromEntries(PROXY_DIMENSIONS.map((d) => [d, round2(m[d].score)])) as Record<ProxyDimension, number>
}

/**
 * The proxy judge for `rubric`, which must have exactly the proxy's dimension ids (any order):
 * anything else, the literary rubric above all, is refused with an Error. Scores on 1..10 are
 * mapped linearly onto the rubric's scale. Fingerprint: `proxy@<code>:<rubric fingerprint>`; verdicts
 * cost nothing and make no calls; `totals()` counts verdicts.
 */
export const makeProxy = (rubric: Rubric.Rubric): JudgeShape => {
  const ids = rubric.dimensions.map((d) => d.id)
  const expected = new Set<string>(PROXY_DIMENSIONS)
  const extra = ids.filter((id) => !expected.has(id))
  const missing = PROXY_DIMENSIONS.filter((id) => !ids.includes(id))
  if (extra.length > 0 || missing.length > 0 || ids.length !== PROXY_DIMENSIONS.length) {
    throw new Error(
      `the proxy judge measures text statistics only and cannot score rubric "${rubric.id}": its dimensions must be exactly ` +
      `${PROXY_DIMENSIONS.join(", ")}` +
      `${extra.length > 0 ? `; not measurable: ${[...new Set(extra)].join(", ")}` : ""}` +
      `${missing.length > 0 ? `; missing: ${missing.join(", ")}` : ""}` +
      `${extra.length === 0 && missing.length === 0 ? "; some are repeated" : ""}` +
      `. Use ${Rubric.PROXY_RUBRIC}.`
    )
  }
  const rubricFingerprint = Rubric.fingerprint(rubric)
  const { min, max } = rubric.scale
  const toScale = (s: number) => round2(min + (s - 1) / 9 * (max - min))
  let verdicts = 0
  const NONE = { input_tokens: 0, output_tokens: 0, thought_tokens: 0 }
  // The code that scores (this module's run-time closure), so a formula change in code is a new key.
  const fingerprint = `proxy@${codeFingerprint(import.meta.url).slice(0, 12)}:${rubricFingerprint}`
  return {
    fingerprint,
    local: true,
    rubric,
    score: (item) =>
      Effect.sync((): Verdict => {
        const m = measure(item.prompt, item.story)
        const scores: Record<string, number | null> = {}
        const evidence: Record<string, string> = {}
        for (const id of ids) {
          const one = m[id as ProxyDimension]
          scores[id] = toScale(one.score)
          evidence[id] = one.evidence
        }
        verdicts++
        return {
          rubric: rubricFingerprint,
          judge: fingerprint,
          scores,
          evidence,
          quality: Rubric.quality(rubric, scores),
          usage: NONE,
          cost_usd: 0,
          calls: 0
        }
      }),
    compare: (item: PairItem) =>
      Effect.sync((): Preference => {
        const requested = Number(REQUESTED.exec(item.prompt)?.[1]?.replace(/,/g, "") ?? NaN)
        const merit = (story: string) => {
          const m = measure(item.prompt, story)
          const q = Rubric.quality(rubric, Object.fromEntries(ids.map((id) => [id, toScale(m[id as ProxyDimension].score)])))
          return { q, l: Number.isFinite(requested) ? lengthScore(requested, countWords(story)) / 100 : 1 }
        }
        const a = merit(item.first), b = merit(item.second)
        const gap = a.q * a.l - b.q * b.l
        verdicts++
        return {
          rubric: rubricFingerprint,
          judge: fingerprint,
          winner: Math.abs(gap) < TIE_MARGIN ? "tie" : gap > 0 ? "first" : "second",
          analysis: `merit = quality × S_l/100: story 1 ${fixed(a.q)} × ${fixed(a.l)} = ${fixed(a.q * a.l)}, story 2 ${fixed(b.q)} × ${fixed(b.l)} = ${fixed(b.q * b.l)}`,
          usage: NONE,
          cost_usd: 0,
          calls: 0
        }
      }),
    totals: () => ({ calls: 0, failedCalls: 0, verdicts, usage: NONE, costUsd: 0 })
  }
}
