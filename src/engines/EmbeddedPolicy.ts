/**
 * The `embedded` PolicyEngine: the story model of src/model in onnxruntime-node on this machine's
 * CPU: sampling and teacher forcing under the sampler's weights on the process's sampling
 * workers (SamplerPool.ts), training in this thread on every core. It keeps two weight sets, as
 * Tinker does: the trainer's (changed by `optimStep`) and the sampler's (what `sample` and
 * `logprobs` use), which `publish()` refreshes with a copy.
 *
 * A folder holding a standard ONNX decoder export (`model.onnx`, no `model.safetensors`) gives
 * an inference-only engine (ExternalModel.ts): `sample` and `logprobs` work, training calls fail
 * with reason "Unsupported". That is how a small exported model is evaluated locally.
 *
 * @example
 * ```ts
 * const layer = EmbeddedPolicy.layer({ checkpoint: "models/story-1m", checkpointDir: "out/ckpt" })
 * ```
 */
import { Effect, Layer, Semaphore } from "effect"
import { existsSync, readFileSync } from "node:fs"
import { rm } from "node:fs/promises"
import { join, resolve } from "node:path"
import { sha256 } from "../dag/Canonical.ts"
import { codeFingerprint } from "../dag/Fingerprint.ts"
import * as Location from "../dag/Location.ts"
import { AdamW, type AdamParams } from "../model/AdamW.ts"
import * as Checkpoint from "../model/Checkpoint.ts"
import { ExternalModel } from "../model/ExternalModel.ts"
import { SamplerPool } from "../model/SamplerPool.ts"
import { validate } from "../model/Sampling.ts"
import type { Generated, RowParams } from "../model/Generate.ts"
import { StoryModel, type Scored, type TrainItem } from "../model/StoryModel.ts"
import { endToken, promptIds } from "../model/tokenizer/ChatTemplate.ts"
import type { Tokenizer } from "../model/tokenizer/Tokenizer.ts"
import { decays, paramShapes } from "../model/Transformer.ts"
import {
  inferenceOnly,
  PolicyEngine,
  PolicyError,
  type CheckpointRef,
  type Datum,
  type LossFn,
  type PolicyEngineShape,
  type PolicyErrorReason,
  type SamplingWeights
} from "./PolicyEngine.ts"

