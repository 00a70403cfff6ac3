/**
 * `pretrain`: trains the embedded story model from scratch on the recipe's anthologies.
 *
 *   split-stories -> dataset -> train / held-out stories -> train-tokenizer -> pretrain-corpus
 *   init-model -> pretrain/step-000/segment -> ... -> evaluate-lm -> export-model
 *
 * Recipe keys: `data.*` as in polaris-data, and `pretrain.*` (architecture, vocabulary, steps,
 * batch, learning rate, segments, output folder). Each segment of `segment_steps` optimizer
 * steps is one cached node: a crash loses at most one segment, and raising `steps` with the same
 * schedule is not possible without retraining (the cosine schedule depends on the total).
 */
import { relative } from "node:path"
import { define } from "../src/dag/PipelineModule.ts"
import { dataset, heldoutOf, trainOf } from "../stages/dataset.ts"
import { pretrainCorpus } from "../stages/pretrainCorpus.ts"
import { evaluateLm, exportModel, initModel, pretrainSegment } from "../stages/pretrainModel.ts"
import { splitStories } from "../stages/splitStories.ts"
import { trainTokenizer } from "../stages/trainTokenizer.ts"
import * as Location from "../src/dag/Location.ts"
import { BUNDLED_CORPUS } from "./polarisData.ts"

export default define("pretrain", (b, recipe, recipeFile) => {
  const data = recipe.data ?? {}
  const p = recipe.pretrain ?? {}
  const seed = String(recipe.seed ?? 0)
  const stories = b.node(splitStories, { id: "split-stories", params: { sources: (data.anthologies ?? [BUNDLED_CORPUS]).map(Location.of) } })
  const split = b.node(dataset, {
    id: "dataset",
    inputs: { stories },
    params: {
      ...(data.min_words !== undefined ? { min_words: data.min_words } : {}),
      ...(data.max_words !== undefined ? { max_words: data.max_words } : {}),
      ...(data.heldout_fraction !== undefined ? { heldout_fraction: data.heldout_fraction } : {})
    }
  })
  const train = b.node(trainOf, { id: "train", inputs: { dataset: split } })
  const heldout = b.node(heldoutOf, { id: "heldout", inputs: { dataset: split } })
  const tokenizer = b.node(trainTokenizer, { id: "train-tokenizer", inputs: { stories: train }, params: { vocab_size: p.vocab_size ?? 4096 } })
  const chatMax = p.chat_max_words ?? 250
  const corpus = b.node(pretrainCorpus, {
    id: "pretrain-corpus",
    inputs: { tokenizer, train, heldout },
    params: { seq_len: p.seq_len ?? 512, chat_words: [Math.round(chatMax / 4), Math.round(chatMax / 2), chatMax] }
  })
  const m = p.model ?? {}
  const init = b.node(initModel, {
    id: "init-model",
    inputs: { tokenizer },
    params: {
      architecture: { d_model: m.d_model ?? 128, n_layers: m.n_layers ?? 4, n_heads: m.n_heads ?? 4, d_ff: m.d_ff ?? 352, max_context: m.max_context ?? 2048 },
      seed
    }
  })
  const steps = p.steps ?? 1000
  const segment = p.segment_steps ?? 200
  const settings = {
    total_steps: steps,
    batch_size: p.batch_size ?? 8,
    learning_rate: p.learning_rate ?? 3e-3,
    warmup_steps: Math.min(p.warmup_steps ?? 100, steps), // a short trial run warms up over all its steps
    min_lr_ratio: p.min_lr_ratio ?? 0.1,
    weight_decay: p.weight_decay ?? 0.1,
    grad_clip: p.grad_clip ?? 1,
    seed
  }
  const final = b.loop("pretrain", {
    steps: Math.ceil(steps / segment),
    init,
    body: (s, state, k) => s.node(pretrainSegment, { id: "segment", inputs: { state, corpus }, params: { ...settings, to: Math.min(steps, (k + 1) * segment) } })
  })
  const evaluation = b.node(evaluateLm, { id: "evaluate-lm", inputs: { state: final, corpus } })
  return {
    evaluation,
    model: b.node(exportModel, {
      id: "export-model",
      inputs: { state: final, tokenizer, evaluation, corpus },
      params: { dir: p.output ?? "models/story", recipe: relative(process.cwd(), recipeFile), settings: { ...settings, seq_len: p.seq_len ?? 512 } }
    })
  }
})
