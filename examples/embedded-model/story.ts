/**
 * The embedded policy through the PolicyEngine interface: sample a story from the shipped model,
 * score it by teacher forcing, and take one training step on it (what GRPO does at scale).
 *
 *   npx tsx examples/embedded-model/story.ts [PROMPT]
 */
import { Effect } from "effect"
import { datumOf, defaultAdamParams, EmbeddedPolicy, PolicyEngine, Sampling } from "polaris"

const prompt = process.argv[2] ?? "Write a 100-word story about a lighthouse keeper who finds a letter in a bottle."

const program = Effect.gen(function*() {
  const policy = yield* PolicyEngine
  const ids = policy.promptIds(prompt)
  const [group] = yield* policy.sample([{ prompt: ids, n: 2, params: { ...Sampling.defaultSamplingParams, maxTokens: 200, temperature: 0.9, topP: 0.95, seed: 7 } }])
  for (const story of group!) {
    console.log(`--- ${story.tokens.length} tokens, stopped by ${story.stopReason}`)
    console.log(policy.tokenizer.decode(story.tokens, { skipSpecial: true }).trim())
  }
  const best = group![0]!
  // Teacher forcing reproduces the sampler's logprobs (same weights, other graph).
  const [scored] = yield* policy.logprobs([{ prompt: ids, completion: best.tokens }])
  const gap = Math.max(...best.logprobs.map((lp, t) => Math.abs(lp - scored![t]!)))
  console.log(`teacher forcing vs sampler: max |Δ logprob| = ${gap.toExponential(1)}`)
  // One policy-gradient step with advantage +1 on every token of the first story.
  const advantages = best.tokens.map(() => 1 / best.tokens.length)
  const { metrics } = yield* policy.forwardBackward([datumOf(ids, best.tokens, { logprobs: best.logprobs, advantages })], { name: "ppo", clipLow: 0.8, clipHigh: 1.2 })
  const step = yield* policy.optimStep({ ...defaultAdamParams, learningRate: 1e-4, gradClipNorm: 1 })
  console.log(`ppo loss:sum ${metrics["loss:sum"]!.toFixed(4)}, grad norm ${step.gradNorm.toFixed(3)}, optimizer step ${step.step}`)
})

Effect.runPromise(Effect.provide(program, EmbeddedPolicy.layer({ checkpoint: new URL("../../models/story-1m", import.meta.url).pathname })))
