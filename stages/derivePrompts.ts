/**
 * `derive-prompts`: one prompt per story, `Write a N-word story about <premise>.`, with N the
 * story's length rounded to `round_to`. The premise comes from the Writer engine (extractive in
 * the embedded default, an LLM at real scale), memoized per story so no paid call repeats (the
 * extractive writer is `local`: called again, never stored).
 * In `excerpt` mode the reference is the story's opening, cut at a paragraph boundary to fit
 * `max_words`, and the prompt asks for that length.
 */
import { Effect, Schema } from "effect"
import { excerpt, requestedWords } from "../src/data/Prompts.ts"
import { Story } from "../src/data/Story.ts"
import { Writer } from "../src/engines/Writer.ts"
import { memoCall } from "../src/dag/MemoCall.ts"
import * as Stage from "../src/dag/Stage.ts"
import { countWords } from "../src/text/WordCount.ts"
import { PromptWithReference } from "../src/records/PromptWithReference.ts"

export const derivePrompts = Stage.make({
  name: "derive-prompts",
  version: "1",
  resource: "writer",
  engines: [Writer],
  inputs: { stories: Schema.Array(Story) },
  params: Schema.Struct({
    round_to: Schema.Int.check(Schema.isGreaterThan(0)),
    mode: Schema.Literals(["full", "excerpt"]),
    max_words: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThan(0)))
  }),
  output: Schema.Array(PromptWithReference),
  run: ({ stories }, { round_to, mode, max_words }, ctx) =>
    Effect.gen(function*() {
      const writer = yield* Writer
      let done = 0
      return yield* Effect.forEach(stories, (story) =>
        Effect.gen(function*() {
          const reference = mode === "excerpt" && max_words !== undefined ? excerpt(story.text, max_words) : story.text
          // Keyed by what the writer reads (title and text); its model and settings are its fingerprint.
          // The memo keeps the premise alone; a paid call is charged to the run's budget first.
          const premise = yield* memoCall(ctx, "premise", { title: story.title, text: reference }, Schema.String, (source) =>
            Effect.map(ctx.charge({ engine: "writer", expectedUsd: writer.expectedUsd(source) }, writer.premise(source), (p) => p.cost_usd), (p) => p.premise), { engine: writer })
          yield* ctx.progress(++done, stories.length)
          return {
            id: `${story.id}-${mode}`,
            story_id: story.id,
            premise,
            requested_words: requestedWords(countWords(reference), round_to),
            reference
          }
        }), { concurrency: 4 })
    })
})
