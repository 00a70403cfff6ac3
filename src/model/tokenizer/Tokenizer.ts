/**
 * THE tokenizer loader: every tokenization in the product goes through here, for the embedded
 * model's own byte-level BPE and for real models alike. It wraps `@huggingface/tokenizers`,
 * which reads a standard Hugging Face `tokenizer.json` (plus an optional `tokenizer_config.json`
 * next to it, as real model repositories ship).
 *
 * @example
 * ```ts
 * const tok = Tokenizer.fromFile("checkpoints/story-4k/tokenizer.json")
 * const ids = tok.encode("Once upon a time") // [1700, 351, 554, 258, 614] with the 4,096 corpus vocab
 * tok.decode(ids)                             // "Once upon a time"
 * tok.tokenId("<|end|>")                      // 4094
 * ```
 */
import { existsSync, readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import type { Tokenizer as HfTokenizer } from "@huggingface/tokenizers"
import { createRequire } from "node:module"

// The tokenizer library when a tokenizer is first made (a command that only plans never makes
// one). Required by name, so the fingerprint still sees the value library it is.
const require = createRequire(import.meta.url)
let library: typeof import("@huggingface/tokenizers") | undefined
const tokenizers = () => (library ??= require("@huggingface/tokenizers") as typeof import("@huggingface/tokenizers"))

/** tokenizer_config.json fields this loader reads (others are passed through untouched). */
export interface TokenizerConfig {
  /** Real HF default is true (undoes " ." spacing); our trained tokenizers write false so decode is exact. */
  readonly clean_up_tokenization_spaces?: boolean
  /** A Jinja chat template, as in real models' tokenizer_config.json. */
  readonly chat_template?: string
  readonly [key: string]: unknown
}

/** Default config when no tokenizer_config.json is present: exact decoding. */
const DEFAULT_CONFIG: TokenizerConfig = { clean_up_tokenization_spaces: false }

export class Tokenizer {
  private constructor(
    private readonly hf: HfTokenizer,
    /** The parsed tokenizer.json. */
    readonly json: unknown,
    /** The parsed tokenizer_config.json (or the default). */
    readonly config: TokenizerConfig
  ) {}

  /** Loads a tokenizer.json; a sibling tokenizer_config.json is read when present. */
  static fromFile(path: string, configPath: string = join(dirname(path), "tokenizer_config.json")): Tokenizer {
    const json: unknown = JSON.parse(readFileSync(path, "utf8"))
    const config: TokenizerConfig = existsSync(configPath)
      ? (JSON.parse(readFileSync(configPath, "utf8")) as TokenizerConfig)
      : DEFAULT_CONFIG
    return Tokenizer.fromJson(json, config)
  }

  /** Builds from an already-parsed tokenizer.json (and tokenizer_config.json). */
  static fromJson(json: unknown, config: TokenizerConfig = DEFAULT_CONFIG): Tokenizer {
    if (typeof json !== "object" || json === null) throw new Error("tokenizer.json: not an object")
    return new Tokenizer(new (tokenizers().Tokenizer)(json, config), json, config)
  }

  /** Text -> ids. Literal special-token strings in the text become their special ids (as in HF). */
  encode(text: string): Array<number> {
    if (text.length === 0) return []
    return this.hf.encode(text, { add_special_tokens: false }).ids
  }

  /** Ids -> text; special tokens are kept as their strings unless `skipSpecial`. */
  decode(ids: ReadonlyArray<number>, options: { readonly skipSpecial?: boolean } = {}): string {
    if (ids.length === 0) return ""
    return this.hf.decode([...ids], { skip_special_tokens: options.skipSpecial ?? false })
  }

  /** Token strings (byte-level form) for the text, for debugging. */
  tokens(text: string): Array<string> {
    return text.length === 0 ? [] : this.hf.tokenize(text)
  }

  /** The id of a token string (special or not); throws if absent. */
  tokenId(token: string): number {
    const id = this.hf.token_to_id(token)
    if (id === undefined) throw new Error(`tokenizer: no token ${JSON.stringify(token)}`)
    return id
  }

  /** Ids of the special (added, special: true) tokens, by content. */
  get specialIds(): ReadonlyMap<string, number> {
    const out = new Map<string, number>()
    for (const [id, t] of this.hf.get_added_tokens_decoder()) if (t.special) out.set(t.content, id)
    return out
  }

  /** Number of ids (model vocabulary plus added tokens): the embedding table size. */
  get vocabSize(): number {
    let max = -1
    for (const id of this.hf.get_vocab(true).values()) if (id > max) max = id
    return max + 1
  }
}
