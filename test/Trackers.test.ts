/**
 * Trackers: how metrics records become scalars (tag, step, which values), when a live run
 * writes them (a node's records once it finishes; a failed or retried attempt's never; a
 * cached node's at once), and the recipe's `trackers.tensorboard` end to end through the CLI,
 * read back by TensorBoard, across a failure and `polaris resume`, a fully cached re-run and
 * `polaris export-metrics`.
 */
import { mkdirSync, readdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { type RunLog, TensorBoard, Trackers } from "polaris"
import { ROOT, polaris } from "./support/cli.ts"
import { tempDir } from "./support/store.ts"
import { readTensorBoard, tensorboardMissing } from "./support/tensorboard.ts"

describe("scalarEventOf", () => {
  it("tags by the node path after its loop step, steps by the record's own step, else the node's, else 0", () => {
    expect(Trackers.scalarEventOf("train/step-003/groups", { reward_policy_mean: 0.5, "words_mean@300": 120 }, 10)).toEqual({
      step: 3,
      wallTime: 10,
      values: [{ tag: "groups/reward_policy_mean", value: 0.5 }, { tag: "groups/words_mean@300", value: 120 }]
    })
    expect(Trackers.scalarEventOf("train/step-012/group-01/judge", { judge_cost_usd: 0.01 }, 1)).toMatchObject({ step: 12, values: [{ tag: "group-01/judge/judge_cost_usd" }] })
    // A pretraining segment's records name their optimizer step.
    expect(Trackers.scalarEventOf("pretrain/step-000/segment", { step: 140, loss: 3.2 }, 1)).toEqual({ step: 140, wallTime: 1, values: [{ tag: "segment/loss", value: 3.2 }] })
    expect(Trackers.scalarEventOf("dataset", { stories: 40 }, 1)).toEqual({ step: 0, wallTime: 1, values: [{ tag: "dataset/stories", value: 40 }] })
    expect(Trackers.scalarEventOf("eval/initial/summary", { reward_mean: 0.3 }, 1)).toMatchObject({ step: 0, values: [{ tag: "eval/initial/summary/reward_mean" }] })
  })

  it("keeps finite numbers only; a non-integer step falls back to the node's", () => {
    const e = Trackers.scalarEventOf("train/step-002/update", { step: 1.5, kl: null, clip_frac: Number.NaN, loss: Infinity, label: "x", ok: true, grad_norm: 0 }, 1)
    expect(e).toEqual({ step: 2, wallTime: 1, values: [{ tag: "update/grad_norm", value: 0 }] })
  })
})

/** A RunLog stand-in: events and metrics go to subscribers only. */
const fakeLog = () => {
  const events: Array<(e: RunLog.LoggedEvent) => void> = []
  const metrics: Array<(r: RunLog.MetricRecord) => void> = []
  const at = "2026-01-01T00:00:00.000Z"
  return {
    runId: "r1",
    subscribe: (l: (e: RunLog.LoggedEvent) => void) => void events.push(l),
    subscribeMetrics: (l: (r: RunLog.MetricRecord) => void) => void metrics.push(l),
    emit: (e: RunLog.RunEvent) => events.forEach((l) => l({ ...e, at } as RunLog.LoggedEvent)),
    metric: (node: string, values: Record<string, unknown>) => metrics.forEach((l) => l({ node, key: "k", values, at }))
  }
}

/** A sink that keeps what it is given as `step tag=value` lines. */
const memorySink = (name = "memory") => {
  const lines: Array<string> = []
  const sink: Trackers.Sink = {
    name,
    where: "memory",
    write: (events: ReadonlyArray<TensorBoard.ScalarEvent>) => Effect.sync(() => events.forEach((e) => e.values.forEach((v) => lines.push(`${e.step} ${v.tag}=${v.value}`))))
  }
  return { sink, lines }
}

describe("follow", () => {
  it("writes a node's records when it finishes; drops a failed attempt's and a retried attempt's; passes a cached node's at once", () => {
    const log = fakeLog()
    const { sink, lines } = memorySink()
    Trackers.follow(log, [sink])

    log.emit({ type: "node_started", node: "train/step-000/update", stage: "update", key: "a" })
    log.metric("train/step-000/update", { step: 0, loss: 1 })
    expect(lines).toEqual([]) // held while the node runs
    log.emit({ type: "node_retry", node: "train/step-000/update", attempt: 1, error: "503" })
    log.metric("train/step-000/update", { step: 0, loss: 0.9 })
    log.emit({ type: "node_finished", node: "train/step-000/update", key: "a", object: "o", durationMs: 1 })
    expect(lines).toEqual(["0 update/loss=0.9"])

    log.emit({ type: "node_started", node: "train/step-001/score", stage: "score", key: "b" })
    log.metric("train/step-001/score", { reward: 0.75 })
    log.emit({ type: "node_failed", node: "train/step-001/score", error: "boom" })
    expect(lines).toEqual(["0 update/loss=0.9"])

    log.emit({ type: "node_cached", node: "prepare", key: "c", object: "o" })
    log.metric("prepare", { items: 4, label: "four" })
    expect(lines).toEqual(["0 update/loss=0.9", "0 prepare/items=4"])
  })

  it("reports a sink that fails once, keeps feeding the others", () => {
    const log = fakeLog()
    const good = memorySink("good")
    let calls = 0
    const bad: Trackers.Sink = {
      name: "bad",
      where: "nowhere",
      write: () => Effect.suspend(() => (++calls, Effect.fail(new TensorBoard.TensorBoardError({ path: "nowhere", reason: "append", cause: new Error("ENOSPC") }))))
    }
    const errors: Array<unknown> = []
    Trackers.follow(log, [bad, good.sink], { onError: (e) => errors.push(e) })
    log.metric("a", { x: 1 })
    log.metric("b", { x: 2 })
    expect(good.lines).toEqual(["0 a/x=1", "0 b/x=2"])
    expect(calls).toBe(1)
    expect(errors.map(String)).toEqual([expect.stringContaining("tensorboard: cannot append nowhere: ENOSPC")])
  })
})

const missing = tensorboardMissing()
if (missing !== undefined) console.warn(`TensorBoard tracker CLI tests skipped: ${missing}`)

describe.skipIf(missing !== undefined)(`trackers.tensorboard through the CLI, read by TensorBoard${missing !== undefined ? ` (skipped: ${missing})` : ""}`, () => {
  const FIXTURE = join(ROOT, "test", "fixtures", "tracking-pipeline.ts")
  const EXPECTED = {
    "prepare/items": [[0, 4]],
    "score/reward": [[0, 0.25], [1, 0.75], [2, 1.25]],
    "update/loss": [[0, 1], [1, Math.fround(0.5)], [2, Math.fround(1 / 3)]]
  }

  it("a failed run, its resume, a cached re-run elsewhere and export-metrics: every scalar once, at its step", async () => {
    const dir = tempDir("polaris-trackers-")
    const store = join(dir, "store")
    mkdirSync(join(dir, "recipes"))
    const recipe = join(dir, "recipes", "tracked.yaml")
    writeFileSync(recipe, `pipeline: ${FIXTURE}\ntrackers:\n  tensorboard: { dir: ../tb }\n`)

    // Run 1 fails at train/step-001/score after recording its reward; update of step 0 is retried once.
    const failed = await polaris(["run", recipe, "--store", store, "--progress", "none"], { env: { ...process.env, TRACKING_FAIL: "1" } })
    expect(failed.status, failed.stderr).toBe(1)
    const runId = /run (\S+) failed/.exec(failed.stderr)![1]!
    expect(failed.stderr).toContain(`tensorboard: ${join(dir, "tb", runId)}/events.out.tfevents.`) // the dir is relative to the recipe
    const afterFailure = readTensorBoard(join(dir, "tb"))
    expect(afterFailure.runs[runId]).toEqual({ "prepare/items": [[0, 4]], "score/reward": [[0, 0.25]], "update/loss": [[0, 1]] })

    const resumed = await polaris(["resume", runId, "--store", store, "--json"])
    expect(resumed.status, resumed.stderr).toBe(0)
    expect(JSON.parse(resumed.stdout)).toMatchObject({ runId, executed: 4, cached: 3 })
    const read = readTensorBoard(join(dir, "tb"))
    expect(read.files.map((f) => [f.run, f.file_version])).toEqual([[runId, "brain.Event:2"], [runId, "brain.Event:2"]]) // one file per process
    expect(read.runs[runId]).toEqual(EXPECTED)

    // Another run, every node cached, into another directory (set on the command line): the same
    // scalars from the cache entries, and no node re-ran (trackers are in no cache key).
    const again = await polaris(["run", recipe, "--store", store, "--json", "--set", `trackers.tensorboard.dir=${join(dir, "tb2")}`])
    expect(again.status, again.stderr).toBe(0)
    const second = JSON.parse(again.stdout) as { runId: string; executed: number; cached: number }
    expect(second).toMatchObject({ executed: 0, cached: 7 })
    expect(readTensorBoard(join(dir, "tb2")).runs).toEqual({ [second.runId]: EXPECTED })

    // export-metrics rebuilds the first run from metrics.jsonl, whose repeated records (the failed
    // and the retried attempts') are written once.
    const exported = await polaris(["export-metrics", runId, "--store", store, "--tensorboard", join(dir, "tb3")])
    expect(exported.status, exported.stderr).toBe(0)
    expect(exported.stdout.trim()).toMatch(new RegExp(`^${join(dir, "tb3", runId)}/events\\.out\\.tfevents\\.\\d{10}\\.`))
    expect(readdirSync(join(dir, "tb3", runId))).toHaveLength(1)
    expect(readTensorBoard(join(dir, "tb3")).runs).toEqual({ [runId]: EXPECTED })
  })
})
