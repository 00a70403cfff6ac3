/**
 * The token sampler run at every decode step of the embedded policy model. It follows vLLM's
 * sampler, in vLLM's order: penalties -> temperature -> top-k -> top-p -> sample, so rollouts
 * sampled here are distributed like rollouts sampled by a vLLM/Tinker server with the same params.
 *
 * Everything works on one sequence row at a time (a Float32Array of raw logits over the vocab) in
 * Float64, and the only randomness is the uniform `u` passed to `draw`, taken from a per-row stream
 * (`rowRandom`) so a row's tokens do not depend on the other rows in its batch.
 *
 * One deliberate difference from vLLM: top-k keeps exactly k tokens, breaking ties at the k-th
 * value by lower token id (vLLM keeps every token tied with the k-th value). Ties between real
 * float logits are rare, and "exactly k, deterministic" is easier to reason about and to test.
 *
 * @example
 * const params = { ...defaultSamplingParams, temperature: 0.7, topP: 0.9, seed: "req-1" }
 * validate(params)
 * const state = new SequenceState(vocabSize, promptIds)
 * const random = rowRandom(params.seed, row)
 * const lp = processLogits(logits, params, state)
 * const token = draw(lp, random(), params)
 * const logprob = rawLogprob(logits, token)
 * state.observe(token)
 */
import { seeded } from "../internal/random.ts"

/** Per-request sampling settings, with vLLM's meanings. */
export interface SamplingParams {
  /** Most tokens to generate (the caller's loop enforces it). */
  readonly maxTokens: number
  /** Divides the logits; 0 (anything below 1e-5, as vLLM) means greedy argmax. */
  readonly temperature: number
  /** Nucleus mass in (0, 1]; 1 = off. */
  readonly topP: number
  /** Keep the k most likely tokens; -1 or 0 = off (Tinker/vLLM use -1); k >= vocab is also off. */
  readonly topK: number
  /** 1 = off. HF/vLLM: logit > 0 -> logit / p, else logit * p, for tokens in the prompt OR the output so far. */
  readonly repetitionPenalty: number
  /** 0 = off. OpenAI/vLLM: subtract p once from every token generated so far (output only, not prompt). */
  readonly presencePenalty: number
  /** 0 = off. OpenAI/vLLM: subtract p * (times the token was generated so far). */
  readonly frequencyPenalty: number
  /** Stop token ids (the caller adds the end token and stops on them). */
  readonly stop: ReadonlyArray<number>
  /** Seeds the per-row random streams (see `rowRandom`). */
  readonly seed: number | string
}

/** vLLM's defaults: plain sampling at temperature 1, nothing filtered or penalized. */
export const defaultSamplingParams: SamplingParams = {
  maxTokens: 256,
  temperature: 1,
  topP: 1,
  topK: -1,
  repetitionPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
  stop: [],
  seed: 0
}

/** vLLM's `_SAMPLING_EPS`: temperatures below it are greedy (and dividing by them would blow up). */
const SAMPLING_EPS = 1e-5

/**
 * Whether these params sample greedily (temperature below 1e-5, as vLLM).
 *
 * @example
 * isGreedy({ ...defaultSamplingParams, temperature: 0 }) // true
 */
export const isGreedy = (p: Pick<SamplingParams, "temperature">): boolean => p.temperature < SAMPLING_EPS

/**
 * Checks params once per request; throws an Error naming the bad field and value. (Throwing, not
 * returning a string, so a bad request cannot be silently sampled.) Per-step functions assume
 * valid params and do not re-check.
 *
 * @example
 * validate({ ...defaultSamplingParams, topP: 0 }) // throws "topP must be in (0, 1], got 0"
 */
export const validate = (p: SamplingParams): void => {
  // Negated comparisons so NaN fails every check too.
  if (!(Number.isInteger(p.maxTokens) && p.maxTokens >= 1)) throw new Error(`maxTokens must be an integer >= 1, got ${p.maxTokens}`)
  if (!(p.temperature >= 0 && Number.isFinite(p.temperature))) throw new Error(`temperature must be >= 0 (0 = greedy), got ${p.temperature}`)
  if (!(p.topP > 0 && p.topP <= 1)) throw new Error(`topP must be in (0, 1], got ${p.topP}`)
  if (!(Number.isInteger(p.topK) && p.topK >= -1)) throw new Error(`topK must be an integer >= -1 (-1 or 0 = off), got ${p.topK}`)
  if (!(p.repetitionPenalty > 0 && Number.isFinite(p.repetitionPenalty))) throw new Error(`repetitionPenalty must be > 0 (1 = off), got ${p.repetitionPenalty}`)
  if (!Number.isFinite(p.presencePenalty)) throw new Error(`presencePenalty must be a finite number, got ${p.presencePenalty}`)
  if (!Number.isFinite(p.frequencyPenalty)) throw new Error(`frequencyPenalty must be a finite number, got ${p.frequencyPenalty}`)
  for (const t of p.stop) {
    if (!(Number.isInteger(t) && t >= 0)) throw new Error(`stop token ids must be integers >= 0, got ${t}`)
  }
}

