/**
 * The full quickstart under fire, for the cache's exactness claims at full scale (too long for
 * CI; the reduced quickstart is tested in test/Quickstart.test.ts and test/CacheExactness.test.ts):
 *
 * 1. an uninterrupted run from an empty store, then the same run again (all cached), and a second
 *    uninterrupted run in another store (the same keys and bytes);
 * 2. another store, SIGKILLed at `--kills` random moments (each run resumed in place by
 *    running the recipe again), then finished: every node's output must be byte-identical to
 *    the uninterrupted run's (same key, same object digest), the final weights included;
 * 3. in a copy of the project, a comment appended to each stage file in turn, the recipe run
 *    again: how many nodes each edit executes (the contract: none).
 *
 *   npm run bench -- soak          (about 10 minutes on 2 idle cores; not part of the default run)
 *   npm run bench -- soak-offpolicy  the same with grpo.off_policy_steps: 1 and 20 kills, no edits (issue 16)
 */
import { spawn } from "node:child_process"
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { seeded } from "../src/internal/random.ts"
import { ROOT } from "./measure.ts"

interface Summary {
  readonly executed: number
  readonly cached: number
  readonly nodes: Record<string, { readonly status: string; readonly key?: string; readonly object?: string }>
}

export interface SoakOptions {
  /** SIGKILLs that must interrupt a run (default 30). */
  readonly kills?: number
  /** `--set`s for every run (`grpo.off_policy_steps=1` for the off-policy soak). */
  readonly sets?: ReadonlyArray<string>
  /** Whether to run part 3, the comment edits (default true). */
  readonly edits?: boolean
  readonly log: (line: string) => void
}

/** `polaris run` of the full quickstart; with `killAfterMs`, SIGKILLed then unless it ended first. */
const runQuickstart = (root: string, store: string, killAfterMs?: number, sets: ReadonlyArray<string> = []) =>
  new Promise<{ summary?: Summary; killed: boolean; ms: number; stderr: string }>((resolve) => {
    const t0 = Date.now()
    const args = [join(root, "bin", "polaris.js"), "run", join(root, "recipes", "quickstart.yaml"), ...sets.flatMap((s) => ["--set", s]), "--store", store, "--json"]
    const child = spawn(process.execPath, args, { cwd: root, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d) => (stdout += d))
    child.stderr.on("data", (d) => (stderr += d))
    const timer = killAfterMs === undefined ? undefined : setTimeout(() => child.kill("SIGKILL"), killAfterMs)
    child.on("exit", (code, signal) => {
      if (timer !== undefined) clearTimeout(timer)
      const ms = Date.now() - t0
      if (signal === "SIGKILL") return resolve({ killed: true, ms, stderr })
      if (code !== 0) throw new Error(`polaris run failed (${code}):\n${stderr}`)
      resolve({ summary: JSON.parse(stdout) as Summary, killed: false, ms, stderr })
    })
  })

/** The final policy's weights digest: update node -> TrainState -> $tree manifest -> model.safetensors blob. */
const finalWeights = (store: string, summary: Summary): string => {
  const read = (digest: string) => JSON.parse(readFileSync(join(store, "objects", digest.slice(0, 2), digest), "utf8"))
  const last = Object.keys(summary.nodes).filter((id) => /^train\/step-\d+\/update$/.test(id)).sort().at(-1)!
  const state = read(summary.nodes[last]!.object!)
  return read(state.policy.checkpoint.$tree).files["model.safetensors"].$blob
}

