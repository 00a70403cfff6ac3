/**
 * Sampler/trainer mismatch correction (ARCHITECTURE.md §7, `grpo.mismatch_correction`): TRL's vLLM
 * importance-sampling correction (huggingface/trl at commit f2cd57710ae345ea6428ae95363267fcf38a3dc8:
 * trl/trainer/grpo_trainer.py, GRPOTrainer._generate_and_score_completions builds
 * `vllm_importance_sampling_ratio`, GRPOTrainer._compute_loss multiplies `per_token_loss` by it;
 * options in trl/trainer/grpo_config.py).
 *
 * The tokens were drawn by the sampler (vLLM, the embedded sampler), whose numeric path differs from
 * the trainer's. Per completion token t, three logprobs of the same token:
 *
 *   lp_s,t    the sampler's, reported while sampling (TRL: sampling_per_token_logps)
 *   lp_old,t  the trainer's, teacher-forced at the step's weights (TRL: old_per_token_logps)
 *   lp_θ,t    the trainer's at the weights being optimized (= lp_old,t at the first inner iteration)
 *
 * TRL's per-token loss with the correction on:
 *
 *   ρ_t = exp(lp_θ,t − lp_old,t)                              coef_1, the PPO ratio (trainer vs trainer)
 *   w_t = min(exp(Δ_t), C),  Δ_t = lp_old,t − lp_s,t          vllm_importance_sampling_ratio, a constant
 *   ℓ_t = −min(ρ_t·A_t, clip(ρ_t, 1 − ε_low, 1 + ε_high)·A_t) · w_t
 *
 * so dℓ_t/dlp_θ,t = −w_t·ρ_t·A_t on unclipped tokens (= −w_t·A_t at the step's weights), and tokens
 * clip on the policy's own change only, never on the mismatch.
 *
 * Engine form (PolicyEngine.ts `ppo`: −min(r·A', clip(r)·A'), r = exp(lp − logprobs)): send the datum
 * with old logprobs lp_old (the trainer's, not the sampler's) and advantages A'_t = w_t·A_t. Since
 * w_t ≥ 0, −min(ρ·w·A, clip(ρ)·w·A) = −w·min(ρ·A, clip(ρ)·A) (min commutes with multiplication by a
 * non-negative number; which branch is taken, hence which tokens clip, does not change), so the
 * engine's ppo loss equals ℓ_t exactly, value and gradient. Keeping the sampler's logprobs as the old
 * ones AND multiplying by w (the earlier form) would count the importance weight twice: the engine's
 * ratio is then π_θ/π_s, the gradient ∝ (π_θ/π_s)·min(π_old/π_s, C)·A ≈ (π_old/π_s)²·A at the step's
 * weights, and tokens clip for mismatch alone.
 *
 * Variants (one name from the recipe to the code):
 *
 *   none                no correction: the old logprobs stay the sampler's, w_t = 1 (no trainer pass)
 *   token               w_t = min(exp(Δ_t), C)                              TRL's `token_truncate`
 *   sequence_geometric  w_t = min(exp((1/|o|) Σ_u Δ_u), C) for every t     TRL's `sequence_truncate`, with
 *                       the summed log-ratio replaced by its mean over the |o| completion tokens (the
 *                       normalisation of TRL's GSPO ratio, `importance_sampling_level == "sequence"`:
 *                       `(log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)`). TRL's product over
 *                       thousands of tokens masks whole long stories (ARCHITECTURE.md §7): not offered.
 *
 * C is TRL's `vllm_importance_sampling_clip_max` (TRL's default 3; POLARIS's `mismatch_cap`, 2). TRL's
 * `vllm_importance_sampling_clip_min` (default None) and its `*_mask` modes are not offered.
 *
 * What the sampler's logprob is: the engines report log-softmax of the RAW logits (vLLM's default
 * `raw_logprobs`; PolicyEngine.ts `SampledSequence.logprobs`, Sampling.ts `rawLogprob`), while the
 * token was drawn after temperature / top_p / top_k. With temperature 1 and no truncation that is
 * the probability the token was drawn with; otherwise it is not: lp_s is then not the behaviour
 * policy's logprob, Δ_t measures numerics only, and the update treats the tokens as if drawn from the
 * untempered policy. With processed logprobs (vLLM `--logprobs-mode processed_logprobs`, after
 * temperature and top-k/top-p) lp_s = log q_T,t, the distribution the token was drawn from, and w_t
 * also absorbs that difference: it becomes the (capped) importance weight from the behaviour
 * distribution to the trainer's, w ≠ 1 even with identical numerics. Processed logprobs belong with a
 * correction on: under `none` they are the PPO ratio's denominator, far from π_θ, and most tokens
 * would clip (docs/grpo.md).
 *
 * @example
 * importanceWeights("token", [-1, -2], [-1.5, -1.9], 1.5)          // [1.5, 0.9048…]
 * correctedDatum({ correction: "token", cap: 2, start: 1, samplerLogprobs: [0, -1.5], trainerLogprobs: [-9, -1],
 *   advantages: [0, 0.5] })  // { logprobs: [0, -1], advantages: [0, 0.5·e^0.5], weights: [e^0.5] }
 */

