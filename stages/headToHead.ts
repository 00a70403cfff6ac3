/**
 * Stages of a head-to-head comparison across runs (`polaris compare --head-to-head`,
 * src/experiment/HeadToHead.ts): the stories and prompts the runs stored, read back by their
 * digest (so a node's key is exactly what it reads), and the comparisons of several pairings
 * pooled into one list for `rate-systems`.
 */
import { Effect, Schema } from "effect"
import * as Stage from "../src/dag/Stage.ts"
import * as StoredValue from "../src/dag/StoredValue.ts"
import { Comparison } from "../src/records/Comparison.ts"
import { Group } from "../src/records/Group.ts"
import { PromptWithReference } from "../src/records/PromptWithReference.ts"

const Digest = Schema.Struct({ object: Schema.String.check(Schema.isPattern(/^[0-9a-f]{64}$/)) })

const readStored = <A>(schema: Schema.Codec<A, any>, object: string, ctx: Stage.StageContext) =>
  Effect.flatMap(ctx.getBlob({ $blob: object, bytes: 0 }), (bytes) =>
    Effect.flatMap(StoredValue.decodeBytes(schema, bytes), (value) =>
      value._tag === "Some" ? Effect.succeed(value.value) : Effect.die(new Error(`stored object ${object} does not decode as the records this stage reads`))))

/** A run's stored rollout groups (an evaluated system's stories), by the object's digest. */
export const storedGroups = Stage.make({
  name: "stored-groups",
  version: "1",
  params: Digest,
  output: Schema.Array(Group),
  run: (_, { object }, ctx) => readStored(Schema.Array(Group), object, ctx)
})

/** A run's stored prompts (the held-out prompts its systems were asked), by the object's digest. */
export const storedPrompts = Stage.make({
  name: "stored-prompts",
  version: "1",
  params: Digest,
  output: Schema.Array(PromptWithReference),
  run: (_, { object }, ctx) => readStored(Schema.Array(PromptWithReference), object, ctx)
})

/** The comparisons of every pairing, in pairing order. */
export const poolComparisons = Stage.make({
  name: "pool-comparisons",
  version: "1",
  inputs: { lists: Schema.Array(Schema.Array(Comparison)) },
  output: Schema.Array(Comparison),
  run: ({ lists }) => Effect.succeed(lists.flat())
})
