/**
 * The embedded story model, defined once: a decoder-only transformer (Llama layout: RMSNorm,
 * rotary position embeddings, causal multi-head attention, SwiGLU MLP, LM head tied to the token
 * embedding). The graphs the engine runs are built from the same `layer` function below, but for
 * decoding, which rearranges that model for one token per row and baked weights:
 *
 * - `scoreGraph`:   teacher forcing; per-token logprobs of the targets and entropies.
 * - `trainGraph`:   the same forward pass, a per-token loss head, and the backward pass to every weight.
 * - `prefillGraph`: a prompt batch; the keys and values of every position and the last logits.
 * - `decodeGraph`:  one new token per row against a key/value cache; logits and the new keys/values
 *                   (checked against teacher forcing: test/StoryModel.test.ts).
 *
 * Weights are graph inputs named as in `paramShapes`, so an optimizer step needs no rebuild.
 * Linear weights are stored [in, out] (x @ W). Tensor layout is [batch B, heads H, time T, head dim D].
 *
 * @example
 * const config = { ...defaultConfig, vocabSize: tok.vocabSize }
 * const weights = initWeights(config, "seed")
 * const run = await Onnx.load(trainGraph(config))
 */
import { Schema } from "effect"
import { gradients } from "./graph/Autodiff.ts"
import { Graph, type DType, type Value } from "./graph/Graph.ts"
import { seeded } from "../internal/random.ts"

/** Hyper-parameters; stored as `config.json` next to the weights. */
export const ModelConfig = Schema.Struct({
  architecture: Schema.Literal("polaris-llama"),
  vocabSize: Schema.Int,
  dModel: Schema.Int,
  nLayers: Schema.Int,
  nHeads: Schema.Int,
  dFF: Schema.Int,
  maxContext: Schema.Int,
  ropeTheta: Schema.Number,
  normEps: Schema.Number
})
export type ModelConfig = typeof ModelConfig.Type

export const defaultConfig: ModelConfig = {
  architecture: "polaris-llama",
  vocabSize: 4096,
  dModel: 128,
  nLayers: 4,
  nHeads: 4,
  dFF: 352,
  maxContext: 2048,
  ropeTheta: 10000,
  normEps: 1e-5
}

/** Masked attention logits; exp(-1e9 - max) is exactly 0 in float32 and float64. */
export const MASKED = -1e9

export const headDim = (c: ModelConfig): number => c.dModel / c.nHeads

/** Every weight, in a fixed order: name and shape. */
export const paramShapes = (c: ModelConfig): Array<readonly [string, ReadonlyArray<number>]> => {
  const d = c.dModel
  const out: Array<readonly [string, ReadonlyArray<number>]> = [["embed", [c.vocabSize, d]]]
  for (let l = 0; l < c.nLayers; l++) {
    out.push(
      [`layers.${l}.attn_norm`, [d]],
      [`layers.${l}.wq`, [d, d]],
      [`layers.${l}.wk`, [d, d]],
      [`layers.${l}.wv`, [d, d]],
      [`layers.${l}.wo`, [d, d]],
      [`layers.${l}.mlp_norm`, [d]],
      [`layers.${l}.w_gate`, [d, c.dFF]],
      [`layers.${l}.w_up`, [d, c.dFF]],
      [`layers.${l}.w_down`, [c.dFF, d]]
    )
  }
  out.push(["norm", [d]])
  return out
}

export const paramCount = (c: ModelConfig): number =>
  paramShapes(c).reduce((n, [, s]) => n + s.reduce((p, q) => p * q, 1), 0)

/** Norm gains take no weight decay (as in GPT-2/Llama training recipes). */
export const decays = (name: string): boolean => !name.endsWith("_norm") && name !== "norm"

/**
 * GPT-2 initialisation: N(0, 0.02); the two projections that write into the residual stream are
 * scaled by 1/sqrt(2 * layers) so the stream's variance does not grow with depth; norm gains 1.
 */
