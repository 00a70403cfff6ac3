import { Clock, Deferred, Effect, Exit, Fiber } from "effect"
import { TestClock } from "effect/testing"
import { describe, expect, it } from "vitest"
import * as RateLimiter from "../src/engines/llm/RateLimiter.ts"

/** Runs with simulated time: sleeps only end when the test advances the clock. */
const runTest = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromise(Effect.provide(effect, TestClock.layer()))

const fork = <A, E>(effect: Effect.Effect<A, E>) => Effect.forkChild(effect, { startImmediately: true })

/** Largest sum of `amount` over any window [t, t + windowMs) of the (time-sorted) events. */
const maxInWindow = (events: ReadonlyArray<{ readonly t: number; readonly amount: number }>, windowMs: number) => {
  let best = 0
  let sum = 0
  let lo = 0
  for (let hi = 0; hi < events.length; hi++) {
    sum += events[hi]!.amount
    while (events[hi]!.t - events[lo]!.t >= windowMs) sum -= events[lo++]!.amount
    best = Math.max(best, sum)
  }
  return best
}

/** Keeps `callers` fibers calling through the limiter back to back; each call is instant and logged. */
const hammer = (
  limiter: RateLimiter.RateLimiter,
  callers: number,
  cost: (i: number) => number,
  log: Array<{ t: number; amount: number; caller: number }>
) =>
  Effect.forEach(
    Array.from({ length: callers }, (_, i) => i),
    (i) =>
      fork(
        Effect.forever(
          limiter.withPermit(
            cost(i),
            Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => log.push({ t, amount: cost(i), caller: i })))
          )
        )
      )
  )

describe("RateLimiter: requests per minute", () => {
  it("keeps every simulated 60 s window at or under R, and the rate above 0.9 R (TestClock, 3 minutes)", async () => {
    const R = 1200
    const log: Array<{ t: number; amount: number; caller: number }> = []
    const limiter = await runTest(
      Effect.gen(function* () {
        const limiter = yield* RateLimiter.make({ requestsPerMinute: R })
        const fibers = yield* hammer(limiter, 400, () => 1, log)
        yield* TestClock.adjust("3 minutes")
        yield* Fiber.interruptAll(fibers)
        return limiter
      })
    )
    const events = log.map((e) => ({ t: e.t, amount: 1 }))
    // The documented guarantee: any 60 s window, the first one included, sees at most R.
    expect(maxInWindow(events, 60_000)).toBeLessThanOrEqual(R)
    // Long-run rate is R × (1 − 1/60) with the default 1 s burst.
    expect(events.length).toBeGreaterThan(0.9 * R * 3)
    expect(events.length).toBeLessThanOrEqual(R * 3)
    // The start is a burst of one second's worth, not a whole minute's.
    expect(events.filter((e) => e.t === 0).length).toBe(R / 60)
    expect(limiter.stats().inFlight).toBe(0)
    expect(limiter.stats().started).toBe(events.length)
  })

  it("holds R/min in real time with 400 callers for ~3 s", async () => {
    const R = 1200
    const log: Array<{ t: number; amount: number; caller: number }> = []
    const { elapsedMs, limiter } = await Effect.runPromise(
      Effect.gen(function* () {
        const limiter = yield* RateLimiter.make({ requestsPerMinute: R })
        const t0 = Date.now()
        const fibers = yield* hammer(limiter, 400, () => 1, log)
        yield* Effect.sleep("3 seconds")
        yield* Fiber.interruptAll(fibers)
        return { elapsedMs: Date.now() - t0, limiter }
      })
    )
    const n = log.length
    const burst = R / 60
    const refillPerMs = (R - burst) / 60_000
    // Bucket arithmetic: at most the initial burst plus what refilled (+1 for clock granularity).
    expect(n).toBeLessThanOrEqual(burst + refillPerMs * elapsedMs + 1)
    // The observed rate beyond the initial burst is at or under R ...
    expect(((n - burst - 1) / elapsedMs) * 60_000).toBeLessThanOrEqual(R)
    // ... and not far below it, even on a loaded machine.
    expect((n / elapsedMs) * 60_000).toBeGreaterThan(0.9 * R)
    expect(limiter.stats().inFlight).toBe(0)
    expect(limiter.stats().waitedMs).toBeGreaterThan(0)
  })
})

