/**
 * The decode-step sampler (vLLM semantics): each test uses tiny crafted logits whose expected
 * result is worked out by hand in the comments, so a wrong order of operations, a wrong penalty
 * formula or an off-by-one in top-k/top-p changes the numbers checked.
 */
import { describe, expect, it } from "vitest"
import { seeded } from "../src/internal/random.ts"
import {
  defaultSamplingParams,
  draw,
  entropy,
  isGreedy,
  processLogits,
  rawLogprob,
  rowRandom,
  sample,
  type SamplingParams,
  SequenceState,
  validate
} from "../src/model/Sampling.ts"

const params = (over: Partial<SamplingParams> = {}): SamplingParams => ({ ...defaultSamplingParams, ...over })
const f32 = (...xs: Array<number>) => Float32Array.from(xs)
const fresh = (n: number, prompt: ReadonlyArray<number> = []) => new SequenceState(n, prompt)
const probs = (lp: Float64Array) => Array.from(lp, Math.exp)
/** Reference log-softmax, written the obvious way (inputs here are small). */
const logSoftmax = (xs: ReadonlyArray<number>) => {
  const lse = Math.log(xs.reduce((s, x) => s + Math.exp(x), 0))
  return xs.map((x) => x - lse)
}
const kept = (lp: Float64Array) => Array.from(lp).flatMap((v, i) => (v === -Infinity ? [] : [i]))
const expectClose = (actual: ArrayLike<number>, expected: ReadonlyArray<number>, digits = 6) => {
  expect(actual.length).toBe(expected.length)
  expected.forEach((e, i) => {
    if (e === -Infinity) expect(actual[i]).toBe(-Infinity)
    else expect(actual[i]).toBeCloseTo(e, digits)
  })
}

describe("defaults and validation", () => {
  it("defaults to vLLM's plain sampling", () => {
    expect(defaultSamplingParams).toEqual({
      maxTokens: 256, temperature: 1, topP: 1, topK: -1,
      repetitionPenalty: 1, presencePenalty: 0, frequencyPenalty: 0, stop: [], seed: 0
    })
    expect(() => validate(defaultSamplingParams)).not.toThrow()
  })

  it("rejects each invalid field with a message naming it", () => {
    expect(() => validate(params({ temperature: -0.1 }))).toThrow(/temperature/)
    expect(() => validate(params({ temperature: Number.NaN }))).toThrow(/temperature/)
    expect(() => validate(params({ topP: 0 }))).toThrow(/topP must be in \(0, 1\], got 0/)
    expect(() => validate(params({ topP: 1.01 }))).toThrow(/topP/)
    expect(() => validate(params({ topK: -2 }))).toThrow(/topK/)
    expect(() => validate(params({ topK: 1.5 }))).toThrow(/topK/)
    expect(() => validate(params({ repetitionPenalty: 0 }))).toThrow(/repetitionPenalty/)
    expect(() => validate(params({ repetitionPenalty: -1 }))).toThrow(/repetitionPenalty/)
    expect(() => validate(params({ maxTokens: 0 }))).toThrow(/maxTokens/)
    expect(() => validate(params({ presencePenalty: Number.POSITIVE_INFINITY }))).toThrow(/presencePenalty/)
    expect(() => validate(params({ stop: [3, -1] }))).toThrow(/stop/)
    // Boundaries that are valid: greedy, topP 1, topK 0 / -1.
    expect(() => validate(params({ temperature: 0, topP: 1, topK: 0, maxTokens: 1 }))).not.toThrow()
  })
})

