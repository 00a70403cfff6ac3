/**
 * Token losses of GRPO on an engine whose losses are token SUMS (ARCHITECTURE.md §7, PolicyEngine.ts).
 *
 * The engine's losses, per datum, summed over tokens t (r_t = exp(lp_t − lp_old,t)):
 *
 *   cross_entropy        ℓ = Σ_t −w_t·lp_t
 *   importance_sampling  ℓ = Σ_t −r_t·A_t
 *   ppo                  ℓ = Σ_t −min(r_t·A_t, clip(r_t, clipLow, clipHigh)·A_t)
 *
 * with RATIO bounds clipLow = 1 − ε_low, clipHigh = 1 + ε_high. TRL's loss types are the same token
 * loss ℓ_it aggregated differently (huggingface/trl, trl/trainer/grpo_trainer.py,
 * GRPOTrainer._compute_loss, read at commit d2b69d769dab6f77acbfd33252bcd7d22765571b; dapo from
 * TRL ≥ 0.22), B sequences, |o_i| completion tokens of sequence i:
 *
 *   grpo     L = (1/B) Σ_i (1/|o_i|) Σ_t ℓ_it            mean over sequences of token means
 *   bnpo     L = Σ_i Σ_t ℓ_it / Σ_i |o_i|               tokens in the local batch
 *   dapo     L = Σ_i Σ_t ℓ_it / (num_items_in_batch / num_processes)
 *                                                       tokens in the global batch; one process: = bnpo
 *   dr_grpo  L = Σ_i Σ_t ℓ_it / (B · max_completion_length)
 *
 * (TRL clamps |o_i| and Σ|o| to at least 1; later versions also divide by the gradient-accumulation
 * steps, 1 here.) Each is L = Σ_i c_i · Σ_t ℓ_it for a per-sequence factor c_i > 0 (`sequenceScale`).
 * We get it from the engine's SUM loss by scaling the advantages instead of the loss: the ppo term
 * is positively homogeneous in A, for c > 0
 *
 *   −min(r·cA, clip(r)·cA) = −c·min(r·A, clip(r)·A)
 *
 * (min commutes with multiplication by a positive number, and which branch is taken, hence which
 * tokens clip and pass no gradient, does not change), and importance_sampling's −r·A and
 * cross_entropy's −w·lp are linear in A and w. So advantages c_i·A_i (weights c_i·w for the
 * reference's cross_entropy) give exactly c_i·ℓ_i, value and gradient. A KL term β·k3 is not a
 * function of A and is not covered by this trick.
 *
 * @example
 * const c = sequenceScale("grpo", [3, 5], 1024)        // [1/6, 1/10]
 * const adv = Float32Array.from({ length: 3 }, () => c[0]! * 0.8)
 * engineLoss({ logprobs: lp, oldLogprobs: lpOld, advantages: adv, clipLow: 0.8, clipHigh: 1.28 })
 */

/** TRL's token-loss aggregation. */
export type LossType = "grpo" | "bnpo" | "dapo" | "dr_grpo"

const sum = (xs: ReadonlyArray<number>): number => xs.reduce((a, x) => a + x, 0)

const scales: Record<LossType, (lengths: ReadonlyArray<number>, maxCompletionLength: number) => Array<number>> = {
  /** 1 / (B · |o_i|) */
  grpo: (lengths) => lengths.map((n) => 1 / (lengths.length * Math.max(n, 1))),
  /** 1 / Σ|o| */
  bnpo: (lengths) => lengths.map(() => 1 / Math.max(sum(lengths), 1)),
  /** 1 / Σ|o| over the global batch: one process, so bnpo's */
  dapo: (lengths) => lengths.map(() => 1 / Math.max(sum(lengths), 1)),
  /** 1 / (B · max_completion_length) */
  dr_grpo: (lengths, maxCompletionLength) => lengths.map(() => 1 / (lengths.length * maxCompletionLength))
}

/**
 * The factor c_i per sequence such that Σ_i c_i · Σ_t ℓ_it is TRL's aggregate for `lossType`.
 * `lengths` are the completion tokens of every sequence in the batch that takes a loss (all of
 * them count in B and in the token totals, an advantage of 0 included, as in TRL).
 *
 * @example
 * sequenceScale("bnpo", [3, 5], 1024)     // [0.125, 0.125]
 * sequenceScale("dr_grpo", [3, 5], 1024)  // [1/2048, 1/2048]
 */
