/**
 * What one node's judge calls cost, counted from the answers themselves: the judge's own
 * `totals()` span every node sharing the layer (the groups of a step judged at once, the
 * variants of a sweep), so a difference of totals would count the neighbours' calls too.
 * Only calls made count: a memoized answer reused costs nothing and passes no tally.
 *
 * @example
 * const spend = Spend.make()
 * const verdict = yield* memoCall(ctx, "verdict", key, Verdict, (item) => spend.track(judge.score(item)))
 * yield* ctx.metric(spend.metrics())
 */
import { Effect } from "effect"
import type { JudgeError, Usage } from "./Judge.ts"

/** What a judge answer carries about its own cost (Verdict and Preference both do). */
interface Costed {
  readonly usage: Usage
  readonly cost_usd: number
  /** Calls made for this answer, failed attempts included. */
  readonly calls: number
}

export interface Spend {
  /** Counts the answer (or the failure) of one judge request. */
  readonly track: <A extends Costed, R>(request: Effect.Effect<A, JudgeError, R>) => Effect.Effect<A, JudgeError, R>
  /** The node's judge metrics so far. */
  readonly metrics: () => {
    readonly judge_calls: number
    readonly judge_failed_calls: number
    readonly judge_cost_usd: number
    readonly judge_input_tokens: number
    readonly judge_output_tokens: number
  }
}

export const make = (): Spend => {
  let calls = 0
  let failed = 0
  let cost = 0
  let input = 0
  let output = 0
  return {
    track: (request) =>
      request.pipe(
        Effect.tap((a) =>
          Effect.sync(() => {
            calls += a.calls
            failed += Math.max(0, a.calls - 1)
            cost += a.cost_usd
            input += a.usage.input_tokens
            output += a.usage.output_tokens + a.usage.thought_tokens
          })
        ),
        Effect.tapError((e) =>
          Effect.sync(() => {
            calls += e.calls ?? 0
            failed += e.calls ?? 0
          })
        )
      ),
    metrics: () => ({ judge_calls: calls, judge_failed_calls: failed, judge_cost_usd: cost, judge_input_tokens: input, judge_output_tokens: output })
  }
}
