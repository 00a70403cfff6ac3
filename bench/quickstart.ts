/**
 * The cold quickstart as a newcomer meets it (issue 19: under 90 s on this machine): `polaris run
 * recipes/quickstart.yaml` in an empty store, spawn to exit, through the prebuilt bundle as
 * `npx polaris` runs it, repeated.
 *
 * This VM's speed follows its host's load (the same code took 75 s and 111 s on one day), so a
 * wall time alone says little: each run is taken beside two measures of the host's speed at
 * that moment, `node -e 0` (median of 5 spawns) and onnxruntime's fp32 MatMul 512×512 on 2
 * threads (best of 10, the kernel the quickstart's training spends its time in). Per run: the
 * CPU time of the process and its threads (user + sys, from bash's `times`), the critical path
 * read from the run's events (the updates summed; the rollout phases, each step's first
 * rollout start to its last rollout's end, summed), and whether every node's output is
 * byte-identical to the first run's (same key, same object digest).
 *
 *   npm run bench -- quickstart                  (3 runs, about 5 minutes; not in the default run)
 *   npm run bench -- quickstart --repeats 5
 */
import { execFileSync, spawn } from "node:child_process"
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { matmulPoint } from "./model.ts"
import { fmt, ROOT, summarize } from "./measure.ts"
import { markdownTable } from "./table.ts"

/** Issue 19's target, spawn to exit. */
const TARGET_S = 90

export interface QuickstartOptions {
  readonly repeats: number
  readonly log: (line: string) => void
}

interface Host {
  readonly nodeMs: number
  readonly matmulGflops: number
}

interface ColdRun {
  readonly at: Date
  readonly wallS: number
  readonly cpuS: number
  readonly executed: number
  readonly updatesS: number
  readonly rolloutPhasesS: number
  /** Node id -> "key object". */
  readonly outputs: ReadonlyMap<string, string>
}

const host = async (): Promise<Host> => {
  const spawns: Array<number> = []
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now()
    execFileSync(process.execPath, ["-e", "0"])
    spawns.push(performance.now() - t0)
  }
  return { nodeMs: summarize(spawns).median, matmulGflops: (await matmulPoint(512, 10)).gflops }
}

/** bash's `times`: its own user/sys, then its children's (the last line), as `XmY.YYYs XmY.YYYs`. */
const childrenCpuS = (stderr: string): number => {
  const last = stderr.trim().split("\n").at(-1) ?? ""
  const parts = [...last.matchAll(/(\d+)m([\d.]+)s/g)]
  if (parts.length !== 2) throw new Error(`no CPU times in: ${last}`)
  return parts.reduce((s, m) => s + Number(m[1]) * 60 + Number(m[2]), 0)
}

/** The run's critical path from its events.jsonl: updates summed, and each step's rollout phase summed. */
const phases = (store: string): { readonly updatesS: number; readonly rolloutPhasesS: number } => {
  const runs = readdirSync(join(store, "runs"))
  if (runs.length !== 1) throw new Error(`expected one run in ${store}, found ${runs.length}`)
  const stage = new Map<string, string>()
  const started = new Map<string, number>()
  let updatesMs = 0
  const steps = new Map<string, { first: number; last: number }>()
  for (const line of readFileSync(join(store, "runs", runs[0]!, "events.jsonl"), "utf8").split("\n")) {
    if (line.length === 0) continue
    const e = JSON.parse(line) as { type: string; node?: string; stage?: string; at: string; durationMs?: number }
    if (e.type === "node_started") {
      stage.set(e.node!, e.stage!)
      started.set(e.node!, Date.parse(e.at))
    } else if (e.type === "node_finished") {
      const s = stage.get(e.node!)
      if (s === "update" || s === "off-policy-update") updatesMs += e.durationMs!
      const step = /^(train\/step-\d+)\//.exec(e.node!)?.[1]
      if (s === "rollout" && step !== undefined) {
        const from = started.get(e.node!)!
        const to = from + e.durationMs!
        const p = steps.get(step)
        steps.set(step, p === undefined ? { first: from, last: to } : { first: Math.min(p.first, from), last: Math.max(p.last, to) })
      }
    }
  }
  const rolloutMs = [...steps.values()].reduce((s, p) => s + p.last - p.first, 0)
  return { updatesS: updatesMs / 1000, rolloutPhasesS: rolloutMs / 1000 }
}