/**
 * Per-sequence penalty state: which tokens appeared in the prompt and how often each appeared in
 * the output. Keeps the distinct ids as lists too, so penalties touch only seen tokens instead of
 * scanning the vocab every step.
 *
 * @example
 * const s = new SequenceState(4096, [5, 9, 5])
 * s.observe(7); s.observe(7)
 * s.count(7) // 2
 * s.inPrompt(5) // true
 */
export class SequenceState {
  readonly vocabSize: number
  private readonly prompt: Uint8Array
  private readonly counts: Uint32Array
  private readonly seenIds: Array<number> = []
  private readonly generatedIds: Array<number> = []
  private generatedTotal = 0

  constructor(vocabSize: number, promptTokens: ReadonlyArray<number>) {
    if (!(Number.isInteger(vocabSize) && vocabSize >= 1)) throw new RangeError(`vocabSize must be an integer >= 1, got ${vocabSize}`)
    this.vocabSize = vocabSize
    this.prompt = new Uint8Array(vocabSize)
    this.counts = new Uint32Array(vocabSize)
    for (const t of promptTokens) {
      this.check(t)
      if (this.prompt[t] === 0) {
        this.prompt[t] = 1
        this.seenIds.push(t)
      }
    }
  }

  /** Records a generated token (call after each draw). */
  observe(token: number): void {
    this.check(token)
    const c = this.counts[token]!
    if (c === 0) {
      this.generatedIds.push(token)
      if (this.prompt[token] === 0) this.seenIds.push(token)
    }
    this.counts[token] = c + 1
    this.generatedTotal++
  }

  /** Whether `token` occurs in the prompt. */
  inPrompt(token: number): boolean {
    return this.prompt[token] === 1
  }

  /** How many times `token` was generated so far. */
  count(token: number): number {
    return this.counts[token] ?? 0
  }

  /** Output tokens observed so far. */
  get length(): number {
    return this.generatedTotal
  }

  /** Distinct ids in the prompt or the output (the repetition penalty's set), first-seen order. */
  get seen(): ReadonlyArray<number> {
    return this.seenIds
  }

  /** Distinct ids in the output (the presence/frequency penalties' set), first-generated order. */
  get generated(): ReadonlyArray<number> {
    return this.generatedIds
  }

  private check(token: number): void {
    if (!(Number.isInteger(token) && token >= 0 && token < this.vocabSize)) {
      throw new RangeError(`token id ${token} is outside the vocabulary [0, ${this.vocabSize})`)
    }
  }
}

// Scratch buffers reused across calls (JS is single-threaded, and every call overwrites the part
// it uses), so the hot path allocates nothing but its result.
let scratch = new Float64Array(0)
let weights = new Float64Array(0)
const scratchFor = (n: number): Float64Array => {
  if (scratch.length < n) {
    scratch = new Float64Array(n)
    weights = new Float64Array(n)
  }
  return scratch
}

/** In-place log-softmax over `x`; -Infinity stays -Infinity. Max-subtracted, so huge logits are fine. */
const logSoftmaxInPlace = (x: Float64Array): void => {
  const n = x.length
  let max = -Infinity
  for (let i = 0; i < n; i++) if (x[i]! > max) max = x[i]!
  if (max === -Infinity) throw new Error("sampling: every token is masked (all logits are -Infinity)")
  let z = 0
  for (let i = 0; i < n; i++) z += Math.exp(x[i]! - max)
  const lse = max + Math.log(z)
  for (let i = 0; i < n; i++) x[i] = x[i]! - lse
}

/**
 * The k-th largest value of x (1-based k), by Hoare-partition quickselect on a scratch copy:
 * O(n) on average instead of a full sort, and duplicate-heavy inputs (many -Infinity) stay balanced.
 */
