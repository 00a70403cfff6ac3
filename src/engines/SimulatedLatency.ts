/**
 * The latency model of the simulated engines (SimulatedPolicy.ts, judge/Simulated.ts): how long
 * the paper's GPUs and judge API take for each engine call, so the DAG's overlap of sampling,
 * judging and training can be measured on a laptop (issue 16, docs/engines.md "Simulated
 * engines"). Pure data and pure formulas; the engines sleep for what these return.
 *
 * The setting (ARCHITECTURE.md §2): Qwen3.5-9B, 8 groups × 6 per step (5 rollouts + 1 human
 * reference), references of 1–4k words, 160 steps in ~48 h on 4×A100 = 1,080 s per synchronous
 * step, judge Gemini 3 Flash. Where no public figure was found, a constant is derived from that
 * 1,080 s step, split about half sampling, half training (the case the benchmark target
 * is stated for); docs/engines.md adds the step's arithmetic up.
 *
 * @example
 * ```ts
 * sampleSeconds(PAPER_LATENCY, [3000, 6160]) // 2 + 6160 / 12 = 515.3 s: a batch costs its longest sequence
 * ```
 */

/** Every constant in seconds, tokens or tokens per second of real (unscaled) time. */
export interface LatencyModel {
  /** Completion tokens per word of generated prose. */
  readonly tokensPerWord: number
  /** Generated / requested words is drawn uniformly from [low, high] per sequence. */
  readonly lengthRatio: { readonly low: number; readonly high: number }
  /** Fixed cost of one `sample` call (scheduling, prompt prefill, detokenisation), s. */
  readonly sampleOverheadS: number
  /** Decode speed of ONE sequence inside a full batch, tokens/s: a batch lasts its longest sequence. */
  readonly decodeTokensPerS: number
  /**
   * Sequences the sampler decodes at once, each at `decodeTokensPerS` (continuous batching): a
   * `sample` call holds one slot per sequence while it runs, a teacher-forcing call one; calls
   * beyond the slots wait, as requests queue on a full vLLM.
   */
  readonly samplerSlots: number
  /** Fixed cost of one teacher-forcing call (`logprobs`, `trainerLogprobs`), s. */
  readonly prefillOverheadS: number
  /** Teacher-forcing (prefill) throughput over all tokens of a call, tokens/s. */
  readonly prefillTokensPerS: number
  /** Fixed cost of one `forwardBackward` call, s. */
  readonly trainOverheadS: number
  /** Forward + backward throughput over all tokens of a call, tokens/s. */
  readonly trainTokensPerS: number
  /** `optimStep`, s. */
  readonly optimStepS: number
  /** `save` (weights + optimizer state to storage), s. */
  readonly saveS: number
  /** `load`, s. */
  readonly loadS: number
  /** `publish` (the trained weights reach the sampler), s. */
  readonly publishS: number
  /** Judge time to first token, s. */
  readonly judgeTtftS: number
  /** Judge output (thinking + answer) speed, tokens/s. */
  readonly judgeOutputTokensPerS: number
  /** Output tokens of one rubric verdict (16 dimensions with evidence, plus low-level thinking). */
  readonly judgeScoreOutputTokens: number
  /** Output tokens of one pairwise comparison. */
  readonly judgeCompareOutputTokens: number
  /** Judge requests admitted per minute (the provider's limit). */
  readonly judgeRequestsPerMinute: number
}

/** The paper's setting; each constant's source is in its comment and in docs/engines.md. */
export const PAPER_LATENCY: LatencyModel = {
  // The paper: 1.3–1.5 tokens per word for Qwen's tokenizer on English prose; the midpoint.
  tokensPerWord: 1.4,
  // Assumption: in-distribution stories land near the requested length (paper: length ratio ~1 at
  // 1–4k words, 0.72 at 8–12k); a spread that makes the longest of 40 rollouts ~1.1× the request.
  lengthRatio: { low: 0.6, high: 1.1 },
  // Derived from the 1,080 s step (a small share); covers the ~30-token prompt's prefill too.
  sampleOverheadS: 2,
  // Derived from the 1,080 s step: the longest of 40 rollouts (4,000 words × 1.1 × 1.4 ≈ 6,160
  // tokens) decodes in ~513 s, half the step. A tuned vLLM is faster: ~75 tokens/s for one
  // 8B stream on an A100 40GB (johnmusgrave.com/p/vllm-throughput-latency-sweep-on); the
  // paper's step is slower than that, so sampling gets its half of the measured 18 minutes.
  decodeTokensPerS: 12,
  // The batch the decode speed above was derived for: a step's 8 × 5 rollouts and 8 references.
  samplerSlots: 48,
  // Derived from the 1,080 s step (a small share).
  prefillOverheadS: 2,
  // Derived from the 1,080 s step: 8 references (~28k tokens) + 40 rollouts' trainer logprobs
  // (~120k tokens) in ~37 s, prefill being ~10× faster than forward + backward here.
  prefillTokensPerS: 4_000,
  // Derived from the 1,080 s step (a small share).
  trainOverheadS: 2,
  // Derived from the 1,080 s step: 48 sequences (~150k tokens) take ~470 s, the other half of the step.
  trainTokensPerS: 320,
  // Assumption: an AdamW step over LoRA weights, plus gradient all-reduce on 4 GPUs.
  optimStepS: 5,
  // Assumption: writing a LoRA adapter and its optimizer state to shared storage.
  saveS: 20,
  // Assumption: reading them back.
  loadS: 20,
  // Assumption: hot-loading the adapter into the sampler (vLLM /v1/load_lora_adapter).
  publishS: 10,
  // Gemini 3 Flash, median time to first token ~1.1 s (zapsas.tech/article/0005-gemini-3-flash-speed-test;
  // users report ~2 s at times: discuss.ai.google.dev/t/high-ttft-2s-with-gemini-flash-vs-150ms-on-groq/138024).
  judgeTtftS: 1.1,
  // Gemini 3 Flash, ~218 output tokens/s (same speed test).
  judgeOutputTokensPerS: 218,
  // Assumption: 16 dimensions × ~100 tokens of evidence and score, plus ~900 tokens of "low" thinking.
  judgeScoreOutputTokens: 2_500,
  // Assumption: a comparison's analysis and choice, plus low thinking.
  judgeCompareOutputTokens: 1_000,
  // recipes/polaris-qwen3.5-9b.yaml's judge.requests_per_minute (a paid Gemini tier).
  judgeRequestsPerMinute: 1_000
}

/** A `sample` call: overhead + the longest sequence's tokens / per-sequence decode speed (a batch ends with its longest member). */
export const sampleSeconds = (m: LatencyModel, lengths: ReadonlyArray<number>): number =>
  m.sampleOverheadS + Math.max(0, ...lengths) / m.decodeTokensPerS

/** A teacher-forcing call: overhead + all tokens / prefill throughput. */
export const prefillSeconds = (m: LatencyModel, tokens: number): number => m.prefillOverheadS + tokens / m.prefillTokensPerS

/** A `forwardBackward` call: overhead + all tokens / training throughput. */
export const trainSeconds = (m: LatencyModel, tokens: number): number => m.trainOverheadS + tokens / m.trainTokensPerS

/** One judge call: time to first token + output tokens / output speed. */
export const judgeSeconds = (m: LatencyModel, outputTokens: number): number => m.judgeTtftS + outputTokens / m.judgeOutputTokensPerS
