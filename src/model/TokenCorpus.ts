/**
 * Tokenized training text: variable-length token sequences packed as one safetensors file
 * (`tokens` I32 [N] and `offsets` I32 [S+1]), the form pretraining data takes in the store.
 *
 * @example
 * const corpus = TokenCorpus.fromSequences([windowA, windowB])
 * const bytes = TokenCorpus.encode(corpus)     // into ctx.putBlob
 * TokenCorpus.sequence(TokenCorpus.decode(bytes), 1) // windowB
 */
import * as Safetensors from "./Safetensors.ts"

export interface TokenCorpus {
  readonly tokens: Int32Array
  /** Sequence i is tokens[offsets[i], offsets[i+1]). */
  readonly offsets: Int32Array
}

export const fromSequences = (sequences: ReadonlyArray<ArrayLike<number>>): TokenCorpus => {
  const offsets = new Int32Array(sequences.length + 1)
  sequences.forEach((s, i) => (offsets[i + 1] = offsets[i]! + s.length))
  const tokens = new Int32Array(offsets[sequences.length]!)
  sequences.forEach((s, i) => tokens.set(Array.from(s), offsets[i]!))
  return { tokens, offsets }
}

export const size = (c: TokenCorpus): number => c.offsets.length - 1

export const sequence = (c: TokenCorpus, i: number): Int32Array => c.tokens.subarray(c.offsets[i]!, c.offsets[i + 1]!)

export const encode = (c: TokenCorpus): Uint8Array =>
  Safetensors.encode({
    tokens: { dtype: "I32", shape: [c.tokens.length], data: c.tokens },
    offsets: { dtype: "I32", shape: [c.offsets.length], data: c.offsets }
  })

export const decode = (bytes: Uint8Array): TokenCorpus => {
  const { tensors } = Safetensors.decode(bytes)
  const tokens = tensors["tokens"]
  const offsets = tensors["offsets"]
  if (tokens?.dtype !== "I32" || offsets?.dtype !== "I32") throw new Error("token corpus: needs I32 tensors tokens and offsets")
  return { tokens: tokens.data as Int32Array, offsets: offsets.data as Int32Array }
}

/**
 * Cuts a token stream into training windows of `length + 1` tokens (input and shifted target)
 * that overlap by one token, so every token is predicted once; a tail shorter than `minLength`
 * is dropped.
 *
 * @example
 * windows([1, 2, 3, 4, 5, 6], 2, 1) // [[1, 2, 3], [3, 4, 5], [5, 6]]
 */
export const windows = (ids: ArrayLike<number>, length: number, minLength: number): Array<Array<number>> => {
  const out: Array<Array<number>> = []
  for (let start = 0; start + 1 < ids.length; start += length) {
    const w = Array.from({ length: Math.min(length + 1, ids.length - start) }, (_, i) => ids[start + i]!)
    if (w.length - 1 >= minLength) out.push(w)
  }
  return out
}

/**
 * The unigram baseline: mean negative log-likelihood per predicted token of `heldout` under
 * add-one-smoothed token frequencies of `train` (the first token of each sequence is not
 * predicted, as in the model's teacher forcing).
 */
export const unigramNll = (train: TokenCorpus, heldout: TokenCorpus, vocabSize: number): number => {
  const counts = new Float64Array(vocabSize).fill(1)
  for (let i = 0; i < size(train); i++) for (const t of sequence(train, i).subarray(1)) counts[t]!++
  const total = counts.reduce((a, b) => a + b, 0)
  let nll = 0
  let n = 0
  for (let i = 0; i < size(heldout); i++) {
    for (const t of sequence(heldout, i).subarray(1)) {
      nll -= Math.log(counts[t]! / total)
      n++
    }
  }
  return nll / n
}
