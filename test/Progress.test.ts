import { Effect, Schema } from "effect"
import { afterEach, describe, expect, it, vi } from "vitest"
import { Pipeline, Progress, type RunLog, Stage, StepMetrics } from "polaris"
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

describe("loop steps' metrics", () => {
  const nodes = [
    "data",
    "train/step-000/group-0/judge", "train/step-000/group-1/judge", "train/step-000/groups", "train/step-000/update",
    "train/step-001/group-0/judge", "train/step-001/group-1/judge", "train/step-001/groups", "train/step-001/update",
    "report"
  ]
  const metric = (ms: number, node: string, values: Record<string, unknown>): Progress.ViewEvent =>
    ({ type: "metric", node, key: "k", values, at: new Date(T0 + ms).toISOString() })
  const done = (ms: number, node: string) => ev(ms, { type: "node_finished", node, key: "k", object: "o", durationMs: 100 })
  /** Step 0 whole (two judges, the groups, the update), then step 1's judges and groups. */
  const run: ReadonlyArray<Progress.ViewEvent> = [
    ev(0, { type: "run_started", pipeline: "polaris", nodes: nodes.length, resumed: false }),
    ev(0, { type: "node_cached", node: "data", key: "k", object: "o" }),
    metric(2000, "train/step-000/group-0/judge", { stories: 6, unscorable: 1, quality_mean: 0.5, judge_cost_usd: 0.012 }),
    done(2000, "train/step-000/group-0/judge"),
    metric(3000, "train/step-000/group-1/judge", { stories: 6, unscorable: 0, quality_mean: 0.7, judge_cost_usd: 0.010 }),
    done(3000, "train/step-000/group-1/judge"),
    metric(4000, "train/step-000/groups", { reward_policy_mean: 0.41, reward_reference_mean: 0.52, length_score_mean: 61.23, length_ratio_mean: 0.934, quality_mean: 0.6, unscorable: 1, note: "n/a" }),
    done(4000, "train/step-000/groups"),
    metric(9000, "train/step-000/update", { step: 0, kl: 0.00123, loss: 0.1234, grad_norm: 0.8 }),
    done(9000, "train/step-000/update"),
    metric(12_000, "train/step-001/group-0/judge", { stories: 6, unscorable: 0, judge_cost_usd: 0.011 }),
    done(12_000, "train/step-001/group-0/judge"),
    done(12_500, "train/step-001/group-1/judge"),
    metric(13_000, "train/step-001/groups", { reward_policy_mean: 0.45, reward_reference_mean: 0.5, length_score_mean: 64.0, length_ratio_mean: 0.97 }),
    done(13_000, "train/step-001/groups")
  ]
  const fromPlan = (events: ReadonlyArray<Progress.ViewEvent>) => events.reduce(Progress.reduce, Progress.withPlan(nodes))

  it("gathers a step's metrics over its nodes: counts and spend add up over siblings, the shallowest node wins", () => {
    const step = fromPlan(run).steps.steps.get("train\u00000")!
    expect(step.done).toBe(true)
    // unscorable: the step's groups node (1), not the judges' 1 + 0 added to it; spend: both judges.
    expect(StepMetrics.values(step)).toMatchObject({ unscorable: 1, stories: 12, quality_mean: 0.6, judge_cost_usd: 0.022, loss: 0.1234, kl: 0.00123 })
    expect(StepMetrics.values(step).note).toBeUndefined() // only numbers
  })

  it("adds a priced policy's spend over a step's nodes and shows it per engine", () => {
    const ids = ["train/step-000/group-0/rollout", "train/step-000/group-0/reference", "train/step-000/group-1/rollout", "train/step-000/update"]
    const events: Array<Progress.ViewEvent> = [
      ev(0, { type: "run_started", pipeline: "polaris", nodes: ids.length, resumed: false }),
      metric(1, ids[0]!, { sampler_cost_usd: 0.01 }), done(1, ids[0]!),
      metric(2, ids[1]!, { sampler_cost_usd: 0.005 }), done(2, ids[1]!),
      metric(3, ids[2]!, { sampler_cost_usd: 0.015 }), done(3, ids[2]!),
      metric(4, ids[3]!, { loss: 0.5, trainer_cost_usd: 0.02 }), done(4, ids[3]!)
    ]
    const state = events.reduce(Progress.reduce, Progress.withPlan(ids))
    const step = state.steps.steps.get("train\u00000")!
    expect(StepMetrics.values(step).sampler_cost_usd).toBeCloseTo(0.03, 15)
    expect(StepMetrics.line(state.steps, step)).toBe("step 1/1  loss 0.500  sampler $0.030  trainer $0.020")
  })

  it("prints one plain line per finished step, after the node that finished it", () => {
    const print = Progress.plainPrinter()
    const out: Array<string> = []
    let state = Progress.withPlan(nodes)
    for (const e of [...run, ev(14_000, { type: "node_skipped", node: "train/step-001/update", because: "x" })]) {
      state = Progress.reduce(state, e)
      const line = print(state, e)
      if (line !== undefined) out.push(...line.split("\n"))
    }
    const at = out.indexOf("[0:09] train/step-000/update finished in 100ms")
    expect(out[at + 1]).toBe("[0:09] step 1/2  reward 0.410 (ref 0.520)  S_l 61.2  len 0.93  KL 0.0012  loss 0.123  unscorable 1  judge $0.022")
    // Step 2 settles when its update is skipped: its line has what it has.
    expect(out.at(-1)).toBe("[0:14] step 2/2  reward 0.450 (ref 0.500)  S_l 64.0  len 0.97  judge $0.011")
    expect(out.filter((l) => l.includes("] step "))).toHaveLength(2)
  })

  it("the live block shows the trend as sparklines and the latest steps, a running one marked …", () => {
    const state = fromPlan([...run, ev(13_100, { type: "node_started", node: "train/step-001/update", stage: "update", key: "k" })])
    expect(Progress.render(state, 120, T0 + 14_000)).toEqual([
      "run polaris: 8/10 nodes · 7 executed · 1 cached · 0 failed · 1 running · eta 200ms",
      "  reward ▁█ 0.450  S_l ▁█ 64.0  loss ▄ 0.123",
      "  step 1/2  reward 0.410 (ref 0.520)  S_l 61.2  len 0.93  KL 0.0012  loss 0.123  unscorable 1  judge $0.022",
      "  step 2/2  reward 0.450 (ref 0.500)  S_l 64.0  len 0.97  judge $0.011 …",
      "  train/step-001/update (update) 900ms"
    ])
  })

  it("any loop: a step without the training metrics shows its first numbers; sparklines scale to min and max", () => {
    const grow = ["grow/step-000/grow", "grow/step-001/grow", "grow/step-002/grow"]
    const events: Array<Progress.ViewEvent> = [ev(0, { type: "run_started", pipeline: "word-stats", nodes: 3, resumed: false })]
    grow.forEach((node, i) => events.push(metric(i * 10, node, { size: 10 + 2 * i, coverage: 0.25 + i / 30 }), done(i * 10, node)))
    const state = events.reduce(Progress.reduce, Progress.withPlan(grow))
    expect(StepMetrics.line(state.steps, state.steps.steps.get("grow\u00001")!)).toBe("step 2/3  size 12  coverage 0.283")
    expect(StepMetrics.trend(state.steps)).toBe("size ▁▅█ 14  coverage ▁▅█ 0.317")
    expect(StepMetrics.sparkline([3, 1, 2, 5])).toBe("▅▁▃█") // (x − 1) / 4 · 7, rounded: 3.5 → 4, 0, 1.75 → 2, 7
    expect(StepMetrics.sparkline([2, 2])).toBe("▄▄")
  })

  it("without the pipeline's node ids, the steps' lines come at the end of the run; the tty view prints them above the block", () => {
    const log = { ...fakeLog(), metricListeners: [] as Array<(r: RunLog.MetricRecord) => void> }
    const sub = { subscribe: log.subscribe, subscribeMetrics: (l: (r: RunLog.MetricRecord) => void) => void log.metricListeners.push(l) }
    const feed = (e: Progress.ViewEvent) => e.type === "metric" ? log.metricListeners.forEach((l) => l(e)) : log.emit(e)
    const plain = sink(false)
    Effect.runSync(Progress.attach(sub, { mode: "plain", out: plain.out }))
    run.forEach(feed)
    const end = ev(20_000, { type: "run_finished", status: "succeeded", executed: 7, cached: 1, failed: 0, durationMs: 20_000 })
    feed(end)
    const text = plain.writes.join("")
    expect(text).not.toContain("] step 1/2") // no plan: no totals either
    expect(text).toContain("[0:20] step 1  reward 0.410 (ref 0.520)  S_l 61.2  len 0.93  KL 0.0012  loss 0.123  unscorable 1  judge $0.022\n[0:20] step 2  reward 0.450")
    expect(text.trimEnd().split("\n").at(-1)).toBe("[0:20] run succeeded in 20s: 7 executed, 1 cached, 0 failed")

    // tty, with the plan: the finished step's line is printed once above the block, which keeps the trend.
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval", "Date"] })
    vi.setSystemTime(T0 + 20_000)
    const log2 = { ...fakeLog(), metricListeners: [] as Array<(r: RunLog.MetricRecord) => void> }
    const tty = sink(true)
    const reporter = Effect.runSync(Progress.attach(
      { subscribe: log2.subscribe, subscribeMetrics: (l) => void log2.metricListeners.push(l) },
      { mode: "tty", out: tty.out, nodes }
    ))
    for (const e of run) e.type === "metric" ? log2.metricListeners.forEach((l) => l(e)) : log2.emit(e)
    Effect.runSync(reporter.stop)
    const frame = tty.writes.join("")
    expect(frame.split("step 1/2  reward").length - 1).toBe(2) // once above the block, once in it
    expect(frame).toContain("\r\x1b[2K[0:09] step 1/2  reward 0.410 (ref 0.520)")
    expect(frame).toContain("\r\x1b[2K  reward ▁█ 0.450  S_l ▁█ 64.0  loss ▄ 0.123\n")
    vi.useRealTimers()
  })
})

