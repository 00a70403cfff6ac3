import { describe, expect, it } from "vitest"
import { bucketOf, draw, initial, type SamplerConfig, type SamplerState, stratify } from "../src/data/Sampler.ts"

const candidates = Array.from({ length: 300 }, (_, i) => ({ id: `p${String(i).padStart(3, "0")}`, requestedWords: 500 + (i % 30) * 100 }))
const edges = [0, 1000, 2000, 4000]
const buckets = stratify(candidates, edges)

const run = (config: SamplerConfig, steps: number, from: SamplerState = initial(buckets.length)) => {
  const batches: Array<ReadonlyArray<string>> = []
  let state = from
  for (let k = 0; k < steps; k++) {
    const { batch, next } = draw(buckets, state, config)
    batches.push(batch)
    state = next
  }
  return { batches, state }
}

describe("length-stratified sampler", () => {
  it("buckets by requested words", () => {
    expect(bucketOf(edges, 999)).toBe(0)
    expect(bucketOf(edges, 1000)).toBe(1)
    expect(bucketOf(edges, 4000)).toBe(-1)
    expect(buckets.map((b) => b.length)).toEqual([50, 100, 150])
  })

  it("follows the bucket weights over 1,000 steps", () => {
    const config = { edges, weights: [1, 2, 1], groupsPerStep: 8, seed: 7 }
    const { batches } = run(config, 1000)
    const counts = [0, 0, 0]
    for (const batch of batches) for (const id of batch) counts[bucketOf(edges, candidates.find((c) => c.id === id)!.requestedWords)]!++
    const total = 8000
    expect(Math.abs(counts[0]! / total - 0.25)).toBeLessThan(0.02)
    expect(Math.abs(counts[1]! / total - 0.5)).toBeLessThan(0.02)
    expect(Math.abs(counts[2]! / total - 0.25)).toBeLessThan(0.02)
  })

  it("is deterministic from (seed, step), and a resumed state draws the same batches", () => {
    const config = { edges, groupsPerStep: 8, seed: 3 }
    const whole = run(config, 40)
    const firstHalf = run(config, 20)
    const resumed = run(config, 20, JSON.parse(JSON.stringify(firstHalf.state)))
    expect([...firstHalf.batches, ...resumed.batches]).toEqual(whole.batches)
    expect(run({ ...config, seed: 4 }, 40).batches).not.toEqual(whole.batches)
  })

  it("repeats no prompt within its bucket's epoch", () => {
    const config = { edges, weights: [1, 0, 0], groupsPerStep: 5, seed: 11 }
    const { batches } = run(config, 10) // 50 draws from bucket 0, which holds 50 prompts
    const drawn = batches.flat()
    expect(new Set(drawn).size).toBe(50)
    const next = run(config, 20).batches.slice(10).flat() // the second epoch: all 50 again, reshuffled
    expect(new Set(next).size).toBe(50)
    expect(next).not.toEqual(drawn)
  })

  it("never picks an empty bucket, and says so when all are empty", () => {
    const sparse = stratify(candidates.slice(0, 5), edges)
    const { batch } = draw(sparse, initial(sparse.length), { edges, groupsPerStep: 8, seed: 1 })
    expect(batch.every((id) => sparse[0]!.includes(id))).toBe(true)
    expect(() => draw([[], [], []], initial(3), { edges, groupsPerStep: 1, seed: 1 })).toThrow(/every bucket is empty/)
  })
})
