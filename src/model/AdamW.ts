/**
 * Adam with decoupled weight decay, numerically as `torch.optim.AdamW` (and Tinker's
 * `adam_params`), with optional global gradient-norm clipping as `torch.nn.utils.clip_grad_norm_`.
 * Moments are kept in float32 (like a float32 torch model); arithmetic within a step is float64.
 *
 * @example
 * const opt = new AdamW(new Map([["w", 4]]))
 * opt.step(new Map([["w", weights]]), new Map([["w", grads]]), { ...defaultAdamParams, learningRate: 1e-3 })
 */
import type { Tensor } from "./Safetensors.ts"

/** Hyperparameters of one step; `gradClipNorm` 0 disables clipping. */
export interface AdamParams {
  readonly learningRate: number
  readonly beta1: number
  readonly beta2: number
  readonly eps: number
  readonly weightDecay: number
  readonly gradClipNorm: number
}

/** Tinker's defaults (note beta2 0.95 and eps 1e-12, not torch's 0.999 and 1e-8). */
export const defaultAdamParams: AdamParams = {
  learningRate: 1e-4,
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-12,
  weightDecay: 0,
  gradClipNorm: 0
}

/** Options for AdamW: `decay(name)` false exempts a parameter from weight decay (default: all decay). */
export interface AdamWOptions {
  readonly decay?: (name: string) => boolean
}

/** What one step did: the global gradient L2 norm before clipping, the scale applied, the new step count. */
export interface StepResult {
  readonly gradNorm: number
  readonly clipScale: number
  readonly step: number
}

const STEP_KEY = "adamw_step"

const checkParams = (p: AdamParams): void => {
  const bad = (field: keyof AdamParams, rule: string) => {
    throw new Error(`AdamW: ${field} must be ${rule}, got ${p[field]}`)
  }
  if (!(Number.isFinite(p.learningRate) && p.learningRate >= 0)) bad("learningRate", "finite and >= 0")
  if (!(p.beta1 >= 0 && p.beta1 < 1)) bad("beta1", "in [0, 1)")
  if (!(p.beta2 >= 0 && p.beta2 < 1)) bad("beta2", "in [0, 1)")
  if (!(Number.isFinite(p.eps) && p.eps >= 0)) bad("eps", "finite and >= 0")
  if (!(Number.isFinite(p.weightDecay) && p.weightDecay >= 0)) bad("weightDecay", "finite and >= 0")
  if (!(p.gradClipNorm >= 0)) bad("gradClipNorm", ">= 0 (0 disables clipping)")
}

/** Throws unless `got` holds exactly the names of `sizes`, each an array of the declared length. */
const checkArrays = (what: string, sizes: ReadonlyMap<string, number>, got: ReadonlyMap<string, Float32Array>): void => {
  const missing = [...sizes.keys()].filter((k) => !got.has(k))
  const extra = [...got.keys()].filter((k) => !sizes.has(k))
  if (missing.length > 0 || extra.length > 0) {
    const parts = [
      missing.length > 0 ? `missing ${missing.map((k) => JSON.stringify(k)).join(", ")}` : "",
      extra.length > 0 ? `unexpected ${extra.map((k) => JSON.stringify(k)).join(", ")}` : ""
    ].filter((s) => s !== "")
    throw new Error(`AdamW: ${what} do not match the optimizer's parameters: ${parts.join("; ")}`)
  }
  for (const [name, n] of sizes) {
    const a = got.get(name)!
    if (!(a instanceof Float32Array)) throw new Error(`AdamW: ${what} ${JSON.stringify(name)} must be a Float32Array`)
    if (a.length !== n) throw new Error(`AdamW: ${what} ${JSON.stringify(name)} has ${a.length} elements, expected ${n}`)
  }
}

const checkSizes = (sizes: ReadonlyMap<string, number>): void => {
  for (const [name, n] of sizes) {
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`AdamW: size of ${JSON.stringify(name)} must be a non-negative integer, got ${n}`)
  }
}

