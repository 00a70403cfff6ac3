/**
 * `split-stories`: anthology sources (Gutenberg books, story folders, JSONL, EPUB) into clean,
 * titled stories with stable ids. The sources enter the key by the digest of their bytes, so an
 * edited book re-runs this stage and an untouched one never does.
 */
import { Effect, Schema } from "effect"
import { ingestAll } from "../src/data/Ingest.ts"
import { Story } from "../src/data/Story.ts"
import * as Stage from "../src/dag/Stage.ts"
import { Location } from "../src/dag/Location.ts"

export const splitStories = Stage.make({
  name: "split-stories",
  version: "1",
  params: Schema.Struct({ sources: Schema.Array(Location) }),
  output: Schema.Array(Story),
  run: (_, { sources }, ctx) =>
    ingestAll(sources.map((s) => s.$path)).pipe(
      Effect.tap((stories) => ctx.metric({ stories: stories.length, anthologies: new Set(stories.map((s) => s.anthology)).size }))
    )
})
