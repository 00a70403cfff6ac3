/**
 * `rollout`: for each prompt it is given (a step's group, or an evaluation's prompts), group_size − 1 continuations from the current policy
 * with the recipe's sampling settings. Token ids and sampler logprobs are kept for the loss;
 * the text is decoded for the judge (thinking traces are stripped at judging, kept for the loss).
 * Each group is memoized under its sampling request (prompt token ids, n, params and seed, the
 * checkpoint's identity): a crash mid-step repeats no finished group, a changed prompt or
 * checkpoint samples anew, and the missing groups are sampled in one batched call.
 */
import { Effect, Schema } from "effect"
import { promptText } from "../src/data/Prompts.ts"
import { PolicyEngine, type PolicyEngineShape, type SamplingWeights } from "../src/engines/PolicyEngine.ts"
import { defaultSamplingParams } from "../src/model/Sampling.ts"
import { sha256 } from "../src/dag/Canonical.ts"
import { memoBatch } from "../src/dag/MemoBatch.ts"
import * as Stage from "../src/dag/Stage.ts"
import { PromptWithReference } from "../src/records/PromptWithReference.ts"
import { PolicyState } from "../src/records/TrainState.ts"
import { Group, SamplingSettings, Sequences } from "../src/records/Group.ts"
import { identity, samplingWeights } from "../src/engines/PolicyCheckpoint.ts"

/**
 * The groups of `prompts` from `engine` (whose current weights are `checkpoint`). Each group is one
 * sampling request, memoized under the request itself (prompt token ids, n, sampling params with
 * the seed, the checkpoint's identity); the missing ones are sampled in one call. Records are
 * built from the memoized sequences and this run's prompts, so none carries stale prompt text.
 */
export const sampleGroups = (
  engine: PolicyEngineShape,
  ctx: Stage.StageContext,
  args: { readonly prompts: ReadonlyArray<PromptWithReference>; readonly weights?: SamplingWeights; readonly checkpoint: string; readonly step: number; readonly group_size: number; readonly seed: number; readonly sampling: SamplingSettings }
) =>
  Effect.gen(function*() {
    const { checkpoint, step, group_size, seed, sampling } = args
    const plan = args.prompts.map((p) => {
      const text = promptText(p.requested_words, p.premise)
      const params = {
        ...defaultSamplingParams,
        temperature: sampling.temperature,
        topP: sampling.top_p,
        topK: sampling.top_k,
        repetitionPenalty: sampling.repetition_penalty,
        presencePenalty: sampling.presence_penalty,
        maxTokens: Math.max(1, Math.min(sampling.max_tokens, Math.ceil(p.requested_words * sampling.tokens_per_word))),
        // An integer: the seed every engine accepts (Tinker and vLLM take 31-bit ints).
        seed: parseInt(sha256(`${seed}:${step}:${p.id}`).slice(0, 7), 16)
      }
      return { p, text, request: { checkpoint, prompt: engine.promptIds(text, { enableThinking: sampling.thinking }), n: group_size - 1, params } }
    })
    const sequences = yield* memoBatch(ctx, "group", plan.map((x) => x.request), Sequences, (missing) =>
      Effect.gen(function*() {
        const sampled = yield* engine.sample(missing, args.weights)
        yield* ctx.progress(missing.length, missing.length)
        return sampled.map((seqs) => seqs.map((s) => ({ tokens: [...s.tokens], logprobs: [...s.logprobs], stop_reason: s.stopReason })))
      }))
    return plan.map(({ p, text, request }, k): Group => ({
      prompt_id: p.id,
      prompt: text,
      requested_words: p.requested_words,
      prompt_tokens: request.prompt,
      samples: sequences[k]!.map((s) => ({ ...s, text: engine.tokenizer.decode(s.tokens, { skipSpecial: true }) }))
    }))
  })

export const rollout = Stage.make({
  name: "rollout",
  version: "1",
  resource: "policy",
  engines: [PolicyEngine],
  inputs: { prompts: Schema.Array(PromptWithReference), policy: PolicyState },
  params: Schema.Struct({ group_size: Schema.Int, seed: Schema.Int, sampling: SamplingSettings }),
  output: Schema.Array(Group),
  run: ({ prompts, policy }, { group_size, seed, sampling }, ctx) =>
    Effect.gen(function*() {
      const engine = yield* PolicyEngine
      const weights = yield* samplingWeights(ctx, policy)
      return yield* sampleGroups(engine, ctx, { prompts, weights, checkpoint: identity(policy.checkpoint), step: policy.step, group_size, seed, sampling })
    })
})
