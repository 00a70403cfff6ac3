/**
 * `judge`: scores stories with the recipe's Judge and turns the scores into rewards.
 *
 * Each (story text, prompt, sample) is memoized under its own key, which also carries the judge's
 * fingerprint (backend, model, settings, rubric id + version + content), so no paid call is ever
 * repeated: not after a crash, not in another run. A story whose judge calls all failed is
 * recorded as unscorable with the reason, with no quality and no reward (never 0); failures are
 * not memoized and such an output is not cached (`cacheIf`), so a later run or `resume` judges
 * those stories again, and only those.
 */
import { Effect, Schema } from "effect"
import { inFlight, Judge, JudgeError, Verdict } from "../src/engines/judge/Judge.ts"
import { lengthScore, reward, stripThinking, storyWords } from "../src/grpo/Reward.ts"
import * as Budget from "../src/dag/Budget.ts"
import { memoCall } from "../src/dag/MemoCall.ts"
import * as Spend from "../src/engines/judge/Spend.ts"
import * as Stage from "../src/dag/Stage.ts"
import { Candidate, Judgement } from "../src/records/Judgement.ts"

export const judge = Stage.make({
  name: "judge",
  version: "1",
  resource: "judge",
  engines: [Judge],
  inputs: { stories: Schema.Array(Candidate) },
  params: Schema.Struct({
    /** Verdicts per story, averaged (rubric.md: 1 online, 2-3 for evaluation). */
    samples: Schema.Int.check(Schema.isGreaterThan(0)),
    length_factor: Schema.Literals(["longwriter", "none"]),
    /** Stories judged at once (the judge's own limiter still caps calls in flight). */
    concurrency: Schema.Int.check(Schema.isGreaterThan(0))
  }),
  output: Schema.Array(Judgement),
  // With unscorable stories the output is used now but not cached: the next run retries them.
  cacheIf: (judged) => judged.every((j) => j.unscorable === null),
  run: ({ stories }, { samples, length_factor, concurrency }, ctx) =>
    Effect.gen(function*() {
      const judge = yield* Judge
      const spend = Spend.make()
      let done = 0
      const judged = yield* Budget.forEachPaid(stories, (story) =>
        Effect.gen(function*() {
          const text = stripThinking(story.text)
          const verdicts = yield* Budget.forEachPaid(Array.from({ length: samples }, (_, k) => k), (sample) =>
            memoCall(ctx, "verdict", { prompt: story.prompt, story: text, sample }, Verdict, (item) =>
              ctx.charge({ engine: "judge", expectedUsd: judge.expectedUsd?.({ verdict: item }) ?? 0 }, spend.track(judge.score(item)), (v) => v.cost_usd), { engine: judge }),
            { concurrency: samples })
          return verdicts
        }).pipe(
          Effect.map((verdicts) => ({ verdicts, unscorable: null })),
          Effect.catchTag("JudgeError", (e: JudgeError) =>
            Effect.succeed({ verdicts: [] as ReadonlyArray<Verdict>, unscorable: { reason: e.reason, message: e.message, calls: e.calls ?? 0 } })),
          Effect.map(({ verdicts, unscorable }): Judgement => {
            const words = storyWords(story.text)
            const qualities = verdicts.map((v) => v.quality).filter((q) => !Number.isNaN(q))
            const quality = unscorable === null && qualities.length > 0 ? qualities.reduce((a, b) => a + b, 0) / qualities.length : null
            return {
              id: story.id,
              words,
              length_score: lengthScore(story.requested_words, words),
              quality,
              reward: reward({ quality, requested: story.requested_words, words, lengthFactor: length_factor }),
              verdicts,
              unscorable
            }
          }),
          Effect.tap(() => ctx.progress(++done, stories.length))
        ), { concurrency: inFlight(judge, concurrency) })
      const scored = judged.filter((j) => j.quality !== null)
      yield* ctx.metric({
        stories: judged.length,
        unscorable: judged.length - scored.length,
        quality_mean: scored.length > 0 ? scored.reduce((s, j) => s + j.quality!, 0) / scored.length : null,
        ...spend.metrics()
      })
      return judged
    })
})
