/**
 * The gradient the engine receives is the gradient of the loss GRPO intends. A fixed HRI batch
 * (two groups of two rollouts and a human reference, DAPO aggregation, LUFFY reference loss) is
 * turned into engine datums exactly as the `hri-groups` stage does (advantages scaled per
 * sequence, LUFFY as cross_entropy weights); the engine's training graph (float64) gives the
 * gradient of its sum losses. Independently, the intended loss
 *
 *   L(θ) = (1/N) Σ_rollout tokens [−min(r·A, clip(r, 1−ε_low, 1+ε_high)·A) + β·k3]  −  (A_ref/N) Σ_ref tokens p/(p+γ)
 *
 * (N: completion tokens in the batch; r = exp(lp − lp_old); p = exp(lp); k3 = exp(ref − lp) −
 * (ref − lp) − 1 with ref the initial policy's logprob, sent as cross_entropy weights as the
 * `update` stage does) is evaluated from the
 * teacher-forcing graph, and differentiated by central finite differences on a tiny model.
 */
import { describe, expect, it } from "vitest"
import { advantages } from "../src/grpo/Advantages.ts"
import { luffyWeights, sequenceScale } from "../src/grpo/TokenLoss.ts"
import * as Onnx from "../src/model/graph/Onnx.ts"
import { causalMask } from "../src/model/StoryModel.ts"
import { defaultConfig, paramShapes, scoreGraph, trainGraph, type ModelConfig } from "../src/model/Transformer.ts"

const c: ModelConfig = { ...defaultConfig, vocabSize: 13, dModel: 8, nLayers: 1, nHeads: 2, dFF: 12, maxContext: 64 }
const lcg = (seed: number) => (): number => {
  seed = (seed * 1664525 + 1013904223) % 4294967296
  return seed / 4294967296
}

interface Item { readonly prompt: Array<number>; readonly completion: Array<number> }

/** Feeds for Tinker-aligned rows (input = full[:-1], target = full[1:]), right-padded, float64. */
const feedsFor = (items: ReadonlyArray<Item>, perToken: Record<string, ReadonlyArray<ReadonlyArray<number>>> = {}) => {
  const full = items.map((i) => [...i.prompt, ...i.completion])
  const T = Math.max(...full.map((f) => f.length - 1))
  const B = items.length
  const tokens = new BigInt64Array(B * T)
  const target = new BigInt64Array(B * T)
  full.forEach((f, b) => {
    for (let t = 0; t < T; t++) {
      tokens[b * T + t] = BigInt(f[t] ?? 0)
      target[b * T + t] = BigInt((b * T + t) * c.vocabSize + (f[t + 1] ?? 0))
    }
  })
  const feeds: Record<string, Onnx.TensorData> = {
    tokens: { data: tokens, dims: [B, T] },
    target_index: { data: target, dims: [B, T] },
    positions: { data: Float64Array.from({ length: T }, (_, i) => i), dims: [T] },
    mask: { data: Float64Array.from(causalMask(T)), dims: [T, T] }
  }
  for (const [name, rows] of Object.entries(perToken)) {
    const a = new Float64Array(B * T)
    rows.forEach((r, b) => r.forEach((v, t) => (a[b * T + t] = v)))
    feeds[name] = { data: a, dims: [B, T] }
  }
  return { feeds, T }
}

/**
 * The training graph's feeds for `feedsFor`'s rows with the LM head at the completions' positions
 * only, as the engine runs a GRPO step: `scored`, and the loss-head inputs at those positions.
 */
const trainFeedsFor = (items: ReadonlyArray<Item>, perToken: Record<string, ReadonlyArray<ReadonlyArray<number>>>) => {
  const { feeds, T } = feedsFor(items, perToken)
  const at = items.flatMap((it, b) => it.completion.map((_, k) => b * T + it.prompt.length - 1 + k))
  const pick = (name: string) => ({ data: Float64Array.from(at, (i) => (feeds[name]!.data as Float64Array)[i]!), dims: [at.length] })
  const target = feeds["target_index"]!.data as BigInt64Array
  return {
    ...feeds,
    scored: { data: BigInt64Array.from(at, BigInt), dims: [at.length] },
    target_index: { data: BigInt64Array.from(at, (i, n) => BigInt(n * c.vocabSize) + (target[i]! - BigInt(i * c.vocabSize))), dims: [at.length] },
    ...Object.fromEntries(Object.keys(perToken).map((name) => [name, pick(name)]))
  }
}