const kthLargest = (x: Float64Array, k: number): number => {
  const n = x.length
  const a = scratchFor(n)
  a.set(x)
  const target = n - k // index in ascending order
  let lo = 0
  let hi = n - 1
  while (lo < hi) {
    const pivot = a[(lo + hi) >>> 1]!
    let i = lo
    let j = hi
    while (i <= j) {
      while (a[i]! < pivot) i++
      while (pivot < a[j]!) j--
      if (i <= j) {
        const t = a[i]!
        a[i] = a[j]!
        a[j] = t
        i++
        j--
      }
    }
    // Now a[lo..j] <= pivot, a[i..hi] >= pivot, and anything strictly between equals pivot.
    if (target <= j) hi = j
    else if (target >= i) lo = i
    else break
  }
  return a[target]!
}

/**
 * Masks to -Infinity all but exactly `k` tokens: those above `threshold` (the k-th largest value),
 * plus as many tokens equal to it as needed, lower id first, so ties are deterministic.
 */
const keepTop = (x: Float64Array, k: number, threshold: number): void => {
  const n = x.length
  let above = 0
  for (let i = 0; i < n; i++) if (x[i]! > threshold) above++
  let ties = k - above
  for (let i = 0; i < n; i++) {
    const v = x[i]!
    if (v > threshold) continue
    if (v === threshold && ties > 0) {
      ties--
      continue
    }
    x[i] = -Infinity
  }
}

/**
 * Keeps the smallest most-likely-first prefix whose probability reaches p (the token that crosses
 * p is kept; at least one token always is), as vLLM: it masks sorted tokens whose ascending
 * cumulative mass is <= 1 - p, which is the same as dropping tokens whose preceding mass is >= p.
 *
 * Instead of sorting, a weighted quickselect finds the crossing value in O(n) on average: a
 * three-way partition (greater / equal / less than a pivot, values and weights moved together)
 * tells whether the cut lies above, at or below the pivot. Tied values add the same mass in any
 * order, so `keepTop` then picks exactly the kept tokens with top-k's lower-id-first tie rule.
 */
const applyTopP = (x: Float64Array, p: number): void => {
  const n = x.length
  const v = scratchFor(n)
  const w = weights
  let max = -Infinity
  for (let i = 0; i < n; i++) if (x[i]! > max) max = x[i]!
  let m = 0
  let z = 0
  for (let i = 0; i < n; i++) {
    const xi = x[i]!
    if (xi === -Infinity) continue
    const e = Math.exp(xi - max)
    v[m] = xi
    w[m] = e
    z += e
    m++
  }
  const target = p * z
  let mass = 0 // mass of the tokens known to rank above v[lo..hi)
  let kept = 0 // how many of them
  let lowestKept = Infinity // smallest value kept so far
  let lo = 0
  let hi = m
  while (lo < hi) {
    const pivot = v[(lo + hi) >>> 1]!
    // [lo, gtEnd) > pivot, [gtEnd, i) == pivot, [ltStart, hi) < pivot.
    let gtEnd = lo
    let i = lo
    let ltStart = hi
    while (i < ltStart) {
      const vi = v[i]!
      if (vi > pivot) {
        swap(v, w, gtEnd++, i++)
      } else if (vi < pivot) {
        swap(v, w, i, --ltStart)
      } else {
        i++
      }
    }
    let greaterMass = 0
    for (let j = lo; j < gtEnd; j++) greaterMass += w[j]!
    if (gtEnd > lo && mass + greaterMass >= target) {
      hi = gtEnd // the cut is among the greater ones: everything from the pivot down is dropped
      continue
    }
    mass += greaterMass
    kept += gtEnd - lo
    for (let j = gtEnd; j < ltStart; j++) {
      if (kept > 0 && mass >= target) {
        keepTop(x, kept, pivot)
        return
      }
      mass += w[j]!
      kept++
    }
    lowestKept = pivot
    lo = ltStart
  }
  // The range ran out with every token in it kept: the cut falls right after the smallest kept
  // value (e.g. the crossing token was the last of a "greater" part whose lower parts were dropped).
  if (kept < m) keepTop(x, kept, lowestKept)
}

const swap = (v: Float64Array, w: Float64Array, i: number, j: number): void => {
  const tv = v[i]!
  v[i] = v[j]!
  v[j] = tv
  const tw = w[i]!
  w[i] = w[j]!
  w[j] = tw
}

/**
 * Applies penalties -> temperature -> top-k -> top-p to a copy of `logits` (written into `out`
 * when given, which must have the vocab's length, so a decode loop can reuse one buffer) and
 * returns the processed log-probabilities: a normalized log-softmax, -Infinity for removed tokens.
 * When greedy (temperature < 1e-5), only penalties apply (vLLM turns top-k/top-p off then) and
 * `draw` takes the argmax. Does not modify `logits` or `state`. Throws on NaN logits.
 *
 * @example
 * const lp = processLogits(Float32Array.of(1, 2, 3), { ...defaultSamplingParams, topK: 2 }, new SequenceState(3, []))
 * // lp[0] === -Infinity; Math.exp(lp[1]) + Math.exp(lp[2]) ≈ 1
 */
