/** The built-in `polaris-data` pipeline on the bundled corpus, from its shipped recipe. */
import { join } from "node:path"
import { Effect, Layer } from "effect"
import { describe, expect, it } from "vitest"
import { resolveTarget } from "../src/cli/target.ts"
import { promptText } from "../src/data/Prompts.ts"
import { ArtifactStore, Executor } from "polaris"
import { tempDir } from "./support/store.ts"

const RECIPE = join(import.meta.dirname, "..", "recipes", "polaris-data.yaml")

const runRecipe = (store: string, sets: ReadonlyArray<string> = []) =>
  Effect.runPromise(
    Effect.gen(function*() {
      const t = yield* resolveTarget(RECIPE, { sets, store })
      return yield* Executor.run(t.pipeline, { config: t.config }).pipe(Effect.provide(Layer.merge(ArtifactStore.layer(t.store), t.layer)))
    }) as Effect.Effect<Executor.RunResult<any>, unknown>
  )

describe("polaris-data", () => {
  it("turns the bundled corpus into a split dataset and prompts, cached, re-running only what a change touches", async () => {
    const store = tempDir()
    const first = await runRecipe(store)
    expect(first.executed).toBe(7)
    const { dataset, prompts, heldoutPrompts } = first.outputs as any
    expect(dataset.report.input).toBe(231)
    expect(dataset.train.length + dataset.heldout.length).toBe(231 - dataset.report.too_long - dataset.report.too_short)
    expect(prompts).toHaveLength(dataset.train.length)
    expect(heldoutPrompts).toHaveLength(dataset.heldout.length)
    for (const p of prompts) {
      expect(p.requested_words % 100).toBe(0)
      expect(promptText(p.requested_words, p.premise)).toMatch(/^Write a \d+-word story about .+\.$/)
    }

    const again = await runRecipe(store)
    expect(again.executed).toBe(0)

    // A new held-out fraction changes the split: the stories themselves stay cached, and the
    // premises of stories already seen come from the memo (no Writer call repeats).
    const changed = await runRecipe(store, ["data.heldout_fraction=0.2"])
    expect(changed.nodes["split-stories"]!.status).toBe("cached")
    expect(changed.nodes["dataset"]!.status).toBe("executed")
    expect((changed.outputs as any).dataset.heldout.length).toBeGreaterThan(dataset.heldout.length)
  }, 60_000)
})

describe("stratify", () => {
  it("refuses bucket edges that do not increase, and weights that do not match the buckets", async () => {
    const store = tempDir()
    await expect(runRecipe(store, ["data.buckets.edges=[0,2000,1000]"])).rejects.toThrow(/bucket edges must be at least two increasing numbers/)
    await expect(runRecipe(store, ["data.buckets.edges=[0,1000,2000]", "data.buckets.weights=[1]"])).rejects.toThrow(/2 buckets need 2 weights, got 1/)
  }, 60_000)
})
