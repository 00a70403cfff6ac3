/**
 * The model at run time: KV-cache decoding against teacher forcing, seeded sampling, stopping,
 * and learning a small synthetic task with AdamW.
 */
import { describe, expect, it } from "vitest"
import { AdamW } from "../src/model/AdamW.ts"
import { defaultSamplingParams, type SamplingParams } from "../src/model/Sampling.ts"
import { microBatches, runCost, StoryModel } from "../src/model/StoryModel.ts"
import { decays, defaultConfig, initWeights, paramShapes, type ModelConfig } from "../src/model/Transformer.ts"

const small: ModelConfig = { ...defaultConfig, vocabSize: 64, dModel: 32, nLayers: 2, nHeads: 4, dFF: 64, maxContext: 512 }

/** Init weights scaled up so next-token distributions are peaked, not near-uniform. */
const sharpWeights = (c: ModelConfig, seed: string) => {
  const w = initWeights(c, seed)
  for (const [name, a] of w) if (decays(name)) for (let i = 0; i < a.length; i++) a[i]! *= 12
  return w
}

const params = (over: Partial<SamplingParams>): SamplingParams => ({ ...defaultSamplingParams, ...over })

const prompts = [[1, 2, 3, 4, 5, 6, 7], [9, 8], [1, 2, 3, 4, 5, 6, 7], [33], [5, 4, 3, 2, 1, 0, 11, 12, 13, 14]]

