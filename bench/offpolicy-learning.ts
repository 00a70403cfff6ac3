/**
 * Does off-policy GRPO still learn? (issue 16) The full quickstart (recipes/quickstart.yaml: the
 * shipped 1.3M-parameter model, 40 steps of 8 groups × 6, the proxy judge) run with
 * `grpo.off_policy_steps` k = 0 and k = 1 for 4 seeds each, every run in a fresh store, one after
 * another (the same machine, the same load). Per run, from the run's own held-out evaluation
 * (the initial and the final policy on the same held-out prompts): the gain in length score S_l
 * and in reward, final − initial; and the run's wall time, spawn to exit.
 *
 * The claim to check: k = 1's gains lie within the spread of k = 0's over seeds, and k = 1 is no
 * slower on this machine (the embedded engine is one CPU resource, so overlap buys nothing here;
 * it must cost nothing either).
 *
 *   npm run bench -- learning      (8 quickstart runs, about 30 minutes on 2 cores; not in the default run)
 */
import { spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fmt, ROOT } from "./measure.ts"
import { markdownTable } from "./table.ts"

const SEEDS = [1, 2, 3, 4] as const
const LAGS = [0, 1] as const

export interface LearningOptions {
  readonly seeds?: ReadonlyArray<number>
  /** Extra `--set`s for every run (a smaller quickstart when checking that the code runs). */
  readonly sets?: ReadonlyArray<string>
  readonly log: (line: string) => void
}

interface Gains {
  readonly k: number
  readonly seed: number
  readonly seconds: number
  readonly lengthScore: number
  readonly reward: number
}

const polaris = (args: ReadonlyArray<string>) =>
  new Promise<{ stdout: string; ms: number }>((resolve, reject) => {
    const t0 = Date.now()
    const child = spawn(process.execPath, [join(ROOT, "bin", "polaris.js"), ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d) => (stdout += d))
    child.stderr.on("data", (d) => (stderr += d))
    child.on("exit", (code) => (code === 0 ? resolve({ stdout, ms: Date.now() - t0 }) : reject(new Error(`polaris ${args.join(" ")} failed (${code}):\n${stderr}`))))
  })

const runOne = async (k: number, seed: number, sets: ReadonlyArray<string>): Promise<Gains> => {
  const store = mkdtempSync(join(tmpdir(), "polaris-bench-learning-"))
  try {
    const extra = [`seed=${seed}`, `grpo.off_policy_steps=${k}`, ...sets].flatMap((s) => ["--set", s])
    const { stdout, ms } = await polaris(["run", join(ROOT, "recipes", "quickstart.yaml"), ...extra, "--store", store, "--json"])
    const summary = JSON.parse(stdout) as { nodes: Record<string, { object?: string }> }
    const read = (digest: string) => JSON.parse(readFileSync(join(store, "objects", digest.slice(0, 2), digest), "utf8"))
    const evaluation = read(summary.nodes["evaluation"]!.object!)
    const of = (name: string) => evaluation.systems.find((s: any) => s.name === name).summary
    const initial = of("initial")
    const final = of("final")
    return { k, seed, seconds: ms / 1000, lengthScore: final.length_score_mean - initial.length_score_mean, reward: final.reward_mean - initial.reward_mean }
  } finally {
    rmSync(store, { recursive: true, force: true })
  }
}

const mean = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0) / xs.length
const std = (xs: ReadonlyArray<number>) => Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / Math.max(1, xs.length - 1))

export const run = async (options: LearningOptions): Promise<{ readonly markdown: string; readonly results: ReadonlyArray<Gains> }> => {
  const seeds = options.seeds ?? SEEDS
  const results: Array<Gains> = []
  // Interleaved (seed 1 k = 0, seed 1 k = 1, ...) so a drift in the machine's load hits both lags alike.
  for (const seed of seeds) {
    for (const k of LAGS) {
      const r = await runOne(k, seed, options.sets ?? [])
      options.log(`learning: k = ${k}, seed ${seed}: ΔS_l ${fmt(r.lengthScore, 3)}, Δreward ${fmt(r.reward, 3)}, ${fmt(r.seconds, 1)} s`)
      results.push(r)
    }
  }
  const rows = results.map((r) => [`k = ${r.k}`, String(r.seed), fmt(r.lengthScore, 3), fmt(r.reward, 3), fmt(r.seconds, 1)])
  const byLag = LAGS.map((k) => {
    const rs = results.filter((r) => r.k === k)
    const l = rs.map((r) => r.lengthScore)
    const w = rs.map((r) => r.reward)
    const s = rs.map((r) => r.seconds)
    return { k, l, w, s, row: [`k = ${k}`, `${fmt(mean(l), 3)} ± ${fmt(std(l), 3)} [${fmt(Math.min(...l), 3)}, ${fmt(Math.max(...l), 3)}]`, `${fmt(mean(w), 3)} ± ${fmt(std(w), 3)} [${fmt(Math.min(...w), 3)}, ${fmt(Math.max(...w), 3)}]`, fmt(mean(s), 1)] }
  })
  const [sync, async] = byLag as [typeof byLag[0], typeof byLag[0]]
  const within = (xs: ReadonlyArray<number>, ref: ReadonlyArray<number>) => Math.abs(mean(xs) - mean(ref)) <= 2 * std(ref)
  const markdown = [
    `The full quickstart (\`recipes/quickstart.yaml\`, 40 steps of 8 groups × 6, the proxy judge${(options.sets ?? []).length > 0 ? `, with ${(options.sets ?? []).map((s) => `\`${s}\``).join(", ")}` : ""}) with \`grpo.off_policy_steps\` k = 0 and k = 1, seeds ${seeds.join(", ")}, each run in a fresh store, run one after another, seed by seed. Gains are the run's own held-out evaluation, final − initial policy on the same prompts: ΔS_l the length score, Δreward the proxy judge's reward. Time: spawn to exit.`,
    "",
    markdownTable(["lag", "seed", "ΔS_l", "Δreward", "wall (s)"], rows, ["l", "r", "r", "r", "r"]),
    "",
    markdownTable(["lag", "ΔS_l mean ± sd [min, max]", "Δreward mean ± sd [min, max]", "wall mean (s)"], byLag.map((b) => b.row), ["l", "r", "r", "r"]),
    "",
    `k = 1 against k = 0's spread (mean within 2 sd of k = 0's seeds): ΔS_l ${within(async.l, sync.l) ? "within" : "OUTSIDE"}, Δreward ${within(async.w, sync.w) ? "within" : "OUTSIDE"}; wall time k = 1 / k = 0: ${fmt(mean(async.s) / mean(sync.s), 2)}.`
  ].join("\n")
  return { markdown, results }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  run({ log: console.log }).then((r) => console.log(r.markdown))
}