export const processLogits = (
  logits: Float32Array,
  params: SamplingParams,
  state: SequenceState,
  out?: Float64Array
): Float64Array => {
  const n = logits.length
  if (n !== state.vocabSize) throw new RangeError(`logits have ${n} entries but the sequence state's vocab is ${state.vocabSize}`)
  if (out !== undefined && out.length !== n) throw new RangeError(`out has ${out.length} entries, expected ${n}`)
  const x = out ?? new Float64Array(n)
  for (let i = 0; i < n; i++) {
    const v = logits[i]!
    if (v !== v) throw new Error(`sampling: logit for token ${i} is NaN`)
    x[i] = v
  }

  // Penalties (vLLM apply_penalties): repetition on prompt ∪ output first, then frequency and
  // presence on output only. Only seen ids can be penalized, so loop over those, not the vocab.
  const rp = params.repetitionPenalty
  if (rp !== 1) {
    for (const t of state.seen) {
      const v = x[t]!
      x[t] = v > 0 ? v / rp : v * rp
    }
  }
  const fp = params.frequencyPenalty
  const pp = params.presencePenalty
  if (fp !== 0 || pp !== 0) {
    for (const t of state.generated) x[t] = x[t]! - fp * state.count(t) - pp
  }

  if (!isGreedy(params)) {
    const temperature = params.temperature
    if (temperature !== 1) for (let i = 0; i < n; i++) x[i] = x[i]! / temperature
    const k = params.topK
    if (k > 0 && k < n) keepTop(x, k, kthLargest(x, k))
    if (params.topP < 1) applyTopP(x, params.topP)
  }
  logSoftmaxInPlace(x)
  return x
}

/**
 * Draws one token from processed log-probabilities by inverse CDF over token ids: the first id
 * whose cumulative probability exceeds u (times the total, which absorbs rounding). Removed
 * (-Infinity) tokens are never drawn. Greedy params take the argmax (lowest id on ties) and ignore u.
 *
 * @example
 * const lp = Float64Array.of(Math.log(0.5), -Infinity, Math.log(0.5))
 * draw(lp, 0.2, defaultSamplingParams) // 0
 * draw(lp, 0.7, defaultSamplingParams) // 2
 */
export const draw = (logprobs: Float64Array, u: number, params: Pick<SamplingParams, "temperature">): number => {
  const n = logprobs.length
  if (isGreedy(params)) {
    let best = -1
    let bestValue = -Infinity
    for (let i = 0; i < n; i++) {
      if (logprobs[i]! > bestValue) {
        bestValue = logprobs[i]!
        best = i
      }
    }
    if (best < 0) throw new Error("sampling: every token is masked")
    return best
  }
  if (!(u >= 0 && u < 1)) throw new RangeError(`u must be in [0, 1), got ${u}`)
  // Sum in the same order as the scan below, so the scan's running sum ends exactly at `total`.
  let total = 0
  for (let i = 0; i < n; i++) total += Math.exp(logprobs[i]!)
  if (!(total > 0)) throw new Error("sampling: every token is masked")
  const target = u * total
  let cum = 0
  let last = -1
  for (let i = 0; i < n; i++) {
    const q = Math.exp(logprobs[i]!)
    if (q === 0) continue
    cum += q
    last = i
    if (cum > target) return i
  }
  return last // unreachable unless rounding; still a kept token
}

/** Sampling with nothing to filter or penalize: the common RL setting, worth its own path. */
const isPlain = (p: SamplingParams): boolean =>
  !isGreedy(p) && p.repetitionPenalty === 1 && p.frequencyPenalty === 0 && p.presencePenalty === 0 &&
  p.topP >= 1 && !(p.topK > 0)

/**
 * One pass of exponentials instead of four: e_i = exp((l_i - max) / T) into a scratch buffer, the
 * inverse-CDF draw over those unnormalized weights (the same CDF as `draw` over the log-softmax),
 * and at T = 1 the raw logprob from the same sum.
 */