export const initWeights = (c: ModelConfig, seed: string): Map<string, Float32Array> => {
  const u = seeded(`init:${seed}`)
  const normal = (): number => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u())
  const weights = new Map<string, Float32Array>()
  for (const [name, shape] of paramShapes(c)) {
    const a = new Float32Array(shape.reduce((p, q) => p * q, 1))
    if (!decays(name)) a.fill(1)
    else {
      const std = name.endsWith(".wo") || name.endsWith(".w_down") ? 0.02 / Math.sqrt(2 * c.nLayers) : 0.02
      for (let i = 0; i < a.length; i++) a[i] = std * normal()
    }
    weights.set(name, a)
  }
  return weights
}

// ---- the model ------------------------------------------------------------------------------

type Weights = Readonly<Record<string, Value>>

const weightInputs = (g: Graph, c: ModelConfig, dtype: DType): Weights =>
  Object.fromEntries(paramShapes(c).map(([name, shape]) => [name, g.input(name, dtype, shape)]))

/** x / sqrt(mean(x²) + eps) * gain, over the last axis. */
const rmsNorm = (g: Graph, c: ModelConfig, x: Value, gain: Value): Value =>
  g.mul(g.div(x, g.sqrt(g.add(g.reduceMean(g.mul(x, x), [-1], true), g.scalar(x, c.normEps)))), gain)

const silu = (g: Graph, x: Value): Value => g.mul(x, g.sigmoid(x))

/**
 * Rotary embeddings (the rotate-half form of GPT-NeoX/Llama): angle_i = pos * theta^(-2i/D) for
 * i < D/2, cos/sin tables computed in the graph from float positions ([T], or [B, T] per row).
 */
const rotary = (g: Graph, c: ModelConfig, positions: Value) => {
  const D = headDim(c)
  const invFreq = Array.from({ length: D / 2 }, (_, i) => Math.pow(c.ropeTheta, (-2 * i) / D))
  const angles = g.mul(g.unsqueeze(positions, [-1]), g.constant(invFreq, positions.dtype, [D / 2]))
  let emb = g.concat([angles, angles], -1) // [.., T, D]
  if (positions.shape.length === 2) emb = g.unsqueeze(emb, [1]) // [B, 1, T, D] to broadcast over heads
  const cos = g.cos(emb)
  const sin = g.sin(emb)
  const rotateHalf = (x: Value): Value =>
    g.concat([g.neg(g.slice(x, [D / 2], [D], [-1])), g.slice(x, [0], [D / 2], [-1])], -1)
  return (x: Value): Value => g.add(g.mul(x, cos), g.mul(rotateHalf(x), sin))
}

/** [B, T, d] -> [B, H, T, D] and back. */
const splitHeads = (g: Graph, c: ModelConfig, x: Value): Value =>
  g.transpose(g.reshape(x, [0, 0, c.nHeads, headDim(c)]), [0, 2, 1, 3])
const mergeHeads = (g: Graph, c: ModelConfig, x: Value): Value =>
  g.reshape(g.transpose(x, [0, 2, 1, 3]), [0, 0, c.dModel])

/** Attention over already-rotated q, k and v ([B, H, T, D]); returns [B, H, T, D]. */
type Attend = (q: Value, k: Value, v: Value) => Value

/** One transformer block: x + attn(norm(x)), then x + mlp(norm(x)). */
const layer = (g: Graph, c: ModelConfig, w: Weights, l: number, x: Value, rope: (x: Value) => Value, attend: Attend): Value => {
  const p = (name: string): Value => w[`layers.${l}.${name}`]!
  const h = rmsNorm(g, c, x, p("attn_norm"))
  const q = rope(splitHeads(g, c, g.matmul(h, p("wq"))))
  const k = rope(splitHeads(g, c, g.matmul(h, p("wk"))))
  const v = splitHeads(g, c, g.matmul(h, p("wv")))
  x = g.add(x, g.matmul(mergeHeads(g, c, attend(q, k, v)), p("wo")))
  const h2 = rmsNorm(g, c, x, p("mlp_norm"))
  const mlp = g.matmul(g.mul(silu(g, g.matmul(h2, p("w_gate"))), g.matmul(h2, p("w_up"))), p("w_down"))
  return g.add(x, mlp)
}

