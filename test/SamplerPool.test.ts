/**
 * The embedded engine's sampling workers (src/model/SamplerPool.ts): a request's tokens and
 * logprobs are bit-identical whichever worker runs it, alone or beside other requests, in any
 * order, and equal to the same sampler in this thread on one onnxruntime thread; weights are read
 * when a Map is first used (or copied by `prepare`); a failing request fails alone, with the
 * model's message.
 */
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import * as Checkpoint from "../src/model/Checkpoint.ts"
import { defaultSamplingParams } from "../src/model/Sampling.ts"
import { SamplerPool } from "../src/model/SamplerPool.ts"
import { StoryModel } from "../src/model/StoryModel.ts"
import { ROOT } from "./support/cli.ts"

const ckpt = await Checkpoint.read(join(ROOT, "models", "story-1m"))
const config = ckpt.config
const pool = new SamplerPool(2)
afterAll(() => pool.close())

/** Deterministic pseudo-text token ids. */
const ids = (n: number, s: number) => Array.from({ length: n }, (_, i) => ((i * 7919 + s * 104729) % 4000) + 10)
const params = (seed: number) => ({ ...defaultSamplingParams, maxTokens: 40, seed })
const bits = (xs: ArrayLike<number>) => Buffer.from(Float32Array.from(xs).buffer).toString("hex")
const request = (i: number) => ({ prompts: Array.from({ length: 3 }, () => ids(20 + i, i)), seed: i })
const sample = (weights: ReadonlyMap<string, Float32Array>, i: number) => {
  const r = request(i)
  return pool.generate(config, weights, r.prompts, params(r.seed), [])
}
const fingerprint = (rows: ReadonlyArray<{ tokens: ReadonlyArray<number>; logprobs: ReadonlyArray<number> }>) =>
  rows.map((r) => `${r.tokens.join(",")}|${bits(r.logprobs)}`).join(";")

describe("SamplerPool", () => {
  it("a request's tokens and logprobs are the same on any worker, alone, beside others and in any order, and equal to an in-thread sampler", async () => {
    const weights = ckpt.weights
    const alone = await Promise.all([0, 1, 2, 3].map(async (i) => fingerprint(await sample(weights, i))))
    const together = (await Promise.all([3, 2, 1, 0, 3, 2, 1, 0].map(async (i) => [i, fingerprint(await sample(weights, i))] as const)))
    for (const [i, f] of together) expect(f, `request ${i}`).toBe(alone[i])
    const local = await StoryModel.create(config, { threads: 1 }).sampler(weights)
    const r = request(2)
    expect(fingerprint(await local.generate(r.prompts, params(r.seed), []))).toBe(alone[2])
    await local.release()
  })

  it("teacher forcing on a worker gives the in-thread scores, each item alone", async () => {
    const t = ids(50, 9)
    const items = [{ input: t.slice(0, -1), targets: t.slice(1) }]
    const [remote] = await pool.score(config, ckpt.weights, items)
    const [local] = await StoryModel.create(config, { threads: 1 }).score(ckpt.weights, items)
    expect(bits(remote!)).toBe(bits(local!.logprobs))
  })

  it("weights are read when a Map is first used: a later change to it is not seen, a new Map is", async () => {
    const weights = new Map([...ckpt.weights].map(([n, a]) => [n, a.slice()]))
    const before = fingerprint(await sample(weights, 5))
    weights.get("norm")!.fill(3)
    expect(fingerprint(await sample(weights, 5))).toBe(before)
    expect(fingerprint(await sample(new Map(weights), 5))).not.toBe(before)
  })

  it("prepare: a frozen copy the workers load at once, which samples as the weights it copied", async () => {
    const weights = new Map([...ckpt.weights].map(([n, a]) => [n, a.slice()]))
    const expected = fingerprint(await sample(ckpt.weights, 6))
    const frozen = pool.prepare(config, weights)
    weights.get("norm")!.fill(3) // after the copy: not seen
    expect([...frozen.keys()]).toEqual([...ckpt.weights.keys()])
    expect(fingerprint(await sample(frozen, 6))).toBe(expected)
  })

  it("close() while the workers build sessions and decode: the jobs in flight fail, the process lives, the next job starts new workers", async () => {
    const own = new SamplerPool(2)
    // Closed at several moments of the workers' session builds (they take about 30-300 ms here).
    for (const [round, delayMs] of [0, 10, 25, 50, 100].entries()) {
      // Both workers running, then a version each starts loading and a long decode on one of them.
      await Promise.all([0, 1].map((i) => own.generate(config, ckpt.weights, [ids(10, i)], params(i), [])))
      const fresh = own.prepare(config, new Map([...ckpt.weights].map(([n, a]) => [n, a.map((x) => x * (1 + round / 1000))])))
      await new Promise((resolve) => setTimeout(resolve, delayMs))
      const inFlight = expect(own.generate(config, fresh, [ids(30, round)], { ...params(round), maxTokens: 400 }, [])).rejects.toThrow(/sampling worker exited/)
      // With worker.terminate() this aborted the whole process now and then (an onnxruntime call
      // returned into a terminating thread): the pool asks its workers to exit between calls.
      await own.close()
      await inFlight
    }
    expect((await own.generate(config, ckpt.weights, [ids(10, 1)], params(1), [])).length).toBe(1)
    await own.close()
  })

  it("a failing request fails alone, with the model's message; the pool goes on", async () => {
    const tooLong = pool.generate(config, ckpt.weights, [ids(config.maxContext + 1, 1)], params(1), [])
    await expect(tooLong).rejects.toThrow(/exceeds the model's context/)
    expect((await sample(ckpt.weights, 1)).length).toBe(3)
  })
})
