/**
 * The `simulated` PolicyEngine: the paper's GPUs emulated on a laptop (issue 16 point 5). Every
 * call returns deterministic made-up outputs after the time the latency model (SimulatedLatency.ts)
 * says the paper's hardware would take, slept with `Effect.sleep`, so a TestClock drives it in
 * tests and `timeScale` compresses it in benchmarks (0.001: 1,000× faster than real time).
 *
 * - Outputs depend on the request alone (prompt ids, sampling params with the seed, the row),
 *   never on timing, other requests or the loaded checkpoint: the simulated model does not learn.
 * - Lengths: the requested words N of "Write a N-word story" in the decoded prompt, times a ratio
 *   drawn from `lengthRatio`, times `tokensPerWord`; capped at the request's `maxTokens` (then
 *   `stopReason: "length"`). A prompt naming no length draws from [low/high, 1] × maxTokens.
 * - Tokens are word pieces of the tokenizer's vocabulary (byte-level BPE: `Ġword` starts a word,
 *   a bare piece continues it) in proportions that give `tokensPerWord`, with sentence and
 *   paragraph breaks; a stopped sequence ends with the end-of-turn token.
 * - Logprobs: one fixed function of (previous token, token), the same for sampling, teacher
 *   forcing and the learner, so sampler and trainer agree and PPO ratios are 1.
 * - A sampler (vLLM) beside a trainer: `sample` and `logprobs` run on the sampler, which decodes
 *   `samplerSlots` sequences at once (a call holds a slot per sequence; more wait); `trainerLogprobs`,
 *   `forwardBackward`, `optimStep`, `save`, `load` and `publish` queue on the trainer, one at a
 *   time. The two overlap. The `weights` a sampling call names cost nothing to switch to.
 * - Checkpoints are names (`sim://<model>/<name>`), like a remote engine's.
 *
 * @example
 * ```ts
 * const engine = yield* SimulatedPolicy.make({ model: "Qwen/Qwen3.5-9B", timeScale: 0.001 })
 * const [[story]] = yield* engine.sample([{ prompt: engine.promptIds("Write a 2000-word story about a fox."), n: 1, params }])
 * // ~2,000 words × 1.4 tokens, after (2 + tokens / 12) s × 0.001
 * ```
 */
import { Duration, Effect, Layer, Semaphore } from "effect"
import { readFileSync } from "node:fs"
import { resolve } from "node:path"
import { digest, sha256 } from "../dag/Canonical.ts"
import { codeFingerprint } from "../dag/Fingerprint.ts"
import { seeded } from "../internal/random.ts"
import type { AdamParams } from "../model/AdamW.ts"
import { type SamplingParams, validate } from "../model/Sampling.ts"
import { endToken as endTokenString, promptIds } from "../model/tokenizer/ChatTemplate.ts"
import { Tokenizer } from "../model/tokenizer/Tokenizer.ts"
import {
  type CheckpointRef,
  type Datum,
  type LossFn,
  PolicyEngine,
  PolicyError,
  type PolicyEngineShape,
  type PolicyErrorReason,
  type SampledSequence
} from "./PolicyEngine.ts"
import { type LatencyModel, PAPER_LATENCY, prefillSeconds, sampleSeconds, trainSeconds } from "./SimulatedLatency.ts"

/** The tokenizer used when none is given: the shipped story model's byte-level BPE. */
export const DEFAULT_TOKENIZER: string = resolve(import.meta.dirname, "../../models/story-1m/tokenizer.json")