describe("GRPO gradient", () => {
  it("the engine's gradient equals the finite-difference gradient of the intended HRI loss", async () => {
    const u = lcg(11)
    const weights = new Map(paramShapes(c).map(([name, shape]) => [name, Float64Array.from({ length: shape.reduce((p, q) => p * q, 1) }, () => (name.includes("norm") ? 1 : 1.2 * (u() - 0.5)))]))
    const wfeeds = () => Object.fromEntries(paramShapes(c).map(([n, s]) => [n, { data: weights.get(n)!, dims: s }]))
    const tok = () => Math.floor(u() * c.vocabSize)
    const prompts = [[1, 2, 3], [4, 5]]
    const rollouts = prompts.map((p) => [Array.from({ length: 4 }, tok), Array.from({ length: 6 }, tok)].map((completion) => ({ prompt: p, completion })))
    const references = prompts.map((p) => ({ prompt: p, completion: Array.from({ length: 5 }, tok) }))
    const rewards = [{ rollouts: [0.3, 0.7], reference: 0.9 }, { rollouts: [0.2, 0.5], reference: 0.4 }]
    const adv = advantages(rewards, { scaleRewards: "group", referenceInStats: true })
    const beta = 0.3
    const epsLow = 0.2
    const epsHigh = 0.28
    const gamma = 0.1

    // Basic optimizations only: onnxruntime's SiLU fusion (QuickGelu) has no float64 kernel.
    const score = await Onnx.load(scoreGraph(c, "float64"), { graphOptimizationLevel: "basic" })
    const train = await Onnx.load(trainGraph(c, "float64"), { graphOptimizationLevel: "basic" })
    /** Completion logprobs of items at the current weights (teacher forcing). */
    const logprobs = async (items: ReadonlyArray<Item>) => {
      const { feeds, T } = feedsFor(items)
      const lp = (await score({ ...wfeeds(), ...feeds }))["logprobs"]!.data as Float64Array
      return items.map((it, b) => Array.from(lp.slice(b * T + it.prompt.length - 1, b * T + it.prompt.length - 1 + it.completion.length)))
    }

    // The batch as the hri-groups stage builds it: DAPO scales, old logprobs a little off the
    // current ones so some ratios leave [1 − ε_low, 1 + ε_high], LUFFY weights from the current p.
    const flatRollouts = rollouts.flat()
    const lengths = [...flatRollouts.map((r) => r.completion.length), ...references.map((r) => r.completion.length)]
    const scale = sequenceScale("dapo", lengths, 64)
    const N = lengths.reduce((a, b) => a + b, 0)
    expect(scale.every((s) => s === 1 / N)).toBe(true)
    const current = await logprobs(flatRollouts)
    const old = current.map((lps) => lps.map((lp) => lp + 0.6 * (u() - 0.5)))
    const rolloutAdv = adv.flatMap((a) => a.rollouts)
    const refLp = await logprobs(references)
    // The initial policy of the KL term: other weights, fixed.
    const initialWeights = new Map([...weights].map(([n, a]) => [n, a.map((x) => x + 0.2 * (u() - 0.5))]))
    const initialLp = await (async () => {
      const saved = new Map([...weights].map(([n, a]) => [n, a.slice()]))
      for (const [n, a] of initialWeights) weights.get(n)!.set(a)
      const lp = await logprobs(flatRollouts)
      for (const [n, a] of saved) weights.get(n)!.set(a)
      return lp
    })()
    const luffy = references.map((_, i) => Array.from(luffyWeights(refLp[i]!, adv[i]!.reference, 1 / N, gamma)))

    // Engine gradient: ppo over the rollouts + cross_entropy over the references, summed.
    const pad = (it: Item, values: ReadonlyArray<number>) => [...new Array<number>(it.prompt.length - 1).fill(0), ...values]
    const ppo = trainFeedsFor(flatRollouts, {
      weights: flatRollouts.map((it) => pad(it, [])),
      old_logprobs: flatRollouts.map((it, i) => pad(it, old[i]!)),
      advantages: flatRollouts.map((it, i) => pad(it, it.completion.map(() => rolloutAdv[i]! / N)))
    })
    const ceItems = [...references, ...flatRollouts]
    const klWeights = flatRollouts.map((_, i) => current[i]!.map((lp, t) => (beta / N) * (Math.exp(initialLp[i]![t]! - lp) - 1)))
    const ce = trainFeedsFor(ceItems, {
      weights: [...references.map((it, i) => pad(it, luffy[i]!)), ...flatRollouts.map((it, i) => pad(it, klWeights[i]!))],
      old_logprobs: ceItems.map((it) => pad(it, [])),
      advantages: ceItems.map((it) => pad(it, []))
    })
    const bounds = (lo: number, hi: number) => ({ clip_low: { data: Float64Array.of(lo), dims: [] }, clip_high: { data: Float64Array.of(hi), dims: [] } })
    const gPpo = await train({ ...wfeeds(), ...ppo, ...bounds(1 - epsLow, 1 + epsHigh) })
    const gCe = await train({ ...wfeeds(), ...ce, ...bounds(0, 1e30) })
    const clipped = Array.from(gPpo["clipped"]!.data as Float64Array).filter((x) => x === 1).length
    expect(clipped).toBeGreaterThan(0) // the clipped branch is part of what is checked

    // The intended loss, from teacher-forced logprobs only.
    const intended = async () => {
      const lr = await logprobs(flatRollouts)
      const lref = await logprobs(references)
      let loss = 0
      lr.forEach((lps, i) => lps.forEach((lp, t) => {
        const r = Math.exp(lp - old[i]![t]!)
        const a = rolloutAdv[i]!
        loss += -Math.min(r * a, Math.min(Math.max(r, 1 - epsLow), 1 + epsHigh) * a) / N
        const delta = initialLp[i]![t]! - lp
        loss += (beta / N) * (Math.exp(delta) - delta - 1)
      }))
      lref.forEach((lps, i) => lps.forEach((lp) => {
        const p = Math.exp(lp)
        loss += -(adv[i]!.reference / N) * (p / (p + gamma))
      }))
      return loss
    }

    const h = 1e-6
    let worst = 0
    let checked = 0
    for (const [name] of paramShapes(c)) {
      const w = weights.get(name)!
      const engine = (gPpo[`grad.${name}`]!.data as Float64Array).map((v, i) => v + (gCe[`grad.${name}`]!.data as Float64Array)[i]!)
      for (let i = 0; i < w.length; i += 3) {
        const x = w[i]!
        w[i] = x + h
        const up = await intended()
        w[i] = x - h
        const down = await intended()
        w[i] = x
        const fd = (up - down) / (2 * h)
        worst = Math.max(worst, Math.abs(fd - engine[i]!) / Math.max(1e-3, Math.abs(fd)))
        checked++
      }
    }
    expect(checked).toBeGreaterThan(100)
    expect(worst).toBeLessThan(1e-5)
  }, 120_000)
})
