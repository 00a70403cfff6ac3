/**
 * Recipes for the Tinker engines: the rule that refuses a KL term on SkyRL tx, reported at
 * `file:line:col` like every recipe error, and the shipped Tinker recipes, which load.
 */
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve, sep } from "node:path"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import * as RecipeLoader from "../src/recipe/RecipeLoader.ts"

const load = (file: string, sets: ReadonlyArray<string> = [], env: Record<string, string> = {}) =>
  Effect.runPromise(Effect.result(RecipeLoader.load(file, { sets, env })))

const write = (text: string): string => {
  const dir = mkdtempSync(join(tmpdir(), "polaris-tinker-recipe-"))
  writeFileSync(join(dir, "recipe.yaml"), text)
  return join(dir, "recipe.yaml")
}

const KL_ON_SKYRL = "a KL term (beta 0.04) cannot be trained on SkyRL tx (policy.flavour: skyrl at recipe.yaml:5:12): " +
  "it divides each cross_entropy datum by max(sum of weights, 1e-9), and the KL weights sum to about 0; use beta: 0 there, or hosted Tinker"

const recipe = (flavour: string, beta: number, backend = "tinker") =>
  [
    "pipeline: polaris",
    "policy:",
    `  backend: ${backend}`,
    "  model: Qwen/Qwen3.5-9B",
    `  flavour: ${flavour}`,
    "grpo:",
    "  steps: 2",
    `  beta: ${beta}`,
    ""
  ].join("\n")

describe("the grpo.beta rule of SkyRL tx", () => {
  it("refuses beta > 0 with flavour skyrl, at grpo.beta's file:line:col, naming where the flavour is set", async () => {
    const file = write(recipe("skyrl", 0.04))
    const r = await load(file)
    if (r._tag === "Success") throw new Error("expected the recipe to be rejected")
    const dir = `${resolve(file, "..")}${sep}`
    expect(r.failure.message.split(dir).join("")).toBe(`recipe.yaml:8:9: grpo.beta: ${KL_ON_SKYRL}`)
  })

  it("applies to the vllm backend too (training stays on the Tinker service), and to a --set", async () => {
    const vllm = await load(write(recipe("skyrl", 0.04, "vllm")))
    expect(vllm._tag).toBe("Failure")
    const set = await load(write(recipe("skyrl", 0)), ["grpo.beta=0.5"])
    if (set._tag === "Success") throw new Error("expected the recipe to be rejected")
    expect(set.failure.errors).toHaveLength(1)
    expect(set.failure.errors[0]!.origin).toBe("--set grpo.beta=0.5")
    expect(set.failure.errors[0]!.path).toBe("grpo.beta")
  })

  it("accepts beta 0 on skyrl, and beta > 0 on hosted Tinker", async () => {
    expect((await load(write(recipe("skyrl", 0))))._tag).toBe("Success")
    expect((await load(write(recipe("hosted", 0.04))))._tag).toBe("Success")
  })
})

describe("the shipped Tinker recipes", () => {
  const env = { GEMINI_API_KEY: "g", TINKER_API_KEY: "t" }
  it.each(["recipes/polaris-qwen3.5-9b.yaml", "recipes/polaris-hosted-tinker.yaml"])("%s loads", async (file) => {
    const r = await load(resolve(import.meta.dirname, "..", file), [], env)
    if (r._tag === "Failure") throw new Error(r.failure.message)
    expect(r.success.recipe.policy?.backend).toBe("tinker")
  })

  it("puts Qwen3.5-9B on self-hosted SkyRL tx and the hosted variant on a model hosted Tinker lists", async () => {
    const skyrl = await load(resolve(import.meta.dirname, "../recipes/polaris-qwen3.5-9b.yaml"), [], env)
    const hosted = await load(resolve(import.meta.dirname, "../recipes/polaris-hosted-tinker.yaml"), [], env)
    if (skyrl._tag === "Failure" || hosted._tag === "Failure") throw new Error("the shipped recipes must load")
    expect(skyrl.success.recipe.policy).toMatchObject({ model: "Qwen/Qwen3.5-9B", flavour: "skyrl", base_url: "http://localhost:8000" })
    expect(skyrl.success.recipe.grpo?.beta ?? 0).toBe(0)
    expect(hosted.success.recipe.policy).toMatchObject({
      model: "Qwen/Qwen3-8B",
      flavour: "hosted",
      base_url: "https://tinker.thinkingmachines.dev/services/tinker-prod"
    })
  })
})