export interface EmbeddedOptions {
  /** The checkpoint folder to start from (see Checkpoint.ts). */
  readonly checkpoint: string
  /** Where `save(name)` writes `name/`; default `.polaris/checkpoints` under the working directory. */
  readonly checkpointDir?: string
  /** onnxruntime threads of the trainer's calls; default the machine's cores. (Sampling runs on the process's SamplerPool: a worker per core, one thread each.) */
  readonly threads?: number
  /** Tokens per micro-batch in teacher-forced runs; default 4096. */
  readonly tokenBudget?: number
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/

const fail = (reason: PolicyErrorReason, message: string, cause?: unknown) =>
  new PolicyError({ reason, message, retryable: false, ...(cause !== undefined ? { cause } : {}) })

/** Wraps a model call; a context overflow is named as such, anything else is a backend failure. */
const attempt = <A>(what: string, f: () => Promise<A>): Effect.Effect<A, PolicyError> =>
  Effect.tryPromise({
    try: f,
    catch: (e) => {
      const message = e instanceof Error ? e.message : String(e)
      if (e instanceof PolicyError) return e
      if (/exceeds the model's context/.test(message)) return fail("ContextOverflow", `${what}: ${message}`, e)
      if (e instanceof Checkpoint.CheckpointError) return fail("Checkpoint", `${what}: ${message}`, e)
      return fail("Backend", `${what}: ${message}`, e)
    }
  })

const copy = (w: ReadonlyMap<string, Float32Array>) => new Map([...w].map(([n, a]) => [n, a.slice()]))

/** The per-token arrays one loss reads; the others are zeros, so one training graph serves all. */
const trainItem = (d: Datum, loss: LossFn, index: number): TrainItem => {
  const n = d.modelInput.length
  if (d.targetTokens.length !== n) throw fail("BadInput", `datum ${index}: targetTokens has ${d.targetTokens.length} entries, modelInput ${n}`)
  const pick = (name: "weights" | "logprobs" | "advantages", used: boolean): ArrayLike<number> => {
    const a = d[name]
    if (!used) return new Float32Array(n)
    if (a === undefined) throw fail("BadInput", `datum ${index}: loss ${loss.name} needs ${name}`)
    if (a.length !== n) throw fail("BadInput", `datum ${index}: ${name} has ${a.length} entries, modelInput ${n}`)
    return a
  }
  const ce = loss.name === "cross_entropy"
  return {
    input: d.modelInput,
    targets: d.targetTokens,
    weights: pick("weights", ce),
    oldLogprobs: pick("logprobs", !ce),
    advantages: pick("advantages", !ce)
  }
}

/** Ratio bounds per loss: importance_sampling is ppo with bounds that never bind. */
const clipOf = (loss: LossFn) =>
  loss.name === "ppo" ? { low: loss.clipLow, high: loss.clipHigh } : { low: 0, high: 1e30 }

type Generate = (rows: ReadonlyArray<ReadonlyArray<number>>, params: ReadonlyArray<RowParams>) => Promise<Array<Generated>>

/**
 * `sample` over a local generator: one `generate` call per request, of its n rows (requests run
 * concurrently: the trainable model's sampling workers decode the calls they hold together, where
 * a row's bits do not depend on its batch, KvDecoder.ts). A request's tokens depend only on its
 * own prompt, params and seed — the same on this engine, through `polaris serve`, and after a
 * resume that recomputes only some groups.
 */
const sampler = (generate: Generate): PolicyEngineShape["sample"] => (requests) =>
  Effect.gen(function*() {
    for (const r of requests) {
      yield* Effect.try({ try: () => validate(r.params), catch: (e) => fail("BadInput", `sampling params: ${(e as Error).message}`) })
      if (!Number.isInteger(r.n) || r.n < 1) return yield* fail("BadInput", `n must be a positive integer, got ${r.n}`)
    }
    return yield* Effect.forEach(requests, (r) =>
      attempt("sample", () => generate(Array.from({ length: r.n }, () => r.prompt), Array.from({ length: r.n }, (_, row) => ({ params: r.params, row })))),
      { concurrency: "unbounded" })
  })

/**
 * `logprobs` over a local teacher-forcing scorer: the completion's part of the full sequence's
 * scores. Each item is scored alone, as `sample` generates each request alone: a batch's size
 * changes the float rounding of its matrix products, so an item's logprobs would depend on
 * which other items shared its call (a memoized reference's value on which others were
 * missing, a step's on how its groups were split into nodes).
 */
const teacherForcing = (score: (items: ReadonlyArray<Scored>) => Promise<Array<Float32Array>>): PolicyEngineShape["logprobs"] =>
  (items) =>
    attempt("logprobs", async () => {
      const out: Array<Float32Array> = []
      for (const { prompt, completion } of items) {
        if (prompt.length === 0) throw fail("BadInput", "logprobs: a prompt needs at least one token")
        const full = [...prompt, ...completion]
        const [lp] = await score([{ input: full.slice(0, -1), targets: full.slice(1) }])
        out.push(lp!.slice(prompt.length - 1))
      }
      return out
    })

const isOnnxExport = (dir: string) =>
  !existsSync(join(dir, Checkpoint.FILES.weights)) && (existsSync(join(dir, "model.onnx")) || existsSync(join(dir, "onnx", "model.onnx")))

/** The turn-ending token's id (ChatTemplate.endToken). */
const endTokenOf = (tokenizer: Tokenizer): number => tokenizer.tokenId(endToken(tokenizer))

const onnxExport = (options: EmbeddedOptions): Effect.Effect<PolicyEngineShape, PolicyError> =>
  Effect.gen(function*() {
    const model = yield* attempt("load ONNX export", () => ExternalModel.load(options.checkpoint, options.threads !== undefined ? { threads: options.threads } : {}))
    const tokenizer = model.tokenizer
    const endToken = yield* Effect.try({ try: () => endTokenOf(tokenizer), catch: (e) => fail("Checkpoint", `${options.checkpoint}: ${(e as Error).message}`) })
    const file = [join(options.checkpoint, "model.onnx"), join(options.checkpoint, "onnx", "model.onnx")].find((f) => existsSync(f))!
    return inferenceOnly({
      fingerprint: `onnx:${Location.fileDigest(file).slice(0, 16)}@${codeFingerprint(import.meta.url).slice(0, 12)}`,
      tokenizer,
      endToken,
      maxContext: model.maxContext,
      promptIds: (prompt, options) => promptIds(tokenizer, prompt, options),
      sample: sampler((rows, params) => model.generate(rows, params, [endToken])),
      logprobs: teacherForcing((items) => model.score(items))
    }, `${options.checkpoint} is an inference-only ONNX export`)
  })

export const make = (options: EmbeddedOptions): Effect.Effect<PolicyEngineShape, PolicyError> =>
  isOnnxExport(options.checkpoint) ? onnxExport(options) : trainable(options)

const trainable = (options: EmbeddedOptions): Effect.Effect<PolicyEngineShape, PolicyError> =>
  Effect.gen(function*() {
    const dir = options.checkpoint
    const config = yield* attempt("load checkpoint", () => Checkpoint.readConfig(dir))
    // The weights, the optimizer state and the tokenizer are read on first use: `polaris plan`
    // builds the engine for its fingerprint only. Read once; a failed read fails every use.
    let base: Promise<Checkpoint.Checkpoint> | undefined
    const checkpoint = () => (base ??= Checkpoint.read(dir))
    // The base weights' digest, a function of the two files: remembered by their identities.
    const weightsFile = join(dir, Checkpoint.FILES.weights)
    const weightsDigest = yield* Effect.try({
      try: () =>
        Location.byFileIdentity("checkpoint-weights-digests", [join(dir, Checkpoint.FILES.config), weightsFile], () =>
          sha256(Checkpoint.encodeWeights(config, Checkpoint.decodeWeights(config, readFileSync(weightsFile), weightsFile)))),
      catch: (e) => fail("Checkpoint", `${dir}: ${(e as Error).message}`)
    })
    // The tokenizer, made on first use (~15 ms).
    let made: { readonly tokenizer: Tokenizer; readonly endToken: number } | undefined
    const tokens = () =>
      (made ??= (() => {
        try {
          const tokenizer = Checkpoint.tokenizerOf({ tokenizer: Checkpoint.readTokenizerFiles(dir) })
          return { tokenizer, endToken: endTokenOf(tokenizer) }
        } catch (e) {
          throw fail("Checkpoint", `${dir}: ${(e as Error).message}`)
        }
      })())
    const model = StoryModel.create(config, {
      ...(options.threads !== undefined ? { threads: options.threads } : {}),
      ...(options.tokenBudget !== undefined ? { tokenBudget: options.tokenBudget } : {})
    })
    // Sampling and teacher forcing under the sampler's weights run on the process's workers; the
    // trainer's calls run here, on every core.
    const pool = SamplerPool.shared()
    const sizes = new Map(paramShapes(config).map(([n, shape]) => [n, shape.reduce((a, b) => a * b, 1)]))
    const checkpointDir = resolve(options.checkpointDir ?? join(".polaris", "checkpoints"))

    // The sampler's weights are never changed in place (a training step changes the trainer's copy).
    // Undefined while they are the base checkpoint's, not read yet.
    let published: ReadonlyMap<string, Float32Array> | undefined
    // The checkpoint folder `published` was read from, or saved to; undefined when it holds weights no folder holds.
    let publishedFrom: string | undefined = options.checkpoint
    // Whether `published` holds the trainer's weights (published or loaded, no training since): a save then names it too.
    let publishedIsTrainer = true
    // The folder that holds the trainer's weights and optimizer state now: the last one saved or loaded, with no training since.
    let savedAt: string | undefined = options.checkpoint
    const swapping = Semaphore.makeUnsafe(1)
    /**
     * The sampler weights for `w`: `published` when it already holds them, else read from the
     * checkpoint folder into `published` (the trainer's weights and optimizer stay as they are).
     * A call in flight keeps the Map it started with.
     */
    const baseWeights = () => attempt("load checkpoint", async () => (await checkpoint()).weights)
    const samplerWeights = (w: SamplingWeights | undefined): Effect.Effect<ReadonlyMap<string, Float32Array>, PolicyError> => {
      if (w === undefined || w.checkpoint === publishedFrom) {
        const now = published
        return now !== undefined ? Effect.succeed(now) : baseWeights()
      }
      return swapping.withPermits(1)(
        attempt("load sampler weights", async () => {
          if (w.checkpoint === publishedFrom) return published ?? (await checkpoint()).weights
          // Weights only: a step's first sampling call waits for this read (the optimizer state is twice the weights).
          const next = await Checkpoint.readWeights(w.checkpoint)
          if (JSON.stringify(next.config) !== JSON.stringify(config)) throw fail("Checkpoint", `${w.checkpoint}: a different architecture than the engine's model`)
          published = next.weights
          publishedFrom = w.checkpoint
          publishedIsTrainer = false
          return next.weights
        })
      )
    }
    // The trainer's weights, optimizer and gradient accumulators, made on first use: a command that
    // only plans (engine fingerprints) or samples never allocates them (measured: `plan` 7% faster).
    const trainerOf = (from: Checkpoint.Checkpoint) => ({
      weights: copy(from.weights),
      optimizer: from.optimizer !== undefined ? AdamW.fromState(sizes, from.optimizer, { decay: decays }) : new AdamW(sizes, { decay: decays }),
      grads: new Map([...sizes].map(([n, size]) => [n, new Float32Array(size)]))
    })
    let state: ReturnType<typeof trainerOf> | undefined
    const trained = async () => (state ??= trainerOf(await checkpoint()))
    // Training calls share the gradient accumulators and the weights: one at a time.
    const trainer = Semaphore.makeUnsafe(1)
    const serial = <A, E>(e: Effect.Effect<A, E>) => trainer.withPermits(1)(e)
    const training = <A, E>(e: Effect.Effect<A, E>) =>
      serial(Effect.tap(e, () =>
        Effect.sync(() => {
          savedAt = undefined
          publishedIsTrainer = false
        })))

    const engine: PolicyEngineShape = {
      // The base weights' content, not the folder path: the same model anywhere keys the same cache;
      // and the code that samples and trains here (with onnxruntime's and the tokenizer's versions).
      fingerprint: `embedded:${weightsDigest.slice(0, 16)}@${codeFingerprint(import.meta.url).slice(0, 12)}`,
      get tokenizer() {
        return tokens().tokenizer
      },
      get endToken() {
        return tokens().endToken
      },
      maxContext: config.maxContext,
      promptIds: (prompt, options) => promptIds(tokens().tokenizer, prompt, options),

      sample: (requests, w) => Effect.flatMap(samplerWeights(w), (at) => sampler((rows, params) => pool.generate(config, at, rows, params, [tokens().endToken]))(requests)),
      logprobs: (items, w) => Effect.flatMap(samplerWeights(w), (at) => teacherForcing((items) => pool.score(config, at, items))(items)),
      trainerLogprobs: (items) => serial(teacherForcing(async (items) => (await model.score((await trained()).weights, items)).map((s) => s.logprobs))(items)),

      forwardBackward: (datums, loss, options) =>
        training(attempt("forward_backward", async () => {
          const items = datums.map((d, i) => trainItem(d, loss, i))
          const { weights, grads } = await trained()
          const outs = await model.forwardBackward(weights, items, clipOf(loss), grads, { logprobs: options?.logprobs ?? "all" })
          let lossSum = 0
          let clipped = 0
          let tokens = 0
          outs.forEach((o, i) => {
            const it = items[i]!
            for (let t = 0; t < o.loss.length; t++) {
              lossSum += o.loss[t]!
              if (it.weights[t] !== 0 || it.advantages[t] !== 0) {
                tokens++
                clipped += o.clipped[t]!
              }
            }
          })
          return { logprobs: outs.map((o) => o.logprobs), metrics: { "loss:sum": lossSum, "tokens:sum": tokens, "clipped:sum": clipped } }
        })),

      optimStep: (params: AdamParams) =>
        training(attempt("optim_step", async () => {
          const { weights, optimizer, grads } = await trained()
          const r = optimizer.step(weights, grads, params)
          for (const g of grads.values()) g.fill(0)
          return r
        })),

      save: (name) =>
        serial(attempt("save", async () => {
          if (!NAME.test(name)) throw fail("BadInput", `checkpoint name ${JSON.stringify(name)}: letters, digits, '.', '_' or '-'`)
          const path = join(checkpointDir, name)
          // Made afresh: a save killed half way leaves temp files that would become part of the stored folder.
          await rm(path, { recursive: true, force: true })
          // Not fsynced: a saved folder goes into the artifact store (PolicyCheckpoint.ts), whose copy is durable.
          const { weights, optimizer } = await trained()
          // The live arrays, written from their own memory: no training runs until this call returns.
          await Checkpoint.write(path, { config, weights, tokenizer: (await checkpoint()).tokenizer, optimizer: optimizer.state({ views: true }) }, { durable: false })
          savedAt = path
          if (publishedIsTrainer) publishedFrom = path
          return { path } satisfies CheckpointRef
        })),

      load: (ref) =>
        serial(attempt("load", async () => {
          const next = await Checkpoint.read(ref.path)
          if (JSON.stringify(next.config) !== JSON.stringify(config)) {
            throw fail("Checkpoint", `${ref.path}: a different architecture than the engine's model`)
          }
          state = trainerOf(next)
          published = next.weights
          publishedFrom = savedAt = ref.path
          publishedIsTrainer = true
        })),

      // The workers start loading the new weights at once (SamplerPool.prepare): a policy update
      // publishes before it saves, so they build their sessions while the checkpoint is written.
      publish: () => serial(attempt("publish", async () => {
        published = pool.prepare(config, (await trained()).weights)
        publishedFrom = savedAt
        publishedIsTrainer = true
        return undefined // the sampler weights live in this process: no path
      })),

      moved: (from, to) => Effect.sync(() => {
        if (savedAt === from) savedAt = to
        if (publishedFrom === from) publishedFrom = to
      })
    }
    return engine
  })

/** The embedded engine as a PolicyEngine layer. */
export const layer = (options: EmbeddedOptions): Layer.Layer<PolicyEngine, PolicyError> =>
  Layer.effect(PolicyEngine, make(options))