/** softmax(q kᵀ / sqrt(D) + mask) v, the mask additive ([T, T] causal, 0 or MASKED). */
const causalAttention = (g: Graph, c: ModelConfig, mask: Value, keys: Array<Value>, values: Array<Value>): Attend =>
  (q, k, v) => {
    keys.push(k)
    values.push(v)
    const scores = g.add(g.mul(g.matmul(q, g.transposeLast2(k)), g.scalar(q, 1 / Math.sqrt(headDim(c)))), mask)
    return g.matmul(g.softmax(scores), v)
  }

/** The model up to the final norm: [B, T] tokens -> [B, T, d] hidden states, keys and values per layer. */
const backbone = (g: Graph, c: ModelConfig, w: Weights, tokens: Value, positions: Value, mask: Value) => {
  const rope = rotary(g, c, positions)
  const keys: Array<Value> = []
  const values: Array<Value> = []
  let x = g.gather(w["embed"]!, tokens)
  for (let l = 0; l < c.nLayers; l++) x = layer(g, c, w, l, x, rope, causalAttention(g, c, mask, keys, values))
  return { hidden: rmsNorm(g, c, x, w["norm"]!), keys, values }
}

/** Tied LM head: hidden @ embedᵀ. */
const logitsOf = (g: Graph, w: Weights, hidden: Value): Value => g.matmul(hidden, g.transposeLast2(w["embed"]!))

/** Inputs shared by the teacher-forced graphs: tokens [B, T], positions [T], mask [T, T]. */
const sequenceInputs = (g: Graph, dtype: DType, targets: ReadonlyArray<string> = ["B", "T"]) => ({
  tokens: g.input("tokens", "int64", ["B", "T"]),
  positions: g.input("positions", dtype, ["T"]),
  mask: g.input("mask", dtype, ["T", "T"]),
  // Flat index (position)*V + target into the flat log-softmax: a gather that has a gradient rule.
  targets: g.input("target_index", "int64", targets)
})

const targetLogprobs = (g: Graph, c: ModelConfig, w: Weights, inputs: ReturnType<typeof sequenceInputs>) => {
  const { hidden } = backbone(g, c, w, inputs.tokens, inputs.positions, inputs.mask)
  const logits = logitsOf(g, w, hidden)
  const logp = g.logSoftmax(logits) // [B, T, V]
  return { logits, logp, lp: g.gather(g.reshape(logp, [-1]), inputs.targets) }
}

/** Teacher forcing: `logprobs` [B, T] of the targets and `entropy` [B, T] of each next-token distribution. */
export const scoreGraph = (c: ModelConfig, dtype: DType = "float32"): Graph => {
  const g = new Graph()
  const w = weightInputs(g, c, dtype)
  const { logp, lp } = targetLogprobs(g, c, w, sequenceInputs(g, dtype))
  g.output("logprobs", lp)
  g.output("entropy", g.neg(g.reduceSum(g.mul(g.exp(logp), logp), [-1])))
  return g
}

/**
 * The training graph. Every engine loss is a sum over tokens of a function of the token's logprob
 * lp, so one loss head covers all three (Tinker's definitions, ratio r = exp(lp - lp_old)):
 *
 *   ℓ = -w·lp - min(r·A, clip(r, lo, hi)·A)
 *
 * cross_entropy is A = 0; importance_sampling is lo = 0, hi = ∞; ppo uses the ratio bounds.
 * dℓ/dlp = -w - [r·A ≤ clip(r)·A]·r·A is computed in the graph from lp and fed as the seed of the
 * backward pass of Σ seed·lp, so the backward pass itself never depends on the loss.
 *
 * The LM head runs only at the N positions `scored` names (flat indices b*T + t into the [B, T]
 * batch): a GRPO step's prompts and padding carry no loss, and at story-1m's V = 4,096 the head
 * and its softmax are a third of a position's work. The backbone still runs over every position
 * (later positions attend to them). `target_index` [N] is the flat index n*V + target into the
 * [N*V] log-softmax; `weights`, `old_logprobs` and `advantages` are [N].
 *
 * Outputs: `logprobs` [N], `loss` [N], `clipped` [N] (1 where the clipped term is taken and passes
 * no gradient), and `grad.<name>` for every weight.
 */