describe("temperature", () => {
  it("divides the logits before softmax", () => {
    // [1, 2, 3] / 2 = [0.5, 1, 1.5]; softmax = [0.186324, 0.307196, 0.506480].
    const lp = processLogits(f32(1, 2, 3), params({ temperature: 2 }), fresh(3))
    expectClose(probs(lp), [0.1863237232, 0.3071958857, 0.5064803911])
    // At temperature 1 the same logits give softmax([1,2,3]) = [0.090031, 0.244728, 0.665241].
    expectClose(probs(processLogits(f32(1, 2, 3), params(), fresh(3))), [0.0900305732, 0.2447284711, 0.6652409558])
  })

  it("temperature 0 is greedy: argmax, lowest id on ties, whatever u is", () => {
    const greedy = params({ temperature: 0 })
    expect(isGreedy(greedy)).toBe(true)
    expect(isGreedy(params({ temperature: 1e-6 }))).toBe(true) // below vLLM's 1e-5
    expect(isGreedy(params({ temperature: 0.01 }))).toBe(false)
    const lp = processLogits(f32(0.5, 3, -2, 3, 1), greedy, fresh(5))
    for (const u of [0, 0.3, 0.999]) expect(draw(lp, u, greedy)).toBe(1) // ids 1 and 3 tie at 3 -> 1
    expect(draw(processLogits(f32(-5, -1, -3), greedy, fresh(3)), 0.5, greedy)).toBe(1)
  })

  it("greedy still applies penalties first (vLLM), so a penalized argmax moves", () => {
    // [2, 1.5, 0] with repetition penalty 2 on token 0: 2/2 = 1 < 1.5, so argmax becomes 1.
    const p = params({ temperature: 0, repetitionPenalty: 2 })
    expect(draw(processLogits(f32(2, 1.5, 0), p, fresh(3, [0])), 0, p)).toBe(1)
    expect(draw(processLogits(f32(2, 1.5, 0), p, fresh(3)), 0, p)).toBe(0)
  })
})

describe("top-k", () => {
  it("keeps exactly the k largest, lower id first among ties", () => {
    // [1, 3, 2, 3, 0]: the two best are ids 1 and 3 (both 3), each 1/2 after renormalizing.
    const lp2 = processLogits(f32(1, 3, 2, 3, 0), params({ topK: 2 }), fresh(5))
    expect(kept(lp2)).toEqual([1, 3])
    expectClose(probs(lp2), [0, 0.5, 0, 0.5, 0])
    // k = 3 adds id 2 (logit 2): probs e^3, e^2, e^3 over 2e^3 + e^2 -> [0, .4223, .1554, .4223, 0].
    const lp3 = processLogits(f32(1, 3, 2, 3, 0), params({ topK: 3 }), fresh(5))
    expect(kept(lp3)).toEqual([1, 2, 3])
    const z = 2 * Math.exp(3) + Math.exp(2)
    expectClose(probs(lp3), [0, Math.exp(3) / z, Math.exp(2) / z, Math.exp(3) / z, 0])
    // [5, 2, 2, 2, 1], k = 2: id 0, then one of the three 2s: the lowest id (1), not all three.
    expect(kept(processLogits(f32(5, 2, 2, 2, 1), params({ topK: 2 }), fresh(5)))).toEqual([0, 1])
    // Ties at the top: [7, 7, 7, 7], k = 3 keeps ids 0, 1, 2.
    expect(kept(processLogits(f32(7, 7, 7, 7), params({ topK: 3 }), fresh(4)))).toEqual([0, 1, 2])
    // k = 1 is argmax.
    expect(kept(processLogits(f32(0, -1, 4, 3.9), params({ topK: 1 }), fresh(4)))).toEqual([2])
  })

  it("-1, 0 and k >= vocab are off", () => {
    for (const topK of [-1, 0, 4, 10]) {
      expectClose(processLogits(f32(1, 2, 3, 4), params({ topK }), fresh(4)), logSoftmax([1, 2, 3, 4]))
    }
  })

  it("selects the same set as a full sort on a 4096-token vocab (with duplicates and -Infinity)", () => {
    const random = seeded("topk-ref")
    const n = 4096
    for (let trial = 0; trial < 20; trial++) {
      // Rounded values create many ties; a few -Infinity mimic masked tokens.
      const logits = Float32Array.from({ length: n }, () => {
        const r = random()
        return r < 0.01 ? -Infinity : Math.round((random() * 20 - 10) * 4) / 4
      })
      const k = [1, 2, 20, 50, 500, 4000, 4095][trial % 7]!
      const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => logits[b]! - logits[a]! || a - b)
      const expected = order.slice(0, k).sort((a, b) => a - b)
      const lp = processLogits(logits, params({ topK: k }), fresh(n))
      // -Infinity logits among the k (only when k exceeds the finite count) stay -Infinity.
      const finiteExpected = expected.filter((i) => logits[i] !== -Infinity)
      expect(kept(lp)).toEqual(finiteExpected)
    }
  })
})

