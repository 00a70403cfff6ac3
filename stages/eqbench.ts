/**
 * EQ-Bench Creative Writing v3 as stages (pipelines/eqbench.ts, src/eval/EqBench.ts):
 *
 *   eqbench-items:     the benchmark's prompts × iterations, `<SEED>` substituted
 *   eqbench-generate:  one system's responses (its policy engine), memoized per item
 *   eqbench-judge:     the benchmark's rubric prompt to the judge, its scores read and aggregated
 *   eqbench-pairwise:  each system against the baseline with the benchmark's pairwise prompt,
 *                      both orders (margins of `+` summed; a win when both orders agree)
 *   eqbench-summary:   per system, the rubric score (0-100) with its interval, the slop index,
 *                      Bradley-Terry ratings on the Elo scale and the win rate against the baseline
 */
import { Effect, Schema } from "effect"
import * as Budget from "../src/dag/Budget.ts"
import { Location } from "../src/dag/Location.ts"
import { memoBatch } from "../src/dag/MemoBatch.ts"
import { memoCall } from "../src/dag/MemoCall.ts"
import * as Stage from "../src/dag/Stage.ts"
import * as EqBench from "../src/eval/EqBench.ts"
import { bootstrapCI, bradleyTerryCI, type PairwiseComparison, winRate } from "../src/eval/Stats.ts"
import { Completion, Judge } from "../src/engines/judge/Judge.ts"
import { PolicyEngines } from "../src/engines/PolicyEngines.ts"
import { defaultSamplingParams } from "../src/model/Sampling.ts"
import { sha256 } from "../src/dag/Canonical.ts"
import { stripThinking } from "../src/grpo/Reward.ts"
import { EqComparison, EqItem, EqResponse, EqScored, EqSummary } from "../src/records/EqBench.ts"
import { Sequences } from "../src/records/Group.ts"

const dataOf = (data: Location) => EqBench.load(data.$path).pipe(Effect.orDie)

export const eqbenchItems = Stage.make({
  name: "eqbench-items",
  version: "1",
  params: Schema.Struct({ data: Location, iterations: Schema.Int.check(Schema.isGreaterThan(0)), prompts: Schema.NullOr(Schema.Int) }),
  output: Schema.Array(EqItem),
  run: (_, { data, iterations, prompts }) =>
    Effect.map(dataOf(data), (d) => {
      const all = EqBench.items(d, iterations)
      const keep = prompts === null ? undefined : new Set([...new Set(all.map((i) => i.prompt_id))].slice(0, prompts))
      return keep === undefined ? all : all.filter((i) => keep.has(i.prompt_id))
    })
})

export const eqbenchGenerate = Stage.make({
  name: "eqbench-generate",
  version: "1",
  resource: "sampler",
  inputs: { items: Schema.Array(EqItem) },
  params: Schema.Struct({ system: Schema.String, model: Schema.Record(Schema.String, Schema.Unknown), temperature: Schema.Number, max_tokens: Schema.Int, seed: Schema.Int }),
  output: Schema.Array(EqResponse),
  run: ({ items }, { system, temperature, max_tokens, seed }, ctx) =>
    Effect.gen(function*() {
      const engine = yield* (yield* PolicyEngines).get(system)
      const requests = items.map((item) => ({
        checkpoint: engine.fingerprint,
        prompt: engine.promptIds(item.prompt),
        n: 1,
        params: { ...defaultSamplingParams, temperature, maxTokens: max_tokens, seed: parseInt(sha256(`${seed}:${item.id}`).slice(0, 7), 16) }
      }))
      const sampled = yield* memoBatch(ctx, "response", requests, Sequences, (missing) =>
        Effect.map(engine.sample(missing), (out) => out.map((seqs) => seqs.map((s) => ({ tokens: [...s.tokens], logprobs: [...s.logprobs], stop_reason: s.stopReason })))))
      return items.map((item, i) => ({ id: item.id, text: stripThinking(engine.tokenizer.decode(sampled[i]![0]!.tokens.filter((t) => t !== engine.endToken), { skipSpecial: true })) }))
    })
})

const completeWith = (ctx: Stage.StageContext, prompt: string) =>
  Effect.gen(function*() {
    const judge = yield* Judge
    if (judge.complete === undefined) return yield* Effect.die(new Error("EQ-Bench needs a judge that reads the benchmark's own prompts (judge.backend gemini or openai); this judge reads none"))
    const complete = judge.complete
    return yield* memoCall(ctx, "completion", { prompt }, Completion, (item) =>
      ctx.charge({ engine: "judge", expectedUsd: 0 }, complete(item.prompt), (c) => c.cost_usd))
  })

