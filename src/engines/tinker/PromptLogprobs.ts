/**
 * The `prompt_logprobs` of a Tinker `asample` reply, read in either of the two shapes servers send
 * for an n-token prompt x:
 *
 *   hosted Tinker, SkyRL's vLLM backend   n entries, entry 0 null, entry i = log p(x_i | x_<i)
 *   SkyRL tx's JAX backend                n − 1 entries, no null,  entry j = log p(x_{j+1} | x_≤j)
 *
 * Sources: protocols.md §1.7 (hosted; the SDK's `SampleResponse.prompt_logprobs: List[Optional[float]]`);
 * NovaSky-AI/SkyRL@a9564572eb8e91076be43c1bd5e4615e3de17265 `skyrl/tx/utils/generator.py`
 * (`logits_to_logprobs(all_logits[:, :-1, :], input_ids[:, 1:])`, then
 * `prompt_logprobs_host[i, : prompt_lengths_host[i] - 1]`: n − 1 entries) returned as-is by
 * `skyrl/backends/jax.py` (`types.SampleOutput(..., prompt_logprobs=...)`), and
 * `skyrl/backends/utils.py` `convert_vllm_prompt_logprobs` (one entry per prompt token, None at 0).
 *
 * The shape is told apart by length alone; any other length, or a non-number where a logprob is
 * read, is an error that says what came back.
 *
 * @example
 * // x = [a, b, c, d]: p(c | a b) and p(d | a b c), the completion [c, d] after the prompt [a, b]
 * completionLogprobs([null, -1, -2, -3], 2, 2)   // { logprobs: Float32Array [-2, -3] }
 * completionLogprobs([-1, -2, -3], 2, 2)         // the same numbers, SkyRL JAX's shape
 */

import type * as Wire from "./Wire.ts"

/** The decoded completion logprobs, or why the reply cannot be read. */
export type Decoded = { readonly logprobs: Float32Array } | { readonly error: string }

/**
 * Logprobs of the last `completionLength` tokens of a `promptLength + completionLength`-token
 * prompt, from the reply's `prompt_logprobs` (Wire.SampleResponse, decoded).
 */
export const completionLogprobs = (
  promptLogprobs: Wire.SampleResponse["prompt_logprobs"],
  promptLength: number,
  completionLength: number
): Decoded => {
  const n = promptLength + completionLength
  if (promptLogprobs == null) {
    return { error: `no prompt_logprobs in the reply (got ${promptLogprobs === null ? "null" : "none"}); the server may not compute them` }
  }
  // Index of log p(x_i | x_<i) in the reply: i for the hosted shape, i − 1 for SkyRL JAX's.
  const shift = promptLogprobs.length === n ? 0 : promptLogprobs.length === n - 1 ? -1 : undefined
  if (shift === undefined) {
    return {
      error: `prompt_logprobs has ${promptLogprobs.length} entries for a ${n}-token prompt; expected ${n} (hosted Tinker: a leading null) or ${n - 1} (SkyRL tx JAX: no null)`
    }
  }
  const out = new Float32Array(completionLength)
  for (let k = 0; k < completionLength; k++) {
    const i = promptLength + k
    const v = promptLogprobs[i + shift]
    if (typeof v !== "number" || Number.isNaN(v)) {
      return { error: `prompt_logprobs entry ${i + shift} (token ${i} of ${n}) is ${JSON.stringify(v) ?? "missing"}, not a logprob` }
    }
    out[k] = v
  }
  return { logprobs: out }
}