/** The sampler/trainer mismatch correction (`grpo.mismatch_correction`). */
export type MismatchCorrection = "none" | "token" | "sequence_geometric"

interface Rule {
  /** Whose logprobs become the datum's old logprobs (the PPO ratio's denominator). */
  readonly old: "sampler" | "trainer"
  /** w_t for each completion token from Δ_t = lp_old,t − lp_s,t and the cap C. */
  readonly weights: (delta: ReadonlyArray<number>, cap: number) => Array<number>
}

const rules: Record<MismatchCorrection, Rule> = {
  /** w_t = 1; the datum is left as the sampler produced it. */
  none: { old: "sampler", weights: (delta) => delta.map(() => 1) },
  /** w_t = min(exp(Δ_t), C) */
  token: { old: "trainer", weights: (delta, cap) => delta.map((d) => Math.min(Math.exp(d), cap)) },
  /** w_t = min(exp((1/|o|) Σ_u Δ_u), C); |o| clamped to ≥ 1 as TRL's mask.sum(-1).clamp(min=1.0) */
  sequence_geometric: {
    old: "trainer",
    weights: (delta, cap) => {
      const w = Math.min(Math.exp(delta.reduce((a, d) => a + d, 0) / Math.max(delta.length, 1)), cap)
      return delta.map(() => w)
    }
  }
}

/**
 * Whether `correction` needs the trainer's teacher-forced logprobs at the step's weights (one
 * extra pass): every variant but `none`.
 *
 * @example
 * needsTrainerLogprobs("none") // false
 */
export const needsTrainerLogprobs = (correction: MismatchCorrection): boolean => rules[correction].old === "trainer"

/**
 * The importance weights w_t of one completion's tokens (see the module comment), from the
 * trainer's logprobs at the step's weights and the sampler's logprobs of the same tokens.
 *
 * @example
 * importanceWeights("sequence_geometric", [0, 0], [-1, -1], 2) // [2, 2]: exp(1) capped
 */
export const importanceWeights = (
  correction: MismatchCorrection,
  trainerLogprobs: ArrayLike<number>,
  samplerLogprobs: ArrayLike<number>,
  cap: number
): Array<number> => {
  const n = trainerLogprobs.length
  if (samplerLogprobs.length !== n) {
    throw new RangeError(`importanceWeights: ${n} trainer logprobs but ${samplerLogprobs.length} sampler logprobs`)
  }
  return rules[correction].weights(Array.from({ length: n }, (_, t) => trainerLogprobs[t]! - samplerLogprobs[t]!), cap)
}

/**
 * The corrected per-position arrays of one `ppo` datum (Tinker-aligned, PolicyEngine.ts): old
 * logprobs lp_old,t (the trainer's) and advantages w_t·A_t on the completion's positions t ≥
 * `start`; the prompt's positions (logprobs and advantages 0) are kept. `none` returns the
 * sampler's logprobs and the advantages unchanged. `weights` are the completion's w_t.
 *
 * @example
 * correctedDatum({ correction: "none", cap: 2, start: 0, samplerLogprobs: [-1], trainerLogprobs: [-2], advantages: [1] })
 * // { logprobs: [-1], advantages: [1], weights: [1] }
 */
export const correctedDatum = (input: {
  readonly correction: MismatchCorrection
  readonly cap: number
  /** The completion's first position. */
  readonly start: number
  /** The datum's logprobs as the sampler reported them. */
  readonly samplerLogprobs: ArrayLike<number>
  /** The trainer's teacher-forced logprobs at the step's weights, position t scoring targetTokens[t]. */
  readonly trainerLogprobs: ArrayLike<number>
  readonly advantages: ArrayLike<number>
}): { readonly logprobs: Array<number>; readonly advantages: Array<number>; readonly weights: Array<number> } => {
  const { correction, cap, start, samplerLogprobs, trainerLogprobs, advantages } = input
  const n = samplerLogprobs.length
  if (trainerLogprobs.length !== n || advantages.length !== n || start < 0 || start > n) {
    throw new RangeError(
      `correctedDatum: ${n} sampler logprobs, ${trainerLogprobs.length} trainer logprobs, ${advantages.length} advantages, start ${start}`
    )
  }
  const sampler = Array.from(samplerLogprobs)
  const trainer = Array.from(trainerLogprobs)
  const w = importanceWeights(correction, trainer.slice(start), sampler.slice(start), cap)
  const old = rules[correction].old === "trainer" ? trainer : sampler
  return {
    logprobs: sampler.map((lp, t) => (t < start ? lp : old[t]!)),
    advantages: Array.from(advantages, (a, t) => (t < start ? a : a * w[t - start]!)),
    weights: w
  }
}
