/**
 * `off-policy-update`: the update of a GRPO step whose samples came from an older policy
 * (`grpo.off_policy_steps: k`, pipelines/polaris.ts). It trains the newest policy (`policy`, the
 * state after the previous step) exactly as `update` does (stages/update.ts): the PPO ratio's old
 * logprobs are the datums' sampler logprobs, so the behaviour policy is the sampler's; with
 * `mismatch_correction` on, the trainer's logprobs at the trained weights replace them (TRL's
 * behaviour). `sampler` is the PolicyState that sampled the batch, wired in by the DAG: every
 * metric record of the update (clip_frac included) carries `sampler_step`, the policy version
 * that sampled, and `staleness` = step − sampler_step.
 *
 * A stage of its own, so the synchronous pipeline's `update` keeps its source and its keys.
 */
import * as Stage from "../src/dag/Stage.ts"
import { PolicyEngine } from "../src/engines/PolicyEngine.ts"
import { PolicyState } from "../src/records/TrainState.ts"
import { update } from "./update.ts"

export const offPolicyUpdate = Stage.make({
  name: "off-policy-update",
  version: "1",
  resource: update.resource,
  retry: update.retry,
  engines: [PolicyEngine],
  inputs: { ...update.inputs, sampler: PolicyState },
  params: update.params,
  output: update.output,
  run: ({ sampler, ...input }, params, ctx) => {
    const staleness = { sampler_step: sampler.step, staleness: input.policy.step - sampler.step }
    return update.run(input, params, { ...ctx, metric: (values) => ctx.metric({ ...values, ...staleness }) })
  }
})
