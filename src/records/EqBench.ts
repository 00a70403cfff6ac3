/** EQ-Bench Creative Writing v3's records (stages/eqbench.ts): items, responses, scores, comparisons, the summary. */
import { Schema } from "effect"

/** One prompt of the benchmark at one iteration, `<SEED>` substituted; the judge reads `base_prompt`. */
export const EqItem = Schema.Struct({ id: Schema.String, prompt_id: Schema.String, iteration: Schema.Int, prompt: Schema.String, base_prompt: Schema.String })
export type EqItem = typeof EqItem.Type
export const EqResponse = Schema.Struct({ id: Schema.String, text: Schema.String })
export type EqResponse = typeof EqResponse.Type
/** The judge's scores by criterion as it wrote them, and the item's score (0-20, negatives inverted); null when nothing parsed. */
export const EqScored = Schema.Struct({ id: Schema.String, scores: Schema.Record(Schema.String, Schema.Number), score: Schema.NullOr(Schema.Number) })
export type EqScored = typeof EqScored.Type
/** One item's pairwise verdicts, system `a` against `b`, shown in both orders. */
export const EqComparison = Schema.Struct({ prompt: Schema.String, a: Schema.String, b: Schema.String, ab: Schema.Literals(["a", "b", "tie"]), ba: Schema.Literals(["a", "b", "tie"]) })
export type EqComparison = typeof EqComparison.Type

/** An estimate with its 95% interval; null where it cannot be computed. */
const Est = Schema.Struct({ estimate: Schema.NullOr(Schema.Number), low: Schema.NullOr(Schema.Number), high: Schema.NullOr(Schema.Number) })

export const EqSummary = Schema.Struct({
  baseline: Schema.String,
  items: Schema.Int,
  systems: Schema.Array(Schema.Struct({
    name: Schema.String,
    /** The benchmark's score: mean item score (0-20) × 5, with a bootstrap interval over items. */
    rubric_score: Est,
    scored: Schema.Int,
    slop_index: Schema.Number,
    elo: Est,
    win_rate: Schema.NullOr(Est)
  }))
})
export type EqSummary = typeof EqSummary.Type

const show = (e: typeof Est.Type | null, digits: number, pct = false) => {
  const f = (x: number | null) => (x === null ? "n/a" : pct ? `${(x * 100).toFixed(digits)}%` : x.toFixed(digits))
  return e === null || e.estimate === null ? "n/a" : `${f(e.estimate)} [${f(e.low)}, ${f(e.high)}]`
}

/** The header and one row per system (rubric score, scored items, slop index, Elo, win rate vs the baseline), for the terminal and the report. */
export const summaryRows = (s: EqSummary): { readonly header: ReadonlyArray<string>; readonly rows: ReadonlyArray<ReadonlyArray<string>> } => ({
  header: ["system", "rubric score (0-100)", "scored", "slop index", "Elo", `win rate vs ${s.baseline}`],
  rows: s.systems.map((x) => [
    x.name,
    show(x.rubric_score, 1),
    `${x.scored}/${s.items}`,
    x.slop_index.toFixed(1),
    show(x.elo, 0),
    x.name === s.baseline ? "baseline" : show(x.win_rate, 0, true)
  ])
})
