/**
 * Byte-level BPE training (GPT-2 style) that writes a standard Hugging Face `tokenizer.json`.
 *
 * Text is split into pre-tokens by the GPT-2 regex (the same pattern the ByteLevel
 * pre-tokenizer of `@huggingface/tokenizers` uses), each pre-token becomes its UTF-8 bytes,
 * and bytes are shown as printable characters by the GPT-2 `bytes_to_unicode` table. Training
 * counts pre-token frequencies once, then merges the most frequent adjacent pair over the
 * unique words until the vocabulary is full (Sennrich et al. 2016, "Neural Machine Translation
 * of Rare Words with Subword Units"; Radford et al. 2019 for the byte-level variant).
 *
 * Ids: 0-255 are the bytes (id = byte value), then one id per merge, then the special tokens.
 * Ties between equally frequent pairs go to the pair with the smaller (left id, right id), so
 * the same corpus always gives the same file.
 *
 * @example
 * ```ts
 * const json = trainBpe(["Once upon a time..."], { vocabSize: 4096 })
 * writeFileSync("tokenizer.json", serializeTokenizerJson(json))
 * const tok = Tokenizer.fromJson(json)
 * ```
 */
import { MaxHeap } from "./internal/MaxHeap.ts"

/** The GPT-2 pre-tokenizer pattern, as `@huggingface/tokenizers`' ByteLevel pre-tokenizer has it. */
export const GPT2_PRETOKENIZE = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu

/** Special tokens of the chat layout (ARCHITECTURE.md §6), in id order after the merges. */
export const SPECIAL_TOKENS = ["<|user|>", "<|assistant|>", "<|end|>", "<|pad|>"] as const
export type SpecialToken = (typeof SPECIAL_TOKENS)[number]

/** GPT-2's `bytes_to_unicode`: printable bytes map to themselves, the rest to U+0100 onwards. */
export const BYTES_TO_UNICODE: ReadonlyArray<string> = (() => {
  const printable = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)
  const out: Array<string> = []
  let n = 0
  for (let b = 0; b < 256; b++) out.push(String.fromCodePoint(printable(b) ? b : 256 + n++))
  return out
})()

export interface BpeTrainerOptions {
  /** Total vocabulary including the 256 bytes and the special tokens (e.g. 4096). */
  readonly vocabSize: number
  /** Pairs seen fewer times than this are never merged (default 2). */
  readonly minFrequency?: number
  /** Special tokens appended after the merges (default SPECIAL_TOKENS). */
  readonly specialTokens?: ReadonlyArray<string>
}

/** An added token entry of tokenizer.json. */
export interface AddedTokenJson {
  readonly id: number
  readonly content: string
  readonly single_word: boolean
  readonly lstrip: boolean
  readonly rstrip: boolean
  readonly normalized: boolean
  readonly special: boolean
}

/** The subset of the Hugging Face tokenizer.json schema this trainer writes. */
export interface TokenizerJson {
  readonly version: "1.0"
  readonly truncation: null
  readonly padding: null
  readonly added_tokens: ReadonlyArray<AddedTokenJson>
  readonly normalizer: null
  readonly pre_tokenizer: { readonly type: "ByteLevel"; readonly add_prefix_space: false; readonly trim_offsets: true; readonly use_regex: true }
  readonly post_processor: null
  readonly decoder: { readonly type: "ByteLevel"; readonly add_prefix_space: true; readonly trim_offsets: true; readonly use_regex: true }
  readonly model: {
    readonly type: "BPE"
    readonly dropout: null
    readonly unk_token: null
    readonly continuing_subword_prefix: null
    readonly end_of_word_suffix: null
    readonly fuse_unk: false
    readonly byte_fallback: false
    readonly ignore_merges: false
    readonly vocab: Readonly<Record<string, number>>
    readonly merges: ReadonlyArray<string>
  }
}

/** Pre-token -> count over all texts (GPT-2 regex split). */
export const countWords = (texts: Iterable<string>): Map<string, number> => {
  const counts = new Map<string, number>()
  for (const text of texts) {
    for (const m of text.matchAll(GPT2_PRETOKENIZE)) counts.set(m[0], (counts.get(m[0]) ?? 0) + 1)
  }
  return counts
}

// A pair (left id, right id) as one number; ids stay below 2^21, so keys stay exact.
const SHIFT = 2 ** 21
const pairKey = (a: number, b: number): number => a * SHIFT + b

