/**
 * The POLARIS reward (ARCHITECTURE.md §7): r = Q_norm · L, with Q_norm the judge's normalised
 * Story Quality (0..1) and L a length factor, by default LongWriter's S_l / 100 for requested x
 * and generated y words:
 *
 *   S_l = 100 · max(0, 1 − (y/x − 1)/3)   if y > x   (a third too long loses a third)
 *   S_l = 100 · max(0, 1 − (x/y − 1)/2)   if y ≤ x   (half too short loses half)
 *   S_l = 0                                if y = 0
 *
 * Thinking traces are stripped before judging and before counting words. An unscorable story
 * has no quality and so no reward (null), never 0: it leaves the group statistics.
 *
 * @example
 * lengthScore(1000, 1300)                                    // 90
 * reward({ quality: 0.6, requested: 1000, words: 1300 })     // 0.54
 */
import { countWords } from "../text/WordCount.ts"

/** How the length factor L is computed: LongWriter's S_l / 100, or none (L = 1). */
export type LengthFactor = "longwriter" | "none"

/** LongWriter's length score S_l in [0, 100]. */
export const lengthScore = (requested: number, words: number): number => {
  if (words <= 0 || requested <= 0) return 0
  return words > requested
    ? 100 * Math.max(0, 1 - (words / requested - 1) / 3)
    : 100 * Math.max(0, 1 - (requested / words - 1) / 2)
}

export const lengthFactor = (kind: LengthFactor, requested: number, words: number): number =>
  kind === "none" ? 1 : lengthScore(requested, words) / 100

/** r = Q_norm · L; null when the story could not be scored. */
export const reward = (r: {
  readonly quality: number | null
  readonly requested: number
  readonly words: number
  readonly lengthFactor?: LengthFactor
}): number | null =>
  r.quality === null || Number.isNaN(r.quality) ? null : r.quality * lengthFactor(r.lengthFactor ?? "longwriter", r.requested, r.words)

/**
 * The story without reasoning traces: `<think>…</think>` blocks (Qwen3 and DeepSeek style), and an
 * unterminated `<think>` at the start (a trace cut off by max_tokens leaves no story at all).
 */
export const stripThinking = (text: string): string =>
  text.replace(/<think>[\s\S]*?<\/think>/g, "").replace(/^\s*<think>[\s\S]*$/, "").trim()

/** Words of a generated story, counted after stripping thinking (THE word counter). */
export const storyWords = (text: string): number => countWords(stripThinking(text))