export const trainGraph = (c: ModelConfig, dtype: DType = "float32"): Graph => {
  const g = new Graph()
  const w = weightInputs(g, c, dtype)
  const inputs = sequenceInputs(g, dtype, ["N"])
  const scored = g.input("scored", "int64", ["N"])
  const weight = g.input("weights", dtype, ["N"])
  const oldLp = g.input("old_logprobs", dtype, ["N"])
  const adv = g.input("advantages", dtype, ["N"])
  const lo = g.input("clip_low", dtype, [])
  const hi = g.input("clip_high", dtype, [])
  const { hidden } = backbone(g, c, w, inputs.tokens, inputs.positions, inputs.mask)
  const logits = logitsOf(g, w, g.gather(g.reshape(hidden, [-1, c.dModel]), scored)) // [N, V]
  const logp = g.logSoftmax(logits)
  const lp = g.gather(g.reshape(logp, [-1]), inputs.targets)

  const r = g.exp(g.sub(lp, oldLp))
  const clip = (x: Value): Value => {
    const above = g.where(g.greater(x, hi), hi, x)
    return g.where(g.less(above, lo), lo, above)
  }
  const unclipped = g.mul(r, adv)
  const clipped = g.mul(clip(r), adv)
  const active = g.less(clipped, unclipped) // the clipped (constant) term is the min: no gradient
  const zero = g.scalar(lp, 0)
  const surrogate = g.where(active, clipped, unclipped)
  g.output("loss", g.neg(g.add(g.mul(weight, lp), surrogate)))
  g.output("clipped", g.cast(active, dtype))
  g.output("logprobs", lp)

  const seed = g.neg(g.add(weight, g.where(active, zero, unclipped)))
  // d(Σ seed·lp)/dlogits = seed·(onehot(target) − softmax(logits)), written out: −exp(logp)·seed,
  // then seed added at each target. The generic rules (Gather, LogSoftmax) would scatter seed into
  // zeros [N, V] and subtract a product from it: three more passes over the largest tensor.
  const dlogits = g.reshape(
    g.scatterNDAdd(g.reshape(g.mul(g.exp(logp), g.unsqueeze(g.neg(seed), [-1])), [-1]), g.unsqueeze(inputs.targets, [-1]), seed),
    { shape: g.shapeOf(logits), as: logits.shape }
  )
  const grads = gradients(g, { output: logits, seed: dlogits, wrt: paramShapes(c).map(([name]) => w[name]!) })
  paramShapes(c).forEach(([name], i) => g.output(`grad.${name}`, grads[i]!))
  return g
}

/**
 * Prefill: a right-padded prompt batch tokens [B, T] with positions [T] and the causal mask;
 * `last_index` [B] is b*T + (length_b - 1). Outputs `logits` [B, V] at each row's last prompt
 * token and their softmax `probs`, and per layer `key.l` [B, H, D, T] (transposed: the cache keeps keys as Kᵀ so decoding
 * multiplies without a transpose) and `value.l` [B, H, T, D].
 */
export const prefillGraph = (c: ModelConfig, dtype: DType = "float32"): Graph => {
  const g = new Graph()
  const w = weightInputs(g, c, dtype)
  const tokens = g.input("tokens", "int64", ["B", "T"])
  const positions = g.input("positions", dtype, ["T"])
  const mask = g.input("mask", dtype, ["T", "T"])
  const last = g.input("last_index", "int64", ["B"])
  const { hidden, keys, values } = backbone(g, c, w, tokens, positions, mask)
  const logits = logitsOf(g, w, g.gather(g.reshape(hidden, [-1, c.dModel]), last))
  g.output("logits", logits)
  g.output("probs", g.softmax(logits)) // vectorized here, so the sampler's common path does no exp
  keys.forEach((k, l) => g.output(`key.${l}`, g.transposeLast2(k)))
  values.forEach((v, l) => g.output(`value.${l}`, v))
  return g
}

/**
 * The rotate-half map of `rotary` as a matrix: x R = rotateHalf(x) on each head's D dims, a signed
 * permutation (so x (W R) is exactly rotateHalf(x W)). [d, d].
 */