describe("StoryModel", () => {
  it("KV-cache decoding gives the teacher-forced logprobs within 1e-4", async () => {
    const model = StoryModel.create(small)
    const w = sharpWeights(small, "parity")
    // 200 new tokens cross the 128-slot cache growth; stop token 7 ends rows early (compaction).
    const out = await model.generate(w, prompts, params({ maxTokens: 200, seed: 5 }), [7])
    expect(out.some((r) => r.stopReason === "stop")).toBe(true)
    expect(out.some((r) => r.tokens.length > 128)).toBe(true)
    const scored = await model.score(w, out.map((r, i) => {
      const full = [...prompts[i]!, ...r.tokens]
      return { input: full.slice(0, -1), targets: full.slice(1) }
    }))
    let worst = 0
    out.forEach((r, i) => {
      const lp = scored[i]!.logprobs.slice(prompts[i]!.length - 1)
      expect(lp.length).toBe(r.tokens.length)
      r.logprobs.forEach((v, t) => (worst = Math.max(worst, Math.abs(v - lp[t]!))))
    })
    expect(worst).toBeLessThan(1e-4)
  })

  it("sampling is determined by the seed, row by row", async () => {
    const model = StoryModel.create(small)
    const w = sharpWeights(small, "seed")
    const p = params({ maxTokens: 30, seed: "s" })
    const a = await model.generate(w, prompts, p, [])
    const b = await model.generate(w, prompts, p, [])
    expect(b).toEqual(a)
    // A row's draws do not depend on the rest of the batch.
    const alone = await model.generate(w, [prompts[0]!, prompts[1]!], p, [])
    expect(alone[1]!.tokens).toEqual(a[1]!.tokens)
    const c = await model.generate(w, prompts, params({ maxTokens: 30, seed: "t" }), [])
    expect(c.map((r) => r.tokens)).not.toEqual(a.map((r) => r.tokens))
    // Rows 0 and 2 share a prompt but have their own streams.
    expect(a[0]!.tokens).not.toEqual(a[2]!.tokens)
  })

  it("stops at the end token (kept, reason stop) or at maxTokens (reason length)", async () => {
    const model = StoryModel.create(small)
    const w = sharpWeights(small, "stop")
    const greedy = await model.generate(w, [[1, 2, 3]], params({ temperature: 0, maxTokens: 12 }), [])
    expect(greedy[0]!.tokens).toHaveLength(12)
    expect(greedy[0]!.stopReason).toBe("length")
    // Declare the 4th greedy token the end token: generation stops right after emitting it.
    const end = greedy[0]!.tokens[3]!
    const first = greedy[0]!.tokens.indexOf(end)
    const stopped = await model.generate(w, [[1, 2, 3]], params({ temperature: 0, maxTokens: 12 }), [end])
    expect(stopped[0]!.stopReason).toBe("stop")
    expect(stopped[0]!.tokens).toEqual(greedy[0]!.tokens.slice(0, first + 1))
  })

  it("stops at the context limit", async () => {
    const model = StoryModel.create({ ...small, maxContext: 20 })
    const w = sharpWeights(small, "ctx")
    const [r] = await model.generate(w, [[1, 2, 3, 4, 5]], params({ maxTokens: 100 }), [])
    expect(r!.stopReason).toBe("length")
    expect(5 + r!.tokens.length).toBe(21) // the last sampled token is never fed back, so it may sit at position 20
  })

  it("takes 2,048-token contexts: teacher forcing, and decoding up to the last position", async () => {
    const c: ModelConfig = { ...small, dModel: 16, nLayers: 1, nHeads: 2, dFF: 32, maxContext: 2048 }
    const model = StoryModel.create(c)
    const w = sharpWeights(c, "long")
    const seq = Array.from({ length: 2048 }, (_, i) => (i * 7) % 64)
    const [scored] = await model.score(w, [{ input: seq, targets: seq.map((t) => (t + 1) % 64) }])
    expect(scored!.logprobs).toHaveLength(2048)
    expect(scored!.logprobs.every(Number.isFinite)).toBe(true)
    const [r] = await model.generate(w, [seq.slice(0, 2040)], params({ maxTokens: 50, seed: 1 }), [])
    expect(r!.tokens).toHaveLength(9) // positions 2040..2047 are fed; the 9th token is sampled at the edge
    const full = [...seq.slice(0, 2040), ...r!.tokens]
    const [check] = await model.score(w, [{ input: full.slice(0, -1), targets: full.slice(1) }])
    r!.logprobs.forEach((v, t) => expect(Math.abs(v - check!.logprobs[2039 + t]!)).toBeLessThan(1e-4))
  }, 60_000)

  it("micro-batches keep rows x padded length within the budget", () => {
    const items = [3, 9, 4, 9, 1, 7].map((n) => ({ input: new Array<number>(n).fill(0) }))
    const batches = microBatches(items, 20)
    for (const b of batches) expect(b.length * b[0]!.item.input.length).toBeLessThanOrEqual(20)
    expect(batches.flat().map((e) => e.index).sort()).toEqual([0, 1, 2, 3, 4, 5])
  })

  it("micro-batches cost the least of every split of the sorted items (brute force over all 2^(n-1) splits)", () => {
    const u = (seed: number) => () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648
    const next = u(5)
    for (let trial = 0; trial < 20; trial++) {
      // A GRPO step's spread: 40..600 tokens, a budget of a few rows.
      const lengths = Array.from({ length: 10 }, () => 40 + Math.floor(next() * 560))
      const budget = 1500
      const items = lengths.map((n) => ({ input: new Array<number>(n).fill(0) }))
      const costOf = (batches: ReadonlyArray<ReadonlyArray<number>>) => batches.reduce((a, b) => a + runCost(b.length, b[0]!), 0)
      const got = microBatches(items, budget)
      for (const b of got) expect(b.length === 1 || b.length * b[0]!.item.input.length <= budget).toBe(true)
      const sorted = [...lengths].sort((a, b) => b - a)
      let best = Infinity
      for (let mask = 0; mask < 1 << (sorted.length - 1); mask++) {
        const batches: Array<Array<number>> = [[sorted[0]!]]
        for (let i = 1; i < sorted.length; i++) (mask & (1 << (i - 1)) ? batches.push([sorted[i]!]) : batches.at(-1)!.push(sorted[i]!))
        if (batches.every((b) => b.length === 1 || b.length * b[0]! <= budget)) best = Math.min(best, costOf(batches))
      }
      expect(costOf(got.map((b) => b.map((e) => e.item.input.length)))).toBeCloseTo(best, 6)
    }
  })

  it("learns a synthetic task: 300 AdamW steps drive the loss near zero", async () => {
    const c: ModelConfig = { ...small, vocabSize: 16, dModel: 32, nLayers: 2, dFF: 64 }
    const model = StoryModel.create(c)
    const w = initWeights(c, "learn")
    const opt = new AdamW(new Map([...w].map(([n, a]) => [n, a.length])), { decay: decays })
    const grads = new Map([...w].map(([n, a]) => [n, new Float32Array(a.length)]))
    // Sequences count upward mod 16 from a random start: every token after the first is determined.
    const seqs = Array.from({ length: 8 }, (_, i) => Array.from({ length: 24 }, (_, t) => (i * 5 + t) % 16))
    const items = seqs.map((s) => {
      const n = s.length - 1
      const weights = new Array<number>(n).fill(1 / (8 * n))
      return { input: s.slice(0, -1), targets: s.slice(1), weights, oldLogprobs: new Array<number>(n).fill(0), advantages: new Array<number>(n).fill(0) }
    })
    const meanLoss = async () => {
      const scored = await model.score(w, items)
      return -scored.reduce((s, r) => s + r.logprobs.reduce((a, b) => a + b, 0), 0) / (8 * 23)
    }
    const before = await meanLoss()
    for (let step = 0; step < 300; step++) {
      for (const g of grads.values()) g.fill(0)
      await model.forwardBackward(w, items, { low: 0, high: 1e30 }, grads)
      opt.step(w, grads, { learningRate: 3e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.01, gradClipNorm: 1 })
    }
    const after = await meanLoss()
    expect(before).toBeGreaterThan(2.5) // ~ln 16 = 2.77 at init
    expect(after).toBeLessThan(0.05)
  }, 60_000)

  it("forwardBackward with logprobs at the loss positions: NaN elsewhere, the same loss and gradients as every position", async () => {
    const model = StoryModel.create(small)
    const w = sharpWeights(small, "loss-only")
    // A GRPO step's shape: prompts (no loss) then completions with advantages, or reference weights.
    const items = prompts.map((p, i) => {
      const full = [...p, ...Array.from({ length: 6 + i }, (_, t) => (t * 7 + i) % small.vocabSize)]
      const n = full.length - 1
      const loss = (t: number) => t >= p.length - 1
      return {
        input: full.slice(0, -1),
        targets: full.slice(1),
        weights: Array.from({ length: n }, (_, t) => (loss(t) && i % 2 === 0 ? 0.05 : 0)),
        oldLogprobs: Array.from({ length: n }, (_, t) => (loss(t) ? -3 - 0.1 * t : 0)),
        advantages: Array.from({ length: n }, (_, t) => (loss(t) && i % 2 === 1 ? 0.4 - 0.2 * i : 0))
      }
    })
    const run = async (logprobs: "all" | "loss") => {
      const grads = new Map([...w].map(([n, a]) => [n, new Float32Array(a.length)]))
      const out = await model.forwardBackward(w, items, { low: 0.8, high: 1.28 }, grads, { logprobs })
      return { out, grads }
    }
    const [all, some] = [await run("all"), await run("loss")]
    items.forEach((it, i) => {
      for (let t = 0; t < it.input.length; t++) {
        const hasLoss = it.weights[t] !== 0 || it.advantages[t] !== 0
        if (hasLoss) expect(some.out[i]!.logprobs[t]).toBeCloseTo(all.out[i]!.logprobs[t]!, 5)
        else expect(some.out[i]!.logprobs[t]).toBeNaN()
        expect(some.out[i]!.loss[t]).toBeCloseTo(all.out[i]!.loss[t]!, 5)
        expect(some.out[i]!.clipped[t]).toBe(all.out[i]!.clipped[t])
      }
    })
    for (const [name, g] of all.grads) {
      const h = some.grads.get(name)!
      const scale = Math.max(...g.map(Math.abs))
      expect(scale).toBeGreaterThan(0)
      g.forEach((v, k) => expect(Math.abs(h[k]! - v)).toBeLessThan(1e-5 * scale))
    }
    // A batch without a single loss token (a group whose rewards were all equal) runs nothing.
    const none = items.map((it) => ({ ...it, weights: it.weights.map(() => 0), advantages: it.advantages.map(() => 0) }))
    const grads = new Map([...w].map(([n, a]) => [n, new Float32Array(a.length)]))
    const out = await model.forwardBackward(w, none, { low: 0.8, high: 1.28 }, grads, { logprobs: "loss" })
    out.forEach((o, i) => {
      expect(o.logprobs.length).toBe(none[i]!.input.length)
      expect(o.logprobs.every(Number.isNaN)).toBe(true)
      expect(o.loss.every((x) => x === 0)).toBe(true)
    })
    for (const g of grads.values()) expect(g.every((x) => x === 0)).toBe(true)
  })

  it("rejects sequences longer than the context", async () => {
    const model = StoryModel.create({ ...small, maxContext: 8 })
    const w = initWeights(small, "x")
    await expect(model.score(w, [{ input: new Array(9).fill(1), targets: new Array(9).fill(1) }])).rejects.toThrow(/exceeds the model's context of 8/)
  })

  it("all weights are fed: a missing weight is named", async () => {
    const model = StoryModel.create(small)
    const w = initWeights(small, "x")
    w.delete(paramShapes(small)[3]![0])
    await expect(model.score(w, [{ input: [1], targets: [2] }])).rejects.toThrow(/missing layers\.0\.wk/)
  })
})
