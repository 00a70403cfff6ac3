/**
 * Learning-rate schedules: constant, or linear warmup followed by cosine or linear decay.
 *
 * Steps count from 0. Warmup gives baseLr·(step+1)/warmupSteps, reaching baseLr at step
 * warmupSteps-1. Decay then runs from baseLr at step s0 = max(warmupSteps-1, 0) (the last warmup
 * step, so there is no two-step plateau) to baseLr·minRatio at step totalSteps-1, and stays there.
 * Hence warmupSteps 0 and 1 give the same schedule.
 *
 * @example
 * const schedule: LrSchedule = { kind: "cosine", warmupSteps: 10, totalSteps: 100, minRatio: 0.1 }
 * lrAt(schedule, 1e-4, 0)  // 1e-5
 * lrAt(schedule, 1e-4, 99) // 1e-5 (= 1e-4 · 0.1)
 */

/** A schedule; `minRatio` is the final learning rate as a fraction of the base one. */
export type LrSchedule =
  | { readonly kind: "constant" }
  | { readonly kind: "cosine"; readonly warmupSteps: number; readonly totalSteps: number; readonly minRatio: number }
  | { readonly kind: "linear"; readonly warmupSteps: number; readonly totalSteps: number; readonly minRatio: number }

/**
 * The learning rate at `step` (0-based). Throws on an invalid schedule or step.
 *
 * @example
 * lrAt({ kind: "linear", warmupSteps: 0, totalSteps: 5, minRatio: 0 }, 1, 2) // 0.5
 */
export const lrAt = (schedule: LrSchedule, baseLr: number, step: number): number => {
  if (!Number.isSafeInteger(step) || step < 0) throw new Error(`lrAt: step must be a non-negative integer, got ${step}`)
  if (schedule.kind === "constant") return baseLr
  const { warmupSteps: w, totalSteps: total, minRatio } = schedule
  if (!Number.isSafeInteger(w) || w < 0) throw new Error(`lrAt: warmupSteps must be a non-negative integer, got ${w}`)
  if (!Number.isSafeInteger(total) || total < 1 || total < w) {
    throw new Error(`lrAt: totalSteps must be an integer >= max(1, warmupSteps = ${w}), got ${total}`)
  }
  if (!(minRatio >= 0 && minRatio <= 1)) throw new Error(`lrAt: minRatio must be in [0, 1], got ${minRatio}`)
  if (step < w) return (baseLr * (step + 1)) / w
  const s0 = Math.max(w - 1, 0)
  const last = total - 1
  // Past the end (or a schedule with no decay span) holds the final rate.
  if (step >= last) return baseLr * minRatio
  const progress = (step - s0) / (last - s0)
  const factor = schedule.kind === "cosine" ? 0.5 * (1 + Math.cos(Math.PI * progress)) : 1 - progress
  return baseLr * (minRatio + (1 - minRatio) * factor)
}
