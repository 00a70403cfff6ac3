/**
 * Pairwise evaluation (ARCHITECTURE.md §8): two systems' stories for the same prompt, judged in
 * both orders under neutral labels; a win only when both orders agree, otherwise a tie. Then
 * Bradley-Terry ratings on the Elo scale anchored on a baseline, win rates against it, and the
 * judge's position consistency, each rating and rate with a bootstrap 95% interval over prompts.
 *
 *   pairwise(systems):  prompts + each system's groups -> comparisons (memoized per order)
 *   rate-systems:       comparisons -> ratings (overall and per requested-length bucket)
 */
import { Effect, Schema } from "effect"
import { inFlight, Judge, type JudgeError, Preference } from "../src/engines/judge/Judge.ts"
import { bradleyTerryCI, type PairwiseComparison, positionConsistency, winRate } from "../src/eval/Stats.ts"
import { stripThinking } from "../src/grpo/Reward.ts"
import * as Budget from "../src/dag/Budget.ts"
import { memoCall } from "../src/dag/MemoCall.ts"
import * as Spend from "../src/engines/judge/Spend.ts"
import * as Stage from "../src/dag/Stage.ts"
import { PromptWithReference } from "../src/records/PromptWithReference.ts"
import { Group } from "../src/records/Group.ts"
import { Comparison, Ratings, SystemRating } from "../src/records/Comparison.ts"

const Prompts = Schema.Array(PromptWithReference)
const Groups = Schema.Array(Group)

/** Input names the pairwise stage keeps for itself: a system cannot be called this. */
const RESERVED = new Set(["prompts"])

/** The pairs that meet: each system against the baseline, or every pair (in the order given). */
export const pairsOf = (systems: ReadonlyArray<string>, baseline: string, pairs: "baseline" | "all"): Array<readonly [string, string]> =>
  pairs === "all"
    ? systems.flatMap((a, i) => systems.slice(i + 1).map((b) => [a, b] as const))
    : systems.filter((s) => s !== baseline).map((s) => [s, baseline] as const)

/**
 * `pairwise`: the stage over the named systems (each an input of rollout groups, plus `prompts`).
 * Stories are paired by prompt and sample index (sample i of a with sample i of b, up to
 * `samples`). Each order is one judge call memoized under (prompt, both texts, order, sample)
 * and the judge's fingerprint, so no paid comparison is repeated; a comparison whose calls all
 * failed is recorded unscorable (no verdict, never a loss) and the output is then not cached.
 */
export const pairwise = (systems: ReadonlyArray<string>) => {
  for (const s of systems) if (RESERVED.has(s)) throw new Error(`a system cannot be named "${s}" (reserved by the pairwise stage)`)
  if (new Set(systems).size !== systems.length) throw new Error(`system names repeat: ${systems.join(", ")}`)
  return Stage.make({
    name: "pairwise",
    version: "1",
    resource: "judge",
    engines: [Judge],
    inputs: { prompts: Prompts, ...Object.fromEntries(systems.map((s) => [s, Groups])) } as { readonly prompts: typeof Prompts } & { readonly [system: string]: typeof Groups | typeof Prompts },
    params: Schema.Struct({
      baseline: Schema.String,
      pairs: Schema.Literals(["baseline", "all"]),
      samples: Schema.Int.check(Schema.isGreaterThan(0)),
      /** Comparisons judged at once (the judge's limiter still caps calls in flight). */
      concurrency: Schema.Int.check(Schema.isGreaterThan(0))
    }),
    output: Schema.Array(Comparison),
    cacheIf: (comparisons) => comparisons.every((c) => c.unscorable === null),
    run: (inputs, { baseline, pairs, samples, concurrency }, ctx) =>
      Effect.gen(function*() {
        if (!systems.includes(baseline)) return yield* Effect.die(new Error(`baseline ${JSON.stringify(baseline)} is not among the systems (${systems.join(", ")})`))
        const judge = yield* Judge
        const bucketOf = new Map(inputs.prompts.map((p) => [p.id, p.bucket ?? null]))
        const groupsOf = (s: string) => new Map((inputs[s] as ReadonlyArray<Group>).map((g) => [g.prompt_id, g]))
        const bySystem = new Map(systems.map((s) => [s, groupsOf(s)]))
        const plan = pairsOf(systems, baseline, pairs).flatMap(([a, b]) =>
          [...bySystem.get(a)!.values()].flatMap((ga) => {
            const gb = bySystem.get(b)!.get(ga.prompt_id)
            if (gb === undefined) return []
            const n = Math.min(samples, ga.samples.length, gb.samples.length)
            return Array.from({ length: n }, (_, i) => ({ a, b, prompt: ga.prompt, prompt_id: ga.prompt_id, sample: i, ta: stripThinking(ga.samples[i]!.text), tb: stripThinking(gb.samples[i]!.text) }))
          }))
        const spend = Spend.make()
        let done = 0
        const asked = (first: string, second: string, sample: number, prompt: string) =>
          memoCall(ctx, "preference", { prompt, first, second, sample }, Preference, (item) =>
            ctx.charge({ engine: "judge", expectedUsd: judge.expectedUsd?.({ preference: item }) ?? 0 }, spend.track(judge.compare(item)), (p) => p.cost_usd), { engine: judge })
        const toSystem = (w: Preference["winner"], firstIs: "a" | "b") => (w === "tie" ? "tie" : (w === "first") === (firstIs === "a") ? "a" : "b")
        const comparisons = yield* Budget.forEachPaid(plan, (c) =>
          Budget.forEachPaid([[c.ta, c.tb], [c.tb, c.ta]] as const, ([first, second]) => asked(first, second, c.sample, c.prompt), { concurrency: 2 }).pipe(
            Effect.map(([ab, ba]): Comparison => ({
              prompt_id: c.prompt_id, bucket: bucketOf.get(c.prompt_id) ?? null, sample: c.sample, a: c.a, b: c.b,
              ab: toSystem(ab!.winner, "a"), ba: toSystem(ba!.winner, "b"), preferences: [ab!, ba!], unscorable: null
            })),
            Effect.catchTag("JudgeError", (e: JudgeError) => Effect.succeed<Comparison>({
              prompt_id: c.prompt_id, bucket: bucketOf.get(c.prompt_id) ?? null, sample: c.sample, a: c.a, b: c.b,
              ab: null, ba: null, preferences: [], unscorable: { reason: e.reason, message: e.message, calls: e.calls ?? 0 }
            })),
            Effect.tap(() => ctx.progress(++done, plan.length))
          ), { concurrency: inFlight(judge, concurrency) })
        const scored = comparisons.filter((c) => c.unscorable === null)
        yield* ctx.metric({
          comparisons: comparisons.length,
          unscorable: comparisons.length - scored.length,
          position_consistency: scored.length === 0 ? null : scored.filter((c) => c.ab === c.ba).length / scored.length,
          judge_calls: spend.metrics().judge_calls,
          judge_cost_usd: spend.metrics().judge_cost_usd
        })
        return comparisons
      })
  })
}

