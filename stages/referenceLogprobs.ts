/**
 * `reference-logprobs`: each prompt's human story laid out in the same chat template as the
 * rollouts, tokenized, and scored by teacher forcing under the current policy (HRI's off-policy
 * member). Long references are cut to the step's token cap, like a rollout would be.
 * The completion ends with the tokenizer's own end-of-turn token (`eos_token`).
 */
import { Effect, Schema } from "effect"
import { promptText } from "../src/data/Prompts.ts"
import { PolicyEngine } from "../src/engines/PolicyEngine.ts"
import { completionIds } from "../src/model/tokenizer/ChatTemplate.ts"
import { memoBatch } from "../src/dag/MemoBatch.ts"
import * as Stage from "../src/dag/Stage.ts"
import { identity, samplingWeights } from "../src/engines/PolicyCheckpoint.ts"
import { PromptWithReference } from "../src/records/PromptWithReference.ts"
import { SamplingSettings } from "../src/records/Group.ts"
import { PolicyState } from "../src/records/TrainState.ts"
import { Reference } from "../src/records/Reference.ts"

export const referenceLogprobs = Stage.make({
  name: "reference-logprobs",
  version: "1",
  resource: "policy",
  engines: [PolicyEngine],
  inputs: { prompts: Schema.Array(PromptWithReference), policy: PolicyState },
  params: Schema.Struct({ sampling: SamplingSettings }),
  output: Schema.Array(Reference),
  run: ({ prompts, policy }, { sampling }, ctx) =>
    Effect.gen(function*() {
      const engine = yield* PolicyEngine
      const weights = yield* samplingWeights(ctx, policy)
      const checkpoint = identity(policy.checkpoint)
      const items = prompts.map((p) => {
        const cap = Math.max(1, Math.min(sampling.max_tokens, Math.ceil(p.requested_words * sampling.tokens_per_word)))
        const all = completionIds(engine.tokenizer, p.reference)
        // A human story has no reasoning: it is laid out as a reply with thinking off (Qwen3-style
        // templates then put an empty think block in the prompt), whatever the rollouts use.
        const request = { checkpoint, prompt: engine.promptIds(promptText(p.requested_words, p.premise), { enableThinking: false }), completion: all.slice(0, cap) }
        return { p, request, truncated: all.length > cap }
      })
      // One memo per reference, keyed by what is scored (prompt and completion ids, checkpoint); the missing ones in one call.
      const lps = yield* memoBatch(ctx, "reference-logprobs", items.map((i) => i.request), Schema.Array(Schema.Number), (missing) =>
        Effect.map(engine.logprobs(missing, weights), (all) => all.map((a) => Array.from(a))))
      return items.map((it, k) => ({
        prompt_id: it.p.id,
        prompt_tokens: it.request.prompt,
        tokens: it.request.completion,
        logprobs: lps[k]!,
        text: engine.tokenizer.decode(it.request.completion, { skipSpecial: true }),
        truncated: it.truncated
      }))
    })
})
