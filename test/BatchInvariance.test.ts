/**
 * What a row's numbers depend on in onnxruntime's CPU kernels, measured on the shipped model
 * (issue 19: batch every request of a step together yet stay deterministic):
 *
 * - teacher forcing (`score`): a 120-token item alone and beside another differ in their last
 *   bits (the kernels split the work by the batch's size), so the engine scores each item alone;
 * - decoding (`generate`, one onnxruntime thread): nothing but the row itself, in any batch of 2
 *   rows or more (its place, its companions, their prompt lengths and so the cache's capacity,
 *   and the number of rows change no bit); a lone row takes another kernel path, so the decoder
 *   never runs one (KvDecoder.ts gives it a dummy companion), and each distinct prompt is
 *   prefilled alone: a row's tokens and logprobs depend on nothing but the row.
 *
 * These pin the kernels' behaviour the embedded engine relies on, for the onnxruntime version
 * in package-lock.json: an upgrade that breaks one shows here first.
 */
import { describe, expect, it } from "vitest"
import * as Checkpoint from "../src/model/Checkpoint.ts"
import { defaultSamplingParams } from "../src/model/Sampling.ts"
import { StoryModel, type Sampler } from "../src/model/StoryModel.ts"
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

  it("decoding across row counts: a row's bits are the same alone (with its dummy companion) and among 2 to 40 rows", async () => {
    const target = ids(30, 0)
    const run = async (B: number) => {
      const prompts = Array.from({ length: B }, (_, i) => (i === B - 1 ? target : ids(20 + 3 * i, i + 7)))
      const out = await model.generate(ckpt.weights, prompts, prompts.map((_, i) => row(i === B - 1 ? 1 : 100 + i)), [])
      return out[B - 1]!
    }
    const alone = await run(1)
    for (const B of [2, 3, 5, 13, 40]) {
      const other = await run(B)
      expect(other.tokens).toEqual(alone.tokens)
      expect(bits(other.logprobs), `${B} rows`).toBe(bits(alone.logprobs))
    }
  })

  /** Requests 0..4 on one sampler: each alone, then all at once in `order`; every row the same bits. */
  const aloneAndTogether = async (
    request: (sampler: Sampler, i: number) => Promise<ReadonlyArray<{ tokens: ReadonlyArray<number>; logprobs: ReadonlyArray<number> }>>,
    order: ReadonlyArray<number>
  ) => {
    const sampler = await model.sampler(ckpt.weights)
    const print = (rows: ReadonlyArray<{ tokens: ReadonlyArray<number>; logprobs: ReadonlyArray<number> }>) => rows.map((r) => `${r.tokens.join(",")}|${bits(r.logprobs)}`).join(";")
    const alone: Array<string> = []
    for (let i = 0; i < order.length; i++) alone.push(print(await request(sampler, i)))
    const together = await Promise.all(order.map(async (i) => [i, print(await request(sampler, i))] as const))
    for (const [i, p] of together) expect(p, `request ${i}`).toBe(alone[i])
    await sampler.release()
  }

  it("concurrent requests on one sampler get what they get alone, in any order", async () => {
    await aloneAndTogether((sampler, i) => sampler.generate(Array.from({ length: 1 + (i % 3) }, () => ids(10 + 7 * i, i)), { ...defaultSamplingParams, maxTokens: 30 + 10 * i, seed: i }, []), [4, 2, 0, 3, 1])
  })

  it("concurrent requests whose rows outgrow their cache capacity (128 positions) mid-flight get what they get alone", async () => {
    // Prompts of 100 to 124 tokens and up to 88 new ones: rows move to the next capacity at
    // different steps, finish at different steps, and share runs with other requests' rows.
    await aloneAndTogether((sampler, i) => sampler.generate(Array.from({ length: 2 + (i % 2) }, () => ids(100 + 6 * i, 50 + i)), { ...defaultSamplingParams, maxTokens: 40 + 12 * i, seed: 7 + i }, []), [3, 0, 4, 1, 2])
  })
})
