/** The dataset: training and held-out stories after filters and de-duplication, with a report of what was dropped. */
import { Schema } from "effect"
import { Story } from "../data/Story.ts"

export const Dataset = Schema.Struct({
  train: Schema.Array(Story),
  heldout: Schema.Array(Story),
  report: Schema.Record(Schema.String, Schema.Number)
})
