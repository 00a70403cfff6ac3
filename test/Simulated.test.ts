/**
 * The simulated engines (issue 16 point 5): delays follow the latency model exactly under a
 * TestClock, outputs depend on the request alone, sampler and trainer overlap while training
 * calls serialize, the judge's latency and rate limit, and the shipped recipe validates.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import { resolve } from "node:path"
import { resolveTarget } from "../src/cli/target.ts"
import { Judge } from "../src/engines/judge/Judge.ts"
import * as Judges from "../src/engines/judge/Judges.ts"
import * as Rubric from "../src/engines/judge/Rubric.ts"
import { makeSimulated } from "../src/engines/judge/Simulated.ts"
import { datumOf, type PolicyEngineShape, type SampleRequest } from "../src/engines/PolicyEngine.ts"
import { PAPER_LATENCY } from "../src/engines/SimulatedLatency.ts"
import * as SimulatedPolicy from "../src/engines/SimulatedPolicy.ts"
import { defaultSamplingParams } from "../src/model/Sampling.ts"
import { countWords } from "../src/text/WordCount.ts"

const fork = <A, E>(effect: Effect.Effect<A, E>) => Effect.forkChild(effect, { startImmediately: true })

/** Whether a forked fiber has finished (yielding first, so woken fibers get to run). */
const done = <A, E>(fiber: Fiber.Fiber<A, E>) => Effect.andThen(Effect.yieldNow, Effect.sync(() => fiber.pollUnsafe() !== undefined))

const engine = (timeScale = 1) => SimulatedPolicy.make({ model: "Qwen/Qwen3.5-9B", timeScale })

const request = (e: PolicyEngineShape, words: number, seed: number, n = 2, maxTokens = 14_336): SampleRequest => ({
  prompt: e.promptIds(`Write a ${words}-word story about a lighthouse keeper.`),
  n,
  params: { ...defaultSamplingParams, temperature: 1, topP: 0.95, topK: 20, maxTokens, seed }
})

/** The latency model's formula, written out independently of SimulatedLatency.ts. */
const sampleMs = (longest: number) => (2 + longest / 12) * 1000
const prefillMs = (tokens: number) => (2 + tokens / 4000) * 1000
const trainMs = (tokens: number) => (2 + tokens / 320) * 1000