describe("RateLimiter: tokens per minute", () => {
  // 6000 tokens/min with the default 1 s burst: capacity 100, refill (6000 − 100)/60 per second.
  const TPM = 6000
  const refillPerMs = (TPM - 100) / 60_000

  it("keeps mixed estimates at or under the limit in every 60 s window", async () => {
    const log: Array<{ t: number; amount: number; caller: number }> = []
    const costs = [10, 40, 90, 25, 3]
    await runTest(
      Effect.gen(function* () {
        const limiter = yield* RateLimiter.make({ tokensPerMinute: TPM })
        const fibers = yield* hammer(limiter, 25, (i) => costs[i % costs.length]!, log)
        yield* TestClock.adjust("3 minutes")
        yield* Fiber.interruptAll(fibers)
      })
    )
    expect(maxInWindow(log, 60_000)).toBeLessThanOrEqual(TPM)
    const total = log.reduce((s, e) => s + e.amount, 0)
    expect(total).toBeGreaterThan(0.9 * TPM * 3)
    // Every estimate size got through: FIFO, not just the small ones.
    expect(new Set(log.map((e) => e.amount))).toEqual(new Set(costs))
  })

  /** Takes the whole bucket at t = 0, optionally settles, then times the next 100-token call. */
  const secondStart = (settleAfter100ms: number | undefined) =>
    runTest(
      Effect.gen(function* () {
        const limiter = yield* RateLimiter.make({ tokensPerMinute: TPM })
        yield* limiter.withPermit(100, Effect.void)
        let startedAt: number | undefined
        const b = yield* fork(limiter.withPermit(100, Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => (startedAt = t)))))
        yield* TestClock.adjust("100 millis")
        expect(startedAt).toBeUndefined()
        if (settleAfter100ms !== undefined) yield* limiter.settle(settleAfter100ms)
        yield* TestClock.adjust("5 seconds")
        yield* Fiber.join(b)
        return startedAt!
      })
    )

  it("settle refunds let a waiting call start sooner; overruns make it wait longer", async () => {
    const plain = await secondStart(undefined)
    expect(plain).toBeCloseTo(100 / refillPerMs, 0) // ≈ 1017 ms
    // Refund of 80 at t = 100 ms: 20 tokens are missing minus what refilled in 100 ms.
    const refunded = await secondStart(-80)
    expect(refunded).toBeCloseTo(100 + (100 - 80 - 100 * refillPerMs) / refillPerMs, 0) // ≈ 203 ms
    expect(refunded).toBeLessThan(plain / 4)
    // The call used 100 more than estimated: the bucket goes into debt and the next one pays.
    const overran = await secondStart(100)
    expect(overran).toBeCloseTo(200 / refillPerMs, 0) // ≈ 2034 ms
  })

  it("admits an estimate larger than the bucket without deadlock, charging it in full", async () => {
    const starts = await runTest(
      Effect.gen(function* () {
        const limiter = yield* RateLimiter.make({ tokensPerMinute: TPM })
        const starts: Array<number> = []
        const call = (tokens: number) =>
          limiter.withPermit(tokens, Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => starts.push(t))))
        const f = yield* fork(Effect.andThen(call(1000), call(10)))
        yield* TestClock.adjust("20 seconds")
        yield* Fiber.join(f)
        return starts
      })
    )
    expect(starts[0]).toBe(0)
    // 1000 taken from a full bucket of 100: 900 debt + 10 more must refill first.
    expect(starts[1]).toBeCloseTo(910 / refillPerMs, 0)
  })
})

