/**
 * The judge audit's stages (pipelines/judgeAudit.ts, src/eval/JudgeAudit.ts):
 *
 *   audit-stories:  held-out human stories -> each with its damaged and padded versions
 *   audit-judge:    every version judged k times, and each story against its padded version in
 *                   both orders (memoized like any judge call, charged to the budget)
 *   audit-second-judge: the same by the second judge, when the recipe names one
 *   audit-summary:  the audit's numbers with bootstrap intervals
 */
import { Effect, Schema } from "effect"
import * as Budget from "../src/dag/Budget.ts"
import { memoCall } from "../src/dag/MemoCall.ts"
import * as Stage from "../src/dag/Stage.ts"
import { variants, VARIANTS, type Variant } from "../src/eval/Damage.ts"
import { audit } from "../src/eval/JudgeAudit.ts"
import { inFlight, Judge, type JudgeShape, Preference, Verdict } from "../src/engines/judge/Judge.ts"
import { SecondJudge } from "../src/engines/judge/SecondJudge.ts"
import { PromptWithReference } from "../src/records/PromptWithReference.ts"
import { AuditReport, AuditStory, JudgedStory, toReport } from "../src/records/JudgeAudit.ts"
import { storyWords } from "../src/grpo/Reward.ts"
import { promptText } from "../src/data/Prompts.ts"

export const auditStories = Stage.make({
  name: "audit-stories",
  version: "1",
  inputs: { prompts: Schema.Array(PromptWithReference) },
  params: Schema.Struct({ stories: Schema.Int.check(Schema.isGreaterThan(0)), seed: Schema.Int }),
  output: Schema.Array(AuditStory),
  run: ({ prompts }, { stories, seed }) =>
    Effect.succeed(prompts.slice(0, stories).map((p) => ({ id: p.id, prompt: promptText(p.requested_words, p.premise), variants: variants(p.reference, `${seed}:${p.id}`) })))
})

const judgeWith = (name: string, tag: typeof Judge | typeof SecondJudge) =>
  Stage.make({
    name,
    version: "1",
    resource: "judge",
    engines: [tag],
    inputs: { stories: Schema.Array(AuditStory) },
    params: Schema.Struct({ samples: Schema.Int.check(Schema.isGreaterThan(0)), concurrency: Schema.Int.check(Schema.isGreaterThan(0)) }),
    output: Schema.Array(JudgedStory),
    run: ({ stories }, { samples, concurrency }, ctx) =>
      Effect.gen(function*() {
        const judge: JudgeShape = yield* tag
        let done = 0
        const verdict = (prompt: string, story: string, sample: number) =>
          memoCall(ctx, "verdict", { prompt, story, sample }, Verdict, (item) =>
            ctx.charge({ engine: "judge", expectedUsd: judge.expectedUsd?.({ verdict: item }) ?? 0 }, judge.score(item), (v) => v.cost_usd), { engine: judge })
        const preference = (prompt: string, first: string, second: string) =>
          memoCall(ctx, "preference", { prompt, first, second, sample: 0 }, Preference, (item) =>
            ctx.charge({ engine: "judge", expectedUsd: judge.expectedUsd?.({ preference: item }) ?? 0 }, judge.compare(item), (p) => p.cost_usd), { engine: judge })
        return yield* Budget.forEachPaid(stories, (s) =>
          Effect.gen(function*() {
            const verdicts = yield* Budget.forEachPaid(VARIANTS, (v) =>
              Budget.forEachPaid(Array.from({ length: samples }, (_, k) => k), (k) => verdict(s.prompt, s.variants[v], k), { concurrency: samples }), { concurrency: 2 })
            const orders = [["original", "padded"], ["padded", "original"]] as const
            const prefs = yield* Budget.forEachPaid(orders, ([a, b]) => preference(s.prompt, s.variants[a], s.variants[b]), { concurrency: 2 })
            yield* ctx.progress(++done, stories.length)
            return {
              id: s.id,
              words: Object.fromEntries(VARIANTS.map((v) => [v, storyWords(s.variants[v])])) as Record<Variant, number>,
              verdicts: Object.fromEntries(VARIANTS.map((v, i) => [v, verdicts[i]!.map((x) => ({ quality: x.quality, scores: x.scores }))])) as unknown as JudgedStory["verdicts"],
              pairs: orders.map(([first], i) => ({ shownFirst: first, winner: prefs[i]!.winner })),
              judge: verdicts[0]![0]!.judge
            }
          }), { concurrency: inFlight(judge, concurrency) })
      })
  })

/** The recipe's judge on every version of every story. */
export const auditJudge = judgeWith("audit-judge", Judge)
/** The second judge (`audit.second_judge`) on the same. */
export const auditSecondJudge = judgeWith("audit-second-judge", SecondJudge)

export const auditSummary = Stage.make({
  name: "audit-summary",
  version: "1",
  // One list per judge: the recipe's, then the second when there is one.
  inputs: { judges: Schema.Array(Schema.Array(JudgedStory)) },
  params: Schema.Struct({ seed: Schema.Int }),
  output: AuditReport,
  run: ({ judges }, { seed }) =>
    Effect.sync(() => toReport(audit(judges[0]!, judges[1], `audit:${seed}`), judges.map((j) => j[0]?.judge ?? "unknown")))
})
