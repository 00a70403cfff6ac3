/**
 * Reward-hacking alarms: per training step, the signs that the policy is learning the judge's
 * biases rather than the task (AlpacaFarm's PPO pushed length from 278 to 637 tokens; judges
 * prefer longer text; a failed call scored as 0 corrupts rewards):
 *
 *   reward_length_corr   Pearson r of reward with story length over the step's rollouts
 *   best_vs_reference    mean over groups of (best rollout reward - the human reference's reward)
 *   zero_spread          share of groups whose rewards are all equal (no learning signal)
 *   unscorable_rate      share of the step's stories the judge could not score
 *   length_ratio_drift   |mean words/requested now - at the first step|
 *
 * An alarm trips when its value exceeds the recipe's threshold (`alarms:`); a value that cannot
 * be computed (too few scored stories) never trips. Pure: the stage (stages/rewardAlarms.ts)
 * feeds it the step's numbers.
 */

/** The alarms, in report order. */
export const ALARMS = ["reward_length_corr", "best_vs_reference", "zero_spread", "unscorable_rate", "length_ratio_drift"] as const
export type Alarm = (typeof ALARMS)[number]

/** What each alarm watches, for people. */
export const DESCRIPTIONS: Readonly<Record<Alarm, string>> = {
  reward_length_corr: "correlation of reward with story length",
  best_vs_reference: "best rollout reward minus the human reference's, mean over groups",
  zero_spread: "share of groups with no reward spread",
  unscorable_rate: "share of stories the judge could not score",
  length_ratio_drift: "drift of the length ratio (words / requested) since the first step"
}

export type Thresholds = { readonly [A in Alarm]?: number | undefined }
export type Values = Readonly<Record<Alarm, number | null>>

/** One group's rewards (null: unscorable). */
export interface GroupRewards {
  readonly rollouts: ReadonlyArray<number | null>
  readonly reference: number | null
}

/** The step's numbers the alarms read. */
export interface StepNumbers {
  readonly rewardLengthCorr: number | null
  readonly groups: ReadonlyArray<GroupRewards>
  readonly stories: number
  readonly unscorable: number
  readonly lengthRatio: number | null
  readonly firstLengthRatio: number | null
}

const mean = (xs: ReadonlyArray<number>) => (xs.length === 0 ? null : xs.reduce((a, b) => a + b, 0) / xs.length)

/** Each alarm's value for a step. */
export const values = (n: StepNumbers): Values => {
  const gaps = n.groups.flatMap((g) => {
    const scored = g.rollouts.filter((r): r is number => r !== null)
    return scored.length === 0 || g.reference === null ? [] : [Math.max(...scored) - g.reference]
  })
  const spreads = n.groups.flatMap((g) => {
    const scored = [...g.rollouts, g.reference].filter((r): r is number => r !== null)
    return scored.length < 2 ? [] : [Math.max(...scored) - Math.min(...scored) === 0 ? 1 : 0]
  })
  return {
    reward_length_corr: n.rewardLengthCorr,
    best_vs_reference: mean(gaps),
    zero_spread: mean(spreads),
    unscorable_rate: n.stories === 0 ? null : n.unscorable / n.stories,
    length_ratio_drift: n.lengthRatio === null || n.firstLengthRatio === null ? null : Math.abs(n.lengthRatio - n.firstLengthRatio)
  }
}

/** The alarms that trip: value above its threshold. */
export const tripped = (v: Values, thresholds: Thresholds): Array<{ readonly alarm: Alarm; readonly value: number; readonly threshold: number }> =>
  ALARMS.flatMap((alarm) => {
    const value = v[alarm]
    const threshold = thresholds[alarm]
    return value === null || threshold === undefined || !(value > threshold) ? [] : [{ alarm, value, threshold }]
  })

/** The metric key a tripped alarm is recorded under (its value), which the live view and report read. */
export const metricKey = (alarm: Alarm) => `alarm:${alarm}`

/** A tripped alarm as a run's metrics record it: the node (`train/step-003/alarms`), its step, the value. */
export interface Trip {
  readonly node: string
  readonly step: number | null
  readonly alarm: Alarm
  readonly value: number
}

/** The tripped alarms in a run's metric records (`metrics.jsonl`), the last record of a node winning. */
export const tripsIn = (records: ReadonlyArray<Readonly<Record<string, unknown>>>): Array<Trip> => {
  const byNode = new Map<string, Map<Alarm, number>>()
  for (const r of records) {
    if (typeof r.node !== "string") continue
    const found = ALARMS.filter((a) => typeof r[metricKey(a)] === "number")
    if (found.length === 0 && !ALARMS.some((a) => `alarm_${a}` in r)) continue
    // A node's later record replaces its earlier ones (a retried or resumed node).
    byNode.set(r.node, new Map(found.map((a) => [a, r[metricKey(a)] as number])))
  }
  return [...byNode].flatMap(([node, trips]) => {
    const step = /step-(\d+)\//.exec(node)
    return [...trips].map(([alarm, value]) => ({ node, step: step === null ? null : Number(step[1]), alarm, value }))
  })
}

/** One line per alarm that tripped: `reward_length_corr (correlation ...): steps 3, 4 (max 0.812)`. */
export const summaryLines = (trips: ReadonlyArray<Trip>): Array<string> =>
  ALARMS.flatMap((alarm) => {
    const mine = trips.filter((t) => t.alarm === alarm)
    if (mine.length === 0) return []
    const steps = mine.map((t) => (t.step === null ? t.node : String(t.step + 1)))
    return [`${alarm} (${DESCRIPTIONS[alarm]}): step${steps.length === 1 ? "" : "s"} ${steps.join(", ")} (max ${Math.max(...mine.map((t) => t.value)).toFixed(3)})`]
  })
