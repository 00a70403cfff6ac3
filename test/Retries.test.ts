/** Transient failures are retried on the stage's Schedule; permanent ones fail the node at once. */
import { Duration, Effect, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { Pipeline, Retry, RunLog, Stage } from "polaris"
import { runOn, tempDir } from "./support/store.ts"

const flaky = (failures: number, calls: { n: number }) =>
  Stage.make({
    name: "flaky",
    version: "1",
    output: Schema.String,
    retry: Retry.backoff({ base: "1 millis", cap: "5 millis", attempts: 5 }),
    run: () =>
      Effect.suspend(() => {
        calls.n++
        return calls.n <= failures
          ? Effect.fail(new Retry.TransientError({ message: `503 from judge (call ${calls.n})` }))
          : Effect.succeed(`ok after ${calls.n}`)
      })
  })

const broken = (calls: { n: number }) =>
  Stage.make({
    name: "broken",
    version: "1",
    output: Schema.String,
    retry: Retry.backoff({ base: "1 millis", attempts: 5 }),
    run: () => Effect.suspend(() => (calls.n++, Effect.fail(new Retry.PermanentError({ message: "400: prompt is empty" }))))
  })

const slowOk = Stage.make({
  name: "slow-ok",
  version: "1",
  output: Schema.Number,
  run: () => Effect.as(Effect.sleep(30), 42)
})

const after = Stage.make({
  name: "after",
  version: "1",
  inputs: { x: Schema.String },
  output: Schema.String,
  run: ({ x }) => Effect.succeed(x + "!")
})

describe("retries", () => {
  it("retries a transient failure k times, then succeeds, logging each retry", async () => {
    const root = tempDir()
    const calls = { n: 0 }
    const exit = await runOn(root, Pipeline.make("flaky", (b) => ({ out: b.node(flaky(3, calls), { id: "flaky" }) })))
    expect(exit._tag).toBe("Success")
    expect(calls.n).toBe(4)
    if (exit._tag !== "Success") return
    expect(exit.value.outputs.out).toBe("ok after 4")
    const retries = (await RunLog.readJsonl(`${exit.value.dir}/events.jsonl`)).filter((e) => e.type === "node_retry")
    expect(retries.map((e) => e.attempt)).toEqual([1, 2, 3])
  })

  it("gives up after the schedule's attempts", async () => {
    const root = tempDir()
    const calls = { n: 0 }
    const exit = await runOn(root, Pipeline.make("flaky", (b) => ({ out: b.node(flaky(100, calls), { id: "flaky" }) })))
    expect(exit._tag).toBe("Failure")
    expect(calls.n).toBe(5)
  })

  it("fails a permanent error at once, names node, cause and log file, and lets independent branches finish", async () => {
    const root = tempDir()
    const calls = { n: 0 }
    const pipeline = Pipeline.make("mixed", (b) => {
      const bad = b.node(broken(calls), { id: "judge" })
      return { bad: b.node(after, { id: "after", inputs: { x: bad } }), ok: b.node(slowOk, { id: "independent" }) }
    })
    const exit = await runOn(root, pipeline)
    expect(calls.n).toBe(1)
    expect(exit._tag).toBe("Failure")
    if (exit._tag !== "Failure") return
    const reason = exit.cause.reasons[0]
    const error = reason?._tag === "Fail" ? (reason.error as { message: string; logFile: string }) : undefined
    expect(error?.message).toContain(`node "judge" (stage broken) failed: PermanentError: 400: prompt is empty`)
    expect(error?.message).toContain("1 downstream node(s) skipped")
    expect(error?.message).toContain(`log: ${error?.logFile}`)
    const events = await RunLog.readJsonl(error!.logFile)
    expect(events.find((e) => e.type === "node_finished" && e.node === "independent")).toBeDefined()
    expect(events.find((e) => e.type === "node_skipped" && e.node === "after")).toBeDefined()
  })

  it("with failFast, stops independent branches at the first failure", async () => {
    const root = tempDir()
    const pipeline = Pipeline.make("mixed", (b) => ({
      bad: b.node(broken({ n: 0 }), { id: "judge" }),
      ok: b.node(slowOk, { id: "independent" })
    }))
    const exit = await runOn(root, pipeline, { failFast: true })
    expect(exit._tag).toBe("Failure")
    if (exit._tag !== "Failure") return
    const reason = exit.cause.reasons[0]
    const logFile = reason?._tag === "Fail" ? (reason.error as { logFile: string }).logFile : ""
    const events = await RunLog.readJsonl(logFile)
    expect(events.find((e) => e.type === "node_finished" && e.node === "independent")).toBeUndefined()
  })

  it("backoff honours a server's retryAfter and caps delays", async () => {
    const schedule = Retry.backoff({ base: "10 millis", cap: "40 millis", attempts: 10, jitter: false })
    const delays: Array<number> = []
    let last = Date.now()
    let n = 0
    await Effect.runPromise(
      Retry.transient(
        Effect.suspend(() => {
          const now = Date.now()
          if (n > 0) delays.push(now - last)
          last = now
          n++
          return n < 6
            ? Effect.fail(new Retry.TransientError({ message: "429", ...(n === 2 ? { retryAfter: Duration.millis(150) } : {}) }))
            : Effect.succeed("done")
        }),
        schedule
      )
    )
    // 10, 150 (server said so), 40 (capped from 40), 40 (capped from 80), 40 (capped from 160)
    expect(delays.length).toBe(5)
    expect(delays[1]!).toBeGreaterThanOrEqual(148)
    expect(Math.max(delays[2]!, delays[3]!, delays[4]!)).toBeLessThan(120)
    expect(delays[0]!).toBeLessThan(60)
  })
})
