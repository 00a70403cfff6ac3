/**
 * The sampling loop shared by every local decoder (the embedded model's KV-cache graphs, external
 * ONNX exports): per-row state, logits processing and seeded draws (Sampling.ts), stop tokens,
 * `maxTokens` and the context limit. A `Decoder` only turns tokens into next-token logits.
 *
 * @example
 * const rows = await generate(decoder, [promptIds], params, { stop: [endId], vocabSize, maxContext })
 */
import { rowRandom, sample, SequenceState, type SamplingParams } from "./Sampling.ts"

export interface Generated {
  readonly tokens: Array<number>
  /** log p(token) under the raw model distribution (before penalties, temperature, top-k/p). */
  readonly logprobs: Array<number>
  readonly stopReason: "stop" | "length"
}

/** Next-token logits [V] of each row `i` of a call, and optionally their softmax (saves the sampler's exponentials). */
export interface NextToken {
  readonly logits: (i: number) => Float32Array
  readonly probs?: (i: number) => Float32Array
}

/** Row views of flat [rows, V] arrays. */
export const rowsOf = (V: number, logits: Float32Array, probs?: Float32Array): NextToken => ({
  logits: (i) => logits.subarray(i * V, (i + 1) * V),
  ...(probs === undefined ? {} : { probs: (i: number) => probs.subarray(i * V, (i + 1) * V) })
})

/** A model that continues rows one token at a time, keeping its own cache. */
export interface Decoder {
  /** Reads the prompts; returns the next-token distribution after each prompt's last token. */
  readonly start: (prompts: ReadonlyArray<ReadonlyArray<number>>) => Promise<NextToken>
  /**
   * Appends `tokens[i]` to row `rows[i]` and returns the next-token distribution after it (row i
   * of the answer is `rows[i]`). `rows` lists the unfinished rows, increasing, a subset of the previous call's.
   */
  readonly step: (rows: ReadonlyArray<number>, tokens: ReadonlyArray<number>) => Promise<NextToken>
  /** The call is over (every row finished, or it failed): frees what the decoder holds for its rows. */
  readonly end?: () => void
}

/** Sampling settings of one row: its params, and its index in its own request (its random stream). */
export interface RowParams {
  readonly params: SamplingParams
  readonly row: number
}

/**
 * Samples one continuation per prompt, row r seeded by `rowRandom(params.seed, r)`; with one
 * `RowParams` per prompt, requests with different settings share a batch (each row keeps its
 * own stream). A row stops at a token in `stop` or its params' `stop` (kept, reason "stop"),
 * after its `maxTokens` tokens,
 * or when its next token would not fit the context (reason "length").
 */
export const generate = async (
  decoder: Decoder,
  prompts: ReadonlyArray<ReadonlyArray<number>>,
  params: SamplingParams | ReadonlyArray<RowParams>,
  options: { readonly stop: ReadonlyArray<number>; readonly vocabSize: number; readonly maxContext: number }
): Promise<Array<Generated>> => {
  const V = options.vocabSize
  const perRow: ReadonlyArray<RowParams> = Array.isArray(params) ? params : prompts.map((_, row) => ({ params: params as SamplingParams, row }))
  if (perRow.length !== prompts.length) throw new Error(`${perRow.length} row params for ${prompts.length} prompts`)
  for (const p of prompts) {
    if (p.length === 0) throw new Error("a prompt needs at least one token")
    if (p.length > options.maxContext) throw new Error(`sequence of ${p.length} tokens exceeds the model's context of ${options.maxContext}`)
  }
  const rows = prompts.map((p, r) => ({
    length: p.length, // tokens the decoder has read for this row
    params: perRow[r]!.params,
    stop: new Set([...options.stop, ...perRow[r]!.params.stop]),
    state: new SequenceState(V, p),
    random: rowRandom(perRow[r]!.params.seed, perRow[r]!.row),
    out: { tokens: [] as Array<number>, logprobs: [] as Array<number>, stopReason: "length" as Generated["stopReason"] }
  }))
  const scratch = new Float64Array(V)
  /** Samples the next token of row r from its logits; true when the row is finished. */
  const advance = (r: number, next: NextToken, i: number): boolean => {
    const row = rows[r]!
    const { token, logprob } = sample(next.logits(i), row.params, row.state, row.random, scratch, next.probs?.(i))
    row.out.tokens.push(token)
    row.out.logprobs.push(logprob)
    row.state.observe(token)
    if (row.stop.has(token)) {
      row.out.stopReason = "stop"
      return true
    }
    return row.out.tokens.length >= row.params.maxTokens || row.length >= options.maxContext
  }
  if (prompts.length === 0) return []
  try {
    const first = await decoder.start(prompts)
    let active = rows.map((_, r) => r).filter((r) => !advance(r, first, r))
    while (active.length > 0) {
      const next = await decoder.step(active, active.map((r) => rows[r]!.out.tokens.at(-1)!))
      active = active.filter((r, i) => {
        rows[r]!.length++
        return !advance(r, next, i)
      })
    }
  } finally {
    decoder.end?.()
  }
  return rows.map((row) => row.out)
}
