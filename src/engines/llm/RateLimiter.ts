/**
 * Client-side rate limiting for remote LLM calls (judge, writer). Providers enforce limits on
 * requests per minute, tokens per minute and sometimes concurrent requests; going over them
 * earns 429s, and retrying those wastes time and quota. Every remote call therefore asks this
 * limiter for a permit first, so a run with hundreds of parallel rollouts stays just under the
 * limits instead of bouncing off them.
 *
 * Model: two token buckets (requests, tokens) with continuous refill, plus a cap on calls in
 * flight. Decisions, and why:
 *
 * - **Small burst, exact minute.** A bucket holds at most `burstSeconds` worth of its per-minute
 *   amount (`capacity = amount × burstSeconds / 60`, default 1 s) and starts full. It refills at
 *   `(amount − capacity) / 60` per second rather than `amount / 60`, so that what is admitted in
 *   ANY 60 s window, the first one included and the one after an idle stretch, is at most
 *   `capacity + (amount − capacity) = amount`. A bucket holding a full minute (the textbook
 *   setting) would let up to 2× the limit through in the minute after an idle stretch, which a
 *   provider counting per minute answers with 429s. The price is a long-run rate of
 *   `amount × (1 − burstSeconds/60)`, 98.3% of the limit by default.
 * - **FIFO.** Callers are admitted strictly in arrival order: only the head of the queue waits
 *   on the buckets and the in-flight cap; everyone else waits for the head. A large token request
 *   is thus never starved by a stream of small ones that would each fit sooner.
 * - **Large requests go into debt.** A request needs `min(cost, capacity)` in the bucket to be
 *   admitted (so one bigger than the bucket cannot deadlock), but is charged its whole cost, which
 *   may leave the bucket negative. Later calls pay the debt off by waiting. Charging only the
 *   clamped amount would under-count big calls and let the client overshoot the tokens-per-minute
 *   limit. (A single call larger than the burst can make one 60 s window exceed the limit by at
 *   most its excess over the burst.)
 * - **settle.** The real usage is only known after the call; `settle(actual − estimated)` takes
 *   the difference from (or, negative, returns it to) the token bucket, capped at its capacity,
 *   and wakes the head of the queue, which may now start sooner.
 * - **Time** comes from the `Clock` in the context where `make` runs, so tests can use
 *   `TestClock`; waits are `Clock.sleep`s.
 * - **Interruption.** Tokens and the slot are taken together in one synchronous step once the
 *   head's conditions hold, and the slot is released by a finalizer that runs at most once. A
 *   caller interrupted while queued or waiting therefore takes nothing, and one interrupted while
 *   running gives its slot back exactly once. Tokens of a call interrupted while running stay
 *   spent (the provider may have counted them); `settle` can refund them if known.
 */
import { Clock, Deferred, Duration, Effect, Semaphore } from "effect"

/** Limits of one provider account or model. Leave a field out (or Infinity) for no limit. */
export interface RateLimits {
  /** Requests admitted per minute. */
  readonly requestsPerMinute?: number
  /** Tokens (estimated, then corrected with `settle`) admitted per minute. */
  readonly tokensPerMinute?: number
  /** Calls running at the same time. */
  readonly maxInFlight?: number
  /**
   * Size of each bucket in seconds of its per-minute amount (default 1, at most 30): how much can
   * start at once after an idle stretch. Larger bursts lower the long-run rate, since any 60 s
   * window is kept at or under the limit (see the module notes).
   */
  readonly burstSeconds?: number
}

