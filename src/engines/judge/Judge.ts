/**
 * The Judge engine: scores a story against a rubric (ARCHITECTURE.md §6, shared/design/rubric.md).
 *
 * Backends (layers in Judges.ts): `proxy` (embedded, no network: measurable text statistics under
 * its own rubric id, never the literary rubric), `gemini` (@google/genai, structured JSON output),
 * `openai` (any OpenAI-compatible chat endpoint). A verdict carries every dimension's score (or
 * null where the rubric allows it), the evidence the judge wrote before each score, the
 * normalised quality, the tokens used and the cost. `compare` answers which of two stories for the
 * same prompt is better (a Preference, by position).
 *
 * @example
 * ```ts
 * const program = Effect.gen(function*() {
 *   const judge = yield* Judge
 *   const verdict = yield* judge.score({ prompt: "Write a 300-word story about a fox.", story })
 *   return verdict.quality // 0..1, NaN never: a failure is a JudgeError
 * })
 * // Pairwise: ask both orders; a win counts only when they agree.
 * const ab = yield* judge.compare({ prompt, first: storyA, second: storyB })
 * const ba = yield* judge.compare({ prompt, first: storyB, second: storyA })
 * ```
 */
import { Context, Data, type Duration, type Effect, Schema } from "effect"
import type { Fingerprinted } from "../../dag/Engine.ts"
import type { Rubric } from "./Rubric.ts"

/** One story to judge. `sample` tells repeated judgements of the same story apart (k > 1). */
export interface JudgeItem {
  readonly prompt: string
  readonly story: string
  readonly sample?: number
}

/**
 * Two stories for the same prompt, to compare (pairwise evaluation). `first` is shown first. The
 * caller asks for both orders and keeps a win only when they agree (eval/Stats.ts `combine`).
 */
export interface PairItem {
  readonly prompt: string
  readonly first: string
  readonly second: string
  readonly sample?: number
}

/** Tokens a call used (0 for the proxy judge). */
export const Usage = Schema.Struct({
  input_tokens: Schema.Number,
  output_tokens: Schema.Number,
  thought_tokens: Schema.Number
})
export type Usage = typeof Usage.Type

/** A judgement: what is stored, memoized and turned into the reward. */
export const Verdict = Schema.Struct({
  /** The rubric's fingerprint (`id@version:digest`). */
  rubric: Schema.String,
  /** The judge's fingerprint (backend, model, settings). */
  judge: Schema.String,
  /** Score per rubric dimension; null where the dimension does not apply (nullable dimensions only). */
  scores: Schema.Record(Schema.String, Schema.NullOr(Schema.Number)),
  /** The judge's evidence per dimension, written before the score. */
  evidence: Schema.Record(Schema.String, Schema.String),
  /** Mean of the non-null scores, normalised to 0..1 by the rubric's scale. */
  quality: Schema.Number,
  usage: Usage,
  cost_usd: Schema.Number,
  /** Calls made for this verdict, failed attempts included. */
  calls: Schema.Number
})
export type Verdict = typeof Verdict.Type

/** A pairwise judgement: which of the two stories the judge prefers, by position. */
export const Preference = Schema.Struct({
  rubric: Schema.String,
  judge: Schema.String,
  winner: Schema.Literals(["first", "second", "tie"]),
  /** The judge's reasoning, written before the choice. */
  analysis: Schema.String,
  usage: Usage,
  cost_usd: Schema.Number,
  calls: Schema.Number
})
export type Preference = typeof Preference.Type

/** Why a judgement failed (after its retries, for retryable reasons). */
export type JudgeErrorReason =
  | "RateLimited" // 429
  | "Unavailable" // 408, 5xx
  | "Timeout" // no answer within the call timeout
  | "Transport" // connection refused/reset
  | "Malformed" // 2xx, but not the JSON the rubric asks for (or truncated)
  | "Blocked" // the model refused (safety)
  | "QuotaExhausted" // a daily quota: retrying today cannot help
  | "BadRequest" // 400
  | "Unauthorized" // 401, 403
  | "NotFound" // 404 (unknown model)
  | "Http" // any other status

export class JudgeError extends Data.TaggedError("JudgeError")<{
  readonly reason: JudgeErrorReason
  readonly message: string
  /** `POST http://host/...`; never contains the key. */
  readonly origin: string
  readonly status?: number | undefined
  readonly retryable: boolean
  readonly retryAfter?: Duration.Duration | undefined
  /** Calls made before giving up. */
  readonly calls?: number | undefined
  readonly cause?: unknown
}> {}

/** Running totals of a judge, for metrics. */
export interface JudgeTotals {
  readonly calls: number
  readonly failedCalls: number
  readonly verdicts: number
  readonly usage: Usage
  readonly costUsd: number
}

export interface JudgeShape extends Fingerprinted {
  readonly rubric: Rubric
  readonly score: (item: JudgeItem) => Effect.Effect<Verdict, JudgeError>
  /** Which of two stories for one prompt is better under the rubric's dimensions taken together. */
  readonly compare: (item: PairItem) => Effect.Effect<Preference, JudgeError>
  /** Judgements a caller should request at once (the batch judge wants them all); default the caller's choice. */
  readonly preferredConcurrency?: number
  /** Totals since the layer was built. */
  readonly totals: () => JudgeTotals
  /**
   * What one judgement is expected to cost before it is made (its prompt's tokens and the
   * expected output at the judge's prices), for a run's budget; absent or 0 for a free judge.
   */
  readonly expectedUsd?: (request: { readonly verdict: JudgeItem } | { readonly preference: PairItem }) => number
  /**
   * The judge model asked a prompt of someone else's making (a benchmark's judge prompt), its
   * answer in plain text, with the same attempts, limits and accounting as a verdict. Remote
   * judges only: the proxy judge reads no prompt.
   */
  readonly complete?: (prompt: string) => Effect.Effect<Completion, JudgeError>
}

/** A plain-text answer (`JudgeShape.complete`). */
export const Completion = Schema.Struct({ judge: Schema.String, text: Schema.String, usage: Usage, cost_usd: Schema.Number, calls: Schema.Number })
export type Completion = typeof Completion.Type

export class Judge extends Context.Service<Judge, JudgeShape>()("polaris/Judge") {}

/**
 * How many judgements a stage asks for at once: its own `requested`, or more when the judge
 * prefers it (the batch judge wants every item of the stage in one job, not jobs of `requested`).
 */
export const inFlight = (judge: JudgeShape, requested: number): number | "unbounded" => {
  const n = Math.max(requested, judge.preferredConcurrency ?? 0)
  return Number.isFinite(n) ? n : "unbounded"
}
