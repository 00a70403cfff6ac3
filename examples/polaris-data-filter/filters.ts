/**
 * A custom stage for the built-in polaris-data pipeline, inserted after `split-stories` by
 * recipe.yaml beside this file: it keeps only stories that open with narration rather than
 * dialogue, a filter one might try for a style experiment. Its file is part of its cache key.
 */
import { Effect, Schema } from "effect"
import { Stage } from "polaris"

const Story = Schema.Struct({ id: Schema.String, anthology: Schema.String, title: Schema.String, text: Schema.String, words: Schema.Number })

export const dropDialogueOpenings = Stage.make({
  name: "drop-dialogue-openings",
  version: "1",
  inputs: { stories: Schema.Array(Story) },
  output: Schema.Array(Story),
  run: ({ stories }, _, ctx) => {
    const kept = stories.filter((s) => !/^\s*["“'‘]/.test(s.text))
    return Effect.as(ctx.metric({ kept: kept.length, dropped: stories.length - kept.length }), kept)
  }
})
