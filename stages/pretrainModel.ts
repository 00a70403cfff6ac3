/**
 * The pretraining stages of the embedded story model; the state between them is a
 * `ModelState` (config, weights and optimizer state as store blobs, step and tokens so far).
 *
 * - `init-model`: fresh weights for the configured architecture and the tokenizer's vocabulary.
 * - `pretrain-segment`: global steps [from, to) of next-token training (one cached node each,
 *   so a crash loses at most one segment and a longer run reuses every finished segment).
 * - `evaluate-lm`: held-out perplexity (story text and chat examples) against the unigram baseline.
 * - `export-model`: writes the checkpoint folder with a TRAINING.md saying how it was made.
 */
import { Effect, Schema } from "effect"
import { join } from "node:path"
import { writeFile } from "node:fs/promises"
import { sha256 } from "../src/dag/Canonical.ts"
import { AdamW } from "../src/model/AdamW.ts"
import * as Checkpoint from "../src/model/Checkpoint.ts"
import { meanNll, trainSteps } from "../src/model/Pretrain.ts"
import * as Safetensors from "../src/model/Safetensors.ts"
import { StoryModel } from "../src/model/StoryModel.ts"
import { Tokenizer } from "../src/model/tokenizer/Tokenizer.ts"
import * as TokenCorpus from "../src/model/TokenCorpus.ts"
import { decays, defaultConfig, initWeights, ModelConfig, paramCount } from "../src/model/Transformer.ts"
import { PermanentError } from "../src/dag/Retry.ts"
import * as Stage from "../src/dag/Stage.ts"
import { PretrainCorpus } from "../src/records/PretrainCorpus.ts"
import { TokenizerFiles } from "../src/records/TokenizerFiles.ts"
import { LmEvaluation, ModelState } from "../src/records/ModelState.ts"

const Architecture = Schema.Struct({
  d_model: Schema.Int,
  n_layers: Schema.Int,
  n_heads: Schema.Int,
  d_ff: Schema.Int,
  max_context: Schema.Int
})

/** Turns a failed promise into a permanent stage error (a model bug does not heal on retry). */
const attempt = <A>(what: string, f: () => Promise<A>) =>
  Effect.tryPromise({ try: f, catch: (e) => new PermanentError({ message: `${what}: ${e instanceof Error ? e.message : String(e)}` }) })

const loadWeights = (state: ModelState, ctx: Stage.StageContext) =>
  Effect.map(ctx.getBlob(state.weights), (bytes) => Checkpoint.decodeWeights(state.config, bytes))

export const initModel = Stage.make({
  name: "init-model",
  version: "1",
  inputs: { tokenizer: TokenizerFiles },
  params: Schema.Struct({ architecture: Architecture, seed: Schema.String }),
  output: ModelState,
  run: ({ tokenizer }, { architecture: a, seed }, ctx) =>
    Effect.gen(function*() {
      const vocabSize = Tokenizer.fromJson(JSON.parse(tokenizer.json), JSON.parse(tokenizer.config)).vocabSize
      const config: ModelConfig = {
        ...defaultConfig, vocabSize, dModel: a.d_model, nLayers: a.n_layers, nHeads: a.n_heads, dFF: a.d_ff, maxContext: a.max_context
      }
      if (config.dModel % config.nHeads !== 0 || (config.dModel / config.nHeads) % 2 !== 0) {
        return yield* new PermanentError({ message: `d_model ${config.dModel} must split into ${config.nHeads} heads of even size (RoPE rotates pairs)` })
      }
      yield* ctx.metric({ parameters: paramCount(config) })
      const weights = yield* ctx.putBlob(Checkpoint.encodeWeights(config, initWeights(config, seed)))
      return { config, weights, optimizer: null, step: 0, tokens: 0 }
    })
})

export const pretrainSegment = Stage.make({
  name: "pretrain-segment",
  version: "1",
  resource: "policy",
  inputs: { state: ModelState, corpus: PretrainCorpus },
  params: Schema.Struct({
    to: Schema.Int,
    total_steps: Schema.Int,
    batch_size: Schema.Int,
    learning_rate: Schema.Number,
    warmup_steps: Schema.Int,
    min_lr_ratio: Schema.Number,
    weight_decay: Schema.Number,
    grad_clip: Schema.Number,
    seed: Schema.String
  }),
  output: ModelState,
  run: ({ state, corpus }, p, ctx) =>
    Effect.gen(function*() {
      const weights = yield* loadWeights(state, ctx)
      const sizes = new Map([...weights].map(([n, a]) => [n, a.length]))
      const optimizer = state.optimizer === null
        ? new AdamW(sizes, { decay: decays })
        : AdamW.fromState(sizes, Safetensors.decode(yield* ctx.getBlob(state.optimizer)), { decay: decays })
      const train = TokenCorpus.decode(yield* ctx.getBlob(corpus.train))
      const model = StoryModel.create(state.config)
      let tokens = state.tokens
      const logs: Array<{ step: number; loss: number; lr: number; grad_norm: number }> = []
      yield* attempt("pretrain", () =>
        trainSteps(model, weights, optimizer, train, { from: state.step, to: p.to }, {
          batchSize: p.batch_size,
          learningRate: p.learning_rate,
          schedule: { kind: "cosine", warmupSteps: p.warmup_steps, totalSteps: p.total_steps, minRatio: p.min_lr_ratio },
          adam: { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: p.weight_decay, gradClipNorm: p.grad_clip },
          seed: p.seed
        }, (log) => {
          tokens += log.tokens
          logs.push({ step: log.step, loss: log.loss, lr: log.lr, grad_norm: log.gradNorm })
          return Effect.runPromise(ctx.progress(log.step + 1 - state.step, p.to - state.step))
        }))
      for (const log of logs) yield* ctx.metric(log)
      const opt = optimizer.state()
      return {
        config: state.config,
        weights: yield* ctx.putBlob(Checkpoint.encodeWeights(state.config, weights)),
        optimizer: yield* ctx.putBlob(Safetensors.encode(opt.tensors, opt.metadata)),
        step: p.to,
        tokens
      }
    })
})