/**
 * AdamW over a fixed set of named flat float32 parameters.
 *
 * @example
 * const opt = new AdamW(new Map([["w", 2], ["b", 1]]), { decay: (n) => n !== "b" })
 * const { gradNorm } = opt.step(params, grads, { ...defaultAdamParams, weightDecay: 0.01, gradClipNorm: 1 })
 */
export class AdamW {
  private readonly sizes: ReadonlyMap<string, number>
  private readonly m = new Map<string, Float32Array>()
  private readonly v = new Map<string, Float32Array>()
  // The predicate is evaluated once per name, so a step never calls user code.
  private readonly decays = new Map<string, boolean>()
  private t = 0

  /**
   * Zero moments for each parameter name and element count.
   *
   * @example
   * const opt = new AdamW(new Map([["layer.weight", 64 * 64]]), { decay: (n) => !n.endsWith(".bias") })
   */
  constructor(sizes: ReadonlyMap<string, number>, options: AdamWOptions = {}) {
    checkSizes(sizes)
    this.sizes = new Map(sizes)
    const decay = options.decay ?? (() => true)
    for (const [name, n] of this.sizes) {
      this.m.set(name, new Float32Array(n))
      this.v.set(name, new Float32Array(n))
      this.decays.set(name, decay(name))
    }
  }

  /** Steps taken so far (the `t` of the bias corrections). */
  get stepCount(): number {
    return this.t
  }

  /**
   * Updates `params` in place from `grads` (which are read, not modified: the clip scale is
   * applied on the fly). Clipping follows clip_grad_norm_: scale = min(1, clip / (norm + 1e-6)).
   * Per element: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g²; p -= lr·wd·p (decoupled, only where
   * decay(name)); p -= lr · m̂ / (√v̂ + eps) with m̂ = m/(1-b1^t), v̂ = v/(1-b2^t).
   * Throws, before changing anything, on mismatched names/sizes or a non-finite gradient norm.
   *
   * @example
   * const { gradNorm, clipScale, step } = opt.step(params, grads, { ...defaultAdamParams, gradClipNorm: 1 })
   */
  step(params: ReadonlyMap<string, Float32Array>, grads: ReadonlyMap<string, Float32Array>, p: AdamParams): StepResult {
    checkParams(p)
    checkArrays("params", this.sizes, params)
    checkArrays("grads", this.sizes, grads)

    let sumSq = 0
    for (const name of this.sizes.keys()) {
      const g = grads.get(name)!
      for (let i = 0; i < g.length; i++) {
        const x = g[i]!
        sumSq += x * x
      }
    }
    const gradNorm = Math.sqrt(sumSq)
    // A NaN/Inf gradient would silently poison every parameter and moment; refuse it instead.
    if (!Number.isFinite(gradNorm)) {
      const bad = [...this.sizes.keys()].filter((name) => grads.get(name)!.some((x) => !Number.isFinite(x)))
      throw new Error(`AdamW: non-finite gradient norm (${gradNorm}); non-finite values in ${bad.map((k) => JSON.stringify(k)).join(", ")}`)
    }
    const clipScale = p.gradClipNorm > 0 ? Math.min(1, p.gradClipNorm / (gradNorm + 1e-6)) : 1

    const t = ++this.t
    const { learningRate: lr, beta1: b1, beta2: b2, eps } = p
    const c1 = 1 - b1
    const c2 = 1 - b2
    // Folding the bias corrections into two constants, as torch does:
    // lr·m̂/(√v̂+eps) = (lr/bc1)·m / (√v/√bc2 + eps).
    const stepSize = lr / (1 - b1 ** t)
    const invSqrtBc2 = 1 / Math.sqrt(1 - b2 ** t)
    for (const name of this.sizes.keys()) {
      const w = params.get(name)!
      const g = grads.get(name)!
      const m = this.m.get(name)!
      const v = this.v.get(name)!
      const keep = this.decays.get(name)! ? 1 - lr * p.weightDecay : 1
      for (let i = 0; i < w.length; i++) {
        const gi = g[i]! * clipScale
        const mi = b1 * m[i]! + c1 * gi
        const vi = b2 * v[i]! + c2 * gi * gi
        m[i] = mi
        v[i] = vi
        w[i] = w[i]! * keep - (stepSize * mi) / (Math.sqrt(vi) * invSqrtBc2 + eps)
      }
    }
    return { gradNorm, clipScale, step: t }
  }

