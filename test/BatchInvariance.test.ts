/**
 * What a row's numbers depend on in onnxruntime's CPU kernels, measured on the shipped model
 * (issue 19: batch every request of a step together yet stay deterministic):
 *
 * - teacher forcing (`score`): a 120-token item alone and beside another differ in their last
 *   bits (the kernels split the work by the batch's size), so the engine scores each item alone;
 * - decoding (`generate`): at a fixed number of rows, nothing but the row itself (its place, its
 *   companions, their prompt lengths and so the cache's capacity change no bit); across row
 *   counts (1, 2, 5) the bits differ, so a batched sampler must decode at a fixed row count.
 *
 * These pin the kernels' behaviour the embedded engine relies on, for the onnxruntime version
 * in package-lock.json: an upgrade that breaks one shows here first.
 */
import { describe, expect, it } from "vitest"
import * as Checkpoint from "../src/model/Checkpoint.ts"
import { defaultSamplingParams } from "../src/model/Sampling.ts"
import { StoryModel } from "../src/model/StoryModel.ts"
import { ROOT } from "./support/cli.ts"
import { join } from "node:path"

const ckpt = await Checkpoint.read(join(ROOT, "models", "story-1m"))
const model = StoryModel.create(ckpt.config, {})
/** Deterministic pseudo-text token ids. */
const ids = (n: number, s: number) => Array.from({ length: n }, (_, i) => ((i * 7919 + s * 104729) % 4000) + 10)
const scored = (n: number, s: number) => {
  const t = ids(n + 1, s)
  return { input: t.slice(0, -1), targets: t.slice(1) }
}
const row = (seed: number) => ({ params: { ...defaultSamplingParams, maxTokens: 60, seed }, row: 0 })
const bits = (xs: ArrayLike<number>) => Buffer.from(Float32Array.from(xs).buffer).toString("hex")

describe("batch invariance of the embedded model", () => {
  it("teacher forcing: a row's logprobs can change with the number of rows beside it (why each item is scored alone)", async () => {
    const target = scored(120, 1)
    const [alone] = await model.score(ckpt.weights, [target])
    const [paired] = await model.score(ckpt.weights, [target, scored(120, 2)])
    expect(bits(paired!.logprobs)).not.toBe(bits(alone!.logprobs))
  })

  it("decoding at a fixed row count: a row's tokens and logprobs do not depend on its place, its companions or their lengths", async () => {
    const B = 8
    const target = ids(30, 0)
    const run = async (at: number, companions: number, length: number) => {
      const prompts = Array.from({ length: B }, (_, i) => (i === at ? target : ids(length, companions + i)))
      const out = await model.generate(ckpt.weights, prompts, prompts.map((_, i) => row(i === at ? 1 : companions + i)), [])
      return out[at]!
    }
    const first = await run(0, 100, 30)
    for (const [at, companions, length] of [[7, 200, 30], [3, 300, 30], [0, 400, 300]] as const) {
      const other = await run(at, companions, length)
      expect(other.tokens).toEqual(first.tokens)
      expect(bits(other.logprobs), `at ${at}, companions of ${length} tokens`).toBe(bits(first.logprobs))
    }
  })

  it("decoding across row counts: the bits differ (why a batched sampler needs a fixed row count)", async () => {
    const prompts = Array.from({ length: 5 }, (_, i) => ids(30, i))
    const params = prompts.map((_, i) => row(i + 1))
    const [one] = await model.generate(ckpt.weights, prompts.slice(0, 1), params.slice(0, 1), [])
    const [five] = await model.generate(ckpt.weights, prompts, params, [])
    expect(bits(five!.logprobs)).not.toBe(bits(one!.logprobs))
  })
})