describe("simulated policy: sampling", () => {
  it.effect("a batch takes overhead + its longest sequence / decode speed: not done 1 ms before, done at that instant", () =>
    Effect.gen(function*() {
      const e = yield* engine()
      const requests = [request(e, 1000, 1), request(e, 3000, 2), request(e, 2000, 3)]
      // The outputs (free to compute at once: they do not depend on time) give the longest sequence.
      const fiberForLengths = yield* fork(e.sample(requests))
      yield* TestClock.adjust("1 hour")
      const out = yield* Fiber.join(fiberForLengths)
      const longest = Math.max(...out.flat().map((s) => s.tokens.length))
      expect(longest).toBeGreaterThan(3000 * 0.6 * 1.4 - 1)
      expect(longest).toBeLessThanOrEqual(Math.round(3000 * 1.1 * 1.4) + 1)

      const fiber = yield* fork(e.sample(requests))
      const ms = sampleMs(longest)
      yield* TestClock.adjust(ms - 1)
      expect(yield* done(fiber)).toBe(false)
      yield* TestClock.adjust(1)
      expect(yield* done(fiber)).toBe(true)
      expect(yield* Fiber.join(fiber)).toEqual(out)
    }))

  it.effect("time_scale compresses the delay: 0.001 turns 1,000 s into 1 s", () =>
    Effect.gen(function*() {
      const e = yield* engine(0.001)
      const item = { prompt: [1], completion: Array.from({ length: 19_999 }, () => 5) }
      const fiber = yield* fork(e.trainerLogprobs(Array.from({ length: 200 }, () => item)))
      // 2 + 4,000,000 / 4,000 = 1,002 s of GPU time → 1,002 ms.
      yield* TestClock.adjust(1001)
      expect(yield* done(fiber)).toBe(false)
      yield* TestClock.adjust(1)
      expect(yield* done(fiber)).toBe(true)
    }))

  it.effect("outputs are deterministic and depend only on the request, not on the other requests of the batch", () =>
    Effect.gen(function*() {
      const e = yield* engine(0)
      const a = request(e, 2000, 7), b = request(e, 1500, 8)
      const [[alone]] = [yield* e.sample([a])]
      const together = yield* e.sample([b, a])
      expect(together[1]).toEqual(alone)
      const again = yield* (yield* engine(0)).sample([a])
      expect(again[0]).toEqual(alone)
      // A different seed or row samples something else.
      const other = yield* e.sample([request(e, 2000, 9)])
      expect(other[0]![0]!.tokens).not.toEqual(alone![0]!.tokens)
      expect(alone![0]!.tokens).not.toEqual(alone![1]!.tokens)
    }))

  it.effect("lengths: requested words × [0.6, 1.1] × 1.4 tokens, ending on the end token; capped at maxTokens with stopReason length", () =>
    Effect.gen(function*() {
      const e = yield* engine(0)
      const [seqs] = yield* e.sample([request(e, 2000, 3, 10)])
      for (const s of seqs!) {
        expect(s.stopReason).toBe("stop")
        expect(s.tokens.at(-1)).toBe(e.endToken)
        expect(s.tokens.length - 1).toBeGreaterThanOrEqual(Math.round(2000 * 0.6 * 1.4))
        expect(s.tokens.length - 1).toBeLessThanOrEqual(Math.round(2000 * 1.1 * 1.4))
        expect(s.logprobs).toHaveLength(s.tokens.length)
        // Prose of ~1.4 tokens per word, as the model says.
        const words = countWords(e.tokenizer.decode(s.tokens, { skipSpecial: true }))
        expect(s.tokens.length / words).toBeGreaterThan(1.2)
        expect(s.tokens.length / words).toBeLessThan(1.7)
      }
      const [capped] = yield* e.sample([request(e, 4000, 3, 1, 500)])
      expect(capped![0]!.stopReason).toBe("length")
      expect(capped![0]!.tokens).toHaveLength(500)
    }))

  it.effect("teacher forcing gives the sampler's logprobs back (sampler and trainer agree)", () =>
    Effect.gen(function*() {
      const e = yield* engine(0)
      const r = request(e, 1000, 4, 1)
      const s = (yield* e.sample([r]))[0]![0]
      const [lp] = yield* e.logprobs([{ prompt: r.prompt, completion: s!.tokens }])
      const [tlp] = yield* e.trainerLogprobs([{ prompt: r.prompt, completion: s!.tokens }])
      expect(Array.from(lp!)).toEqual(Array.from(Float32Array.from(s!.logprobs)))
      expect(Array.from(tlp!)).toEqual(Array.from(lp!))
    }))
})

