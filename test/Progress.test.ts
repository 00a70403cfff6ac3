import { Effect, Schema } from "effect"
import { afterEach, describe, expect, it, vi } from "vitest"
import { Pipeline, Progress, type RunLog, Stage } from "polaris"
import { runOk, tempDir } from "./support/store.ts"

const T0 = Date.parse("2026-01-01T00:00:00.000Z")
/** An event as the run log writes it, `ms` after T0. */
const ev = (ms: number, event: RunLog.RunEvent): RunLog.LoggedEvent => ({ at: new Date(T0 + ms).toISOString(), ...event })
const fold = (events: ReadonlyArray<RunLog.LoggedEvent>) => events.reduce(Progress.reduce, Progress.initial)
const ANSI = /\x1b\[/

/** A run of 14 nodes: one executed in 4 s, one cached, one failed, one running at 30/100. */
const script: ReadonlyArray<RunLog.LoggedEvent> = [
  ev(0, { type: "run_started", pipeline: "grpo", nodes: 14, resumed: false }),
  ev(0, { type: "node_started", node: "gen", stage: "generate", key: "k1" }),
  ev(4000, { type: "node_finished", node: "gen", key: "k1", object: "o1", durationMs: 4000 }),
  ev(4000, { type: "node_cached", node: "refs", key: "k2", object: "o2" }),
  ev(4000, { type: "node_started", node: "judge", stage: "llm-judge", key: "k3" }),
  ev(4100, { type: "node_started", node: "score", stage: "scorer", key: "k4" }),
  ev(5000, { type: "node_failed", node: "score", error: "ScoreError: weights missing\n  at scorer.ts:12:3" }),
  ev(10000, { type: "progress", node: "judge", done: 30, total: 100 })
]

describe("formatDuration", () => {
  it("picks a unit by magnitude", () => {
    expect([840, 3240, 42_900, 185_000, 3_725_000].map(Progress.formatDuration)).toEqual(["840ms", "3.2s", "42s", "3m05s", "1h02m"])
  })
})

describe("reduce + render", () => {
  it("pins the header counts, ETA, progress bar and failed line", () => {
    const state = fold(script)
    expect(Progress.settled(state)).toBe(3)
    // mean executed duration 4 s x 11 nodes not settled = 44 s
    expect(Progress.eta(state)).toBe(44_000)
    expect(Progress.render(state, 80, T0 + 12_000)).toEqual([
      "run grpo: 3/14 nodes · 1 executed · 1 cached · 1 failed · 1 running · eta 44s",
      // 30 items in the 6 s since the node started: 70 left take 14 s
      "  judge (llm-judge) 8.0s  ███░░░░░░░ 30/100 eta 14s",
      "  ✗ score: ScoreError: weights missing"
    ])
  })

  it("shows no ETA before a node executed, and a retry's attempt", () => {
    const state = fold([
      ev(0, { type: "run_started", pipeline: "p", nodes: 2, resumed: false }),
      ev(0, { type: "node_started", node: "a", stage: "s", key: "k" }),
      ev(500, { type: "node_retry", node: "a", attempt: 1, error: "429" })
    ])
    expect(Progress.eta(state)).toBeUndefined()
    expect(Progress.render(state, 80, T0 + 1500)).toEqual([
      "run p: 0/2 nodes · 0 executed · 0 cached · 0 failed · 1 running",
      "  a (s) 1.5s · attempt 2"
    ])
  })

  it("caps the running list with +N more", () => {
    const started = Array.from({ length: 12 }, (_, i) => ev(i * 100, { type: "node_started", node: `n${i}`, stage: "s", key: `k${i}` }))
    const lines = Progress.render(fold([ev(0, { type: "run_started", pipeline: "p", nodes: 12, resumed: false }), ...started]), 80, T0 + 2000)
    expect(lines).toHaveLength(12)
    expect(lines[1]).toBe("  n0 (s) 2.0s")
    expect(lines[10]).toBe("  n9 (s) 1.1s")
    expect(lines[11]).toBe("  +2 more")
  })

  it("cuts lines to the width", () => {
    const state = fold([...script, ev(11_000, { type: "node_failed", node: "x", error: "a very long error message that goes on and on" })])
    const lines = Progress.render(state, 30, T0 + 12_000)
    expect(lines.every((l) => l.length <= 30)).toBe(true)
    expect(lines.at(-1)).toBe("  ✗ x: a very long error mess…")
  })

  it("the final state names the outcome and drops running nodes", () => {
    const state = fold([
      ...script,
      ev(65_000, { type: "run_finished", status: "failed", executed: 1, cached: 1, failed: 1, durationMs: 65_000 })
    ])
    expect(Progress.render(state, 100, T0 + 70_000)).toEqual([
      "run grpo failed in 1m05s: 3/14 nodes · 1 executed · 1 cached · 1 failed",
      "  ✗ score: ScoreError: weights missing"
    ])
  })
})

describe("plain lines", () => {
  const lines = (events: ReadonlyArray<RunLog.LoggedEvent>) => {
    const print = Progress.plainPrinter()
    let state = Progress.initial
    const out: Array<string> = []
    for (const e of events) {
      state = Progress.reduce(state, e)
      const line = print(state, e)
      if (line !== undefined) out.push(line)
    }
    return out
  }

  it("one line per meaningful event, no ANSI codes", () => {
    const out = lines([
      ...script,
      ev(10_500, { type: "node_retry", node: "judge", attempt: 1, error: "RemoteError: 429\nbody" }),
      ev(10_600, { type: "corrupt_object", node: "refs", object: "3fa9c2d1e5b7aa00ff", detail: "digest mismatch" }),
      ev(10_700, { type: "lock_wait", node: "gen", key: "k1", holder: "pid 42 on host" }),
      ev(10_800, { type: "memo_hit", node: "judge", key: "m" }),
      ev(11_000, { type: "node_skipped", node: "report", because: "score" }),
      ev(75_000, { type: "run_finished", status: "failed", executed: 1, cached: 1, failed: 1, durationMs: 75_000 })
    ])
    expect(out).toEqual([
      "[0:00] run grpo: 14 nodes",
      "[0:00] gen started (generate)",
      "[0:04] gen finished in 4.0s",
      "[0:04] refs cached",
      "[0:04] judge started (llm-judge)",
      "[0:04] score started (scorer)",
      "[0:05] score failed: ScoreError: weights missing\n      at scorer.ts:12:3",
      "[0:10] judge 30/100",
      "[0:10] judge retry, attempt 1: RemoteError: 429",
      "[0:10] refs corrupt object 3fa9c2d1e5b7: digest mismatch",
      "[0:10] gen waiting for lock held by pid 42 on host",
      "[0:11] report skipped: upstream score failed",
      "[1:15] run failed in 1m15s: 1 executed, 1 cached, 1 failed, 1 skipped"
    ])
    expect(out.some((l) => ANSI.test(l))).toBe(false)
  })

  it("throttles progress to one line per node per 2 s, plus the final count once", () => {
    const p = (ms: number, node: string, done: number) => ev(ms, { type: "progress", node, done, total: 10 })
    const out = lines([
      ev(0, { type: "run_started", pipeline: "p", nodes: 2, resumed: false }),
      p(500, "a", 1),
      p(600, "b", 1),
      p(1000, "a", 2),
      p(2400, "a", 4),
      p(2600, "a", 5),
      p(3000, "a", 10),
      p(3100, "a", 10),
      p(2500, "b", 2)
    ])
    expect(out).toEqual(["[0:00] run p: 2 nodes", "[0:00] a 1/10", "[0:00] b 1/10", "[0:02] a 5/10", "[0:03] a 10/10"])
  })
})

/** A RunLog stand-in: `emit` hands events to subscribers. */
const fakeLog = () => {
  const listeners: Array<(e: RunLog.LoggedEvent) => void> = []
  return {
    subscribe: (l: (e: RunLog.LoggedEvent) => void) => void listeners.push(l),
    emit: (e: RunLog.LoggedEvent) => listeners.forEach((l) => l(e))
  }
}
const sink = (isTTY: boolean) => {
  const writes: Array<string> = []
  return { writes, out: { write: (s: string) => (writes.push(s), true), isTTY, columns: 120 } }
}

describe("attach", () => {
  afterEach(() => {
    vi.useRealTimers()
    vi.restoreAllMocks()
  })

  it("auto on a non-terminal writes plain lines and stops at run_finished", () => {
    const log = fakeLog()
    const { writes, out } = sink(false)
    Effect.runSync(Progress.attach(log, { mode: "auto", out }))
    for (const e of script.slice(0, 3)) log.emit(e)
    log.emit(ev(5000, { type: "run_finished", status: "succeeded", executed: 1, cached: 0, failed: 0, durationMs: 5000 }))
    log.emit(ev(6000, { type: "node_cached", node: "late", key: "k", object: "o" }))
    expect(writes.join("")).toBe(
      "[0:00] run grpo: 14 nodes\n[0:00] gen started (generate)\n[0:04] gen finished in 4.0s\n[0:05] run succeeded in 5.0s: 1 executed, 0 cached, 0 failed\n"
    )
  })

  it("none writes nothing", () => {
    const log = fakeLog()
    const { writes, out } = sink(true)
    Effect.runSync(Progress.attach(log, { mode: "none", out }))
    for (const e of script) log.emit(e)
    expect(writes).toEqual([])
  })

  it("tty repaints in place on an unref'd timer and paints the final state on stop", () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval", "Date"] })
    vi.setSystemTime(T0)
    const interval = vi.spyOn(globalThis, "setInterval")
    const log = fakeLog()
    const { writes, out } = sink(true)
    const reporter = Effect.runSync(Progress.attach(log, { mode: "auto", out, refreshMs: 100 }))
    expect((interval.mock.results[0]?.value as NodeJS.Timeout).hasRef()).toBe(false)
    for (const e of script.slice(0, 5)) log.emit(e)
    log.emit(ev(4200, { type: "log", node: "judge", message: "warming up" }))
    vi.setSystemTime(T0 + 4900)
    vi.advanceTimersByTime(100) // the clock reads T0 + 5 s at the repaint
    expect(writes).toEqual([
      "\r\x1b[2K[0:04] judge: warming up\n" +
      "\r\x1b[2Krun grpo: 2/14 nodes · 1 executed · 1 cached · 0 failed · 1 running · eta 48s\n" +
      "\r\x1b[2K  judge (llm-judge) 1.0s\n" +
      "\x1b[J"
    ])
    log.emit(ev(5000, { type: "node_finished", node: "judge", key: "k3", object: "o3", durationMs: 1000 }))
    Effect.runSync(reporter.stop)
    Effect.runSync(reporter.stop)
    expect(writes).toHaveLength(2)
    // Back up over the two-line block, draw the one-line one, clear the leftover line.
    expect(writes[1]).toBe("\x1b[2A\r\x1b[2Krun grpo: 3/14 nodes · 2 executed · 1 cached · 0 failed · 0 running · eta 27s\n\x1b[J")
    vi.advanceTimersByTime(1000)
    expect(writes).toHaveLength(2)
    expect(reporter.state().executed).toBe(2)
  })
})

