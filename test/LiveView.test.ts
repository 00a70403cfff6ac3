/**
 * What a person sees of a training run, through the `polaris` command on a reduced quickstart:
 * in plain mode one line per finished training step with its metrics (the numbers of the run's
 * metrics.jsonl); on a terminal (tmux, a real pseudo-terminal) the live block with the steps'
 * sparklines and lines; at the end the headline numbers (the `evaluation` node's, initial →
 * final), the policy's checkpoint and the `polaris report` command, not the outputs' JSON, which
 * `--json` carries.
 */
import { spawnSync } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { BIN, polaris, readObject, ROOT } from "./support/cli.ts"
import { tempDirInRepo } from "./support/store.ts"

const RECIPE = join(ROOT, "recipes", "quickstart.yaml")
const SMALL = ["--set", "grpo.steps=2", "--set", "grpo.groups_per_step=2", "--set", "eval.prompts_per_bucket=2", "--set", "eval.buckets=[{name: id, min_words: 40, max_words: 150}]"]

/** The last metrics record of `node` in a run's metrics.jsonl, merged. */
const metricsOf = (dir: string, node: string): Record<string, number> =>
  Object.assign({}, ...readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((m) => m.node === node))

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe("the live view and the summary of a training run", () => {
  it("tmux: the live block with the steps' metrics as they come; plain: a line per finished step; the summary's headline numbers; --json has the outputs", async () => {
    const store = tempDirInRepo("live-")

    // A terminal first: tmux runs the quickstart in a 160x50 pseudo-terminal. While the second
    // step runs, the block shows the first step's line and the trend; at the end the screen keeps
    // each step's line above the final block.
    const socket = `polaris-test-${process.pid}`
    const done = join(store, "tty.done")
    const command = `${process.execPath} ${BIN} run ${RECIPE} ${SMALL.map((a) => `'${a}'`).join(" ")} --store ${store} > ${join(store, "tty.out")}; echo $? > ${done}; sleep 120`
    const tmux = (...args: Array<string>) => spawnSync("tmux", ["-L", socket, ...args], { cwd: ROOT, encoding: "utf8" })
    const screen = () => tmux("capture-pane", "-p", "-t", "0").stdout.split("\n").map((l) => l.trimEnd()).filter((l) => l !== "")
    const started = tmux("new-session", "-d", "-x", "160", "-y", "50", command)
    expect(started.error, "tmux must be installed (apt-get install tmux)").toBeUndefined()
    expect(started.status, started.stderr).toBe(0)
    let during: Array<string> | undefined
    let after: Array<string>
    try {
      for (let waited = 0; !existsSync(done) && waited < 240_000; waited += 250) {
        const now = screen()
        // The first screen with step 1 finished (a step still running ends in …) and the run going on.
        if (during === undefined && now.some((l) => l.startsWith("run polaris: ")) && now.some((l) => l.startsWith("  step 1/2  reward") && !l.endsWith("…"))) during = now
        await sleep(250)
      }
      expect(readFileSync(done, "utf8").trim()).toBe("0")
      after = screen()
    } finally {
      tmux("kill-server")
    }
    const runId = /^run (\S+): \d+ executed, \d+ cached$/m.exec(readFileSync(join(store, "tty.out"), "utf8"))![1]!
    const dir = join(store, "runs", runId)
    const stepLine = (k: number) => {
      const groups = metricsOf(dir, `train/step-00${k}/groups`)
      const update = metricsOf(dir, `train/step-00${k}/update`)
      return `step ${k + 1}/2  reward ${groups.reward_policy_mean!.toFixed(3)} (ref ${groups.reward_reference_mean!.toFixed(3)})  S_l ${groups.length_score_mean!.toFixed(1)}  ` +
        `len ${groups.length_ratio_mean!.toFixed(2)}  loss ${update.loss!.toFixed(3)}  judge $0.00`
    }
    const [step1, step2] = [stepLine(0), stepLine(1)]
    const g = [0, 1].map((k) => metricsOf(dir, `train/step-00${k}/groups`).reward_policy_mean!)

    // During the run: the header, the trend of the steps so far, the first step's line, running nodes.
    expect(during, "the live block never showed a step's line").toBeDefined()
    const live = during!.findIndex((l) => /^run polaris: \d+\/\d+ nodes · \d+ executed · \d+ cached · 0 failed · \d+ running/.test(l))
    expect(live, during!.join("\n")).toBeGreaterThanOrEqual(0)
    expect(during![live + 1]).toMatch(new RegExp(`^  reward [▁-█]+ \\d\\.\\d{3}  S_l [▁-█]+ \\d+\\.\\d`))
    expect(during![live + 2]).toBe(`  ${step1}`)
    expect(during!.slice(live + 3).some((l) => /^  \S+ \(\S+\) \S+/.test(l))).toBe(true) // a running node
    expect(during!.filter((l) => l.startsWith("run polaris"))).toHaveLength(1) // painted in place
    expect(during!.filter((l) => /^\[[\d:]+\] step /.test(l)).map((l) => l.replace(/^\[[\d:]+\] /, ""))).toEqual([step1]) // above the block

    // At the end: both steps' lines above the block, which holds the trend over both and their lines.
    expect(after.filter((l) => /^\[\d+:\d\d\] step \d\/2  /.test(l)).map((l) => l.replace(/^\[[\d:]+\] /, ""))).toEqual([step1, step2])
    expect(after.filter((l) => l.startsWith("run polaris"))).toHaveLength(1)
    const header = after.findIndex((l) => /^run polaris succeeded in \S+: (\d+)\/\1 nodes/.test(l))
    expect(header, after.join("\n")).toBeGreaterThanOrEqual(0)
    expect(after[header + 1]).toMatch(new RegExp(`^  reward [▁█]{2} ${g[1]!.toFixed(3)}  S_l [▁█]{2} \\d+\\.\\d  loss [▁█]{2} \\d\\.\\d{3}$`))
    expect(after.slice(header + 2, header + 4)).toEqual([`  ${step1}`, `  ${step2}`])
    expect(after.join("\n")).not.toMatch(/\x1b/) // the terminal took the escapes

    // Plain (the run is cached now: cached nodes report their metrics again): one line per step,
    // right after the node that finished it.
    const run = await polaris(["run", RECIPE, ...SMALL, "--store", store, "--progress", "plain"])
    expect(run.status, run.stderr).toBe(0)
    const lines = run.stderr.split("\n")
    for (const [k, line] of [step1, step2].entries()) {
      const at = lines.findIndex((l) => l.endsWith(`] ${line}`))
      expect(at, `no line "${line}" in:\n${run.stderr}`).toBeGreaterThan(0)
      expect(lines[at - 1]).toMatch(new RegExp(`\\] train/step-00${k}/update cached$`))
    }
    expect(lines.filter((l) => /\] step \d/.test(l))).toHaveLength(2)

    // The summary: the policy's checkpoint, the evaluation's numbers initial → final, the report command; no JSON.
    const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"))
    const evaluation = readObject(store, manifest.nodes.evaluation.object)
    const [initial, final] = ["initial", "final"].map((n) => evaluation.systems.find((s: { name: string }) => s.name === n).summary)
    const out = run.stdout
    const again = /^run (\S+): 0 executed, \d+ cached$/m.exec(out)![1]!
    const state = readObject(store, manifest.nodes["train/step-001/update"].object)
    const tree: string = state.policy.checkpoint.$tree
    expect(out).toContain(`final: the policy after 2 steps, checkpoint ${tree.slice(0, 12)} (npx polaris cache export ${tree.slice(0, 12)} --out DIR)`)
    expect(out).toContain(`evaluation (held-out prompts): initial → final, ${initial.stories} stories each`)
    for (const [label, key, digits] of [["S_l", "length_score_mean", 1], ["reward", "reward_mean", 3], ["length ratio", "length_ratio_mean", 2]] as const) {
      const delta = final[key] - initial[key]
      expect(out).toMatch(new RegExp(`^  ${label.padEnd(13)} *${initial[key].toFixed(digits)} → *${final[key].toFixed(digits)}   ${delta >= 0 ? "\\+" : "-"}${Math.abs(delta).toFixed(digits)}$`, "m"))
    }
    expect(out).toContain(`next: npx polaris report ${again} --store ${store}`)
    expect(out).not.toMatch(/[{}"]/) // no JSON
    expect(out).not.toContain("unscorable") // the proxy judge scores everything

    // --json: the outputs as they are.
    const json = await polaris(["run", RECIPE, ...SMALL, "--store", store, "--json"])
    expect(json.status, json.stderr).toBe(0)
    const summary = JSON.parse(json.stdout)
    expect(summary.executed).toBe(0)
    expect(summary.outputs.final.policy.step).toBe(2)
    expect(summary.outputs.evaluation).toEqual(evaluation)
  }, 400_000)
})
