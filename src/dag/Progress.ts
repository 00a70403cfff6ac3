/**
 * A progress view of a run, fed by the run log's events. Two views over one model:
 *
 *   - tty:   a live block redrawn in place (header with counts and ETA, the loop steps' metrics
 *            as sparklines and the latest steps' lines, one line per running node with its
 *            item progress, failed nodes with their error); each finished step's line is also
 *            printed once above the block, so the terminal keeps the history
 *   - plain: one line per meaningful event, for CI logs and pipes, and one per finished loop
 *            step with its metrics (StepMetrics.ts); no ANSI codes
 *
 * The model is a pure reducer (`reduce`) and the live block a pure `render`, so tests pin the
 * output without a terminal; `attach` only wires them to a RunLog and a stream.
 *
 * @example
 * yield* Executor.run(pipeline, { onStart: (log) => Progress.attach(log, { mode: "auto" }) })
 */
import { Effect } from "effect"
import type { LoggedEvent, MetricRecord, RunLog } from "./RunLog.ts"
import * as StepMetrics from "./StepMetrics.ts"

/** Which view: `auto` is `tty` when the stream is a terminal, else `plain`; `none` shows nothing. */
export type Mode = "auto" | "tty" | "plain" | "none"

/** Where the view writes: a `process.stderr`-like stream. */
export interface Output {
  readonly write: (s: string) => boolean
  readonly isTTY?: boolean
  readonly columns?: number
}

/** A metrics record as the view receives it (RunLog `subscribeMetrics`), tagged like an event. */
export type MetricEvent = MetricRecord & { readonly type: "metric" }

/** What the view folds: the run log's events and its metrics records. */
export type ViewEvent = LoggedEvent | MetricEvent

/** A node being executed now, with its latest item progress. */
export interface Running {
  readonly node: string
  readonly stage: string
  readonly startedMs: number
  readonly attempt: number
  readonly progress: { readonly done: number; readonly total: number; readonly atMs: number } | undefined
}

/** What the view knows about the run so far. */
export interface State {
  readonly pipeline: string
  /** Nodes in the pipeline, from `run_started`. */
  readonly total: number
  readonly startedMs: number | undefined
  readonly executed: number
  readonly cached: number
  readonly failed: number
  readonly skipped: number
  /** Sum of the durations of executed nodes, for the ETA. */
  readonly executedMs: number
  /** In the order the nodes started. */
  readonly running: ReadonlyArray<Running>
  readonly failures: ReadonlyArray<{ readonly node: string; readonly error: string }>
  readonly finished: { readonly status: "succeeded" | "failed"; readonly durationMs: number } | undefined
  /** Loop steps' metrics; given the pipeline's node ids ({@link withPlan}), it knows when a step is done. */
  readonly steps: StepMetrics.Table
  /** The steps the last event finished (their lines are printed once). */
  readonly finishedSteps: ReadonlyArray<StepMetrics.Step>
}

/** The state before any event. */
export const initial: State = {
  pipeline: "",
  total: 0,
  startedMs: undefined,
  executed: 0,
  cached: 0,
  failed: 0,
  skipped: 0,
  executedMs: 0,
  running: [],
  failures: [],
  finished: undefined,
  steps: StepMetrics.empty,
  finishedSteps: []
}

/** The initial state of a pipeline with these node ids: a loop step is done when its last node settles. */
export const withPlan = (nodeIds: ReadonlyArray<string>): State => ({ ...initial, steps: StepMetrics.plan(nodeIds) })

const without = (running: ReadonlyArray<Running>, node: string) => running.filter((r) => r.node !== node)
const update = (running: ReadonlyArray<Running>, node: string, f: (r: Running) => Running) =>
  running.map((r) => (r.node === node ? f(r) : r))

/** The state after one event. Pure; events the view does not show leave it unchanged. */
export const reduce = (state: State, event: ViewEvent): State => {
  const next = reduceEvent(state.finishedSteps.length > 0 ? { ...state, finishedSteps: [] } : state, event)
  if (event.type === "metric") return { ...next, steps: StepMetrics.addMetric(next.steps, event.node, event.values) }
  if (event.type !== "node_finished" && event.type !== "node_cached" && event.type !== "node_failed" && event.type !== "node_skipped") return next
  const { table, finished } = StepMetrics.settle(next.steps, event.node)
  return { ...next, steps: table, finishedSteps: finished === undefined ? [] : [finished] }
}

