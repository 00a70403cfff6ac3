/**
 * The embedded PolicyEngine through its service interface: sampling, teacher forcing, the three
 * losses' values, publish semantics, save/load, and its errors.
 */
import { readdirSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Effect, Exit } from "effect"
import { describe, expect, it } from "vitest"
import * as EmbeddedPolicy from "../src/engines/EmbeddedPolicy.ts"
import { trackCheckpoints } from "../src/engines/Policies.ts"
import { datumOf, PolicyEngine, type LossFn, type PolicyEngineShape } from "../src/engines/PolicyEngine.ts"
import { defaultAdamParams } from "../src/model/AdamW.ts"
import * as Checkpoint from "../src/model/Checkpoint.ts"
import { defaultSamplingParams } from "../src/model/Sampling.ts"
import { serializeTokenizerJson, trainBpe } from "../src/model/tokenizer/BpeTrainer.ts"
import { Tokenizer } from "../src/model/tokenizer/Tokenizer.ts"
import { tokenizerConfigFor } from "../src/model/tokenizer/TokenizerFiles.ts"
import { decays, defaultConfig, initWeights } from "../src/model/Transformer.ts"
import { tempDirInRepo } from "./support/store.ts"

const checkpoint = async (): Promise<string> => {
  const json = trainBpe(["Once upon a time a fox wrote a story about a lighthouse and the sea."], { vocabSize: 300 })
  const tokenizer = { json: serializeTokenizerJson(json), config: JSON.stringify(tokenizerConfigFor(json)) }
  const vocabSize = Tokenizer.fromJson(JSON.parse(tokenizer.json)).vocabSize
  const config = { ...defaultConfig, vocabSize, dModel: 32, nLayers: 2, nHeads: 4, dFF: 64, maxContext: 128 }
  const weights = initWeights(config, "engine")
  for (const [name, a] of weights) if (decays(name)) for (let i = 0; i < a.length; i++) a[i]! *= 8
  const dir = tempDirInRepo("ckpt")
  await Checkpoint.write(dir, { config, weights, tokenizer })
  return dir
}

const withEngine = async <A>(f: (e: PolicyEngineShape) => Effect.Effect<A, unknown>, dir?: string): Promise<A> => {
  const checkpointDir = tempDirInRepo("saved")
  const layer = EmbeddedPolicy.layer({ checkpoint: dir ?? (await checkpoint()), checkpointDir })
  return Effect.runPromise(Effect.provide(Effect.gen(function*() {
    return yield* f(yield* PolicyEngine)
  }), layer))
}

const params = { ...defaultSamplingParams, maxTokens: 24, seed: 3 }
const sum = (a: ArrayLike<number>) => Array.from(a).reduce((x, y) => x + y, 0)