describe("top-p", () => {
  it("keeps the smallest most-likely prefix whose mass reaches p (the crossing token included)", () => {
    // Four equal logits: probs exactly 1/4 each. p = 0.5: ids 0,1 reach 0.5 exactly -> stop there.
    expect(kept(processLogits(f32(0, 0, 0, 0), params({ topP: 0.5 }), fresh(4)))).toEqual([0, 1])
    // p = 0.51: two tokens give 0.5 < 0.51, the third crosses -> ids 0,1,2.
    expect(kept(processLogits(f32(0, 0, 0, 0), params({ topP: 0.51 }), fresh(4)))).toEqual([0, 1, 2])
    // p = 0.25 keeps one; p = 1 keeps all.
    expect(kept(processLogits(f32(0, 0, 0, 0), params({ topP: 0.25 }), fresh(4)))).toEqual([0])
    expect(kept(processLogits(f32(0, 0, 0, 0), params({ topP: 1 }), fresh(4)))).toEqual([0, 1, 2, 3])
  })

  it("always keeps at least the most likely token (vLLM), even for an unvalidated p <= 0", () => {
    expect(kept(processLogits(f32(0, 2, 1), params({ topP: 0 }), fresh(3)))).toEqual([1])
  })

  it("keeps the same set as a sort-based reference on a 4096-token vocab (with ties)", () => {
    const random = seeded("topp-ref")
    const n = 4096
    for (let trial = 0; trial < 30; trial++) {
      // Rounded values create many ties; a few -Infinity mimic masked tokens; the spread varies
      // so nuclei range from one token to most of the vocab.
      const spread = [0.5, 4, 20, 60][trial % 4]!
      const logits = Float32Array.from({ length: n }, () =>
        random() < 0.01 ? -Infinity : Math.round((random() - 0.5) * spread * 8) / 8)
      const topP = [0.1, 0.5, 0.9, 0.95, 0.99, 0.999][trial % 6]!
      // Reference: sort (value desc, id asc), keep while the mass before the token is < p.
      const order = Array.from({ length: n }, (_, i) => i).filter((i) => logits[i] !== -Infinity)
        .sort((a, b) => logits[b]! - logits[a]! || a - b)
      const max = logits[order[0]!]!
      const z = order.reduce((s, i) => s + Math.exp(logits[i]! - max), 0)
      const expected: Array<number> = []
      let before = 0
      for (const i of order) {
        if (expected.length > 0 && before / z >= topP) break
        expected.push(i)
        before += Math.exp(logits[i]! - max)
      }
      const lp = processLogits(logits, params({ topP }), fresh(n))
      expect(kept(lp)).toEqual(expected.sort((a, b) => a - b))
    }
  })

  it("sorts by probability, not by id, and renormalizes the kept tokens", () => {
    // ids hold probs [0.2, 0.5, 0.3]. Sorted: 0.5 (id 1), 0.3 (id 2), 0.2 (id 0).
    const logits = f32(Math.log(0.2), Math.log(0.5), Math.log(0.3))
    // p = 0.6: 0.5 < 0.6, then 0.8 crosses -> ids 1, 2 with 0.5/0.8 = 0.625, 0.3/0.8 = 0.375.
    expectClose(probs(processLogits(logits, params({ topP: 0.6 }), fresh(3))), [0, 0.625, 0.375])
    // p = 0.4: the first token (0.5) already crosses -> only id 1.
    expectClose(probs(processLogits(logits, params({ topP: 0.4 }), fresh(3))), [0, 1, 0])
    // p = 0.9: 0.5, 0.8 < 0.9, then 1.0 -> all three, unchanged.
    expectClose(probs(processLogits(logits, params({ topP: 0.9 }), fresh(3))), [0.2, 0.5, 0.3])
  })

  it("runs after temperature (vLLM order)", () => {
    // Probs [0.5, 0.3, 0.2] at T = 0.5 become ∝ [0.25, 0.09, 0.04] = [0.6579, 0.2368, 0.1053];
    // p = 0.6 then keeps only id 0. At T = 1, p = 0.6 keeps ids 0 and 1.
    const logits = f32(Math.log(0.5), Math.log(0.3), Math.log(0.2))
    expect(kept(processLogits(logits, params({ temperature: 0.5, topP: 0.6 }), fresh(3)))).toEqual([0])
    expect(kept(processLogits(logits, params({ temperature: 1, topP: 0.6 }), fresh(3)))).toEqual([0, 1])
  })

  it("runs after top-k, on the renormalized top-k distribution (vLLM order)", () => {
    // Probs [0.4, 0.3, 0.2, 0.1]. top-k 3 renormalizes to [4/9, 3/9, 2/9]; p = 0.75:
    // 0.444 < 0.75, 0.778 crosses -> ids 0, 1 with probs 4/7, 3/7.
    const logits = f32(Math.log(0.4), Math.log(0.3), Math.log(0.2), Math.log(0.1))
    expectClose(probs(processLogits(logits, params({ topK: 3, topP: 0.75 }), fresh(4))), [4 / 7, 3 / 7, 0, 0])
    // Without top-k, p = 0.75 on the original: 0.4, 0.7 < 0.75, 0.9 crosses -> ids 0, 1, 2.
    expectClose(probs(processLogits(logits, params({ topP: 0.75 }), fresh(4))), [4 / 9, 3 / 9, 2 / 9, 0])
  })
})