export const eqbenchJudge = Stage.make({
  name: "eqbench-judge",
  version: "1",
  resource: "judge",
  engines: [Judge],
  inputs: { items: Schema.Array(EqItem), responses: Schema.Array(EqResponse) },
  params: Schema.Struct({ data: Location, concurrency: Schema.Int.check(Schema.isGreaterThan(0)) }),
  output: Schema.Array(EqScored),
  run: ({ items, responses }, { data, concurrency }, ctx) =>
    Effect.gen(function*() {
      const d = yield* dataOf(data)
      const text = new Map(responses.map((r) => [r.id, r.text]))
      let done = 0
      return yield* Budget.forEachPaid(items, (item) =>
        Effect.map(completeWith(ctx, EqBench.judgePrompt(d, item, text.get(item.id) ?? "")), (c) => {
          const scores = EqBench.parseScores(c.text)
          const score = EqBench.itemScore(scores, d.negative)
          return { id: item.id, scores, score: Number.isFinite(score) ? score : null }
        }).pipe(Effect.tap(() => ctx.progress(++done, items.length))), { concurrency })
    })
})

/** `eqbench-pairwise(systems)`: each system against `baseline`, per item, in both orders. */
export const eqbenchPairwise = (systems: ReadonlyArray<string>) =>
  Stage.make({
    name: "eqbench-pairwise",
    version: "1",
    resource: "judge",
    engines: [Judge],
    inputs: { items: Schema.Array(EqItem), ...Object.fromEntries(systems.map((s) => [s, Schema.Array(EqResponse)])) } as { readonly items: Schema.$Array<typeof EqItem> } & { readonly [s: string]: Schema.$Array<typeof EqResponse> | Schema.$Array<typeof EqItem> },
    params: Schema.Struct({ data: Location, baseline: Schema.String, concurrency: Schema.Int.check(Schema.isGreaterThan(0)) }),
    output: Schema.Array(EqComparison),
    run: (inputs, { data, baseline, concurrency }, ctx) =>
      Effect.gen(function*() {
        const d = yield* dataOf(data)
        const items = inputs.items as ReadonlyArray<EqItem>
        const textOf = (s: string) => new Map((inputs[s] as ReadonlyArray<EqResponse>).map((r) => [r.id, r.text]))
        const base = textOf(baseline)
        const plan = systems.filter((s) => s !== baseline).flatMap((s) => items.map((item) => ({ s, item, mine: textOf(s).get(item.id) ?? "", theirs: base.get(item.id) ?? "" })))
        // The writer shown as A0493 wins when its margins sum higher; equal sums tie.
        const verdict = (text: string, first: "a" | "b"): "a" | "b" | "tie" => {
          const { a, b } = EqBench.parsePairwise(text)
          return a === b ? "tie" : (a > b) === (first === "a") ? "a" : "b"
        }
        return yield* Budget.forEachPaid(plan, ({ s, item, mine, theirs }) =>
          Effect.map(Effect.all([completeWith(ctx, EqBench.pairwisePrompt(d, item, mine, theirs)), completeWith(ctx, EqBench.pairwisePrompt(d, item, theirs, mine))], { concurrency: 2 }),
            ([ab, ba]) => ({ prompt: item.id, a: s, b: baseline, ab: verdict(ab.text, "a"), ba: verdict(ba.text, "b") })), { concurrency })
      })
  })

export const eqbenchSummary = (systems: ReadonlyArray<string>) =>
  Stage.make({
    name: "eqbench-summary",
    version: "1",
    inputs: {
      scored: Schema.Array(Schema.Array(EqScored)),
      responses: Schema.Array(Schema.Array(EqResponse)),
      comparisons: Schema.Array(EqComparison)
    },
    params: Schema.Struct({ data: Location, baseline: Schema.String, seed: Schema.Int }),
    output: EqSummary,
    run: ({ scored, responses, comparisons }, { data, baseline, seed }) =>
      Effect.map(dataOf(data), (d) => {
        const finite = (x: number) => (Number.isFinite(x) ? x : null)
        const est = (i: { estimate: number; low: number; high: number }) => ({ estimate: finite(i.estimate), low: finite(i.low), high: finite(i.high) })
        const cs: Array<PairwiseComparison> = comparisons.map((c) => ({ prompt: c.prompt, a: c.a, b: c.b, ab: c.ab, ba: c.ba }))
        const ratings = cs.length === 0 ? {} : bradleyTerryCI(cs, { anchor: baseline, seed: `eqbench:${seed}:bt` })
        return {
          baseline,
          items: scored[0]?.length ?? 0,
          systems: systems.map((name, i) => {
            const scores = scored[i]!.flatMap((x) => (x.score === null ? [] : [x.score * 5]))
            const r = (ratings as Record<string, { rating: number; low: number; high: number }>)[name]
            const w = name === baseline || cs.length === 0 ? undefined : winRate(cs, name, baseline, { seed: `eqbench:${seed}:${name}` })
            return {
              name,
              rubric_score: est(bootstrapCI(scores, { seed: `eqbench:${seed}:${name}:rubric` })),
              scored: scores.length,
              slop_index: EqBench.slopIndex(responses[i]!.map((x) => x.text).join("\n\n"), d.slop),
              elo: r === undefined ? { estimate: null, low: null, high: null } : est({ estimate: r.rating, low: r.low, high: r.high }),
              win_rate: w === undefined ? null : est({ estimate: w.rate, low: w.low, high: w.high })
            }
          })
        }
      })
  })