describe("EmbeddedPolicy", () => {
  it("samples n continuations per prompt whose logprobs teacher forcing reproduces", async () => {
    await withEngine((e) =>
      Effect.gen(function*() {
        const prompts = [e.promptIds("a fox"), e.promptIds("the sea and a lighthouse")]
        const groups = yield* e.sample(prompts.map((prompt) => ({ prompt, n: 3, params })))
        expect(groups.map((g) => g.length)).toEqual([3, 3])
        const flat = groups.flatMap((g, i) => g.map((s) => ({ prompt: prompts[i]!, completion: s.tokens, sampled: s.logprobs })))
        const lps = yield* e.logprobs(flat)
        flat.forEach((f, i) => f.sampled.forEach((v, t) => expect(Math.abs(v - lps[i]![t]!)).toBeLessThan(1e-4)))
        for (const s of groups.flat()) {
          if (s.stopReason === "stop") expect(s.tokens.at(-1)).toBe(e.endToken)
          else expect(s.tokens).toHaveLength(24)
        }
      }))
  })

  it("samples several requests in one batch without changing any request's tokens", async () => {
    await withEngine((e) =>
      Effect.gen(function*() {
        const a = { prompt: e.promptIds("a fox"), n: 2, params: { ...params, seed: 1 } }
        const b = { prompt: e.promptIds("the sea"), n: 3, params: { ...params, seed: 2, temperature: 0.7, maxTokens: 9 } }
        const alone = [...(yield* e.sample([a])), ...(yield* e.sample([b]))]
        const together = yield* e.sample([a, b])
        expect(together.map((g) => g.map((x) => x.tokens))).toEqual(alone.map((g) => g.map((x) => x.tokens)))
        expect(together[1]!.every((x) => x.tokens.length <= 9)).toBe(true)
      }))
  })

  it("scores an item to the same bits alone, among others, and in any order (a memoized item's value is its request's alone)", async () => {
    await withEngine((e) =>
      Effect.gen(function*() {
        const items = ["a fox ran home", "the sea was grey and very cold that winter", "rain"].map((text, i) => ({ prompt: e.promptIds(`story ${i}`), completion: e.tokenizer.encode(text) }))
        const alone: Array<Float32Array> = []
        for (const it of items) alone.push(...(yield* e.logprobs([it])))
        const together = yield* e.logprobs(items)
        const reversed = (yield* e.logprobs([...items].reverse())).reverse()
        const bits = (xs: ReadonlyArray<Float32Array>) => xs.map((x) => Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString("hex"))
        expect(bits(together)).toEqual(bits(alone))
        expect(bits(reversed)).toEqual(bits(alone))
      }))
  })

  it("computes the three losses as Tinker defines them (sums over tokens)", async () => {
    await withEngine((e) =>
      Effect.gen(function*() {
        const prompt = e.promptIds("a fox")
        const s = (yield* e.sample([{ prompt, n: 1, params }]))[0]![0]!
        const n = s.tokens.length
        const weights = Array.from({ length: n }, (_, t) => (t % 3) / 2)
        const ce = yield* e.forwardBackward([datumOf(prompt, s.tokens, { weights })], { name: "cross_entropy" })
        const lp = Array.from(ce.logprobs[0]!).slice(prompt.length - 1)
        expect(ce.metrics["loss:sum"]).toBeCloseTo(-sum(lp.map((l, t) => l * weights[t]!)), 4)

        // On-policy importance sampling: r = 1, so the loss is -ΣA.
        const advantages = Array.from({ length: n }, (_, t) => (t % 2 === 0 ? 1 : -0.5))
        const is = yield* e.forwardBackward([datumOf(prompt, s.tokens, { logprobs: s.logprobs, advantages })], { name: "importance_sampling" })
        expect(is.metrics["loss:sum"]).toBeCloseTo(-sum(advantages), 3)

        // Sampler logprobs 1 nat above the learner's: r = e^-1 < 0.8, so tokens with A < 0 take the clipped term.
        const ppo: LossFn = { name: "ppo", clipLow: 0.8, clipHigh: 1.2 }
        const old = s.logprobs.map((l) => l + 1)
        const out = yield* e.forwardBackward([datumOf(prompt, s.tokens, { logprobs: old, advantages })], ppo)
        expect(out.metrics["clipped:sum"]).toBe(advantages.filter((a) => a < 0).length)
        expect(out.metrics["tokens:sum"]).toBe(n)
        const r = Math.exp(-1)
        expect(out.metrics["loss:sum"]).toBeCloseTo(-sum(advantages.map((a) => Math.min(r * a, 0.8 * a))), 3)
      }))
  })

  it("samples from published weights only (trainerLogprobs sees the trained ones); save/load restores weights and optimizer exactly", async () => {
    await withEngine((e) =>
      Effect.gen(function*() {
        const prompt = e.promptIds("a lighthouse")
        const probe = [{ prompt, completion: e.tokenizer.encode(" the sea") }]
        const before = yield* e.logprobs(probe)
        const s = (yield* e.sample([{ prompt, n: 1, params }]))[0]![0]!
        const train = Effect.gen(function*() {
          yield* e.forwardBackward([datumOf(prompt, s.tokens, { weights: s.tokens.map(() => 1) })], { name: "cross_entropy" })
          return yield* e.optimStep({ ...defaultAdamParams, learningRate: 1e-2, gradClipNorm: 1 })
        })
        const step = yield* train
        expect(step.step).toBe(1)
        expect(step.gradNorm).toBeGreaterThan(0)
        expect(yield* e.logprobs(probe)).toEqual(before) // not published yet
        const trainer = yield* e.trainerLogprobs(probe) // the trainer's weights are already the new ones
        expect(trainer).not.toEqual(before)
        yield* e.publish()
        const published = yield* e.logprobs(probe)
        expect(published).not.toEqual(before)
        expect(published).toEqual(trainer)
        const saved = yield* e.save("step-1")
        // A save killed half way left a temp file behind: saving again makes the folder afresh.
        writeFileSync(join(saved.path, "4242-0123456789abcdef.tmp"), "half a file")
        expect(yield* e.save("step-1")).toEqual(saved)
        expect(readdirSync(saved.path).sort()).toEqual(["config.json", "model.safetensors", "optimizer.safetensors", "tokenizer.json", "tokenizer_config.json"])
        yield* train
        yield* e.publish()
        const afterTwo = yield* e.logprobs(probe)
        yield* e.load(saved)
        expect(yield* e.logprobs(probe)).toEqual(published)
        yield* train // the optimizer state came back too: the second step repeats exactly
        yield* e.publish()
        expect(yield* e.logprobs(probe)).toEqual(afterTwo)
      }))
  })

  it("a saved folder that moved is still the engine's: sampling and loading it read nothing, training since makes it stale", async () => {
    await withEngine((e) =>
      Effect.gen(function*() {
        const engine = trackCheckpoints(e, "initial")
        const prompt = e.promptIds("a lighthouse")
        const s = (yield* engine.sample([{ prompt, n: 1, params }]))[0]![0]!
        const train = Effect.andThen(
          engine.forwardBackward([datumOf(prompt, s.tokens, { weights: s.tokens.map(() => 1) })], { name: "cross_entropy" }),
          engine.optimStep({ ...defaultAdamParams, learningRate: 1e-2, gradClipNorm: 1 })
        )
        yield* train
        const saved = yield* engine.save("step-1")
        // As PolicyCheckpoint.savePolicy does: the folder goes elsewhere (here: nowhere that exists).
        const gone = join(tempDirInRepo("moved"), "no-such-folder")
        rmSync(saved.path, { recursive: true })
        yield* engine.moved!(saved.path, gone)
        yield* engine.publish()
        const trained = yield* engine.trainerLogprobs([{ prompt, completion: s.tokens }])
        // Neither reads the (missing) folder: the engine holds its weights.
        expect(yield* engine.logprobs([{ prompt, completion: s.tokens }], { checkpoint: gone })).toEqual(trained)
        yield* engine.load({ path: gone })
        // After more training the engine no longer holds it: loading reads the folder, which is gone.
        yield* train
        expect(Exit.isFailure(yield* Effect.exit(engine.load({ path: gone })))).toBe(true)
      }))
  })

  it("published before it is saved (as an update does), the weights are the saved folder's; published before more training, they are not", async () => {
    await withEngine((e) =>
      Effect.gen(function*() {
        const prompt = e.promptIds("a lighthouse")
        const s = (yield* e.sample([{ prompt, n: 1, params }]))[0]![0]!
        const probe = [{ prompt, completion: s.tokens }]
        const train = Effect.andThen(
          e.forwardBackward([datumOf(prompt, s.tokens, { weights: s.tokens.map(() => 1) })], { name: "cross_entropy" }),
          e.optimStep({ ...defaultAdamParams, learningRate: 1e-2, gradClipNorm: 1 })
        )
        yield* train
        yield* e.publish()
        const first = yield* e.save("step-1")
        const trained = yield* e.trainerLogprobs(probe)
        const gone = join(tempDirInRepo("moved"), "no-such-folder")
        rmSync(first.path, { recursive: true })
        yield* e.moved!(first.path, gone)
        // The published weights are the saved ones: sampling with the (missing) folder reads nothing.
        expect(yield* e.logprobs(probe, { checkpoint: gone })).toEqual(trained)
        // Published, then trained, then saved: the folder holds newer weights than the published ones.
        yield* e.publish()
        yield* train
        const second = yield* e.save("step-2")
        const newer = yield* e.trainerLogprobs(probe)
        expect(newer).not.toEqual(trained)
        expect(yield* e.logprobs(probe)).toEqual(trained) // the last published
        expect(yield* e.logprobs(probe, { checkpoint: second.path })).toEqual(newer) // read from the folder
      }))
  })

  it("fails clearly: missing loss inputs, too-long sequences, bad names", async () => {
    const dir = await checkpoint()
    const errorOf = (f: (e: PolicyEngineShape) => Effect.Effect<unknown, unknown>) =>
      withEngine((e) => Effect.flip(f(e)), dir) as Promise<{ reason: string; message: string }>
    const noWeights = await errorOf((e) => e.forwardBackward([{ modelInput: [1, 2], targetTokens: [2, 3] }], { name: "cross_entropy" }))
    expect(noWeights.reason).toBe("BadInput")
    expect(noWeights.message).toMatch(/loss cross_entropy needs weights/)
    const long = await errorOf((e) => e.logprobs([{ prompt: new Array(100).fill(5), completion: new Array(100).fill(6) }]))
    expect(long.reason).toBe("ContextOverflow")
    const name = await errorOf((e) => e.save("../escape"))
    expect(name.reason).toBe("BadInput")
    const badParams = await errorOf((e) => e.sample([{ prompt: [1], n: 1, params: { ...params, topP: 0 } }]))
    expect(badParams.reason).toBe("BadInput")
    const missing = await Effect.runPromiseExit(Effect.provide(Effect.gen(function*() {
      return yield* PolicyEngine
    }), EmbeddedPolicy.layer({ checkpoint: "test-artifacts/no-such-model" })))
    expect(Exit.isFailure(missing) && String(missing.cause)).toMatch(/config.json: not found/)
  })

  it("runs an ONNX decoder export for inference only", async () => {
    const ckpt = await Checkpoint.read(await checkpoint())
    const dir = tempDirInRepo("onnx-export")
    await Checkpoint.exportOnnx(dir, ckpt)
    await withEngine((e) =>
      Effect.gen(function*() {
        expect(e.fingerprint).toMatch(/^onnx:[0-9a-f]{16}@[0-9a-f]{12}$/)
        const s = (yield* e.sample([{ prompt: e.promptIds("a fox"), n: 1, params }]))[0]![0]!
        const [lp] = yield* e.logprobs([{ prompt: e.promptIds("a fox"), completion: s.tokens }])
        s.logprobs.forEach((v, t) => expect(Math.abs(v - lp![t]!)).toBeLessThan(1e-4))
        const err = yield* Effect.flip(e.optimStep(defaultAdamParams))
        expect(err.reason).toBe("Unsupported")
      }), dir)
  })
})