const samplePlain = (logits: Float32Array, temperature: number, u: number, out?: Float64Array): { readonly token: number; readonly logprob: number } => {
  const n = logits.length
  const e = out !== undefined && out.length === n ? out : new Float64Array(n)
  let max = -Infinity
  for (let i = 0; i < n; i++) {
    const v = logits[i]!
    if (v !== v) throw new Error(`sampling: logit for token ${i} is NaN`)
    if (v > max) max = v
  }
  let total = 0
  for (let i = 0; i < n; i++) total += e[i] = Math.exp((logits[i]! - max) / temperature)
  const target = u * total
  let cum = 0
  let token = n - 1
  for (let i = 0; i < n; i++) {
    cum += e[i]!
    if (cum > target) {
      token = i
      break
    }
  }
  while (e[token] === 0 && token > 0) token-- // rounding at the very end: still a token with mass
  const logprob = temperature === 1 ? logits[token]! - max - Math.log(total) : rawLogprob(logits, token)
  return { token, logprob }
}

/** Inverse CDF over a softmax already computed (by the model graph); the raw logprob is its log. */
const sampleProbs = (probs: Float32Array, u: number): { readonly token: number; readonly logprob: number } => {
  const n = probs.length
  let total = 0
  for (let i = 0; i < n; i++) total += probs[i]!
  const target = u * total
  let cum = 0
  let token = n - 1
  for (let i = 0; i < n; i++) {
    cum += probs[i]!
    if (cum > target) {
      token = i
      break
    }
  }
  while (probs[token] === 0 && token > 0) token--
  return { token, logprob: Math.log(probs[token]!) }
}

/**
 * Processes and draws in one go, consuming exactly one `random()` per call (even when greedy, so a
 * row's stream position depends only on how many steps it took). Returns the token and its raw
 * logprob (vLLM's default `raw_logprobs`). `probs`, the softmax of `logits` when the model graph
 * computed it, lets plain sampling at temperature 1 skip every exponential. Does not call `state.observe`; the caller does, once the
 * token is accepted.
 *
 * @example
 * const { token, logprob } = sample(logits, params, state, rowRandom(params.seed, row))
 * state.observe(token)
 */
export const sample = (
  logits: Float32Array,
  params: SamplingParams,
  state: SequenceState,
  random: () => number,
  out?: Float64Array,
  probs?: Float32Array
): { readonly token: number; readonly logprob: number } => {
  const u = random()
  if (isPlain(params)) {
    return params.temperature === 1 && probs !== undefined ? sampleProbs(probs, u) : samplePlain(logits, params.temperature, u, out)
  }
  const token = draw(processLogits(logits, params, state, out), u, params)
  return { token, logprob: rawLogprob(logits, token) }
}

/** max and log-sum-exp of raw logits, in Float64. */
const logSumExp = (logits: Float32Array): { readonly max: number; readonly z: number; readonly lse: number } => {
  const n = logits.length
  let max = -Infinity
  for (let i = 0; i < n; i++) if (logits[i]! > max) max = logits[i]!
  if (max === -Infinity) throw new Error("logits are all -Infinity")
  let z = 0
  for (let i = 0; i < n; i++) z += Math.exp(logits[i]! - max)
  return { max, z, lse: max + Math.log(z) }
}

/**
 * log softmax of the RAW logits at `token`: the logprob the sampler reports (vLLM's default
 * `raw_logprobs` mode, before penalties/temperature/filtering), so it is comparable to the
 * trainer's teacher-forced logprob. Max-subtracted, so large logits do not overflow.
 *
 * @example
 * rawLogprob(Float32Array.of(1000, 1000), 0) // -Math.LN2
 */
export const rawLogprob = (logits: Float32Array, token: number): number => {
  if (!(Number.isInteger(token) && token >= 0 && token < logits.length)) {
    throw new RangeError(`token id ${token} is outside the vocabulary [0, ${logits.length})`)
  }
  return logits[token]! - logSumExp(logits).lse
}

/**
 * Entropy in nats of softmax(raw logits), for metrics: H = log Z - Σ e_i (x_i - max) / Z with
 * e_i = exp(x_i - max), skipping zero-probability tokens (0 · -Infinity would be NaN).
 *
 * @example
 * entropy(Float32Array.of(0, 0, 0, 0)) // Math.log(4)
 */
export const entropy = (logits: Float32Array): number => {
  const { max, z } = logSumExp(logits)
  let s = 0
  for (let i = 0; i < logits.length; i++) {
    const d = logits[i]! - max
    const e = Math.exp(d)
    if (e > 0) s += e * d
  }
  return Math.max(0, Math.log(z) - s / z)
}

/**
 * The random stream of one batch row: row i of a request seeded s draws from `seeded("s:i")`, so
 * a row's draws do not depend on which other rows share its batch.
 *
 * @example
 * const random = rowRandom(42, 3) // same as seeded("42:3")
 * const u = random()
 */
export const rowRandom = (seed: number | string, row: number): (() => number) => seeded(`${seed}:${row}`)