describe("RateLimiter: in flight", () => {
  it("never runs more than maxInFlight at once and releases slots on failure", async () => {
    const { max, exits, stats } = await runTest(
      Effect.gen(function* () {
        const limiter = yield* RateLimiter.make({ maxInFlight: 3 })
        let current = 0
        let max = 0
        const call = (i: number) =>
          limiter.withPermit(
            0,
            Effect.gen(function* () {
              current++
              max = Math.max(max, current)
              yield* Effect.sleep("1 second")
              current--
              if (i % 4 === 0) return yield* Effect.fail(`boom ${i}`)
              return i
            })
          )
        const f = yield* fork(Effect.forEach(Array.from({ length: 20 }, (_, i) => i), (i) => Effect.exit(call(i)), { concurrency: "unbounded" }))
        yield* TestClock.adjust("10 seconds")
        const exits = yield* Fiber.join(f)
        return { max, exits, stats: limiter.stats() }
      })
    )
    expect(max).toBe(3)
    expect(exits.filter(Exit.isFailure).length).toBe(5)
    expect(stats).toMatchObject({ started: 20, inFlight: 0 })
  })

  it("takes ceil(n / maxInFlight) rounds of slow calls", async () => {
    const finished = await runTest(
      Effect.gen(function* () {
        const limiter = yield* RateLimiter.make({ maxInFlight: 3 })
        const f = yield* fork(
          Effect.forEach(Array.from({ length: 20 }, (_, i) => i), () => limiter.withPermit(0, Effect.sleep("1 second")), {
            concurrency: "unbounded"
          })
        )
        yield* TestClock.adjust("6500 millis")
        const early = f.pollUnsafe()
        yield* TestClock.adjust("1 second")
        yield* Fiber.join(f)
        return early
      })
    )
    expect(finished).toBeUndefined() // not done after 6.5 s: 7 rounds are needed
  })
})

describe("RateLimiter: interruption", () => {
  it("waiters interrupted in the queue, at the head or while running leak nothing and release once", async () => {
    // 60 requests/min, 1 s burst: the bucket holds 1 request and refills one every 60/59 s.
    const gap = 60_000 / 59
    const result = await runTest(
      Effect.gen(function* () {
        const limiter = yield* RateLimiter.make({ requestsPerMinute: 60, maxInFlight: 1 })
        const starts: Record<string, number> = {}
        const call = (name: string, body: Effect.Effect<void> = Effect.void) =>
          fork(limiter.withPermit(0, Effect.andThen(Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => (starts[name] = t))), body)))

        const gate = yield* Deferred.make<void>()
        const holder = yield* call("holder", Deferred.await(gate))
        const w1 = yield* call("w1") // head: waits for the slot
        const w2 = yield* call("w2")
        const w3 = yield* call("w3") // queued
        const w4 = yield* call("w4")
        const w5 = yield* call("w5")
        yield* Fiber.interrupt(w1)
        yield* Fiber.interrupt(w3)
        const afterQueueInterrupts = limiter.stats()

        yield* Deferred.succeed(gate, undefined)
        yield* Fiber.join(holder)
        yield* TestClock.adjust(1_500) // w2 starts at one gap; w4 is now the head, sleeping for tokens
        yield* Fiber.interrupt(w4)
        yield* TestClock.adjust(1_000) // w5 must get the request w4 did not take
        yield* Fiber.join(w2)
        yield* Fiber.join(w5)

        // Interrupting a running call gives its slot back exactly once.
        const slow = yield* call("slow", Effect.sleep("1 minute"))
        yield* TestClock.adjust(1_500)
        const whileSlow = limiter.stats()
        yield* Fiber.interrupt(slow)
        const afterSlow = limiter.stats()

        // The cap still holds afterwards (a double release would let 2 run at once).
        let current = 0
        let max = 0
        const probe = Effect.gen(function* () {
          current++
          max = Math.max(max, current)
          yield* Effect.sleep("1 second")
          current--
        })
        const probes = yield* fork(Effect.forEach([1, 2, 3, 4], () => limiter.withPermit(0, probe), { concurrency: "unbounded" }))
        yield* TestClock.adjust("20 seconds")
        yield* Fiber.join(probes)
        return { starts, afterQueueInterrupts, whileSlow, afterSlow, max, final: limiter.stats() }
      })
    )
    expect(result.afterQueueInterrupts).toMatchObject({ started: 1, inFlight: 1 })
    expect(Object.keys(result.starts).sort()).toEqual(["holder", "slow", "w2", "w5"])
    expect(result.starts["holder"]).toBe(0)
    expect(result.starts["w2"]).toBeCloseTo(gap, 2)
    expect(result.starts["w5"]).toBeCloseTo(2 * gap, 2)
    expect(result.whileSlow.inFlight).toBe(1)
    expect(result.afterSlow.inFlight).toBe(0)
    expect(result.max).toBe(1)
    expect(result.final).toMatchObject({ started: 8, inFlight: 0 })
  })
})

