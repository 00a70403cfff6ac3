/**
 * A remote policy engine's calls priced (`policy.price_per_million`: USD per million tokens of
 * prompt, of sampled output, of training) and charged to the node that makes them
 * (`Budget.charged`): the run's budget stops before a call that would pass its cap, and the
 * ledger (`runs/<id>/spend.jsonl`) records each call's cost under the `sampler` or `trainer`
 * engine. Tokens are counted as the services bill them:
 *
 * - sampling: every prompt token once per request (prefill), every sampled token (sample); the
 *   expected cost before the call counts `maxTokens` per sequence;
 * - teacher forcing (`logprobs`, `trainerLogprobs`): prompt and completion tokens at the prefill price;
 * - training (`forwardBackward`): every input token of every datum at the train price.
 *
 * The wrapper changes no result and no fingerprint: prices are not part of what is computed.
 */
import { charged } from "../dag/Budget.ts"
import { overriding, type PolicyEngineShape, type SampleRequest, type SampledSequence } from "./PolicyEngine.ts"

/** USD per million tokens. */
export interface PolicyPrice {
  readonly prefill: number
  readonly sample: number
  readonly train: number
}

const perMillion = (tokens: number, usd: number) => (tokens * usd) / 1e6

/** Expected cost of a sampling call: prompts once each, `n × max_tokens` sampled tokens per request. */
export const expectedSampleUsd = (requests: ReadonlyArray<SampleRequest>, price: PolicyPrice): number =>
  requests.reduce((s, r) => s + perMillion(r.prompt.length, price.prefill) + perMillion(r.n * r.params.maxTokens, price.sample), 0)

/** Actual cost of a sampling call: prompts once each, the tokens sampled. */
export const sampleUsd = (requests: ReadonlyArray<SampleRequest>, result: ReadonlyArray<ReadonlyArray<SampledSequence>>, price: PolicyPrice): number =>
  requests.reduce((s, r, i) => s + perMillion(r.prompt.length, price.prefill) + perMillion((result[i] ?? []).reduce((t, q) => t + q.tokens.length, 0), price.sample), 0)

/** Cost of teacher forcing: prompt and completion tokens at the prefill price. */
export const forcedUsd = (items: ReadonlyArray<{ readonly prompt: ReadonlyArray<number>; readonly completion: ReadonlyArray<number> }>, price: PolicyPrice): number =>
  perMillion(items.reduce((s, x) => s + x.prompt.length + x.completion.length, 0), price.prefill)

/** Cost of a forward-backward pass: every input token at the train price. */
export const trainUsd = (datums: ReadonlyArray<{ readonly modelInput: ReadonlyArray<number> }>, price: PolicyPrice): number =>
  perMillion(datums.reduce((s, d) => s + d.modelInput.length, 0), price.train)

/** `engine` with its token-billed calls charged at `price`. */
export const priced = (engine: PolicyEngineShape, price: PolicyPrice): PolicyEngineShape => overriding(engine, {
  sample: (requests, weights) =>
    charged("sampler", expectedSampleUsd(requests, price), engine.sample(requests, weights), (result) => sampleUsd(requests, result, price)),
  logprobs: (items, weights) => {
    const usd = forcedUsd(items, price)
    return charged("sampler", usd, engine.logprobs(items, weights), () => usd)
  },
  trainerLogprobs: (items) => {
    const usd = forcedUsd(items, price)
    return charged("trainer", usd, engine.trainerLogprobs(items), () => usd)
  },
  forwardBackward: (datums, loss, options) => {
    const usd = trainUsd(datums, price)
    return charged("trainer", usd, engine.forwardBackward(datums, loss, options), () => usd)
  }
})
