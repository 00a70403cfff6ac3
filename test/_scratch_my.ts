/**
 * A custom stage, inserted into the word-stats pipeline by `with-custom-stage.yaml`:
 *
 *   stages:
 *     - uses: ./my-stages.ts#dropShortWords
 *       after: count
 *
 * It takes the output of `count` and every consumer of `count` gets its output instead. It is
 * cached, retried and resumed like a built-in stage; editing this file re-runs it (and, when
 * its output changes, what depends on it).
 */
import { Effect, Schema } from "effect"
import { Stage } from "polaris"

const TextStats = Schema.Struct({ name: Schema.String, words: Schema.Number, counts: Schema.Record(Schema.String, Schema.Number) })

export const dropShortWords = Stage.make({
  name: "drop-short-words",
  version: "1",
  inputs: { stats: Schema.Array(TextStats) },
  output: Schema.Array(TextStats),
  params: Schema.Struct({ min_length: Schema.Int }),
  run: ({ stats }, { min_length }) =>
    Effect.succeed(stats.map((s) => {
      const counts = Object.fromEntries(Object.entries(s.counts).filter(([w]) => w.length >= min_length))
      return { ...s, counts, words: Object.values(counts).reduce((a, b) => a + b, 0) }
    }))
})
// edited
// edited again