/** Trains a byte-level BPE on the texts; returns the tokenizer.json object. */
export const trainBpe = (texts: Iterable<string>, options: BpeTrainerOptions): TokenizerJson =>
  trainBpeFromCounts(countWords(texts), options)

/** Trains from pre-token counts (see `countWords`). */
export const trainBpeFromCounts = (wordCounts: ReadonlyMap<string, number>, options: BpeTrainerOptions): TokenizerJson => {
  const specials = options.specialTokens ?? SPECIAL_TOKENS
  const minFrequency = options.minFrequency ?? 2
  const targetMerged = options.vocabSize - specials.length
  if (targetMerged < 256) throw new Error(`vocabSize ${options.vocabSize} leaves no room for the 256 bytes and ${specials.length} specials`)
  if (options.vocabSize >= SHIFT) throw new Error(`vocabSize ${options.vocabSize} is too large`)

  const tokens: Array<string> = [...BYTES_TO_UNICODE]
  const idOf = new Map<string, number>(tokens.map((t, i) => [t, i]))
  const merges: Array<string> = []

  // Unique words in a fixed order (sorted), as byte-id arrays.
  const encoder = new TextEncoder()
  const entries = [...wordCounts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  const words: Array<Array<number>> = entries.map(([w]) => Array.from(encoder.encode(w)))
  const freq: Array<number> = entries.map(([, c]) => c)

  const pairCount = new Map<number, number>()
  const pairWhere = new Map<number, Set<number>>()
  const addPairs = (w: number, sign: 1 | -1) => {
    const s = words[w]!
    const f = freq[w]! * sign
    for (let i = 0; i + 1 < s.length; i++) {
      const k = pairKey(s[i]!, s[i + 1]!)
      pairCount.set(k, (pairCount.get(k) ?? 0) + f)
      if (sign === 1) {
        let where = pairWhere.get(k)
        if (where === undefined) pairWhere.set(k, (where = new Set()))
        where.add(w)
      }
    }
  }
  for (let w = 0; w < words.length; w++) addPairs(w, 1)

  // Max-heap on (count, then smaller key); stale entries are skipped when popped.
  const heap = new MaxHeap()
  for (const [k, c] of pairCount) heap.push(c, k)

  while (tokens.length < targetMerged) {
    const top = heap.pop()
    if (top === undefined) break
    const [count, key] = top
    if (pairCount.get(key) !== count) continue // stale
    if (count < minFrequency) break
    const a = Math.floor(key / SHIFT)
    const b = key - a * SHIFT
    const merged = tokens[a]! + tokens[b]!
    if (specials.includes(merged)) throw new Error(`a merge produced the special token ${merged}`)
    let c = idOf.get(merged)
    if (c === undefined) {
      c = tokens.length
      tokens.push(merged)
      idOf.set(merged, c)
    }
    merges.push(`${tokens[a]} ${tokens[b]}`)

    const touched = new Set<number>()
    const where = pairWhere.get(key)
    pairWhere.delete(key)
    for (const w of where ?? []) {
      const s = words[w]!
      let has = false
      for (let i = 0; i + 1 < s.length; i++) if (s[i] === a && s[i + 1] === b) { has = true; break }
      if (!has) continue
      // Remove the word's old pairs, merge left to right without overlap, add the new pairs.
      for (let i = 0; i + 1 < s.length; i++) touched.add(pairKey(s[i]!, s[i + 1]!))
      addPairs(w, -1)
      const next: Array<number> = []
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) { next.push(c); i++ } else next.push(s[i]!)
      }
      words[w] = next
      addPairs(w, 1)
      for (let i = 0; i + 1 < next.length; i++) touched.add(pairKey(next[i]!, next[i + 1]!))
    }
    pairCount.delete(key)
    for (const k of touched) {
      if (k === key) continue
      const n = pairCount.get(k) ?? 0
      if (n <= 0) { pairCount.delete(k); pairWhere.delete(k) } else heap.push(n, k)
    }
  }

  const vocab: Record<string, number> = {}
  tokens.forEach((t, i) => { vocab[t] = i })
  const added_tokens = specials.map((content, j): AddedTokenJson => {
    const id = tokens.length + j
    vocab[content] = id
    return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }
  })
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens,
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges
    }
  }
}

/** tokenizer.json text: 2-space indented, keys in schema order, trailing newline. */
export const serializeTokenizerJson = (json: TokenizerJson): string => `${JSON.stringify(json, null, 2)}\n`