const rotateHalfMatrix = (c: ModelConfig): Array<number> => {
  const d = c.dModel
  const D = headDim(c)
  const r = new Array<number>(d * d).fill(0)
  for (let h = 0; h < c.nHeads; h++) {
    for (let j = 0; j < D; j++) {
      const col = h * D + j
      if (j < D / 2) r[(col + D / 2) * d + col] = -1
      else r[(col - D / 2) * d + col] = 1
    }
  }
  return r
}

/**
 * One decoding step for B rows: `tokens` [B, 1] at `positions` [B, 1] (int64), attending to the
 * cache `past_key.l` [B, H, D, C] and `past_value.l` [B, H, C, D] under `mask` [B, 1, 1, C] (0
 * where a cache slot holds a real earlier token of that row, MASKED elsewhere), plus the token
 * itself. The cache is passed in, never copied through the graph: only the new `key.l` /
 * `value.l` [B, H, 1, D] come out, and the caller writes them into its cache buffers. Also
 * `logits` and `probs` [B, V].
 *
 * The same model as `layer`, arranged for one token per row and for weights baked into the
 * session (StoryModel.sampler), where onnxruntime folds every product of weights and constants
 * once: q, k, v and the rotated halves of q and k in one product with [Wq·s | Wq R·s | Wk | Wk R | Wv]
 * (s = 1/sqrt(D), rotate-half as the matrix R), and rotary tables gathered by position. A step
 * runs about half the graph nodes of `layer`'s form, and at a handful of rows their count, not
 * the arithmetic, is what a step costs.
 */
export const decodeGraph = (c: ModelConfig, dtype: DType = "float32"): Graph => {
  const g = new Graph()
  const w = weightInputs(g, c, dtype)
  const { nHeads: H, dModel: d } = c
  const D = headDim(c)
  const tokens = g.input("tokens", "int64", ["B", 1])
  const positions = g.input("positions", "int64", ["B", 1])
  const mask = g.input("mask", dtype, ["B", 1, 1, "C"])
  // [cos | sin] per position, [maxContext, 2, 1, D], angles rounded as `rotary` rounds them (float32).
  const invFreq = Array.from({ length: D / 2 }, (_, i) => Math.fround(Math.pow(c.ropeTheta, (-2 * i) / D)))
  const tables: Array<number> = []
  for (let p = 0; p < c.maxContext; p++) {
    const angles = Array.from({ length: D }, (_, i) => Math.fround(p * invFreq[i % (D / 2)]!))
    tables.push(...angles.map(Math.cos), ...angles.map(Math.sin))
  }
  const rope = g.gather(g.constant(tables, dtype, [c.maxContext, 2, 1, D]), positions) // [B, 1, 2, 1, D]
  const R = g.constant(rotateHalfMatrix(c), dtype, [d, d])
  const scale = g.constant(1 / Math.sqrt(D), dtype)
  let x = g.gather(w["embed"]!, tokens) // [B, 1, d]
  for (let l = 0; l < c.nLayers; l++) {
    const p = (name: string): Value => w[`layers.${l}.${name}`]!
    const wq = g.mul(p("wq"), scale)
    const qkv = g.matmul(rmsNorm(g, c, x, p("attn_norm")), g.concat([wq, g.matmul(wq, R), p("wk"), g.matmul(p("wk"), R), p("wv")], 1)) // [B, 1, 5d]
    // [B, (q | k), (x | x R), H, D] times [cos | sin], summed: x cos + rotateHalf(x) sin.
    const rotated = g.reduceSum(g.mul(g.reshape(g.slice(qkv, [0], [4 * d], [-1]), [0, 2, 2, H, D]), rope), [2]) // [B, 2, H, D]
    // [B, 1, H, D] and [B, H, 1, D] have the same layout: one token per row needs no transpose.
    const q = g.reshape(g.slice(rotated, [0], [1], [1]), [0, H, 1, D])
    const k = g.reshape(g.slice(rotated, [1], [2], [1]), [0, H, 1, D])
    const v = g.reshape(g.slice(qkv, [4 * d], [5 * d], [-1]), [0, H, 1, D])
    g.output(`key.${l}`, k)
    g.output(`value.${l}`, v)
    const pastK = g.input(`past_key.${l}`, dtype, ["B", H, D, "C"])
    const pastV = g.input(`past_value.${l}`, dtype, ["B", H, "C", D])
    const sPast = g.add(g.matmul(q, pastK), mask) // [B, H, 1, C]
    const sNew = g.reduceSum(g.mul(q, k), [-1], true) // [B, H, 1, 1]
    const probs = g.softmax(g.concat([sPast, sNew], -1))
    const pPast = g.slice(probs, [0], [-1], [-1])
    const pNew = g.slice(probs, [-1], [Number.MAX_SAFE_INTEGER], [-1])
    const attended = g.add(g.matmul(pPast, pastV), g.mul(pNew, v)) // [B, H, 1, D]
    x = g.add(x, g.matmul(g.reshape(attended, [0, 1, d]), p("wo")))
    const h2 = rmsNorm(g, c, x, p("mlp_norm"))
    x = g.add(x, g.matmul(g.mul(silu(g, g.matmul(h2, p("w_gate"))), g.matmul(h2, p("w_up"))), p("w_down")))
  }
  const logits = logitsOf(g, w, g.reshape(rmsNorm(g, c, x, w["norm"]!), [-1, c.dModel]))
  g.output("logits", logits)
  g.output("probs", g.softmax(logits))
  return g
}