  /**
   * A snapshot of the optimizer state for Safetensors: F32 tensors `m.<name>` and `v.<name>`
   * (copies, so later steps do not change it) and metadata `{ adamw_step: "<t>" }`.
   * `{ views: true }`: the live moment arrays instead of copies, for a caller that writes them
   * before the next step (a checkpoint save: no second copy of the state in memory).
   *
   * @example
   * const { tensors, metadata } = opt.state()
   * await Safetensors.write("ckpt/optimizer.safetensors", tensors, metadata)
   */
  state(options: { readonly views?: boolean } = {}): { tensors: Record<string, Tensor>; metadata: Record<string, string> } {
    const tensors: Record<string, Tensor> = {}
    const take = (a: Float32Array) => (options.views === true ? a : a.slice())
    for (const [name, n] of this.sizes) {
      tensors[`m.${name}`] = { dtype: "F32", shape: [n], data: take(this.m.get(name)!) }
      tensors[`v.${name}`] = { dtype: "F32", shape: [n], data: take(this.v.get(name)!) }
    }
    return { tensors, metadata: { [STEP_KEY]: String(this.t) } }
  }

  /**
   * Rebuilds an optimizer from `state()` output (e.g. after Safetensors.read), checking that it
   * holds exactly `m.`/`v.` F32 tensors of the given sizes and a valid step count.
   *
   * @example
   * const opt = AdamW.fromState(sizes, await Safetensors.read("ckpt/optimizer.safetensors"))
   */
  static fromState(
    sizes: ReadonlyMap<string, number>,
    state: { readonly tensors: Readonly<Record<string, Tensor>>; readonly metadata: Readonly<Record<string, string>> },
    options: AdamWOptions = {}
  ): AdamW {
    const opt = new AdamW(sizes, options)
    const rawStep = state.metadata[STEP_KEY]
    if (rawStep === undefined) throw new Error(`AdamW state: metadata has no "${STEP_KEY}"`)
    if (!/^(0|[1-9][0-9]*)$/.test(rawStep) || !Number.isSafeInteger(Number(rawStep))) {
      throw new Error(`AdamW state: "${STEP_KEY}" must be a non-negative integer, got ${JSON.stringify(rawStep)}`)
    }
    const expected = new Set<string>()
    for (const [name, n] of sizes) {
      for (const [prefix, target] of [["m.", opt.m], ["v.", opt.v]] as const) {
        const key = prefix + name
        expected.add(key)
        const t = state.tensors[key]
        if (t === undefined || !Object.hasOwn(state.tensors, key)) throw new Error(`AdamW state: missing tensor ${JSON.stringify(key)}`)
        if (t.dtype !== "F32" || !(t.data instanceof Float32Array)) {
          throw new Error(`AdamW state: tensor ${JSON.stringify(key)} must be F32, got ${t.dtype}`)
        }
        if (t.data.length !== n) throw new Error(`AdamW state: tensor ${JSON.stringify(key)} has ${t.data.length} elements, expected ${n}`)
        target.get(name)!.set(t.data)
      }
    }
    const extra = Object.keys(state.tensors).filter((k) => !expected.has(k))
    if (extra.length > 0) {
      throw new Error(`AdamW state: unexpected tensors ${extra.map((k) => JSON.stringify(k)).join(", ")} (not parameters of this optimizer)`)
    }
    opt.t = Number(rawStep)
    return opt
  }
}
