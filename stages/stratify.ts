/**
 * `stratify`: prompts into requested-length buckets (named like `1000-2000`, upper edge
 * exclusive), the sampler's input. Prompts outside every bucket are left out and counted.
 * Edges must increase and weights, when given, match the buckets one to one.
 */
import { Effect, Schema } from "effect"
import { Prompt } from "../src/data/Prompts.ts"
import { bucketOf, stratify as byBucket } from "../src/data/Sampler.ts"
import { PermanentError } from "../src/dag/Retry.ts"
import * as Stage from "../src/dag/Stage.ts"
import { Strata } from "../src/records/Strata.ts"

export const stratify = Stage.make({
  name: "stratify",
  version: "1",
  inputs: { prompts: Schema.Array(Prompt) },
  params: Schema.Struct({ edges: Schema.Array(Schema.Number), weights: Schema.optionalKey(Schema.Array(Schema.Number)) }),
  output: Strata,
  run: ({ prompts }, { edges, weights }) => {
    if (edges.length < 2 || edges.some((e, i) => i > 0 && e <= edges[i - 1]!)) {
      return Effect.fail(new PermanentError({ message: `bucket edges must be at least two increasing numbers, got [${edges.join(", ")}]` }))
    }
    if (weights !== undefined && weights.length !== edges.length - 1) {
      return Effect.fail(new PermanentError({ message: `${edges.length - 1} buckets need ${edges.length - 1} weights, got ${weights.length}` }))
    }
    const candidates = prompts.map((p) => ({ id: p.id, requestedWords: p.requested_words }))
    const buckets = byBucket(candidates, edges)
    const names = edges.slice(0, -1).map((lo, i) => `${lo}-${edges[i + 1]}`)
    const outside = candidates.filter((c) => bucketOf(edges, c.requestedWords) < 0).length
    return Effect.succeed({ edges, weights: weights ?? names.map(() => 1), names, buckets, outside })
  }
})