/**
 * The model as a standard decoder export, in the layout of Hugging Face Optimum's
 * `text-generation-with-past` ONNX models, so tools that run such exports run this one and
 * ExternalModel.ts (which runs such exports) is tested against it:
 *
 * - inputs `input_ids` [B, S], `attention_mask` [B, P+S] (1 real, 0 padding), `position_ids`
 *   [B, S], and per layer `past_key_values.l.key` / `.value` [B, H, P, D];
 * - outputs `logits` [B, S, V] and `present.l.key` / `.value` [B, H, P+S, D].
 */
export const standardDecoderGraph = (c: ModelConfig, dtype: DType = "float32"): Graph => {
  const g = new Graph()
  const w = weightInputs(g, c, dtype)
  const D = headDim(c)
  const ids = g.input("input_ids", "int64", ["batch_size", "sequence_length"])
  const attention = g.input("attention_mask", "int64", ["batch_size", "total_sequence_length"])
  const positions = g.input("position_ids", "int64", ["batch_size", "sequence_length"])
  // Key j is hidden from query i (at absolute index P + i) when j > P + i, or when j is padding.
  const int = (v: number) => g.constant(v, "int64", [])
  const total = g.gather(g.shapeOf(attention), int(1))
  const keyIndex = g.range(int(0), total, int(1))
  const queryIndex = g.range(g.sub(total, g.gather(g.shapeOf(ids), int(1))), total, int(1))
  const future = g.greater(g.unsqueeze(keyIndex, [0]), g.unsqueeze(queryIndex, [1])) // [S, P+S]
  const padding = g.unsqueeze(g.equal(attention, int(0)), [1, 2]) // [B, 1, 1, P+S]
  const masked = g.constant(MASKED, dtype)
  const mask = g.where(padding, masked, g.where(future, masked, g.constant(0, dtype)))
  const rope = rotary(g, c, g.cast(positions, dtype))
  let x = g.gather(w["embed"]!, ids)
  for (let l = 0; l < c.nLayers; l++) {
    const pastK = g.input(`past_key_values.${l}.key`, dtype, ["batch_size", c.nHeads, "past_sequence_length", D])
    const pastV = g.input(`past_key_values.${l}.value`, dtype, ["batch_size", c.nHeads, "past_sequence_length", D])
    x = layer(g, c, w, l, x, rope, (q, k, v) => {
      const keys = g.concat([pastK, k], 2)
      const values = g.concat([pastV, v], 2)
      g.output(`present.${l}.key`, keys)
      g.output(`present.${l}.value`, values)
      const scores = g.add(g.mul(g.matmul(q, g.transposeLast2(keys)), g.scalar(q, 1 / Math.sqrt(D))), mask)
      return g.matmul(g.softmax(scores), values)
    })
  }
  g.output("logits", logitsOf(g, w, rmsNorm(g, c, x, w["norm"]!)))
  return g
}