describe("penalties", () => {
  it("repetition penalty divides positive and multiplies non-positive logits of prompt and output tokens", () => {
    // logits [2, -1, 0.5, -0.5, 1, 0]; prompt has 0 (three times: still once) and 5; output has 1.
    // penalty 2: id0 2/2 = 1; id1 -1*2 = -2; id5 0*2 = 0; ids 2, 3, 4 untouched.
    const state = fresh(6, [0, 0, 0, 5])
    state.observe(1)
    const lp = processLogits(f32(2, -1, 0.5, -0.5, 1, 0), params({ repetitionPenalty: 2 }), state)
    expectClose(lp, logSoftmax([1, -2, 0.5, -0.5, 1, 0]))
    // A penalty below 1 rewards instead: 2/0.5 = 4, -1*0.5 = -0.5.
    const lpHalf = processLogits(f32(2, -1, 0.5, -0.5, 1, 0), params({ repetitionPenalty: 0.5 }), state)
    expectClose(lpHalf, logSoftmax([4, -0.5, 0.5, -0.5, 1, 0]))
    // Observing the same token twice does not penalize it twice (it is a set, not a count).
    state.observe(1)
    expectClose(processLogits(f32(2, -1, 0.5, -0.5, 1, 0), params({ repetitionPenalty: 2 }), state), logSoftmax([1, -2, 0.5, -0.5, 1, 0]))
  })

  it("presence and frequency penalties apply to generated tokens only, not the prompt", () => {
    // All logits 0; prompt [4]; generated 1, 1, 2. presence 0.5, frequency 0.25:
    // id1: 0 - 0.25*2 - 0.5 = -1; id2: 0 - 0.25*1 - 0.5 = -0.75; id4 (prompt only) and the rest: 0.
    const state = fresh(5, [4])
    for (const t of [1, 1, 2]) state.observe(t)
    expect(state.count(1)).toBe(2)
    expect(state.length).toBe(3)
    const lp = processLogits(f32(0, 0, 0, 0, 0), params({ presencePenalty: 0.5, frequencyPenalty: 0.25 }), state)
    expectClose(lp, logSoftmax([0, -1, -0.75, 0, 0]))
    // Presence alone: -0.5 each once; frequency alone: -0.25 * count.
    expectClose(processLogits(f32(0, 0, 0, 0, 0), params({ presencePenalty: 0.5 }), state), logSoftmax([0, -0.5, -0.5, 0, 0]))
    expectClose(processLogits(f32(0, 0, 0, 0, 0), params({ frequencyPenalty: 0.25 }), state), logSoftmax([0, -0.5, -0.25, 0, 0]))
    // Negative penalties encourage repeats (OpenAI allows them): presence -1 -> id1, id2 at +1.
    expectClose(processLogits(f32(0, 0, 0, 0, 0), params({ presencePenalty: -1 }), state), logSoftmax([0, 1, 1, 0, 0]))
  })

  it("applies repetition before presence/frequency, then temperature", () => {
    // logit 1 for generated id 0, repetition 2 and presence 1: vLLM gives 1/2 - 1 = -0.5
    // (the other order would give (1 - 1) * 2 = 0). Then T = 0.5 doubles: [-1, 0].
    const state = fresh(2)
    state.observe(0)
    const lp = processLogits(f32(1, 0), params({ repetitionPenalty: 2, presencePenalty: 1, temperature: 0.5 }), state)
    expectClose(lp, logSoftmax([-1, 0]))
  })

  it("rejects out-of-range token ids", () => {
    expect(() => fresh(4, [4])).toThrow(RangeError)
    expect(() => fresh(4).observe(-1)).toThrow(RangeError)
    expect(() => processLogits(f32(0, 0, 0), params(), fresh(4))).toThrow(/vocab/)
  })
})