/** Gate that remote LLM calls go through. */
export interface RateLimiter {
  /**
   * Waits until one request and `estimatedTokens` tokens are available and a slot is free, runs
   * `effect` holding the slot, releases the slot when it ends (success, failure or interruption).
   * Callers are served in arrival order. Estimates are clamped to [0, tokensPerMinute] (NaN
   * counts as 0).
   *
   * @example
   * const reply = yield* limiter.withPermit(promptTokens + maxOutput, callModel(prompt))
   * yield* limiter.settle(reply.usage.totalTokens - (promptTokens + maxOutput))
   */
  readonly withPermit: <A, E, R>(estimatedTokens: number, effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Corrects the token bucket once the real usage of a call is known (actual - estimated; may be negative = refund). */
  readonly settle: (delta: number) => Effect.Effect<void>
  /** Snapshot for metrics: calls started, total wait time (ms, admitted calls only), current in flight. */
  readonly stats: () => { readonly started: number; readonly waitedMs: number; readonly inFlight: number }
}

/** One continuous-refill bucket; `level` may be negative (debt, see the module notes). */
interface Bucket {
  readonly capacity: number
  /** Units per millisecond. */
  readonly rate: number
  level: number
}

const MAX_BURST_SECONDS = 30

/** Reads an optional limit: undefined or +Infinity means none; anything else must be > 0. */
const limitOf = (name: string, value: number | undefined): number | undefined => {
  if (value === undefined || value === Number.POSITIVE_INFINITY) return undefined
  if (!(value > 0)) throw new RangeError(`RateLimits.${name} must be > 0 (or omitted for no limit), got ${value}`)
  return value
}

const makeBucket = (perMinute: number, burstSeconds: number): Bucket => {
  const capacity = (perMinute * burstSeconds) / 60
  return { capacity, rate: (perMinute - capacity) / 60_000, level: capacity }
}

/**
 * Waits shorter than this count as ready. Float error (and Duration's whole-nanosecond
 * rounding) can leave a head that woke at the computed instant a hair short; without this slack
 * it would "sleep" for ~0 ms, which a TestClock answers at once, and spin.
 */
const READY_WITHIN_MS = 1e-3

/**
 * Builds a limiter. Dies with a RangeError on a limit that is 0, negative or NaN, since such a
 * limiter could never admit anything.
 *
 * @example
 * const limiter = yield* RateLimiter.make({ requestsPerMinute: 500, tokensPerMinute: 200_000, maxInFlight: 16 })
 * const out = yield* limiter.withPermit(1_500, judgeOnce(sample))
 */
export const make = (limits: RateLimits): Effect.Effect<RateLimiter> =>
  Effect.gen(function* () {
    const rpm = limitOf("requestsPerMinute", limits.requestsPerMinute)
    const tpm = limitOf("tokensPerMinute", limits.tokensPerMinute)
    const maxInFlightRaw = limitOf("maxInFlight", limits.maxInFlight)
    const maxInFlight = maxInFlightRaw === undefined ? undefined : Math.max(1, Math.floor(maxInFlightRaw))
    const burstSeconds = Math.min(MAX_BURST_SECONDS, limitOf("burstSeconds", limits.burstSeconds) ?? 1)
    // One time base for every caller, whatever context they run in.
    const clock = yield* Clock.clockWith(Effect.succeed)

    const requests = rpm === undefined ? undefined : makeBucket(rpm, burstSeconds)
    const tokens = tpm === undefined ? undefined : makeBucket(tpm, burstSeconds)
    let lastRefill = clock.currentTimeMillisUnsafe()
    let started = 0
    let waitedMs = 0
    let inFlight = 0
    // Completed (and replaced) whenever something the head may be waiting for changes: a slot
    // freed or a settle. The head re-checks instead of sleeping out a stale estimate.
    let changed = Deferred.makeUnsafe<void>()
    const signal = () => {
      const d = changed
      changed = Deferred.makeUnsafe<void>()
      Deferred.doneUnsafe(d, Effect.void)
    }

    const refill = () => {
      const now = clock.currentTimeMillisUnsafe()
      const elapsed = Math.max(0, now - lastRefill)
      lastRefill = now
      for (const b of [requests, tokens]) {
        if (b !== undefined) b.level = Math.min(b.capacity, b.level + elapsed * b.rate)
      }
    }

    /** Milliseconds until `b` holds `min(cost, capacity)` (0 if it does), assuming nothing else changes. */
    const waitFor = (b: Bucket | undefined, cost: number): number => {
      if (b === undefined) return 0
      const ms = (Math.min(cost, b.capacity) - b.level) / b.rate
      return ms > READY_WITHIN_MS ? ms : 0
    }

    type Step = { readonly _tag: "Admitted" } | { readonly _tag: "Wait"; readonly ms: number | undefined; readonly changed: Deferred.Deferred<void> }

    /**
     * One synchronous look at the state by the head of the queue: either takes the request, the
     * tokens and a slot all at once, or says how long to wait (undefined: until a slot frees).
     */
    const tryAdmit = (cost: number, onAdmit: () => void) =>
      Effect.sync((): Step => {
        refill()
        if (maxInFlight !== undefined && inFlight >= maxInFlight) return { _tag: "Wait", ms: undefined, changed }
        const ms = Math.max(waitFor(requests, 1), waitFor(tokens, cost))
        if (ms > 0) return { _tag: "Wait", ms, changed }
        if (requests !== undefined) requests.level -= 1
        if (tokens !== undefined) tokens.level -= cost
        inFlight += 1
        started += 1
        onAdmit()
        return { _tag: "Admitted" }
      })

    const admit = (cost: number, onAdmit: () => void): Effect.Effect<void> =>
      Effect.flatMap(tryAdmit(cost, onAdmit), (step) => {
        if (step._tag === "Admitted") return Effect.void
        const woken = Deferred.await(step.changed)
        // Rounded up to the microsecond so the wake is never before the refill instant.
        const sleep = step.ms === undefined ? undefined : clock.sleep(Duration.millis(Math.ceil(step.ms * 1000) / 1000))
        const wait = sleep === undefined ? woken : Effect.race(sleep, woken)
        return Effect.flatMap(wait, () => admit(cost, onAdmit))
      })

    // The turnstile: Effect's semaphore queues waiters in arrival order and, with one permit,
    // hands it to the oldest waiter, which gives FIFO admission. Its permit is held only while
    // waiting to be admitted, never while the call runs.
    const turnstile = yield* Semaphore.make(1)
    const noLimits = requests === undefined && tokens === undefined && maxInFlight === undefined

    const withPermit = <A, E, R>(estimatedTokens: number, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
      Effect.suspend(() => {
        // A single call above the per-minute amount cannot be legitimate (the provider would refuse
        // it); clamping keeps a runaway estimate (even Infinity) from stalling the queue for good.
        const cost = estimatedTokens > 0 ? Math.min(estimatedTokens, tpm ?? Number.POSITIVE_INFINITY) : 0
        const t0 = clock.currentTimeMillisUnsafe()
        // Set in the same synchronous step that takes the slot (no interruption can fall between
        // the two), so the finalizer below releases exactly what was taken: nothing for a caller
        // interrupted while waiting, one slot otherwise.
        let holding = false
        const onAdmit = () => {
          holding = true
          waitedMs += Math.max(0, clock.currentTimeMillisUnsafe() - t0)
        }
        const acquire = noLimits
          ? Effect.sync(() => {
              inFlight += 1
              started += 1
              onAdmit()
            })
          : turnstile.withPermit(admit(cost, onAdmit))
        const release = Effect.sync(() => {
          if (!holding) return
          holding = false
          inFlight -= 1
          if (maxInFlight !== undefined) signal()
        })
        return Effect.ensuring(Effect.andThen(acquire, effect), release)
      })

    return {
      withPermit,
      settle: (delta) =>
        Effect.sync(() => {
          if (tokens === undefined || !Number.isFinite(delta) || delta === 0) return
          refill()
          tokens.level = Math.min(tokens.capacity, tokens.level - delta)
          signal()
        }),
      stats: () => ({ started, waitedMs, inFlight })
    } satisfies RateLimiter
  })

/**
 * A limiter that limits nothing: `withPermit` returns the effect unchanged, `settle` does
 * nothing and `stats` stays at zero (it is one shared value, so it keeps no counts; use
 * `make({})` for a counting limiter without limits).
 *
 * @example
 * const limiter = config.rateLimits === undefined ? RateLimiter.unlimited : yield* RateLimiter.make(config.rateLimits)
 */
export const unlimited: RateLimiter = {
  withPermit: (_estimatedTokens, effect) => effect,
  settle: () => Effect.void,
  stats: () => ({ started: 0, waitedMs: 0, inFlight: 0 })
}
