/**
 * `reference-candidates`: the human reference of each prompt as a story to judge (its prompt
 * text exactly as the policy sees it), for calibrating a judge on human writing.
 */
import { Effect, Schema } from "effect"
import { promptText } from "../src/data/Prompts.ts"
import * as Stage from "../src/dag/Stage.ts"
import { PromptWithReference } from "../src/records/PromptWithReference.ts"
import { Candidate } from "../src/records/Judgement.ts"

export const referenceCandidates = Stage.make({
  name: "reference-candidates",
  version: "1",
  inputs: { prompts: Schema.Array(PromptWithReference) },
  output: Schema.Array(Candidate),
  run: ({ prompts }) =>
    Effect.succeed(prompts.map((p) => ({
      id: p.id,
      prompt: promptText(p.requested_words, p.premise),
      text: p.reference,
      requested_words: p.requested_words
    })))
})
