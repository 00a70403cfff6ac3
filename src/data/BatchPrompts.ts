/** The prompts a training batch names, looked up among the recipe's prompts. */
import { Effect } from "effect"
import { PermanentError } from "../dag/Retry.ts"
import type { Batch } from "../records/Batch.ts"
import type { PromptWithReference } from "../records/PromptWithReference.ts"

/** The prompts of a batch, in batch order, or a clear error naming a missing id. */
export const promptsOfBatch = (prompts: ReadonlyArray<PromptWithReference>, batch: Batch): Effect.Effect<Array<PromptWithReference>, PermanentError> => {
  const byId = new Map(prompts.map((p) => [p.id, p]))
  return Effect.forEach(batch.prompts, (id) => {
    const p = byId.get(id)
    return p === undefined ? Effect.fail(new PermanentError({ message: `the batch names prompt ${id}, which is not among the training prompts` })) : Effect.succeed(p)
  })
}