describe("simulated policy: one GPU, a sampler queue and a trainer queue", () => {
  const datums = (n: number, len: number) =>
    Array.from({ length: n }, () => datumOf([1, 2], Array.from({ length: len }, () => 7), { logprobs: new Float32Array(len).fill(-1), advantages: new Float32Array(len).fill(0.5) }))

  it.effect("a training call and a sampling call overlap: both end by the longer delay, not the sum", () =>
    Effect.gen(function*() {
      const e = yield* engine()
      const batch = datums(4, 3199) // 4 × 3,200 tokens = 12,800 → 2 + 40 = 42 s
      const r = request(e, 1000, 1, 1)
      const s = (yield* Effect.gen(function*() {
        const f = yield* fork(e.sample([r]))
        yield* TestClock.adjust("1 hour")
        return yield* Fiber.join(f)
      }))[0]![0]
      const sampling = sampleMs(s!.tokens.length)
      const training = trainMs(12_800)
      expect(sampling).toBeGreaterThan(training) // so "the longer one" is sampling
      const t = yield* fork(e.forwardBackward(batch, { name: "ppo", clipLow: 0.8, clipHigh: 1.28 }))
      const f = yield* fork(e.sample([r]))
      yield* TestClock.adjust(training)
      expect(yield* done(t)).toBe(true)
      expect(yield* done(f)).toBe(false)
      yield* TestClock.adjust(sampling - training)
      expect(yield* done(f)).toBe(true)
    }))

  it.effect("two training calls serialize: the second ends after both delays", () =>
    Effect.gen(function*() {
      const e = yield* engine()
      const loss = { name: "ppo", clipLow: 0.8, clipHigh: 1.28 } as const
      const first = yield* fork(e.forwardBackward(datums(2, 3199), loss)) // 6,400 tokens → 22 s
      const second = yield* fork(e.forwardBackward(datums(1, 3199), loss)) // 3,200 tokens → 12 s
      yield* TestClock.adjust(trainMs(6400))
      expect(yield* done(first)).toBe(true)
      expect(yield* done(second)).toBe(false)
      yield* TestClock.adjust(trainMs(3200) - 1)
      expect(yield* done(second)).toBe(false)
      yield* TestClock.adjust(1)
      expect(yield* done(second)).toBe(true)
      // And an optimizer step waits for training: 5 s after it.
      const step = yield* fork(e.optimStep({ learningRate: 1e-5, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0, gradClipNorm: 1 }))
      yield* TestClock.adjust(4999)
      expect(yield* done(step)).toBe(false)
      yield* TestClock.adjust(1)
      expect(yield* done(step)).toBe(true)
      // Counted tokens: the completion positions, where the advantage is set.
      const r = yield* Fiber.join(first)
      expect(r.metrics["tokens:sum"]).toBe(2 * 3199)
    }))

  it.effect("teacher forcing on the sampler queue overlaps training; trainer logprobs wait for it", () =>
    Effect.gen(function*() {
      const e = yield* engine()
      const t = yield* fork(e.forwardBackward(datums(1, 3199), { name: "ppo", clipLow: 0.8, clipHigh: 1.28 })) // 12 s
      const items = [{ prompt: [1, 2], completion: Array.from({ length: 7998 }, () => 7) }] // 8,000 tokens → 4 s
      const sampler = yield* fork(e.logprobs(items))
      const trainer = yield* fork(e.trainerLogprobs(items))
      yield* TestClock.adjust(prefillMs(8000))
      expect(yield* done(sampler)).toBe(true) // 4 s: beside the training call
      expect(yield* done(trainer)).toBe(false)
      // The trainer queue: 12 s of training, then 4 s of prefill.
      yield* TestClock.adjust(trainMs(3200) - 1)
      expect(yield* done(trainer)).toBe(false)
      yield* TestClock.adjust(1)
      expect(yield* done(trainer)).toBe(true)
    }))

  it.effect("the fingerprint keys the latency model: another model, another fingerprint; the time scale does not", () =>
    Effect.gen(function*() {
      const a = yield* engine(1)
      const b = yield* engine(0.001)
      const c = yield* SimulatedPolicy.make({ model: "Qwen/Qwen3.5-9B", latency: { ...PAPER_LATENCY, decodeTokensPerS: 24 } })
      expect(a.fingerprint).toBe(b.fingerprint)
      expect(c.fingerprint).not.toBe(a.fingerprint)
      expect(a.fingerprint).toMatch(/^simulated:Qwen\/Qwen3\.5-9B:/)
    }))

  it.effect("checkpoints are names; load accepts its own and refuses others", () =>
    Effect.gen(function*() {
      const e = yield* engine(0)
      const ref = yield* e.save("step-0001")
      expect(ref.path).toBe("sim://Qwen/Qwen3.5-9B/step-0001")
      yield* e.load(ref)
      const bad = yield* Effect.flip(e.load({ path: "/tmp/elsewhere" }))
      expect(bad.reason).toBe("Checkpoint")
    }))
})