const reduceEvent = (state: State, event: ViewEvent): State => {
  const at = Date.parse(event.at)
  switch (event.type) {
    case "run_started":
      return { ...initial, pipeline: event.pipeline, total: event.nodes, startedMs: at, steps: StepMetrics.restart(state.steps) }
    case "node_started":
      return {
        ...state,
        running: [...without(state.running, event.node), { node: event.node, stage: event.stage, startedMs: at, attempt: 1, progress: undefined }]
      }
    case "node_retry":
      return { ...state, running: update(state.running, event.node, (r) => ({ ...r, attempt: event.attempt + 1 })) }
    case "progress":
      return { ...state, running: update(state.running, event.node, (r) => ({ ...r, progress: { done: event.done, total: event.total, atMs: at } })) }
    case "node_finished":
      return { ...state, executed: state.executed + 1, executedMs: state.executedMs + event.durationMs, running: without(state.running, event.node) }
    case "node_cached":
      return { ...state, cached: state.cached + 1, running: without(state.running, event.node) }
    case "node_failed":
      return {
        ...state,
        failed: state.failed + 1,
        running: without(state.running, event.node),
        failures: [...state.failures, { node: event.node, error: event.error }]
      }
    case "node_skipped":
      return { ...state, skipped: state.skipped + 1, running: without(state.running, event.node) }
    case "run_finished":
      return { ...state, running: [], finished: { status: event.status, durationMs: event.durationMs } }
    default:
      return state
  }
}

/** `840ms`, `3.2s`, `42s`, `3m05s`, `1h02m`. */
export const formatDuration = (ms: number): string => {
  const s = Math.max(0, ms) / 1000
  if (s < 1) return `${Math.round(s * 1000)}ms`
  if (s < 10) return `${s.toFixed(1)}s`
  if (s < 60) return `${Math.floor(s)}s`
  const pad = (n: number) => String(n).padStart(2, "0")
  if (s < 3600) return `${Math.floor(s / 60)}m${pad(Math.floor(s % 60))}s`
  return `${Math.floor(s / 3600)}h${pad(Math.floor((s % 3600) / 60))}m`
}

/** A stopwatch for plain-line prefixes: `0:07`, `12:30`, `1:02:05`. */
const clock = (ms: number): string => {
  const s = Math.floor(Math.max(0, ms) / 1000)
  const pad = (n: number) => String(n).padStart(2, "0")
  return s < 3600 ? `${Math.floor(s / 60)}:${pad(s % 60)}` : `${Math.floor(s / 3600)}:${pad(Math.floor((s % 3600) / 60))}:${pad(s % 60)}`
}

const firstLine = (text: string) => text.split("\n")[0] ?? ""
const fit = (line: string, width: number) => (line.length <= width ? line : `${line.slice(0, Math.max(0, width - 1))}…`)
const BAR = 10
const bar = (done: number, total: number) => {
  const filled = total > 0 ? Math.min(BAR, Math.floor((done / total) * BAR)) : 0
  return "█".repeat(filled) + "░".repeat(BAR - filled)
}
/** Shown running nodes; the rest collapse into "+N more" so the block fits a terminal. */
const MAX_RUNNING = 10
/** Latest loop steps shown in the live block (the finished ones are also in the scrollback). */
const STEP_LINES = 2

/** Nodes finished in any way (executed, cached, failed or skipped). */
export const settled = (state: State): number => state.executed + state.cached + state.failed + state.skipped

/**
 * Time left: the mean duration of executed nodes times the nodes not yet settled. Ignores
 * parallelism and that cached nodes are instant, so it errs long; undefined until a node ran.
 */
export const eta = (state: State): number | undefined => {
  const remaining = state.total - settled(state)
  if (state.executed === 0 || remaining <= 0 || state.finished !== undefined) return undefined
  return (state.executedMs / state.executed) * remaining
}

/** Item ETA of a running node: its rate since the node started, applied to the items left. */
const itemEta = (r: Running): number | undefined => {
  const p = r.progress
  if (p === undefined || p.done <= 0 || p.done >= p.total) return undefined
  return ((p.atMs - r.startedMs) / p.done) * (p.total - p.done)
}

/**
 * The live block at time `now` (ms), each line cut to `width` characters. Pure.
 *
 * @example
 * const lines = Progress.render(events.reduce(Progress.reduce, Progress.initial), 80, Date.now())
 */
