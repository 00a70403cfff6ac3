/**
 * ExternalModel runs standard decoder exports. The export under test is the embedded model's own
 * (Checkpoint.exportOnnx, Optimum's layout), so every number can be compared with StoryModel on
 * the same weights: teacher-forced logprobs, and greedy generation over left-padded prompts.
 */
import { mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import * as Checkpoint from "../src/model/Checkpoint.ts"
import { ExternalModel } from "../src/model/ExternalModel.ts"
import * as Onnx from "../src/model/graph/Onnx.ts"
import { defaultSamplingParams } from "../src/model/Sampling.ts"
import { StoryModel } from "../src/model/StoryModel.ts"
import { serializeTokenizerJson, trainBpe } from "../src/model/tokenizer/BpeTrainer.ts"
import { tokenizerConfigFor } from "../src/model/tokenizer/TokenizerFiles.ts"
import { decays, defaultConfig, initWeights, scoreGraph, type ModelConfig } from "../src/model/Transformer.ts"
import { tempDirInRepo } from "./support/store.ts"

const config: ModelConfig = { ...defaultConfig, vocabSize: 48, dModel: 32, nLayers: 2, nHeads: 4, dFF: 64, maxContext: 256 }

/** A real tokenizer.json (the model only reads ids; the loader needs the files). */
const tokenizerFiles = () => {
  const json = trainBpe(["a small corpus for a small tokenizer"], { vocabSize: 270 })
  return { json: serializeTokenizerJson(json), config: JSON.stringify(tokenizerConfigFor(json)) }
}

const weights = (() => {
  const w = initWeights(config, "export")
  for (const [name, a] of w) if (decays(name)) for (let i = 0; i < a.length; i++) a[i]! *= 12
  return w
})()

const exported = async () => {
  const dir = tempDirInRepo("export")
  await Checkpoint.exportOnnx(dir, { config, weights, tokenizer: tokenizerFiles() })
  return dir
}

describe("ExternalModel", () => {
  it("scores like the embedded model on the same weights", async () => {
    const model = await ExternalModel.load(await exported())
    expect([model.layers, model.kvHeads, model.headDim, model.vocabSize, model.maxContext]).toEqual([2, 4, 8, 48, 256])
    const seqs = [[1, 5, 9, 2, 40, 7, 7, 3], [4, 4, 4]]
    const items = seqs.map((s) => ({ input: s.slice(0, -1), targets: s.slice(1) }))
    const ours = await StoryModel.create(config).score(weights, items)
    const theirs = await model.score(items)
    theirs.forEach((lp, i) => lp.forEach((v, t) => expect(Math.abs(v - ours[i]!.logprobs[t]!)).toBeLessThan(1e-4)))
  })

  it("generates like the embedded model: left-padded batch, cache from the export, stop token", async () => {
    const model = await ExternalModel.load(await exported())
    const prompts = [[1, 2, 3, 4, 5, 6], [9], [30, 31, 32]]
    const params = { ...defaultSamplingParams, temperature: 0, maxTokens: 40 }
    const ours = await StoryModel.create(config).generate(weights, prompts, params, [11])
    const theirs = await model.generate(prompts, params, [11])
    expect(theirs.map((r) => r.tokens)).toEqual(ours.map((r) => r.tokens))
    expect(theirs.map((r) => r.stopReason)).toEqual(ours.map((r) => r.stopReason))
    theirs.forEach((r, i) => r.logprobs.forEach((v, t) => expect(Math.abs(v - ours[i]!.logprobs[t]!)).toBeLessThan(1e-4)))
  })

  it("says what is missing from a folder or an ONNX file that is not a decoder export", async () => {
    const dir = tempDirInRepo("not-export")
    await expect(ExternalModel.load(dir)).rejects.toThrow(/no model.onnx/)
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, "model.onnx"), Onnx.toModelProto(scoreGraph(config)))
    await expect(ExternalModel.load(dir)).rejects.toThrow(/not a decoder export \(no input input_ids\)/)
  })
})
