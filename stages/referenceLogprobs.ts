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
import * as Stage from "../src/dag/Stage.ts"
import { PromptWithReference } from "../src/records/PromptWithReference.ts"
import { promptsOfBatch } from "./rollout.ts"
import { SamplingSettings } from "../src/records/Group.ts"
import { Batch } from "../src/records/Batch.ts"
import { PolicyState } from "../src/records/TrainState.ts"
import { Reference } from "../src/records/Reference.ts"

export const referenceLogprobs = Stage.make({
  name: "reference-logprobs",
  version: "1",
  resource: "policy",
  engines: [PolicyEngine],
  inputs: { prompts: Schema.Array(PromptWithReference), batch: Batch, policy: PolicyState },
  params: Schema.Struct({ sampling: SamplingSettings }),
  output: Schema.Array(Reference),
  run: ({ prompts, batch, policy }, { sampling }, ctx) =>
    Effect.gen(function*() {
      const engine = yield* PolicyEngine
      yield* engine.load({ path: policy.checkpoint })
      const chosen = yield* promptsOfBatch(prompts, batch)
      const items = chosen.map((p) => {
        const cap = Math.max(1, Math.min(sampling.max_tokens, Math.ceil(p.requested_words * sampling.tokens_per_word)))
        const all = completionIds(engine.tokenizer, p.reference)
        const tokens = all.slice(0, cap)
        // A human story has no reasoning: it is laid out as a reply with thinking off (Qwen3-style
        // templates then put an empty think block in the prompt), whatever the rollouts use.
        return { p, prompt: engine.promptIds(promptText(p.requested_words, p.premise), { enableThinking: false }), tokens, truncated: all.length > cap }
      })
      const lps = yield* ctx.memo("reference-logprobs", { checkpoint: policy.checkpoint, prompts: items.map((i) => i.p.id), sampling },
        Schema.Array(Schema.Array(Schema.Number)),
        Effect.map(engine.logprobs(items.map((i) => ({ prompt: i.prompt, completion: i.tokens }))), (all) => all.map((a) => Array.from(a))))
      return items.map((it, k) => ({
        prompt_id: it.p.id,
        prompt_tokens: it.prompt,
        tokens: it.tokens,
        logprobs: lps[k]!,
        text: engine.tokenizer.decode(it.tokens, { skipSpecial: true }),
        truncated: it.truncated
      }))
    })
})