describe("RateLimiter: fairness", () => {
  it("serves a large token request in arrival order despite a stream of small ones", async () => {
    const log: Array<{ t: number; amount: number; caller: number }> = []
    let bigStart: number | undefined
    let bigQueuedAt = 0
    await runTest(
      Effect.gen(function* () {
        // Capacity 100 tokens: a 100-token call needs a full bucket, which 20 callers taking
        // 10 at a time would never leave if they could overtake it.
        const limiter = yield* RateLimiter.make({ tokensPerMinute: 6000 })
        const small = yield* hammer(limiter, 20, () => 10, log)
        yield* TestClock.adjust("2 seconds")
        bigQueuedAt = yield* Clock.currentTimeMillis
        const big = yield* fork(limiter.withPermit(100, Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => (bigStart = t)))))
        yield* TestClock.adjust("10 seconds")
        // No join: a starved request would hang the test instead of failing it.
        yield* Fiber.interruptAll([big, ...small])
      })
    )
    expect(bigStart).toBeDefined()
    // At most the 20 small calls queued ahead (200 tokens) plus its own 100 must refill: ~3.1 s.
    expect(bigStart! - bigQueuedAt).toBeLessThan(3_500)
    const overtaking = log.filter((e) => e.t > bigQueuedAt && e.t < bigStart!)
    expect(overtaking.length).toBeLessThanOrEqual(20)
    expect(log.filter((e) => e.t > bigStart!).length).toBeGreaterThan(0)
  })
})

describe("RateLimiter: unlimited and validation", () => {
  it("unlimited is a pass-through", async () => {
    const effect = Effect.succeed(42)
    expect(RateLimiter.unlimited.withPermit(1e9, effect)).toBe(effect)
    const results = await Effect.runPromise(
      Effect.forEach(Array.from({ length: 1000 }, (_, i) => i), (i) => RateLimiter.unlimited.withPermit(1e6, Effect.succeed(i)), {
        concurrency: "unbounded"
      })
    )
    expect(results.length).toBe(1000)
    await Effect.runPromise(RateLimiter.unlimited.settle(-5))
    expect(RateLimiter.unlimited.stats()).toEqual({ started: 0, waitedMs: 0, inFlight: 0 })
  })

  it("make({}) never waits but counts", async () => {
    const stats = await runTest(
      Effect.gen(function* () {
        const limiter = yield* RateLimiter.make({})
        yield* Effect.forEach(Array.from({ length: 500 }, (_, i) => i), () => limiter.withPermit(1e9, Effect.void), { concurrency: "unbounded" })
        return limiter.stats()
      })
    )
    expect(stats).toEqual({ started: 500, waitedMs: 0, inFlight: 0 })
  })

  it("rejects limits that could never admit anything", async () => {
    for (const limits of [{ requestsPerMinute: 0 }, { tokensPerMinute: -1 }, { maxInFlight: Number.NaN }]) {
      const exit = await Effect.runPromiseExit(RateLimiter.make(limits))
      expect(Exit.hasDies(exit)).toBe(true)
    }
  })
})
