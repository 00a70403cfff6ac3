/**
 * `batch-prompts`: the prompts a batch names, in batch order, or (`group: i`) only its i-th, so
 * a node that samples, scores or judges gets exactly the prompts it works on: its key changes
 * with them and with nothing else in the prompt set. One node per group lets each group's
 * rollouts, reference logprobs and judging run as soon as what they need is there.
 */
import { Effect, Schema } from "effect"
import { promptsOfBatch } from "../src/data/BatchPrompts.ts"
import { PermanentError } from "../src/dag/Retry.ts"
import * as Stage from "../src/dag/Stage.ts"
import { Batch } from "../src/records/Batch.ts"
import { PromptWithReference } from "../src/records/PromptWithReference.ts"

export const batchPrompts = Stage.make({
  name: "batch-prompts",
  version: "1",
  inputs: { prompts: Schema.Array(PromptWithReference), batch: Batch },
  params: Schema.Struct({ group: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))) }),
  output: Schema.Array(PromptWithReference),
  run: ({ prompts, batch }, { group }) =>
    Effect.gen(function*() {
      const chosen = yield* promptsOfBatch(prompts, batch)
      if (group === undefined) return chosen
      if (group >= chosen.length) return yield* new PermanentError({ message: `the batch has ${chosen.length} prompts; there is no group ${group}` })
      return [chosen[group]!]
    })
})