/** Ratings of the systems in `comparisons` (scored ones), anchored on `baseline`. */
export const ratingsOf = (comparisons: ReadonlyArray<Comparison>, baseline: string, options: { readonly seed: string; readonly resamples: number }) => {
  const scored: Array<PairwiseComparison> = comparisons.flatMap((c) =>
    c.ab === null || c.ba === null ? [] : [{ prompt: c.prompt_id, a: c.a, b: c.b, ab: c.ab, ba: c.ba }])
  const systems = [...new Set(scored.flatMap((c) => [c.a, c.b]))]
  if (!systems.includes(baseline)) return { comparisons: scored.length, position_consistency: null, systems: [] as Array<SystemRating> }
  const ratings = bradleyTerryCI(scored, { anchor: baseline, seed: `${options.seed}:bt`, resamples: options.resamples })
  const rows = systems.map((name): SystemRating => {
    const r = ratings[name]!
    const w = name === baseline ? undefined : winRate(scored, name, baseline, { seed: `${options.seed}:${name}`, resamples: options.resamples })
    return {
      name,
      rating: r.rating,
      rating_ci: { low: r.low, high: r.high },
      vs_baseline: w === undefined || Number.isNaN(w.rate) ? null : { wins: w.wins, ties: w.ties, losses: w.losses, rate: w.rate, rate_ci: { low: w.low, high: w.high } }
    }
  }).sort((x, y) => y.rating - x.rating || x.name.localeCompare(y.name))
  return { comparisons: scored.length, position_consistency: positionConsistency(scored), systems: rows }
}

/** `rate-systems`: Bradley-Terry ratings, win rates and position consistency, overall and per bucket. */
export const rateSystems = Stage.make({
  name: "rate-systems",
  version: "1",
  inputs: { comparisons: Schema.Array(Comparison) },
  params: Schema.Struct({ baseline: Schema.String, seed: Schema.Int, resamples: Schema.Int.check(Schema.isGreaterThan(0)) }),
  output: Ratings,
  run: ({ comparisons }, { baseline, seed, resamples }, ctx) => {
    const options = { seed: `ratings:${seed}`, resamples }
    const overall = ratingsOf(comparisons, baseline, options)
    const names = [...new Set(comparisons.flatMap((c) => (c.bucket === null ? [] : [c.bucket])))]
    const buckets = Object.fromEntries(names.map((b) => [b, ratingsOf(comparisons.filter((c) => c.bucket === b), baseline, { ...options, seed: `${options.seed}:${b}` })]))
    const result: Ratings = { baseline, unscorable: comparisons.filter((c) => c.unscorable !== null).length, ...overall, buckets }
    return Effect.as(
      ctx.metric({
        comparisons: result.comparisons,
        position_consistency: result.position_consistency,
        ...Object.fromEntries(result.systems.map((s) => [`elo_${s.name}`, s.rating]))
      }),
      result
    )
  }
})
