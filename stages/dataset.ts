/** `dataset`: length filters, de-duplication and the deterministic train / held-out split. */
import { Effect, Schema } from "effect"
import { DatasetParams, prepareDataset } from "../src/data/Dataset.ts"
import { Story } from "../src/data/Story.ts"
import * as Stage from "../src/dag/Stage.ts"
import { Dataset } from "../src/records/Dataset.ts"

export const dataset = Stage.make({
  name: "dataset",
  version: "1",
  inputs: { stories: Schema.Array(Story) },
  params: DatasetParams,
  output: Dataset,
  run: ({ stories }, params, ctx) => {
    const result = prepareDataset(stories, params)
    return Effect.as(ctx.metric({ ...result.report }), { train: result.train, heldout: result.heldout, report: { ...result.report } })
  }
})

/** The training stories of a dataset (a projection, so prompt derivation keys on them alone). */
export const trainOf = Stage.make({
  name: "train-stories",
  version: "1",
  inputs: { dataset: Dataset },
  output: Schema.Array(Story),
  run: ({ dataset }) => Effect.succeed(dataset.train)
})

/** The held-out stories of a dataset, for evaluation prompts. */
export const heldoutOf = Stage.make({
  name: "heldout-stories",
  version: "1",
  inputs: { dataset: Dataset },
  output: Schema.Array(Story),
  run: ({ dataset }) => Effect.succeed(dataset.heldout)
})