export const render = (state: State, width: number, now: number): Array<string> => {
  const counts = `${settled(state)}/${state.total} nodes · ${state.executed} executed · ${state.cached} cached · ${state.failed} failed`
  const skipped = state.skipped > 0 ? ` · ${state.skipped} skipped` : ""
  const left = eta(state)
  const header = state.finished !== undefined
    ? `run ${state.pipeline} ${state.finished.status} in ${formatDuration(state.finished.durationMs)}: ${counts}${skipped}`
    : `run ${state.pipeline}: ${counts} · ${state.running.length} running${skipped}${left === undefined ? "" : ` · eta ${formatDuration(left)}`}`
  const lines = [header]
  const trend = StepMetrics.trend(state.steps)
  if (trend !== undefined) lines.push(`  ${trend}`)
  for (const l of StepMetrics.latestLines(state.steps, STEP_LINES)) lines.push(`  ${l}`)
  for (const r of state.running.slice(0, MAX_RUNNING)) {
    const p = r.progress
    const items = p === undefined ? "" : `  ${bar(p.done, p.total)} ${p.done}/${p.total}`
    const rest = itemEta(r)
    const attempt = r.attempt > 1 ? ` · attempt ${r.attempt}` : ""
    lines.push(`  ${r.node} (${r.stage}) ${formatDuration(now - r.startedMs)}${items}${rest === undefined ? "" : ` eta ${formatDuration(rest)}`}${attempt}`)
  }
  if (state.running.length > MAX_RUNNING) lines.push(`  +${state.running.length - MAX_RUNNING} more`)
  for (const f of state.failures) lines.push(`  ✗ ${f.node}: ${firstLine(f.error)}`)
  return lines.map((line) => fit(line, width))
}

/** Plain mode prints a node's progress at most this often (plus its final done == total). */
export const PROGRESS_EVERY_MS = 2000

/**
 * The lines of the loop steps `event` finished (state after it), each once. Without a plan
 * ({@link withPlan}) no step is known to be done until the run finishes: then every step with
 * metrics gets its line.
 */
export const stepLines = (state: State, event: ViewEvent, shown: Set<string>): Array<string> => {
  const steps = event.type === "run_finished" && state.steps.planned.size === 0 ? [...state.steps.steps.values()] : state.finishedSteps
  return steps.flatMap((step) => {
    const id = `${step.loop}/${step.index}`
    const line = shown.has(id) ? undefined : StepMetrics.line(state.steps, step)
    if (line === undefined) return []
    shown.add(id)
    return [line]
  })
}

/**
 * A plain-line formatter: give it the state after `event` and the event, get the log lines (one
 * string, lines joined by newlines) or undefined. It remembers when each node's progress was
 * last printed, to throttle it, and which steps' lines it printed.
 */
export const plainPrinter = (): ((state: State, event: ViewEvent) => string | undefined) => {
  const printed = new Map<string, { atMs: number; done: number }>()
  const shown = new Set<string>()
  return (state, event) => {
    const at = Date.parse(event.at)
    const own = event.type === "metric" ? undefined : plainText(state, event, at, printed)
    const steps = stepLines(state, event, shown)
    // A step finished by a node prints after the node's line; the run's own line comes last.
    const lines = own === undefined ? steps : event.type === "run_finished" ? [...steps, own] : [own, ...steps]
    return lines.length === 0 ? undefined : lines.map((l) => `[${clock(at - (state.startedMs ?? at))}] ${l}`).join("\n")
  }
}

const plainText = (state: State, event: LoggedEvent, at: number, printed: Map<string, { atMs: number; done: number }>): string | undefined => {
  switch (event.type) {
    case "run_started":
      return `run ${event.pipeline}: ${event.nodes} nodes${event.resumed ? " (resumed)" : ""}`
    case "node_started":
      return `${event.node} started (${event.stage})`
    case "node_finished":
      return `${event.node} finished in ${formatDuration(event.durationMs)}`
    case "node_cached":
      return `${event.node} cached`
    case "node_failed":
      // The whole error, continuation lines indented under the node's line.
      return `${event.node} failed: ${event.error.replace(/\n/g, "\n    ")}`
    case "node_skipped":
      return event.because === "budget" ? `${event.node} not started: the budget is spent` : `${event.node} skipped: upstream ${event.because} failed`
    case "node_retry":
      return `${event.node} retry, attempt ${event.attempt}: ${firstLine(event.error)}`
    case "corrupt_object":
      return `${event.node} corrupt object ${event.object.slice(0, 12)}: ${firstLine(event.detail)}`
    case "lock_wait":
      return `${event.node} waiting for lock held by ${event.holder}`
    case "lock_broken":
      return `${event.node} broke stale lock held by ${event.holder}`
    case "log":
      return `${event.node}: ${event.message}`
    case "progress": {
      const last = printed.get(event.node)
      // The final count always shows (once); anything else at most every PROGRESS_EVERY_MS.
      const final = event.done >= event.total
      if (last !== undefined && (final ? last.done === event.done : at - last.atMs < PROGRESS_EVERY_MS)) return undefined
      printed.set(event.node, { atMs: at, done: event.done })
      return `${event.node} ${event.done}/${event.total}`
    }
    case "run_finished": {
      const skipped = state.skipped > 0 ? `, ${state.skipped} skipped` : ""
      return `run ${event.status} in ${formatDuration(event.durationMs)}: ${event.executed} executed, ${event.cached} cached, ${event.failed} failed${skipped}`
    }
    default:
      return undefined
  }
}