/** Runs the soak in a temp folder (removed afterwards) and returns its table. */
export const run = async (options: SoakOptions): Promise<{ readonly markdown: string }> => {
  const KILLS = options.kills ?? 30
  const sets = options.sets ?? []
  const random = seeded("soak:1")
  const log = options.log
  const dir = mkdtempSync(join(tmpdir(), "polaris-soak-"))
  const rows: Array<[string, string]> = []

  // 1. Uninterrupted, then again.
  const clean = join(dir, "clean")
  const first = await runQuickstart(ROOT, clean, undefined, sets)
  const again = await runQuickstart(ROOT, clean, undefined, sets)
  // A second uninterrupted run in its own store: the same keys and bytes, node for node.
  const twin = await runQuickstart(ROOT, join(dir, "twin"), undefined, sets)
  const twinDiffers = Object.keys(first.summary!.nodes).filter((id) => first.summary!.nodes[id]!.object !== twin.summary!.nodes[id]?.object || first.summary!.nodes[id]!.key !== twin.summary!.nodes[id]?.key)
  rows.push(["uninterrupted run", `${first.summary!.executed} nodes executed in ${(first.ms / 1000).toFixed(1)} s`])
  rows.push(["the same run again", `${again.summary!.executed} executed, ${again.summary!.cached} cached, ${(again.ms / 1000).toFixed(1)} s`])
  rows.push(["a second uninterrupted run, another store: nodes whose key or output differs", `${twinDiffers.length} of ${Object.keys(first.summary!.nodes).length}`])
  log(`clean: ${first.ms} ms; again: ${again.summary!.executed} executed`)

  // 2. Killed at random moments, resumed in place each time.
  const killed = join(dir, "killed")
  let kills = 0
  let attempts = 0
  let finished: Summary | undefined
  while (kills < KILLS) {
    attempts++
    const r = await runQuickstart(ROOT, killed, 1000 + random() * 7000, sets)
    if (r.killed) kills++
    else {
      finished = r.summary
      break
    }
    log(`kill ${kills} after ${r.ms} ms`)
  }
  const last = finished ?? (await runQuickstart(ROOT, killed, undefined, sets)).summary!
  const resumedCheck = (await runQuickstart(ROOT, killed, undefined, sets)).summary!
  const differing = Object.keys(first.summary!.nodes).filter((id) => {
    const a = first.summary!.nodes[id]!
    const b = resumedCheck.nodes[id]
    return b === undefined || a.key !== b.key || a.object !== b.object
  })
  rows.push(["SIGKILLs that interrupted a run", `${kills} (of ${attempts} runs started; the run ${finished === undefined ? "then finished in one more" : "finished before the last kill"})`])
  rows.push(["nodes whose key or output differs from the uninterrupted run", `${differing.length} of ${Object.keys(first.summary!.nodes).length}${differing.length > 0 ? `: ${differing.slice(0, 5).join(", ")}` : ""}`])
  rows.push(["final weights (model.safetensors sha256)", `${finalWeights(killed, resumedCheck) === finalWeights(clean, first.summary!) ? "identical" : "DIFFERENT"}: ${finalWeights(clean, first.summary!).slice(0, 16)}…`])
  rows.push(["run after the last resume", `${resumedCheck.executed} executed`])
  log(`kills: ${kills}; differing nodes: ${differing.length}; last: ${last.executed} executed`)

  // 3. A comment appended to each stage file, in a copy of the project.
  if (options.edits === false) {
    rmSync(dir, { recursive: true, force: true })
    return { markdown: table(rows) }
  }
  const checkout = join(dir, "checkout")
  for (const part of ["bin", "src", "stages", "pipelines", "recipes", "models", "package.json", "tsconfig.json"]) cpSync(join(ROOT, part), join(checkout, part), { recursive: true })
  cpSync(join(ROOT, "examples", "anthologies"), join(checkout, "examples", "anthologies"), { recursive: true })
  symlinkSync(join(ROOT, "node_modules"), join(checkout, "node_modules"))
  const edits: Array<string> = []
  for (const file of readdirSync(join(checkout, "stages")).sort()) {
    const path = join(checkout, "stages", file)
    const original = readFileSync(path, "utf8")
    writeFileSync(path, `${original}\n// A comment changes no result.\n`)
    const r = await runQuickstart(checkout, clean, undefined, sets)
    writeFileSync(path, original)
    edits.push(`${file}: ${r.summary!.executed}`)
    log(`comment in ${file}: ${r.summary!.executed} executed`)
  }
  const total = edits.map((e) => Number(e.split(": ")[1])).reduce((a, b) => a + b, 0)
  rows.push([`a comment appended to each of the ${edits.length} stage files`, `${total} nodes executed in all (${edits.filter((e) => !e.endsWith(": 0")).join(", ") || "none for any file"})`])

  rmSync(dir, { recursive: true, force: true })
  return { markdown: table(rows) }
}

const table = (rows: ReadonlyArray<readonly [string, string]>) =>
  ["| measurement | result |", "|---|---|", ...rows.map(([what, result]) => `| ${what} | ${result} |`)].join("\n")
