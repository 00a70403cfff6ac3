/**
 * The `simulated` judge: Gemini 3 Flash's latency and rate limit without the network (issue 16
 * point 5; latency model in ../SimulatedLatency.ts, docs/engines.md "Simulated engines").
 *
 * - Scores are deterministic: each dimension's integer score is drawn from the story text (and
 *   the prompt, the dimension and `sample`), within the middle of the rubric's scale. They say
 *   nothing about the story's quality: the simulation measures time, not learning.
 * - Each call takes `judgeTtftS + outputTokens / judgeOutputTokensPerS` (score: the verdict's
 *   tokens, compare: the comparison's), times `timeScale`, slept with `Effect.sleep` (a TestClock
 *   drives it), holding a permit of the RateLimiter (llm/RateLimiter.ts) for requests per minute
 *   and calls in flight. Time runs `1/timeScale` times faster, so the per-minute limit is scaled
 *   by the same factor: the limit binds exactly where it would at real time.
 * - Usage: input ≈ the prompt's and story's words × tokensPerWord + 1,000 rubric tokens; output
 *   as above. Costs follow `price` when given.
 *
 * @example
 * ```ts
 * const judge = yield* makeSimulated({ rubric, timeScale: 0.001 })
 * const verdict = yield* judge.score({ prompt, story }) // after (1.1 + 2500/218) s × 0.001
 * ```
 */
import { Duration, Effect } from "effect"
import { digest, sha256 } from "../../dag/Canonical.ts"
import { codeFingerprint } from "../../dag/Fingerprint.ts"
import { seeded } from "../../internal/random.ts"
import { countWords } from "../../text/WordCount.ts"
import * as RateLimiter from "../llm/RateLimiter.ts"
import { judgeSeconds, type LatencyModel, PAPER_LATENCY } from "../SimulatedLatency.ts"
import type { JudgeShape, Preference, Usage, Verdict } from "./Judge.ts"
import type { Price } from "../llm/Remote.ts"
import * as Rubric from "./Rubric.ts"

export interface SimulatedJudgeOptions {
  readonly rubric: Rubric.Rubric
  /** The judge it stands for; default "gemini-3-flash-preview". */
  readonly model?: string
  /** Real seconds per simulated second; default 1. */
  readonly timeScale?: number
  /** Default `PAPER_LATENCY`. */
  readonly latency?: LatencyModel
  /** Requests per minute (of simulated time); default `latency.judgeRequestsPerMinute`. */
  readonly requestsPerMinute?: number
  readonly maxInFlight?: number
  readonly price?: Price
}

/** Tokens of the rubric's instructions and dimensions in a judge prompt (assumption). */
const RUBRIC_TOKENS = 1_000

/** The simulated judge; dies with a RangeError on a limit that is not > 0 (as RateLimiter.make). */
export const makeSimulated = (options: SimulatedJudgeOptions): Effect.Effect<JudgeShape> =>
  Effect.gen(function*() {
    const { rubric } = options
    const latency = options.latency ?? PAPER_LATENCY
    const timeScale = options.timeScale ?? 1
    if (!(timeScale >= 0) || !Number.isFinite(timeScale)) return yield* Effect.die(new RangeError(`timeScale must be a finite number >= 0, got ${timeScale}`))
    const model = options.model ?? "gemini-3-flash-preview"
    const rpm = options.requestsPerMinute ?? latency.judgeRequestsPerMinute
    const limiter = yield* RateLimiter.make({
      ...(timeScale > 0 ? { requestsPerMinute: rpm / timeScale } : {}),
      ...(options.maxInFlight !== undefined ? { maxInFlight: options.maxInFlight } : {})
    })
    const rubricFingerprint = Rubric.fingerprint(rubric)
    const fingerprint = `simulated:${model}:${digest(latency).slice(0, 12)}@${codeFingerprint(import.meta.url).slice(0, 12)}:${rubricFingerprint}`
    const { min, max } = rubric.scale
    let calls = 0, verdicts = 0, costUsd = 0
    let usage: Usage = { input_tokens: 0, output_tokens: 0, thought_tokens: 0 }

    const call = <A>(inputText: string, outputTokens: number, value: (u: Usage, cost: number) => A) =>
      limiter.withPermit(0, Effect.andThen(
        Effect.sleep(Duration.millis(judgeSeconds(latency, outputTokens) * 1000 * timeScale)),
        Effect.sync(() => {
          const u: Usage = { input_tokens: Math.round(countWords(inputText) * latency.tokensPerWord) + RUBRIC_TOKENS, output_tokens: outputTokens, thought_tokens: 0 }
          const cost = options.price === undefined ? 0 : (u.input_tokens * options.price.input + u.output_tokens * options.price.output) / 1e6
          calls++
          verdicts++
          costUsd += cost
          usage = { input_tokens: usage.input_tokens + u.input_tokens, output_tokens: usage.output_tokens + u.output_tokens, thought_tokens: 0 }
          return value(u, cost)
        })
      ))

    /** A score in the middle 60% of the scale, whole numbers as a judge writes them. */
    const draw = (random: () => number) => Math.round(min + (max - min) * (0.2 + 0.6 * random()))

    return {
      fingerprint,
      rubric,
      score: (item) =>
        call(`${item.prompt} ${item.story}`, latency.judgeScoreOutputTokens, (u, cost): Verdict => {
          const random = seeded(`simulated-judge:${sha256(item.prompt)}:${sha256(item.story)}:${item.sample ?? 0}`)
          const scores: Record<string, number> = {}
          const evidence: Record<string, string> = {}
          for (const d of rubric.dimensions) {
            scores[d.id] = draw(random)
            evidence[d.id] = "simulated"
          }
          return { rubric: rubricFingerprint, judge: fingerprint, scores, evidence, quality: Rubric.quality(rubric, scores), usage: u, cost_usd: cost, calls: 1 }
        }),
      compare: (item) =>
        call(`${item.prompt} ${item.first} ${item.second}`, latency.judgeCompareOutputTokens, (u, cost): Preference => {
          const random = seeded(`simulated-judge:${sha256(item.prompt)}:${sha256(item.first)}:${sha256(item.second)}:${item.sample ?? 0}`)
          const r = random()
          return {
            rubric: rubricFingerprint,
            judge: fingerprint,
            winner: r < 0.45 ? "first" : r < 0.9 ? "second" : "tie",
            analysis: "simulated",
            usage: u,
            cost_usd: cost,
            calls: 1
          }
        }),
      totals: () => ({ calls, failedCalls: 0, verdicts, usage, costUsd })
    } satisfies JudgeShape
  })
