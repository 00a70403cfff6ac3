/**
 * The `pretrain` pipeline end to end through the `polaris` command on one small book, with a tiny
 * model: it writes a loadable checkpoint with its provenance, each segment is a cached node (a
 * rerun executes nothing), and the batch order does not depend on how the steps are segmented.
 */
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import * as Checkpoint from "../src/model/Checkpoint.ts"
import { batchIndices } from "../src/model/Pretrain.ts"
import * as TokenCorpus from "../src/model/TokenCorpus.ts"
import { polaris, ROOT } from "./support/cli.ts"
import { tempDirInRepo } from "./support/store.ts"

const BOOK = join(ROOT, "examples", "anthologies", "pg8486-mrjames-ghost-stories-of-an-antiquary.txt")

describe("pretrain pipeline", () => {
  it("trains a tiny model from one book, writes a checkpoint, and caches its segments", async () => {
    const dir = tempDirInRepo("pretrain-")
    const recipe = join(dir, "recipe.yaml")
    writeFileSync(recipe, [
      "pipeline: pretrain",
      "seed: 3",
      "data:",
      `  anthologies: [${BOOK}]`,
      "  heldout_fraction: 0.3",
      "pretrain:",
      "  model: { d_model: 32, n_layers: 1, n_heads: 2, d_ff: 64, max_context: 256 }",
      "  vocab_size: 400",
      "  seq_len: 64",
      "  batch_size: 4",
      "  steps: 6",
      "  segment_steps: 2",
      "  learning_rate: 0.01",
      "  warmup_steps: 2",
      "  chat_max_words: 40",
      "  output: ./model"
    ].join("\n") + "\n")
    const store = join(dir, "store")
    const first = await polaris(["run", recipe, "--store", store, "--json"])
    expect(first.status, first.stderr).toBe(0)
    const summary = JSON.parse(first.stdout)
    const segments = Object.keys(summary.nodes).filter((id) => id.startsWith("pretrain/")).sort()
    expect(segments).toEqual(["pretrain/step-000/segment", "pretrain/step-001/segment", "pretrain/step-002/segment"])

    const training = JSON.parse(readFileSync(join(dir, "model", "training.json"), "utf8"))
    expect(training.steps).toBe(6)
    expect(training.tokens).toBeGreaterThan(6 * 4 * 32)
    expect(training.heldout_perplexity).toBeGreaterThan(1)
    expect(training.unigram_perplexity).toBeGreaterThan(1)
    expect(readFileSync(join(dir, "model", "TRAINING.md"), "utf8")).toMatch(/6 AdamW steps/)

    const second = await polaris(["run", recipe, "--store", store, "--json"])
    expect(second.status, second.stderr).toBe(0)
    expect(JSON.parse(second.stdout).executed).toBe(0)
  }, 120_000)

  it("exports a checkpoint the loader validates", async () => {
    const dir = tempDirInRepo("pretrain-ckpt-")
    const recipe = join(dir, "recipe.yaml")
    writeFileSync(recipe, [
      "pipeline: pretrain",
      "data:",
      `  anthologies: [${BOOK}]`,
      "pretrain:",
      "  model: { d_model: 16, n_layers: 1, n_heads: 2, d_ff: 32, max_context: 128 }",
      "  vocab_size: 300",
      "  seq_len: 48",
      "  steps: 1",
      "  output: ./m"
    ].join("\n") + "\n")
    const run = await polaris(["run", recipe, "--store", join(dir, "store")])
    expect(run.status, run.stderr).toBe(0)
    const ckpt = await Checkpoint.read(join(dir, "m"))
    expect(ckpt.config).toMatchObject({ dModel: 16, nLayers: 1, maxContext: 128 })
    expect(Checkpoint.tokenizerOf(ckpt).tokenId("<|end|>")).toBeLessThan(ckpt.config.vocabSize)
  }, 120_000)

  it("draws each global step's batch the same however steps are segmented", () => {
    const all = Array.from({ length: 7 }, (_, s) => batchIndices(10, 4, s, "x"))
    // An epoch is a permutation: the first 10 draws see each of the 10 sequences once.
    const firstEpoch = all.flat().slice(0, 10).sort((a, b) => a - b)
    expect(firstEpoch).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    expect(batchIndices(10, 4, 5, "x")).toEqual(all[5])
    expect(batchIndices(10, 4, 5, "y")).not.toEqual(all[5])
  })

  it("token windows overlap by one token and drop short tails", () => {
    expect(TokenCorpus.windows([1, 2, 3, 4, 5, 6], 2, 1)).toEqual([[1, 2, 3], [3, 4, 5], [5, 6]])
    expect(TokenCorpus.windows([1, 2, 3, 4, 5, 6], 2, 2)).toEqual([[1, 2, 3], [3, 4, 5]])
    const c = TokenCorpus.fromSequences([[1, 2], [3, 4, 5]])
    expect(Array.from(TokenCorpus.sequence(TokenCorpus.decode(TokenCorpus.encode(c)), 1))).toEqual([3, 4, 5])
    // Unigram baseline: train counts {2:1, 4:1, 5:1} + add-one over a vocabulary of 6 → p(4) = 2/9.
    expect(TokenCorpus.unigramNll(c, TokenCorpus.fromSequences([[0, 4]]), 6)).toBeCloseTo(-Math.log(2 / 9), 12)
  })
})
