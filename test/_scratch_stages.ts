import { Effect, Schema } from "effect"
import { Stage } from "polaris"

export const twoInputs = Stage.make({
  name: "two-inputs",
  version: "1",
  inputs: { a: Schema.Unknown, b: Schema.Unknown },
  output: Schema.Unknown,
  run: ({ a }) => Effect.succeed(a)
})

export const wantsStrings = Stage.make({
  name: "wants-strings",
  version: "1",
  inputs: { xs: Schema.Array(Schema.String) },
  output: Schema.Array(Schema.String),
  run: ({ xs }) => Effect.succeed(xs)
})

export const notAStage = 42