describe("end to end", () => {
  const source = Stage.make({
    name: "progress-source",
    version: "1",
    output: Schema.Array(Schema.Number),
    run: (_, __, ctx) =>
      Effect.gen(function*() {
        for (let i = 1; i <= 3; i++) yield* ctx.progress(i, 3)
        return [1, 2, 3]
      })
  })
  const scale = Stage.make({
    name: "progress-scale",
    version: "1",
    inputs: { xs: Schema.Array(Schema.Number) },
    output: Schema.Array(Schema.Number),
    params: Schema.Struct({ by: Schema.Number }),
    run: ({ xs }, { by }) => Effect.succeed(xs.map((x) => x * by))
  })
  const pipeline = () =>
    Pipeline.make("progress-e2e", (p) => {
      const xs = p.node(source, { id: "numbers" })
      return { a: p.node(scale, { id: "twice", inputs: { xs }, params: { by: 2 } }), b: p.node(scale, { id: "thrice", inputs: { xs }, params: { by: 3 } }) }
    })

  it("plain lines mention every node, first executed then cached", async () => {
    const root = tempDir()
    const { writes, out } = sink(false)
    await runOk(root, pipeline(), { onStart: (log) => Progress.attach(log, { mode: "plain", out }) })
    const first = writes.join("")
    expect(ANSI.test(first)).toBe(false)
    for (const node of ["numbers", "twice", "thrice"]) {
      expect(first).toContain(`] ${node} started (`)
      expect(first).toMatch(new RegExp(`\\] ${node} finished in [\\d.]+m?s\\n`))
    }
    expect(first).toContain("] run progress-e2e: 3 nodes\n")
    expect(first).toContain("] numbers 3/3\n")
    expect(first).toMatch(/\] run succeeded in [\d.]+m?s: 3 executed, 0 cached, 0 failed\n$/)

    writes.length = 0
    await runOk(root, pipeline(), { onStart: (log) => Progress.attach(log, { mode: "plain", out }) })
    const second = writes.join("")
    for (const node of ["numbers", "twice", "thrice"]) expect(second).toContain(`] ${node} cached\n`)
    expect(second).toMatch(/: 0 executed, 3 cached, 0 failed\n$/)
  })
})