export interface SimulatedOptions {
  /** The model's name (what checkpoints are named after; no weights are read). */
  readonly model: string
  /** A tokenizer.json (a sibling tokenizer_config.json is read too); default `DEFAULT_TOKENIZER`. */
  readonly tokenizer?: string
  /** Real seconds per simulated second; default 1 (real time). */
  readonly timeScale?: number
  /** Default `PAPER_LATENCY`. */
  readonly latency?: LatencyModel
  /** Default 32,768 (Qwen3.5-9B's native context). */
  readonly maxContext?: number
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/
const REQUESTED = /(\d[\d,]*)-word/

const fail = (reason: PolicyErrorReason, message: string) => new PolicyError({ reason, message, retryable: false })

/** A 32-bit mix of two token ids (murmur3's finalizer over their combination). */
const mix = (a: number, b: number): number => {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 0x632be5ab, 0xc2b2ae35)
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** The simulated model's log q(token | previous token): in [-3, -0.05]. */
export const logprobOf = (previous: number, token: number): number => -(0.05 + 2.95 * (mix(previous, token) / 4294967296))

/** The vocabulary pieces the made-up prose is built of. */
interface Pieces {
  readonly starts: ReadonlyArray<number> // " word"
  readonly capitals: ReadonlyArray<number> // " Word"
  readonly continuations: ReadonlyArray<number> // "ing"
  readonly period: number
  readonly paragraph: number | undefined
}

const piecesOf = (tokenizer: Tokenizer, path: string): Pieces => {
  const vocab = (tokenizer.json as { model?: { vocab?: Record<string, number> } }).model?.vocab
  if (vocab === undefined || Array.isArray(vocab)) throw fail("Checkpoint", `${path}: the simulated engine needs a BPE tokenizer.json with model.vocab`)
  const starts: Array<number> = [], capitals: Array<number> = [], continuations: Array<number> = []
  for (const [piece, id] of Object.entries(vocab)) {
    if (/^Ġ[a-z]{2,}$/.test(piece)) starts.push(id)
    else if (/^Ġ[A-Z][a-z]+$/.test(piece)) capitals.push(id)
    else if (/^[a-z]{2,}$/.test(piece)) continuations.push(id)
  }
  const sorted = (a: Array<number>) => a.sort((x, y) => x - y)
  if (starts.length === 0 || capitals.length === 0 || continuations.length === 0 || vocab["."] === undefined) {
    throw fail("Checkpoint", `${path}: the simulated engine needs byte-level BPE word pieces ("Ġword", "ĠWord", "ing", ".")`)
  }
  return { starts: sorted(starts), capitals: sorted(capitals), continuations: sorted(continuations), period: vocab["."], paragraph: vocab["ĊĊ"] ?? vocab["Ċ"] }
}

/** Made-up prose of `count` tokens: words of `1/(1 - pContinue)` tokens on average, sentences of ~15 words. */
const prose = (pieces: Pieces, count: number, tokensPerWord: number, random: () => number): Array<number> => {
  const pick = (a: ReadonlyArray<number>) => a[Math.floor(random() * a.length)]!
  const pContinue = Math.max(0, 1 - 1 / tokensPerWord)
  const out: Array<number> = []
  let sentenceStart = true
  let wordsInSentence = 0
  let sentences = 0
  while (out.length < count) {
    const last = out.length === count - 1
    if (!sentenceStart && (last || (wordsInSentence >= 4 && random() < 1 / 15))) {
      out.push(pieces.period)
      sentenceStart = true
      wordsInSentence = 0
      sentences++
      if (pieces.paragraph !== undefined && out.length < count - 1 && sentences % 5 === 0) out.push(pieces.paragraph)
    } else if (!sentenceStart && random() < pContinue) {
      out.push(pick(pieces.continuations))
    } else {
      out.push(pick(sentenceStart ? pieces.capitals : pieces.starts))
      sentenceStart = false
      wordsInSentence++
    }
  }
  return out
}

/** The simulated engine as a PolicyEngine (loads its tokenizer; fails Checkpoint if it is unusable). */
export const make = (options: SimulatedOptions): Effect.Effect<PolicyEngineShape, PolicyError> =>
  Effect.gen(function*() {
    const path = options.tokenizer ?? DEFAULT_TOKENIZER
    const latency = options.latency ?? PAPER_LATENCY
    const timeScale = options.timeScale ?? 1
    if (!(timeScale >= 0) || !Number.isFinite(timeScale)) return yield* fail("BadInput", `timeScale must be a finite number >= 0, got ${timeScale}`)
    const { tokenizer, bytes } = yield* Effect.try({
      try: () => ({ tokenizer: Tokenizer.fromFile(path), bytes: readFileSync(path) }),
      catch: (e) => fail("Checkpoint", `simulated tokenizer ${path}: ${(e as Error).message}`)
    })
    const pieces = yield* Effect.try({ try: () => piecesOf(tokenizer, path), catch: (e) => e as PolicyError })
    const endToken = yield* Effect.try({ try: () => tokenizer.tokenId(endTokenString(tokenizer)), catch: (e) => fail("Checkpoint", `${path}: ${(e as Error).message}`) })
    const maxContext = options.maxContext ?? 32_768

    // The sampler decodes latency.samplerSlots sequences at once; the trainer runs one call at a time.
    const slots = Math.max(1, latency.samplerSlots)
    const sampler = Semaphore.makeUnsafe(slots)
    const trainer = Semaphore.makeUnsafe(1)
    /** Holds `permits` of `queue` for `seconds` of simulated time, then returns `value()`. */
    const busy = <A>(queue: Semaphore.Semaphore, seconds: number, value: () => A, permits = 1) =>
      queue.withPermits(Math.min(permits, queue === sampler ? slots : 1))(Effect.andThen(Effect.sleep(Duration.millis(seconds * 1000 * timeScale)), Effect.sync(value)))

    const lengthOf = (request: { readonly prompt: ReadonlyArray<number>; readonly params: SamplingParams }, random: () => number): number => {
      const { low, high } = latency.lengthRatio
      const ratio = low + (high - low) * random()
      const requested = REQUESTED.exec(tokenizer.decode(request.prompt, { skipSpecial: true }))
      const tokens = requested !== null
        ? Math.round(Number(requested[1]!.replace(/,/g, "")) * ratio * latency.tokensPerWord)
        : Math.round(request.params.maxTokens * ratio / high)
      return Math.max(1, tokens)
    }

    const sequence = (request: { readonly prompt: ReadonlyArray<number>; readonly params: SamplingParams }, row: number): SampledSequence => {
      const random = seeded(`simulated:${sha256(JSON.stringify(request.prompt))}:${digest(request.params)}:${row}`)
      const target = lengthOf(request, random)
      const stopped = target + 1 <= request.params.maxTokens
      const text = prose(pieces, stopped ? target : request.params.maxTokens, latency.tokensPerWord, random)
      const tokens = stopped ? [...text, endToken] : text
      let previous = request.prompt[request.prompt.length - 1] ?? endToken
      const logprobs = tokens.map((t) => {
        const lp = logprobOf(previous, t)
        previous = t
        return lp
      })
      return { tokens, logprobs, stopReason: stopped ? "stop" : "length" }
    }

    const teacherForced = (items: ReadonlyArray<{ readonly prompt: ReadonlyArray<number>; readonly completion: ReadonlyArray<number> }>) =>
      items.map(({ prompt, completion }) => {
        const out = new Float32Array(completion.length)
        completion.forEach((t, i) => void (out[i] = logprobOf(i === 0 ? prompt[prompt.length - 1]! : completion[i - 1]!, t)))
        return out
      })
    const teacherForcing = (queue: Semaphore.Semaphore) =>
      (items: ReadonlyArray<{ readonly prompt: ReadonlyArray<number>; readonly completion: ReadonlyArray<number> }>) =>
        Effect.suspend(() => {
          const bad = items.findIndex((it) => it.prompt.length === 0)
          if (bad >= 0) return Effect.fail(fail("BadInput", `logprobs: item ${bad} has an empty prompt`))
          const tooLong = items.findIndex((it) => it.prompt.length + it.completion.length > maxContext)
          if (tooLong >= 0) return Effect.fail(fail("ContextOverflow", `logprobs: item ${tooLong} exceeds the model's context of ${maxContext} tokens`))
          const tokens = items.reduce((s, it) => s + it.prompt.length + it.completion.length, 0)
          return busy(queue, prefillSeconds(latency, tokens), () => teacherForced(items))
        })

    let gradSquares = 0
    let steps = 0

    const forwardBackward = (datums: ReadonlyArray<Datum>, loss: LossFn) =>
      Effect.suspend(() => {
        for (const [i, d] of datums.entries()) {
          const n = d.modelInput.length
          if (d.targetTokens.length !== n) return Effect.fail(fail("BadInput", `datum ${i}: targetTokens has ${d.targetTokens.length} entries, modelInput ${n}`))
          const needs = loss.name === "cross_entropy" ? ["weights"] as const : ["logprobs", "advantages"] as const
          for (const name of needs) {
            const a = d[name]
            if (a === undefined) return Effect.fail(fail("BadInput", `datum ${i}: loss ${loss.name} needs ${name}`))
            if (a.length !== n) return Effect.fail(fail("BadInput", `datum ${i}: ${name} has ${a.length} entries, modelInput ${n}`))
          }
        }
        const tokens = datums.reduce((s, d) => s + d.modelInput.length, 0)
        return busy(trainer, trainSeconds(latency, tokens), () => {
          let lossSum = 0, counted = 0, clipped = 0
          const logprobs = datums.map((d) => {
            const lp = new Float32Array(d.modelInput.length)
            for (let t = 0; t < lp.length; t++) {
              lp[t] = logprobOf(d.modelInput[t]!, d.targetTokens[t]!)
              if (loss.name === "cross_entropy") {
                const w = Number(d.weights![t])
                lossSum -= w * lp[t]!
                gradSquares += w * w
                if (w !== 0) counted++
              } else {
                const a = Number(d.advantages![t])
                const ratio = Math.exp(lp[t]! - Number(d.logprobs![t]))
                const bounded = loss.name === "ppo" ? Math.min(Math.max(ratio, loss.clipLow), loss.clipHigh) : ratio
                lossSum -= Math.min(ratio * a, bounded * a)
                gradSquares += a * a
                if (a !== 0) {
                  counted++
                  if (bounded !== ratio) clipped++
                }
              }
            }
            return lp
          })
          return { logprobs, metrics: { "loss:sum": lossSum, "tokens:sum": counted, "clipped:sum": clipped } }
        })
      })

    const engine: PolicyEngineShape = {
      // What changes outputs (model name, tokenizer bytes, this code) and the latency model the
      // issue asks to be keyed; the time scale only stretches time, so it is not in the key.
      fingerprint: `simulated:${options.model}:${sha256(bytes).slice(0, 12)}:${digest(latency).slice(0, 12)}@${codeFingerprint(import.meta.url).slice(0, 12)}`,
      tokenizer,
      endToken,
      maxContext,
      promptIds: (prompt, chat) => promptIds(tokenizer, prompt, chat),
      sample: (requests) =>
        Effect.suspend(() => {
          for (const r of requests) {
            try {
              validate(r.params)
            } catch (e) {
              return Effect.fail(fail("BadInput", `sampling params: ${(e as Error).message}`))
            }
            if (!Number.isInteger(r.n) || r.n < 1) return Effect.fail(fail("BadInput", `n must be a positive integer, got ${r.n}`))
          }
          const out = requests.map((r) => Array.from({ length: r.n }, (_, row) => sequence(r, row)))
          const lengths = out.flatMap((seqs) => seqs.map((s) => s.tokens.length))
          return busy(sampler, sampleSeconds(latency, lengths), () => out, lengths.length)
        }),
      logprobs: teacherForcing(sampler),
      trainerLogprobs: teacherForcing(trainer),
      forwardBackward,
      optimStep: (params: AdamParams) =>
        busy(trainer, latency.optimStepS, () => {
          const gradNorm = Math.sqrt(gradSquares)
          gradSquares = 0
          steps++
          const clipScale = params.gradClipNorm > 0 && gradNorm > params.gradClipNorm ? params.gradClipNorm / gradNorm : 1
          return { gradNorm, clipScale, step: steps }
        }),
      save: (name) =>
        NAME.test(name)
          ? busy(trainer, latency.saveS, (): CheckpointRef => ({ path: `sim://${options.model}/${name}` }))
          : Effect.fail(fail("BadInput", `checkpoint name ${JSON.stringify(name)}: letters, digits, '.', '_' or '-'`)),
      load: (ref) =>
        ref.path === options.model || ref.path.startsWith(`sim://${options.model}/`)
          ? busy(trainer, latency.loadS, () => undefined)
          : Effect.fail(fail("Checkpoint", `${ref.path}: not a checkpoint of the simulated ${options.model} (sim://${options.model}/<name>)`)),
      publish: () => busy(trainer, latency.publishS, () => undefined)
    }
    return engine
  })

/** The simulated engine as a PolicyEngine layer. */
export const layer = (options: SimulatedOptions): Layer.Layer<PolicyEngine, PolicyError> => Layer.effect(PolicyEngine, make(options))
