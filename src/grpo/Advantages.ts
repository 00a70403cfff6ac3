/**
 * Group-relative advantages with an injected human reference (ARCHITECTURE.md §7).
 *
 * A group is one prompt's members: G − 1 rollouts and 1 reference, each with a reward r or null
 * (unscorable). With S_g the members that count in the statistics of group g (scorable rollouts,
 * plus the scorable reference when `referenceInStats`):
 *
 *   mean_g = (1/|S_g|) Σ_{i∈S_g} r_i
 *   std_g  = sqrt( Σ_{i∈S_g} (r_i − mean_g)² / (|S_g| − 1) )          (Bessel-corrected)
 *   A_i    = (r_i − mean_g) / (σ + 1e−4)                               scaleRewards "group": σ = std_g
 *                                                                      scaleRewards "batch": σ = std over ∪_g S_g
 *   A_i    = r_i − mean_g                                              scaleRewards "none"
 *
 * as TRL's GRPOTrainer._generate_and_score_completions (huggingface/trl, trl/trainer/grpo_trainer.py,
 * read at commit d2b69d769dab6f77acbfd33252bcd7d22765571b; the string-valued scale_rewards with
 * "batch" = `rewards.std().expand_as(rewards)` is TRL ≥ 0.22): the mean stays per group in every
 * mode, only the divisor changes. Not in TRL (POLARIS's rules):
 *
 * - Unscorable members (null or NaN reward) leave the statistics and get A = 0 (TRL would nansum a
 *   NaN reward to 0 and so score the story 0; an unscorable story is not a bad story).
 * - `referenceInStats` false: mean and std over the rollouts only; the reference still gets
 *   (r_ref − mean_g) scaled the same way. True (LUFFY's default): the reference is one more member.
 * - Degenerate groups: with |S_g| < 2 the std is undefined (torch gives NaN), so std_g = 0; a group
 *   is `zeroStd` when |S_g| < 2 or std_g is 0 as TRL's `torch.isclose(std, 0)` says
 *   (|std_g| ≤ 1e−8). Every advantage of a zeroStd group is 0, in every scaleRewards mode: its
 *   members in the statistics have r − mean = 0 (or are alone) anyway, and the only member that
 *   could get a non-zero value, a reference kept out of the statistics, would be divided by 1e−4
 *   under "group" scaling (10⁴ × its margin): an exploding step from a group that carries no
 *   measured spread. Under "batch" a batch with fewer than 2 members in the statistics, or a batch
 *   std that isclose to 0, zeroes every group likewise. The mean of a group with S_g empty is NaN
 *   (there is nothing to average), its std 0.
 *
 * @example
 * advantages([{ rollouts: [0.2, 0.4, null], reference: 0.9 }], { scaleRewards: "group", referenceInStats: true })
 * // [{ rollouts: [-0.83…, -0.27…, 0], reference: 1.10…, mean: 0.5, std: 0.36…, zeroStd: false }]
 */

/** How the injected reference's reward is obtained. */
export type ReferenceReward =
  | { readonly mode: "judge" }
  | { readonly mode: "fixed"; readonly value: number }
  | { readonly mode: "max_of_group_plus"; readonly margin: number }

const scorable = (r: number | null): r is number => r !== null && !Number.isNaN(r)

/**
 * The reference's reward: `judge` its judged reward (null stays null: unscorable), `fixed` the
 * value, `max_of_group_plus` max over the scorable rollout rewards + margin (null when none is
 * scorable: there is no group best to beat).
 *
 * @example
 * referenceReward({ mode: "max_of_group_plus", margin: 0.1 }, null, [0.3, null, 0.5]) // 0.6
 */
export const referenceReward = (
  mode: ReferenceReward,
  judged: number | null,
  rollouts: ReadonlyArray<number | null>
): number | null => {
  switch (mode.mode) {
    case "judge":
      return scorable(judged) ? judged : null
    case "fixed":
      return mode.value
    case "max_of_group_plus": {
      const scored = rollouts.filter(scorable)
      return scored.length === 0 ? null : Math.max(...scored) + mode.margin
    }
  }
}

/** The divisor of r − mean: the group's std, the batch's std, or none (TRL's scale_rewards). */
export type ScaleRewards = "group" | "batch" | "none"

export interface GroupRewards {
  readonly rollouts: ReadonlyArray<number | null>
  readonly reference: number | null
}

export interface AdvantageOptions {
  readonly scaleRewards: ScaleRewards
  /** The reference counts in mean/std (LUFFY's default); false: statistics over rollouts only. */
  readonly referenceInStats: boolean
}

export interface GroupAdvantages {
  readonly rollouts: Array<number>
  readonly reference: number
  /** mean_g over the members in the statistics; NaN when none is. */
  readonly mean: number
  /** std_g (Bessel) over the members in the statistics, whatever the scaling; 0 with fewer than 2. */
  readonly std: number
  /** Fewer than 2 members in the statistics, or isclose(std_g, 0): every advantage of the group is 0. */
  readonly zeroStd: boolean
}

/** The added constant of TRL's `advantages / (std + 1e-4)`. */
export const STD_EPSILON = 1e-4

/** torch.isclose(x, 0) with its defaults (rtol 1e−5, atol 1e−8): |x| ≤ 1e−8. */
const iscloseZero = (x: number): boolean => Math.abs(x) <= 1e-8

/** Mean and Bessel-corrected std; std 0 for fewer than 2 values, mean NaN for none. */
const moments = (xs: ReadonlyArray<number>): { readonly mean: number; readonly std: number } => {
  const n = xs.length
  const mean = n === 0 ? Number.NaN : xs.reduce((a, x) => a + x, 0) / n
  if (n < 2) return { mean, std: 0 }
  const ss = xs.reduce((a, x) => a + (x - mean) ** 2, 0)
  return { mean, std: Math.sqrt(ss / (n - 1)) }
}

/** The members of a group that count in its statistics. */
const inStats = (g: GroupRewards, referenceInStats: boolean): Array<number> => {
  const xs = g.rollouts.filter(scorable)
  return referenceInStats && scorable(g.reference) ? [...xs, g.reference] : xs
}

/**
 * Per-group advantages (module comment for the formulas and the degenerate-group rule).
 *
 * @example
 * advantages([{ rollouts: [0.5, 0.5, 0.5], reference: 0.5 }], { scaleRewards: "group", referenceInStats: true })
 * // [{ rollouts: [0, 0, 0], reference: 0, mean: 0.5, std: 0, zeroStd: true }]
 */
export const advantages = (
  groups: ReadonlyArray<GroupRewards>,
  options: AdvantageOptions
): Array<GroupAdvantages> => {
  const stats = groups.map((g) => inStats(g, options.referenceInStats))
  const batch = moments(stats.flat())
  const batchDegenerate = stats.flat().length < 2 || iscloseZero(batch.std)
  const divisor: Record<ScaleRewards, (std: number) => number> = {
    group: (std) => std + STD_EPSILON,
    batch: () => batch.std + STD_EPSILON,
    none: () => 1
  }
  return groups.map((g, k) => {
    const members = stats[k] ?? []
    const { mean, std } = moments(members)
    const zeroStd = members.length < 2 || iscloseZero(std)
    const silent = zeroStd || (options.scaleRewards === "batch" && batchDegenerate)
    const d = divisor[options.scaleRewards](std)
    const advantage = (r: number | null): number => (silent || !scorable(r) ? 0 : (r - mean) / d)
    return { rollouts: g.rollouts.map(advantage), reference: advantage(g.reference), mean, std, zeroStd }
  })
}
