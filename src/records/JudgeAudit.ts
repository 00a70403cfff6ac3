/** The judge audit's records (stages/judgeAudit.ts): its stories, one judge's answers, the report. */
import { Schema } from "effect"
import { DAMAGE_DESCRIPTIONS, DAMAGES, VARIANTS } from "../eval/Damage.ts"
import type { AuditNumbers } from "../eval/JudgeAudit.ts"
import type { Interval } from "../eval/Stats.ts"

const byVariant = <S extends Schema.Top>(value: S) => Schema.Struct(Object.fromEntries(VARIANTS.map((v) => [v, value])) as { readonly [V in (typeof VARIANTS)[number]]: S })

/** A held-out human story and its versions (src/eval/Damage.ts). */
export const AuditStory = Schema.Struct({ id: Schema.String, prompt: Schema.String, variants: byVariant(Schema.String) })
export type AuditStory = typeof AuditStory.Type

/** One judge's answers on one story's versions. */
export const JudgedStory = Schema.Struct({
  id: Schema.String,
  /** The judge's fingerprint. */
  judge: Schema.String,
  words: byVariant(Schema.Int),
  verdicts: byVariant(Schema.Array(Schema.Struct({ quality: Schema.Number, scores: Schema.Record(Schema.String, Schema.NullOr(Schema.Number)) }))),
  pairs: Schema.Array(Schema.Struct({ shownFirst: Schema.Literals(["original", "padded"]), winner: Schema.Literals(["first", "second", "tie"]) }))
})
export type JudgedStory = typeof JudgedStory.Type

/** An estimate with its 95% interval; null where it cannot be computed (too few stories). */
const Est = Schema.Struct({ estimate: Schema.NullOr(Schema.Number), low: Schema.NullOr(Schema.Number), high: Schema.NullOr(Schema.Number) })

export const AuditReport = Schema.Struct({
  judges: Schema.Array(Schema.String),
  stories: Schema.Int,
  damage: Schema.Struct(Object.fromEntries(DAMAGES.map((d) => [d, Schema.Struct({ lower: Est, drop: Est })])) as { readonly [D in (typeof DAMAGES)[number]]: Schema.Struct<{ lower: typeof Est; drop: typeof Est }> }),
  length: Schema.Struct({ quality_length_r: Est, padded_gain: Est, padded_win_rate: Est }),
  position: Schema.Struct({ consistency: Est, first_chosen: Est }),
  retest: Schema.NullOr(Schema.Struct({ samples: Schema.Int, quality_sd: Est, dimension_sd: Schema.Record(Schema.String, Est) })),
  agreement: Schema.NullOr(Schema.Struct({ stories: Schema.Int, spearman: Est }))
})
export type AuditReport = typeof AuditReport.Type

const finite = (x: number) => (Number.isFinite(x) ? x : null)
const est = (i: Interval) => ({ estimate: finite(i.estimate), low: finite(i.low), high: finite(i.high) })
const mapValues = <A, B>(r: Readonly<Record<string, A>>, f: (a: A) => B) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, f(v)]))

/** The numbers as a storable report (non-finite values as null). */
export const toReport = (n: AuditNumbers, judges: ReadonlyArray<string>): AuditReport => ({
  judges,
  stories: n.stories,
  damage: mapValues(n.damage, (d) => ({ lower: est(d.lower), drop: est(d.drop) })) as AuditReport["damage"],
  length: { quality_length_r: est(n.length.quality_length_r), padded_gain: est(n.length.padded_gain), padded_win_rate: est(n.length.padded_win_rate) },
  position: { consistency: est(n.position.consistency), first_chosen: est(n.position.first_chosen) },
  retest: n.retest === null ? null : { samples: n.retest.samples, quality_sd: est(n.retest.quality_sd), dimension_sd: mapValues(n.retest.dimension_sd, est) },
  agreement: n.agreement === null ? null : { stories: n.agreement.stories, spearman: est(n.agreement.spearman) }
})

const show = (e: { readonly estimate: number | null; readonly low: number | null; readonly high: number | null }, digits: number, pct = false) => {
  const f = (x: number | null) => (x === null ? "n/a" : pct ? `${(x * 100).toFixed(digits)}%` : x.toFixed(digits))
  return e.estimate === null ? "n/a" : `${f(e.estimate)} [${f(e.low)}, ${f(e.high)}]`
}

/** The audit as rows of (measure, what it is, value [95% interval]), for the terminal and the report. */
export const auditRows = (r: AuditReport): Array<readonly [string, string, string]> => [
  ...DAMAGES.flatMap((d) => [
    [`${d}: scored lower`, `share of stories whose damaged version scores below the original (${DAMAGE_DESCRIPTIONS[d]})`, show(r.damage[d].lower, 0, true)] as const,
    [`${d}: drop`, "mean quality drop (0-1 scale)", show(r.damage[d].drop, 3)] as const
  ]),
  ["length: r(quality, words)", "Pearson r of quality with length over the stories", show(r.length.quality_length_r, 2)],
  ["length: padded gain", "mean quality of the padded version minus the original's (equal quality, more words)", show(r.length.padded_gain, 3)],
  ["length: padded win rate", "pairwise win rate of the padded version against the original (both orders, ties half)", show(r.length.padded_win_rate, 0, true)],
  ["position: consistency", "share of pairs whose two orders agree", show(r.position.consistency, 0, true)],
  ["position: first chosen", "share of single answers choosing the story shown first (50% unbiased)", show(r.position.first_chosen, 0, true)],
  ...(r.retest === null ? [] : [["retest: quality sd", `standard deviation of ${r.retest.samples} verdicts of the same story, mean over stories`, show(r.retest.quality_sd, 4)] as const]),
  ...(r.agreement === null ? [] : [["agreement: Spearman", `rank correlation of the two judges' quality over ${r.agreement.stories} stories`, show(r.agreement.spearman, 2)] as const])
]
