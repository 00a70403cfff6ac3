/**
 * Datums and metrics as Tinker's wire carries them, pure: a datum's JSON (with the skyrl
 * flavour's loss-mask weights and S_d·K advantage scaling, TinkerPolicy.ts's module doc), its
 * checks, the client-side loss metrics, metric merging across chunks, and the SDK's chunking.
 */
import { engineLoss } from "../../grpo/TokenLoss.ts"
import { type Datum, type LossFn, PolicyError } from "../PolicyEngine.ts"
import * as Wire from "./Wire.ts"

/** hosted Tinker, or a self-hosted SkyRL tx (its loss and metric conventions differ). */
export type TinkerFlavour = "hosted" | "skyrl"

/** The SDK's chunking: at most 1024 datums and about 5 MB per forward_backward request. */
export const MAX_CHUNK_DATUMS = 1024
export const MAX_CHUNK_BYTES = 5_000_000

const fail = (reason: "BadInput" | "ContextOverflow", message: string) => new PolicyError({ reason, message, retryable: false })

export const tensor = (data: ArrayLike<number>, dtype: Wire.TensorDtype): Wire.TensorData => ({
  data: Array.from(data),
  dtype,
  shape: [data.length]
})

/** A token sequence as a ModelInput of one text chunk. */
export const modelInput = (tokens: ArrayLike<number>): Wire.ModelInput => ({ chunks: [{ type: "encoded_text", tokens: Array.from(tokens) }] })

/** Positions that take an RL loss: a non-zero advantage or sampler logprob. */
const lossMask = (d: Datum): Float32Array =>
  Float32Array.from({ length: d.modelInput.length }, (_, t) => ((d.advantages?.[t] ?? 0) !== 0 || (d.logprobs?.[t] ?? 0) !== 0 ? 1 : 0))

/** Checks the per-token arrays `loss` reads; throws a BadInput PolicyError. */
export const checkDatum = (d: Datum, loss: LossFn, index: number, maxContext: number | undefined): void => {
  const n = d.modelInput.length
  if (n === 0) throw fail("BadInput", `datum ${index}: empty modelInput`)
  if (maxContext !== undefined && n + 1 > maxContext) throw fail("ContextOverflow", `datum ${index}: ${n + 1} tokens exceeds the model's context (${maxContext})`)
  if (d.targetTokens.length !== n) throw fail("BadInput", `datum ${index}: targetTokens has ${d.targetTokens.length} entries, modelInput ${n}`)
  const need = loss.name === "cross_entropy" ? (["weights"] as const) : (["logprobs", "advantages"] as const)
  for (const name of need) {
    const a = d[name]
    if (a === undefined) throw fail("BadInput", `datum ${index}: loss ${loss.name} needs ${name}`)
    if (a.length !== n) throw fail("BadInput", `datum ${index}: ${name} has ${a.length} entries, modelInput ${n}`)
  }
}

/**
 * One datum as Tinker JSON (§1.4). In the skyrl flavour RL datums get `weights` = their loss
 * mask and advantages scaled by S_d·K (module doc), K = `datumsInCall`.
 */
export const wireDatum = (d: Datum, loss: LossFn, flavour: TinkerFlavour, datumsInCall: number): Wire.Datum => {
  const inputs: Record<string, Wire.TensorData> = { target_tokens: tensor(d.targetTokens, "int64") }
  if (loss.name === "cross_entropy") {
    inputs.weights = tensor(d.weights!, "float32")
  } else {
    inputs.logprobs = tensor(d.logprobs!, "float32")
    if (flavour === "skyrl") {
      const mask = lossMask(d)
      const s = mask.reduce((a, x) => a + x, 0)
      const scale = s * datumsInCall
      inputs.advantages = tensor(Float32Array.from(d.advantages!, (a) => a * scale), "float32")
      inputs.weights = tensor(mask, "float32")
    } else {
      inputs.advantages = tensor(d.advantages!, "float32")
    }
  }
  return { model_input: modelInput(d.modelInput), loss_fn_inputs: inputs }
}

/** The client-side metrics of one datum: loss (SUM semantics), loss tokens, clipped tokens. */
export const datumMetrics = (d: Datum, loss: LossFn, lp: Float32Array) => {
  const n = d.modelInput.length
  let tokens = 0
  for (let t = 0; t < n; t++) {
    if ((d.weights?.[t] ?? 0) !== 0 && loss.name === "cross_entropy") tokens++
    else if (loss.name !== "cross_entropy" && (d.advantages?.[t] ?? 0) !== 0) tokens++
  }
  if (loss.name === "cross_entropy") {
    let l = 0
    for (let t = 0; t < n; t++) l -= (d.weights![t] ?? 0) * (lp[t] ?? 0)
    return { loss: l, tokens, clipped: 0 }
  }
  const bounds = loss.name === "ppo" ? { clipLow: loss.clipLow, clipHigh: loss.clipHigh } : { clipLow: 0, clipHigh: Number.POSITIVE_INFINITY }
  const r = engineLoss({ logprobs: lp, oldLogprobs: d.logprobs!, advantages: d.advantages!, ...bounds })
  return { loss: r.loss, tokens, clipped: loss.name === "ppo" ? r.clipped : 0 }
}

/** Merges Tinker metrics by the suffix after `:` (sum, min, max; others: mean of the chunks). */
export const mergeMetrics = (all: ReadonlyArray<Readonly<Record<string, number>>>): Record<string, number> => {
  const out: Record<string, number> = {}
  const counts: Record<string, number> = {}
  for (const m of all) {
    for (const [k, v] of Object.entries(m)) {
      const kind = k.split(":").at(-1)
      const prev = out[k]
      counts[k] = (counts[k] ?? 0) + 1
      if (prev === undefined) out[k] = v
      else if (kind === "sum") out[k] = prev + v
      else if (kind === "min") out[k] = Math.min(prev, v)
      else if (kind === "max") out[k] = Math.max(prev, v)
      else out[k] = prev + (v - prev) / counts[k]!
    }
  }
  return out
}

/**
 * The gradient norm in optim_step's metrics: Wire.GRAD_NORM or SkyRL JAX's Wire.SKYRL_GRAD_NORM,
 * with or without a `:<reduction>` suffix (the Tinker metric convention); NaN when none is
 * reported (the hosted name is not confirmed).
 */
export const gradNormOf = (metrics: Readonly<Record<string, unknown>>): number => {
  for (const [k, v] of Object.entries(metrics)) {
    const name = k.split(":")[0]
    if ((name === Wire.GRAD_NORM || name === Wire.SKYRL_GRAD_NORM) && typeof v === "number") return v
  }
  return Number.NaN
}

/** Greedy chunks of at most MAX_CHUNK_DATUMS datums and about MAX_CHUNK_BYTES of JSON. */
export const chunked = <A>(items: ReadonlyArray<A>): Array<Array<A>> => {
  const out: Array<Array<A>> = []
  let cur: Array<A> = []
  let bytes = 0
  for (const item of items) {
    const size = JSON.stringify(item).length + 1
    if (cur.length > 0 && (cur.length >= MAX_CHUNK_DATUMS || bytes + size > MAX_CHUNK_BYTES)) {
      out.push(cur)
      cur = []
      bytes = 0
    }
    cur.push(item)
    bytes += size
  }
  if (cur.length > 0) out.push(cur)
  return out
}
