/**
 * `reward-alarms`: the step's reward-hacking alarms (src/eval/Alarms.ts), between its `groups`
 * and its update. It passes the train batch through unchanged, so the update's key is the one it
 * has without alarms; it records each alarm's value as a metric (`alarm_<name>`) and each tripped
 * one as `alarm:<name>`, which the live view, the run summary and the report show. With
 * `stop: true`, a tripped alarm fails the node, so the step does not train on those rewards; the
 * run can be resumed after raising the threshold (a new key for this node only) or with `stop:
 * false`, and nothing finished is repeated.
 */
import { Data, Effect, Schema } from "effect"
import * as Stage from "../src/dag/Stage.ts"
import { ALARMS, type Alarm, metricKey, tripped, values } from "../src/eval/Alarms.ts"
import { Judgement } from "../src/records/Judgement.ts"
import { TrainBatch } from "../src/records/TrainBatch.ts"
import { referenceId } from "./stepCandidates.ts"

const isReferenceId = (id: string) => id === referenceId(id.slice(0, id.lastIndexOf("#")))

export class AlarmTripped extends Data.TaggedError("AlarmTripped")<{ readonly alarms: ReadonlyArray<{ readonly alarm: Alarm; readonly value: number; readonly threshold: number }> }> {
  override get message() {
    return `reward-hacking alarm: ${this.alarms.map((a) => `${a.alarm} ${a.value.toFixed(3)} > ${a.threshold}`).join(", ")} (alarms.stop is on; raise the threshold or set alarms.stop: false, then polaris resume)`
  }
}

const Threshold = Schema.optional(Schema.Number)

export const rewardAlarms = Stage.make({
  name: "reward-alarms",
  version: "1",
  inputs: { batch: TrainBatch, first: TrainBatch, judged: Schema.Array(Schema.Array(Judgement)) },
  params: Schema.Struct({ ...Object.fromEntries(ALARMS.map((a) => [a, Threshold])) as { readonly [A in Alarm]: typeof Threshold }, stop: Schema.Boolean }),
  output: TrainBatch,
  run: ({ batch, first, judged }, params, ctx) =>
    Effect.gen(function*() {
      const m = batch.metrics
      const stories = judged.flat()
      const groups = judged.map((g) => ({
        rollouts: g.filter((j) => !isReferenceId(j.id)).map((j) => j.reward),
        reference: g.find((j) => isReferenceId(j.id))?.reward ?? null
      }))
      const v = values({
        rewardLengthCorr: m.reward_length_corr ?? null,
        groups,
        stories: stories.length,
        unscorable: stories.filter((j) => j.unscorable !== null).length,
        lengthRatio: m.length_ratio_mean ?? null,
        firstLengthRatio: first.metrics.length_ratio_mean ?? null
      })
      const trips = tripped(v, params)
      yield* ctx.metric({
        ...Object.fromEntries(ALARMS.flatMap((a) => (v[a] === null ? [] : [[`alarm_${a}`, v[a]]]))),
        ...Object.fromEntries(trips.map((t) => [metricKey(t.alarm), t.value]))
      })
      if (trips.length > 0 && params.stop) return yield* new AlarmTripped({ alarms: trips })
      return batch
    })
})