describe("simulated judge", () => {
  const rubric = Rubric.load(Rubric.DEFAULT_RUBRIC)
  const item = { prompt: "Write a 1000-word story about a fox.", story: "The fox ran. ".repeat(300) }
  // 1.1 + 2,500 / 218 s
  const scoreMs = (1.1 + 2500 / 218) * 1000

  it.effect("a verdict takes time to first token + output tokens / speed; scores are deterministic from the text", () =>
    Effect.gen(function*() {
      const judge = yield* makeSimulated({ rubric: yield* rubric })
      const fiber = yield* fork(judge.score(item))
      yield* TestClock.adjust(Math.floor(scoreMs) - 1)
      expect(yield* done(fiber)).toBe(false)
      yield* TestClock.adjust(2)
      expect(yield* done(fiber)).toBe(true)
      const v = yield* Fiber.join(fiber)
      expect(Object.keys(v.scores)).toHaveLength((yield* rubric).dimensions.length)
      expect(v.quality).toBeGreaterThan(0)
      expect(v.quality).toBeLessThan(1)
      const again = yield* fork(judge.score(item))
      const other = yield* fork(judge.score({ ...item, story: `${item.story} The end.` }))
      yield* TestClock.adjust("1 minute")
      expect((yield* Fiber.join(again)).scores).toEqual(v.scores)
      expect((yield* Fiber.join(other)).scores).not.toEqual(v.scores)
    }))

  it.effect("the rate limit: at 60 requests per minute (1 s burst) calls start 60/59 s apart, each then taking the call's latency", () =>
    Effect.gen(function*() {
      const judge = yield* makeSimulated({ rubric: yield* rubric, requestsPerMinute: 60 })
      // 60/min with a 1 s burst: a bucket of 1 request, refilled at (60 − 1) / 60 per second,
      // so call k starts at k × 60/59 s and ends scoreMs later.
      const gap = 60_000 / 59
      const fibers = yield* Effect.forEach([0, 1, 2], (i) => fork(judge.score({ ...item, sample: i })))
      const states = () => Effect.forEach(fibers, done)
      yield* TestClock.adjust(scoreMs - 1)
      expect(yield* states()).toEqual([false, false, false])
      yield* TestClock.adjust(2) // scoreMs + 1
      expect(yield* states()).toEqual([true, false, false])
      yield* TestClock.adjust(gap - 2) // gap + scoreMs − 1
      expect(yield* states()).toEqual([true, false, false])
      yield* TestClock.adjust(2) // gap + scoreMs + 1
      expect(yield* states()).toEqual([true, true, false])
      yield* TestClock.adjust(gap - 2)
      expect(yield* states()).toEqual([true, true, false])
      yield* TestClock.adjust(2) // 2 gaps + scoreMs + 1
      expect(yield* states()).toEqual([true, true, true])
      expect(judge.totals().calls).toBe(3)
    }))

  it.effect("judge.backend: simulated builds from a recipe section, with its time scale", () =>
    Effect.gen(function*() {
      const judge = yield* Effect.provide(Effect.gen(function*() { return yield* Judge }), Judges.fromRecipe({ backend: "simulated", time_scale: 0.001 }))
      expect(judge.fingerprint).toMatch(/^simulated:gemini-3-flash-preview:/)
      const fiber = yield* fork(judge.score(item))
      yield* TestClock.adjust(Math.ceil(scoreMs / 1000))
      expect(yield* done(fiber)).toBe(true)
    }))
})

describe("recipes/polaris-simulated.yaml", () => {
  it.effect("validates: the polaris pipeline on the simulated engines, 8 groups × 6, references of 1–4k words", () =>
    Effect.gen(function*() {
      const t = yield* resolveTarget(resolve(import.meta.dirname, "../recipes/polaris-simulated.yaml"), { sets: ["grpo.steps=2"] })
      expect(t.pipeline.name).toBe("polaris")
      const recipe = (t as unknown as { recipe: { policy: { backend: string }; judge: { backend: string }; grpo: { groups_per_step: number; group_size: number }; data: { min_words: number; prompt: { max_words: number } } } }).recipe
      expect(recipe.policy.backend).toBe("simulated")
      expect(recipe.judge.backend).toBe("simulated")
      expect([recipe.grpo.groups_per_step, recipe.grpo.group_size]).toEqual([8, 6])
      expect([recipe.data.min_words, recipe.data.prompt.max_words]).toEqual([1000, 4000])
    }), 60_000)
})
