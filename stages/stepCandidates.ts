/**
 * `step-candidates`: a step's stories to judge: every rollout (`<prompt>#<i>`) and the human
 * reference (`<prompt>#ref`) of every group, each with the prompt it answers.
 */
import { Effect, Schema } from "effect"
import * as Stage from "../src/dag/Stage.ts"
import { Candidate } from "../src/records/Judgement.ts"
import { Reference } from "../src/records/Reference.ts"
import { Group } from "../src/records/Group.ts"

export const rolloutId = (prompt: string, i: number) => `${prompt}#${i}`
export const referenceId = (prompt: string) => `${prompt}#ref`

export const stepCandidates = Stage.make({
  name: "step-candidates",
  version: "1",
  inputs: { groups: Schema.Array(Group), references: Schema.Array(Reference) },
  output: Schema.Array(Candidate),
  run: ({ groups, references }) => {
    const refs = new Map(references.map((r) => [r.prompt_id, r]))
    return Effect.succeed(groups.flatMap((g) => [
      ...g.samples.map((s, i) => ({ id: rolloutId(g.prompt_id, i), prompt: g.prompt, text: s.text, requested_words: g.requested_words })),
      ...(refs.has(g.prompt_id) ? [{ id: referenceId(g.prompt_id), prompt: g.prompt, text: refs.get(g.prompt_id)!.text, requested_words: g.requested_words }] : [])
    ]))
  }
})

/** An empty reference list for a step or an evaluation that injects none. */
export const noReferences = Stage.make({
  name: "no-references",
  version: "1",
  inputs: { groups: Schema.Array(Group) },
  output: Schema.Array(Reference),
  run: () => Effect.succeed([])
})
