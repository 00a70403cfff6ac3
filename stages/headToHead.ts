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

/** A stage that reads a run's stored object of `schema` by its digest. */
const stored = <A>(name: string, schema: Schema.Codec<A, any>) =>
  Stage.make({ name, version: "1", params: Digest, output: schema, run: (_, { object }, ctx) => readStored(schema, object, ctx) })

/** A run's stored rollout groups (an evaluated system's stories), by the object's digest. */
export const storedGroups = stored("stored-groups", Schema.Array(Group))

/** A run's stored prompts (the held-out prompts its systems were asked), by the object's digest. */
export const storedPrompts = stored("stored-prompts", Schema.Array(PromptWithReference))

/** The comparisons of every pairing, in pairing order. */
export const poolComparisons = Stage.make({
  name: "pool-comparisons",
  version: "1",
  inputs: { lists: Schema.Array(Schema.Array(Comparison)) },
  output: Schema.Array(Comparison),
  run: ({ lists }) => Effect.succeed(lists.flat())
})
