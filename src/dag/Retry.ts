/**
 * Retries: transient vs permanent errors and the Schedules that retry only the former.
 *
 * An error is transient when it carries `retryable: true` (HTTP 408/429/5xx, timeouts, a
 * malformed model reply). It may carry `retryAfter` (from a Retry-After header or
 * google.rpc.RetryInfo); the schedules built here never wait less than that.
 */
import { Data, Duration, Effect, Schedule } from "effect"

/** The shape every retry-aware error shares. */
export interface RetryHint {
  readonly retryable: boolean
  readonly retryAfter?: Duration.Duration | undefined
}

/** A failure worth retrying. Stage code raises it (or any error with `retryable: true`). */
export class TransientError extends Data.TaggedError("TransientError")<{
  readonly message: string
  readonly cause?: unknown
  readonly retryAfter?: Duration.Duration | undefined
}> {
  readonly retryable = true
}

/** A failure that retrying cannot fix (bad input, 400, auth): fails the node at once. */
export class PermanentError extends Data.TaggedError("PermanentError")<{
  readonly message: string
  readonly cause?: unknown
}> {
  readonly retryable = false
}

/** True for errors that declare themselves retryable. */
export const isTransient = (error: unknown): boolean =>
  typeof error === "object" && error !== null && (error as Partial<RetryHint>).retryable === true

const retryAfterOf = (error: unknown): Duration.Duration | undefined =>
  typeof error === "object" && error !== null ? (error as Partial<RetryHint>).retryAfter : undefined

/** Settings of an exponential backoff; all optional. */
export interface BackoffOptions {
  /** First delay (default 200 millis). */
  readonly base?: Duration.Input
  /** Growth per attempt (default 2). */
  readonly factor?: number
  /** Longest single delay (default 30 seconds). */
  readonly cap?: Duration.Input
  /** Total attempts including the first (default 5); 1 means no retry. */
  readonly attempts?: number
  /** Randomise each delay to 80%-120% so many callers do not retry in lockstep (default true). */
  readonly jitter?: boolean
}

/**
 * Exponential backoff with jitter and a cap, a bounded number of attempts, honouring the
 * error's `retryAfter`.
 *
 * @example
 * const schedule = Retry.backoff({ base: "500 millis", cap: "1 minute", attempts: 8 })
 */
export const backoff = (options: BackoffOptions = {}): Schedule.Schedule<unknown, unknown> => {
  const cap = Duration.fromInputUnsafe(options.cap ?? "30 seconds")
  const attempts = Math.max(1, options.attempts ?? 5)
  const exp = Schedule.exponential(options.base ?? "200 millis", options.factor ?? 2)
  const jittered = options.jitter === false ? exp : Schedule.jittered(exp)
  const capped = Schedule.modifyDelay(jittered, ({ duration, input }) =>
    Effect.succeed(Duration.max(Duration.min(duration, cap), retryAfterOf(input) ?? Duration.zero))
  )
  return Schedule.max([Schedule.setInputType<unknown>()(capped), Schedule.recurs(attempts - 1)])
}

/** No retries at all. */
export const never: Schedule.Schedule<unknown, unknown> = Schedule.recurs(0)

/**
 * Runs `effect`, retrying transient failures on `schedule`; permanent ones fail at once.
 * `onRetry` is called as each retry starts, with the failure that caused it and the number of
 * the attempt that failed (for the event log).
 */
export const transient = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  schedule: Schedule.Schedule<unknown, unknown>,
  onRetry?: (error: E, failedAttempt: number) => Effect.Effect<void>
): Effect.Effect<A, E, R> => {
  let attempt = 0
  let lastError: E | undefined
  const once = Effect.suspend(() => {
    attempt++
    const announce = attempt > 1 && onRetry !== undefined ? onRetry(lastError as E, attempt - 1) : Effect.void
    return Effect.andThen(announce, Effect.tapError(effect, (e) => Effect.sync(() => (lastError = e))))
  })
  return Effect.retry(once, { schedule, while: isTransient })
}