export const evaluateLm = Stage.make({
  name: "evaluate-lm",
  version: "1",
  resource: "policy",
  inputs: { state: ModelState, corpus: PretrainCorpus },
  output: LmEvaluation,
  run: ({ state, corpus }, _params, ctx) =>
    Effect.gen(function*() {
      const weights = yield* loadWeights(state, ctx)
      const train = TokenCorpus.decode(yield* ctx.getBlob(corpus.train))
      const heldout = TokenCorpus.decode(yield* ctx.getBlob(corpus.heldout))
      const chat = TokenCorpus.decode(yield* ctx.getBlob(corpus.heldout_chat))
      const model = StoryModel.create(state.config)
      const nll = yield* attempt("evaluate", () => meanNll(model, weights, heldout))
      const chatNll = yield* attempt("evaluate", () => meanNll(model, weights, chat))
      const result = {
        heldout_nll: nll,
        heldout_perplexity: Math.exp(nll),
        heldout_chat_perplexity: Math.exp(chatNll),
        unigram_perplexity: Math.exp(TokenCorpus.unigramNll(train, heldout, state.config.vocabSize)),
        heldout_tokens: heldout.tokens.length
      }
      yield* ctx.metric(result)
      return result
    })
})

export const exportModel = Stage.make({
  name: "export-model",
  version: "1",
  inputs: { state: ModelState, tokenizer: TokenizerFiles, evaluation: LmEvaluation, corpus: PretrainCorpus },
  params: Schema.Struct({ dir: Schema.String, recipe: Schema.String, settings: Schema.Record(Schema.String, Schema.Unknown) }),
  output: Schema.Struct({ dir: Schema.String, weights_sha256: Schema.String }),
  run: ({ state, tokenizer, evaluation, corpus }, { dir, recipe, settings }, ctx) =>
    Effect.gen(function*() {
      const weightsBytes = yield* ctx.getBlob(state.weights)
      const weights = Checkpoint.decodeWeights(state.config, weightsBytes)
      yield* attempt("export", () => Checkpoint.write(dir, { config: state.config, weights, tokenizer }))
      const c = state.config
      const lines = [
        "# How this checkpoint was made",
        "",
        `Trained from scratch by polaris's \`pretrain\` pipeline: \`npx polaris run ${recipe}\`.`,
        "",
        `- Architecture: ${c.nLayers} layers, width ${c.dModel}, ${c.nHeads} heads, SwiGLU ${c.dFF}, RoPE, context ${c.maxContext}, vocabulary ${c.vocabSize} (byte-level BPE); ${paramCount(c).toLocaleString("en-US")} parameters.`,
        `- Data: the bundled anthologies' training stories; ${corpus.stats["train_tokens"]?.toLocaleString("en-US")} tokens in ${corpus.stats["train_sequences"]} sequences (${corpus.stats["train_chat_sequences"]} chat examples).`,
        `- Training: ${state.step} AdamW steps, ${state.tokens.toLocaleString("en-US")} tokens seen. Settings: \`${JSON.stringify(settings)}\`.`,
        `- Held-out perplexity (story text, ${evaluation.heldout_tokens.toLocaleString("en-US")} tokens): **${evaluation.heldout_perplexity.toFixed(2)}**; unigram baseline: ${evaluation.unigram_perplexity.toFixed(2)}.`,
        `- Held-out perplexity of chat examples (prompt, story opening, end token): ${evaluation.heldout_chat_perplexity.toFixed(2)}.`,
        ""
      ]
      yield* attempt("export", () => writeFile(join(dir, "TRAINING.md"), lines.join("\n")))
      yield* attempt("export", () => writeFile(join(dir, "training.json"), `${JSON.stringify({ steps: state.step, tokens: state.tokens, ...evaluation, corpus: corpus.stats, settings }, null, 2)}\n`))
      return { dir, weights_sha256: sha256(weightsBytes) }
    })
})