describe("processLogits buffers", () => {
  it("leaves the raw logits alone and writes into a reusable buffer", () => {
    const logits = f32(3, 1, 2)
    const out = new Float64Array(3)
    const state = fresh(3, [0])
    const got = processLogits(logits, params({ repetitionPenalty: 3, topK: 2, temperature: 0.5 }), state, out)
    expect(got).toBe(out)
    expect(Array.from(logits)).toEqual([3, 1, 2])
    // 3/3 = 1, then /0.5: [2, 2, 4], top-2 keeps id 2 and id 0 (lower id of the tied 2s).
    expectClose(out, [logSoftmax([2, 4])[0]!, -Infinity, logSoftmax([2, 4])[1]!])
    expect(() => processLogits(logits, params(), state, new Float64Array(4))).toThrow(RangeError)
    expect(() => processLogits(f32(0, Number.NaN, 0), params(), state)).toThrow(/NaN/)
  })

  it("stays finite for huge logits (max subtraction)", () => {
    // [1000, 1000, 999]: naive exp overflows; softmax = [e, e, 1] / (2e + 1).
    const lp = processLogits(f32(1000, 1000, 999), params(), fresh(3))
    const z = 2 * Math.E + 1
    expectClose(probs(lp), [Math.E / z, Math.E / z, 1 / z])
  })
})

describe("draw", () => {
  it("inverts the CDF over token ids and never draws a removed token", () => {
    // probs [0.5, 0 (removed), 0.25, 0.25]: CDF steps 0.5 (id 0), 0.75 (id 2), 1 (id 3).
    const lp = Float64Array.of(Math.log(0.5), -Infinity, Math.log(0.25), Math.log(0.25))
    const p = params()
    expect(draw(lp, 0, p)).toBe(0)
    expect(draw(lp, 0.4999, p)).toBe(0)
    expect(draw(lp, 0.5001, p)).toBe(2)
    expect(draw(lp, 0.7499, p)).toBe(2)
    expect(draw(lp, 0.7501, p)).toBe(3)
    expect(draw(lp, 0.9999999, p)).toBe(3)
    // Exactly on a CDF step, u belongs to the next token (first id with CDF > u), so each token
    // gets exactly its probability of the u range: u = 0.5 -> id 2, u = 0.75 -> id 3.
    expect(draw(lp, 0.5, p)).toBe(2)
    expect(draw(lp, 0.75, p)).toBe(3)
    expect(() => draw(lp, 1, p)).toThrow(RangeError)
    expect(() => draw(Float64Array.of(-Infinity, -Infinity), 0.5, p)).toThrow(/masked/)
  })

  it("draw frequencies over 20000 draws match the processed distribution (chi-square)", () => {
    // logits [2, 1, 0.5, 0, -1, 3], T = 0.7, top-k 5: id 4 (-1) is removed.
    const p = params({ temperature: 0.7, topK: 5 })
    const lp = processLogits(f32(2, 1, 0.5, 0, -1, 3), p, fresh(6))
    expect(kept(lp)).toEqual([0, 1, 2, 3, 5])
    const expected = probs(lp)
    const random = rowRandom("chi", 0)
    const n = 20000
    const counts = new Array<number>(6).fill(0)
    for (let i = 0; i < n; i++) counts[draw(lp, random(), p)]!++
    expect(counts[4]).toBe(0)
    // 4 degrees of freedom; the 0.1% critical value is 18.47.
    const chi2 = [0, 1, 2, 3, 5].reduce((s, i) => s + (counts[i]! - n * expected[i]!) ** 2 / (n * expected[i]!), 0)
    expect(chi2).toBeLessThan(18.47)
    // Sanity: a wrong distribution (plain softmax at T = 1, no top-k) fails the same test.
    const wrong = probs(processLogits(f32(2, 1, 0.5, 0, -1, 3), params(), fresh(6)))
    const chi2Wrong = [0, 1, 2, 3, 5].reduce((s, i) => s + (counts[i]! - n * wrong[i]!) ** 2 / (n * wrong[i]!), 0)
    expect(chi2Wrong).toBeGreaterThan(18.47)
  })
})