const coldRun = (store: string): Promise<ColdRun> =>
  new Promise((resolve, reject) => {
    const at = new Date()
    const t0 = performance.now()
    // bash reports its children's CPU time (every thread of the run) once the run has exited.
    const script = `"$NODE" bin/polaris.js run recipes/quickstart.yaml --store "$STORE" --progress none --json; rc=$?; times >&2; exit $rc`
    const child = spawn("bash", ["-c", script], { cwd: ROOT, env: { ...process.env, NODE: process.execPath, STORE: store }, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d) => (stdout += d))
    child.stderr.on("data", (d) => (stderr += d))
    child.on("error", reject)
    child.on("exit", (code) => {
      const wallS = (performance.now() - t0) / 1000
      if (code !== 0) return reject(new Error(`polaris run exited with ${code}:\n${stderr}`))
      try {
        const summary = JSON.parse(stdout) as { executed: number; nodes: Record<string, { key?: string; object?: string }> }
        const outputs = new Map(Object.entries(summary.nodes).map(([id, n]) => [id, `${n.key} ${n.object}`]))
        resolve({ at, wallS, cpuS: childrenCpuS(stderr), executed: summary.executed, ...phases(store), outputs })
      } catch (e) {
        reject(e)
      }
    })
  })

const same = (a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): boolean =>
  a.size === b.size && [...a].every(([id, v]) => b.get(id) === v)

export const run = async (options: QuickstartOptions): Promise<{ readonly markdown: string }> => {
  const { log } = options
  const dir = mkdtempSync(join(tmpdir(), "polaris-bench-quickstart-"))
  const rows: Array<{ readonly host: Host; readonly run: ColdRun }> = []
  try {
    for (let i = 0; i < options.repeats; i++) {
      const h = await host()
      log(`quickstart: run ${i + 1}/${options.repeats}: node -e 0 ${fmt(h.nodeMs)} ms, ORT MatMul 512² ${fmt(h.matmulGflops, 1)} GFLOP/s`)
      const store = join(dir, `store-${i}`)
      const r = await coldRun(store)
      rmSync(store, { recursive: true, force: true })
      log(`quickstart: run ${i + 1}: ${fmt(r.wallS, 1)} s (${fmt(r.cpuS, 1)} CPU-s), updates ${fmt(r.updatesS, 1)} s, rollout phases ${fmt(r.rolloutPhasesS, 1)} s`)
      rows.push({ host: h, run: r })
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  const first = rows[0]!.run.outputs
  const met = rows.filter((r) => r.run.wallS < TARGET_S).length
  const table = markdownTable(
    ["run", "started (UTC)", "`node -e 0` (ms)", "ORT MatMul 512² (GFLOP/s)", "spawn to exit (s)", "CPU (s, % of 2 cores)", "updates (s)", "rollout phases (s)", "nodes executed", "outputs as run 1"],
    rows.map(({ host: h, run: r }, i) => [
      String(i + 1),
      r.at.toISOString().slice(11, 16),
      fmt(h.nodeMs),
      fmt(h.matmulGflops, 1),
      fmt(r.wallS, 1),
      `${fmt(r.cpuS, 1)} (${fmt((100 * r.cpuS) / (2 * r.wallS))}%)`,
      fmt(r.updatesS, 1),
      fmt(r.rolloutPhasesS, 1),
      fmt(r.executed),
      i === 0 ? "–" : same(r.outputs, first) ? "identical" : "DIFFERENT"
    ]),
    ["r", "l", "r", "r", "r", "r", "r", "r", "r", "l"]
  )
  return {
    markdown: [
      `${rows.length} cold runs of \`npx polaris run recipes/quickstart.yaml --store FRESH --progress none\` (the prebuilt bundle),`,
      "spawn to exit, each after a measure of the host's speed at that moment: `node -e 0` (median of 5 spawns) and",
      "onnxruntime's fp32 MatMul 512×512 on 2 threads (best of 10). CPU is the run's user + sys time, all threads;",
      "updates and rollout phases (each step's first rollout start to its last rollout's end) are summed over the 40",
      "steps from the run's events, and make most of the critical path. \"outputs as run 1\": every node's key and",
      "output digest equal to the first run's.",
      "",
      table,
      "",
      `Target (issue 19): under ${TARGET_S} s from spawn to exit: ${met} of ${rows.length} runs.`
    ].join("\n")
  }
}