describe("loop steps end to end", () => {
  const train = Stage.make({
    name: "progress-train",
    version: "1",
    inputs: { x: Schema.Number },
    output: Schema.Number,
    run: ({ x }, _, ctx) => Effect.as(ctx.metric({ loss: 1 / (x + 1), step: x }), x + 1)
  })
  const start = Stage.make({ name: "progress-start", version: "1", output: Schema.Number, run: () => Effect.succeed(0) })
  const pipeline = () =>
    Pipeline.make("progress-loop", (p) => ({
      final: p.loop("train", { steps: 2, init: p.node(start, { id: "start" }), body: (s, x) => s.node(train, { id: "update", inputs: { x } }) })
    }))

  it("a step's line comes when its last node settles, executed or cached (a cached node's metrics come before it settles)", async () => {
    const root = tempDir()
    const lines = async () => {
      const { writes, out } = sink(false)
      const p = pipeline()
      await runOk(root, p, { onStart: (log) => Progress.attach(log, { mode: "plain", out, nodes: p.nodes.map((n) => n.id) }) })
      return writes.join("").split("\n").filter((l) => l.includes("] step ")).map((l) => l.replace(/^\[[\d:]+\] /, ""))
    }
    expect(await lines()).toEqual(["step 1/2  loss 1.000", "step 2/2  loss 0.500"])
    expect(await lines()).toEqual(["step 1/2  loss 1.000", "step 2/2  loss 0.500"]) // all cached
  })
})