describe("seeded rows", () => {
  const n = 4096
  const logits = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 2)
  const run = (seed: number | string, row: number) => {
    const p = params({ seed, topP: 0.95, topK: 200, temperature: 0.9 })
    const state = fresh(n, [1, 2, 3])
    const random = rowRandom(seed, row)
    return Array.from({ length: 30 }, () => {
      const { token } = sample(logits, p, state, random)
      state.observe(token)
      return token
    })
  }

  it("row i of seed s uses seeded(`s:i`)", () => {
    const a = rowRandom(7, 3)
    const b = seeded("7:3")
    for (let i = 0; i < 5; i++) expect(a()).toBe(b())
  })

  it("same seed and row -> same draws; different seed or row -> different draws", () => {
    expect(run(1, 0)).toEqual(run(1, 0))
    expect(run("abc", 5)).toEqual(run("abc", 5))
    expect(run(1, 0)).not.toEqual(run(2, 0))
    expect(run(1, 0)).not.toEqual(run(1, 1))
  })

  it("sample reports the raw logprob of the drawn token and consumes one u even when greedy", () => {
    const p = params({ temperature: 0 })
    let calls = 0
    const { token, logprob } = sample(f32(1, 2, 3), p, fresh(3), () => (calls++, 0.5))
    expect(token).toBe(2)
    expect(calls).toBe(1)
    expect(logprob).toBeCloseTo(-0.4076059644, 9)
  })
})

describe("rawLogprob and entropy", () => {
  it("rawLogprob is log softmax of the raw logits", () => {
    // [1, 2, 3]: lse = 3 + log(1 + e^-1 + e^-2) = 3.4076059644; logprobs [-2.40761, -1.40761, -0.40761].
    expect(rawLogprob(f32(1, 2, 3), 0)).toBeCloseTo(-2.4076059644, 9)
    expect(rawLogprob(f32(1, 2, 3), 2)).toBeCloseTo(-0.4076059644, 9)
    // Huge logits stay finite: [1000, 1000] -> -ln 2.
    expect(rawLogprob(f32(1000, 1000), 1)).toBeCloseTo(-Math.LN2, 12)
    expect(rawLogprob(f32(0, -Infinity), 1)).toBe(-Infinity)
    expect(() => rawLogprob(f32(0, 0), 2)).toThrow(RangeError)
  })

  it("entropy in nats of softmax(raw logits)", () => {
    // Uniform over 4: ln 4 = 1.386294.
    expect(entropy(f32(0, 0, 0, 0))).toBeCloseTo(Math.log(4), 9)
    // probs [0.25, 0.75] via logits [0, ln 3]: -(0.25 ln 0.25 + 0.75 ln 0.75) = 0.5623351446.
    expect(entropy(f32(0, Math.log(3)))).toBeCloseTo(0.5623351446, 6)
    // Huge logits with a masked token: [1000, 1000, -Inf] -> ln 2, not NaN.
    expect(entropy(f32(1000, 1000, -Infinity))).toBeCloseTo(Math.LN2, 9)
    // A point mass has zero entropy.
    expect(entropy(f32(5, -Infinity, -Infinity))).toBe(0)
  })
})

describe("sample: the one-pass path for unfiltered sampling", () => {
  it("draws what processLogits + draw draw, with the same raw logprob, at T = 1 and T = 0.7", () => {
    const u = seeded("plain")
    const logits = Float32Array.from({ length: 4096 }, () => 8 * (u() - 0.5))
    for (const temperature of [1, 0.7]) {
      const params = { ...defaultSamplingParams, temperature }
      const state = new SequenceState(4096, [])
      let same = 0
      for (let i = 0; i < 2000; i++) {
        const x = u()
        const fast = sample(logits, params, state, () => x)
        const slow = draw(processLogits(logits, params, state), x, params)
        if (fast.token === slow) same++
        expect(fast.logprob).toBeCloseTo(rawLogprob(logits, fast.token), 9)
      }
      // Both invert the same CDF; only a u within rounding of a boundary could split them.
      expect(same).toBeGreaterThanOrEqual(1998)
    }
  })
})