/** An attached view. `stop` paints the final state and frees the timer; it is idempotent. */
export interface Reporter {
  readonly stop: Effect.Effect<void>
  /** The current model, for callers that want the counts. */
  readonly state: () => State
}

/** How to attach. */
export interface Options {
  readonly mode: Mode
  /** Defaults to `process.stderr`, so stdout stays clean for results. */
  readonly out?: Output
  /** Repaint period of the tty view. Default 100 ms. */
  readonly refreshMs?: number
  /** The pipeline's node ids: with them a loop step's line prints as soon as its last node settles. */
  readonly nodes?: ReadonlyArray<string>
}

/** Events the tty view also prints above its live block, since the block keeps no history. */
const SCROLLBACK: ReadonlySet<ViewEvent["type"]> = new Set(["node_retry", "corrupt_object", "lock_wait", "lock_broken", "log"])

/**
 * Subscribes a view to `log`. The tty view repaints on an unref'd timer (it never keeps the
 * process alive); every view stops itself on `run_finished`. Made for `RunOptions.onStart`.
 * A caller that may interrupt the run calls `stop` itself (e.g. in `Effect.ensuring`).
 *
 * @example
 * Executor.run(pipeline, { onStart: (log) => Progress.attach(log, { mode: "auto" }) })
 */
export const attach = (log: Pick<RunLog, "subscribe"> & Partial<Pick<RunLog, "subscribeMetrics">>, options: Options): Effect.Effect<Reporter> =>
  Effect.sync(() => {
    const out: Output = options.out ?? process.stderr
    const mode = options.mode === "auto" ? (out.isTTY === true ? "tty" : "plain") : options.mode
    let state = options.nodes === undefined ? initial : withPlan(options.nodes)
    let stopped = mode === "none"
    const printer = plainPrinter()
    const shown = new Set<string>()
    // The tty view: lines to print once above the block, and how tall the last block was.
    const pending: Array<string> = []
    let painted = 0
    const paint = () => {
      const width = Math.max(20, (out.columns ?? 80) - 1) // one short of the edge: no auto-wrap
      let frame = painted > 0 ? `\x1b[${painted}A` : ""
      for (const line of pending.splice(0)) frame += `\r\x1b[2K${line}\n`
      const lines = render(state, width, Date.now())
      for (const line of lines) frame += `\r\x1b[2K${line}\n`
      out.write(`${frame}\x1b[J`) // clears what a taller previous block left below
      painted = lines.length
    }
    const timer = mode === "tty" ? setInterval(paint, options.refreshMs ?? 100) : undefined
    timer?.unref()
    const stop = () => {
      if (stopped) return
      stopped = true
      if (timer !== undefined) {
        clearInterval(timer)
        paint()
      }
    }
    const onEvent = (event: ViewEvent) => {
      if (stopped) return
      state = reduce(state, event)
      if (mode === "plain") {
        const line = printer(state, event)
        if (line !== undefined) out.write(`${line}\n`)
      } else {
        const line = SCROLLBACK.has(event.type) ? printer(state, event) : undefined
        if (line !== undefined) pending.push(line)
        const at = Date.parse(event.at)
        for (const l of stepLines(state, event, shown)) pending.push(`[${clock(at - (state.startedMs ?? at))}] ${l}`)
      }
      if (event.type === "run_finished") stop()
    }
    log.subscribe(onEvent)
    log.subscribeMetrics?.((record) => onEvent({ ...record, type: "metric" }))
    return { stop: Effect.sync(stop), state: () => state }
  })
