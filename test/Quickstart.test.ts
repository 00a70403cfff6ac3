/**
 * The quickstart recipe through the `polaris` command, scaled down to 3 steps so it fits a test:
 * killed with SIGKILL during rollouts, during judging and during the update of a step, then
 * resumed each time, it ends with final weights byte-identical to an uninterrupted run of the
 * same seed; and a second run is fully cached.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { polaris, readObject, ROOT } from "./support/cli.ts"
import { tempDirInRepo } from "./support/store.ts"

const RECIPE = join(ROOT, "recipes", "quickstart.yaml")
const SMALL = ["--set", "grpo.steps=3", "--set", "grpo.groups_per_step=2", "--set", "eval.prompts_per_bucket=4", "--set", "eval.buckets=[{name: id, min_words: 40, max_words: 150}]"]

/** The final policy's weights file, from a `--json` summary: a file of the checkpoint folder the store holds by content. */
const finalWeights = (store: string, summary: any): Buffer => {
  const object: string = summary.nodes["train/step-002/update"].object
  const state = readObject(store, object)
  expect(state.policy.step).toBe(3)
  const manifest = readObject(store, state.policy.checkpoint.$tree)
  const weights: string = manifest.files["model.safetensors"].$blob
  return readFileSync(join(store, "objects", weights.slice(0, 2), weights))
}

describe("quickstart", () => {
  it("resumes after SIGKILL in rollouts, judging and update to byte-identical final weights; reruns fully cached", async () => {
    const dir = tempDirInRepo("quickstart-")
    const clean = join(dir, "clean")
    const first = await polaris(["run", RECIPE, ...SMALL, "--store", clean, "--json", "--progress", "plain"])
    expect(first.status, first.stderr).toBe(0)
    const reference = finalWeights(clean, JSON.parse(first.stdout))

    // One run, killed three times: mid-rollout, mid-judging, mid-update; each time resumed in place.
    const killed = join(dir, "killed")
    const kills = [["train/step-000/group-1/rollout", 300], ["train/step-001/group-1/judge", 0], ["train/step-002/update", 300]] as const
    let run = await polaris(["run", RECIPE, ...SMALL, "--store", killed, "--progress", "plain"], { killOn: kills[0][0], delayMs: kills[0][1] })
    expect(run.signal, `${kills[0][0]} was never reached:\n${run.stderr}`).toBe("SIGKILL")
    for (const [node, delayMs] of kills.slice(1)) {
      run = await polaris(["resume", "--store", killed, "--progress", "plain"], { killOn: node, delayMs })
      expect(run.signal, `${node} was never reached:\n${run.stderr}`).toBe("SIGKILL")
    }
    const resumed = await polaris(["resume", "--store", killed, "--progress", "plain"])
    expect(resumed.status, resumed.stderr).toBe(0)
    const after = await polaris(["run", RECIPE, ...SMALL, "--store", killed, "--json"])
    expect(after.status, after.stderr).toBe(0)
    const summary = JSON.parse(after.stdout)
    expect(summary.executed).toBe(0) // fully cached
    expect(finalWeights(killed, summary).equals(reference)).toBe(true)
    // The killed run was resumed in place each time: its directory, plus the last (cached) run.
    expect(readdirSync(join(killed, "runs"))).toHaveLength(2)
    // Checkpoints live in the store by content: the engine's scratch folders are gone, even the one the kill mid-update left.
    const scratch = join(killed, "tmp", "checkpoints")
    expect(existsSync(scratch) ? readdirSync(scratch) : []).toEqual([])
  }, 300_000)
})
