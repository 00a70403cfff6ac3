/**
 * The metrics of a forward-only pass (Tinker's `forward`): the same `loss:sum`, `tokens:sum` and
 * `clipped:sum` the engine's forwardBackward reports (EmbeddedPolicy.ts), from the learner's
 * logprobs lp_t alone, with no gradient.
 *
 *   cross_entropy:       ℓ = -Σ_t w_t·lp_t
 *   importance_sampling: ℓ = -Σ_t r_t·A_t,                              r_t = exp(lp_t - q_t)
 *   ppo:                 ℓ = -Σ_t min(r_t·A_t, clip(r_t, low, high)·A_t)  (TokenLoss.engineLoss)
 *
 * `tokens:sum` counts positions with w_t ≠ 0 or A_t ≠ 0; `clipped:sum` those where the clipped
 * term won (importance_sampling is ppo with bounds that never bind).
 */
import type { Datum, LossFn } from "../../engines/PolicyEngine.ts"
import { engineLoss } from "../../grpo/TokenLoss.ts"

/** Ratio bounds per loss, as EmbeddedPolicy's `clipOf`. */
const bounds = (loss: LossFn) => (loss.name === "ppo" ? { clipLow: loss.clipLow, clipHigh: loss.clipHigh } : { clipLow: 0, clipHigh: 1e30 })

export const forwardMetrics = (
  datums: ReadonlyArray<Datum>,
  logprobs: ReadonlyArray<ArrayLike<number>>,
  loss: LossFn
): Record<string, number> => {
  let lossSum = 0
  let tokens = 0
  let clipped = 0
  datums.forEach((d, i) => {
    const lp = logprobs[i]!
    const n = lp.length
    const zeros = new Float32Array(n)
    const w = d.weights ?? zeros
    const a = d.advantages ?? zeros
    for (let t = 0; t < n; t++) if ((loss.name === "cross_entropy" ? w[t] : a[t]) !== 0) tokens++
    if (loss.name === "cross_entropy") {
      for (let t = 0; t < n; t++) lossSum -= (w[t] ?? 0) * (lp[t] ?? 0)
    } else {
      const r = engineLoss({ logprobs: lp, oldLogprobs: d.logprobs ?? zeros, advantages: a, ...bounds(loss) })
      lossSum += r.loss
      clipped += r.clipped
    }
  })
  return { "loss:sum": lossSum, "tokens:sum": tokens, "clipped:sum": clipped }
}