export const sequenceScale = (
  lossType: LossType,
  lengths: ReadonlyArray<number>,
  maxCompletionLength: number
): Array<number> => scales[lossType](lengths, maxCompletionLength)

/** LUFFY's γ of f(p) = p / (p + γ). */
export const LUFFY_GAMMA = 0.1

/**
 * LUFFY's policy shaping for the off-policy reference, as cross_entropy weights: the loss
 * −scale·A·f(p_t), f(p) = p/(p + γ), p_t = exp(lp_t), has
 *
 *   dℓ/dlp_t = −scale·A·f'(p_t)·p_t = −scale·A·γ·p_t/(p_t + γ)²
 *
 * and the engine's cross_entropy −w_t·lp_t has dℓ/dlp_t = −w_t, so w_t = scale·A·γ·p_t/(p_t + γ)²
 * gives the same gradient at the weights where `teacherLogprobs` (the reference's teacher-forced
 * logprobs under the current policy) were computed. No clipping (LUFFY). `scale` is the
 * sequence's `sequenceScale` factor.
 *
 * @example
 * luffyWeights([Math.log(0.1)], 1, 1)     // [0.25]: γ·p/(p + γ)² = γ²/(2γ)² = 1/4 at p = γ
 */
export const luffyWeights = (
  teacherLogprobs: ArrayLike<number>,
  advantage: number,
  scale: number,
  gamma: number = LUFFY_GAMMA
): Float32Array =>
  Float32Array.from({ length: teacherLogprobs.length }, (_, t) => {
    const p = Math.exp(teacherLogprobs[t] ?? Number.NEGATIVE_INFINITY)
    return (scale * advantage * gamma * p) / (p + gamma) ** 2
  })

/**
 * Plain weighted log-likelihood of the reference (`sft`): every completion token weighs `scale`.
 *
 * @example
 * sftWeights(3, 0.5) // Float32Array [0.5, 0.5, 0.5]
 */
export const sftWeights = (length: number, scale: number): Float32Array => new Float32Array(length).fill(scale)

/**
 * The engine's ppo SUM loss in float64, for tests and for the clip fraction of the metrics:
 * loss = Σ_t −min(r_t·A_t, clip(r_t, clipLow, clipHigh)·A_t), r_t = exp(lp_t − lp_old,t);
 * `clipped` counts the tokens where the clipped term is the (strict) min and passes no gradient,
 * as the engine's training graph (Transformer.ts `trainGraph`) does. That is TRL's
 * `is_region_clipped` (r < clipLow with A < 0, or r > clipHigh with A > 0); A = 0 never clips.
 *
 * @example
 * engineLoss({ logprobs: [0.5], oldLogprobs: [0], advantages: [1], clipLow: 0.8, clipHigh: 1.2 })
 * // { loss: -1.2, clipped: 1 }
 */
export const engineLoss = (input: {
  readonly logprobs: ArrayLike<number>
  readonly oldLogprobs: ArrayLike<number>
  readonly advantages: ArrayLike<number>
  readonly clipLow: number
  readonly clipHigh: number
}): { readonly loss: number; readonly clipped: number } => {
  const { logprobs, oldLogprobs, advantages, clipLow, clipHigh } = input
  const n = logprobs.length
  if (oldLogprobs.length !== n || advantages.length !== n) {
    throw new RangeError(`engineLoss: ${n} logprobs, ${oldLogprobs.length} old logprobs, ${advantages.length} advantages`)
  }
  let loss = 0
  let clipped = 0
  for (let t = 0; t < n; t++) {
    const a = advantages[t] ?? 0
    const r = Math.exp((logprobs[t] ?? 0) - (oldLogprobs[t] ?? 0))
    const unclippedTerm = r * a
    const clippedTerm = Math.min(Math.max(r, clipLow), clipHigh) * a
    const active = clippedTerm < unclippedTerm
    if (active) clipped++
    loss -= active ? clippedTerm : unclippedTerm
  }
  return { loss, clipped }
}
