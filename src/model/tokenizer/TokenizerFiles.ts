/**
 * Writes a trained tokenizer as a real model repository ships it: `tokenizer.json` plus
 * `tokenizer_config.json` (chat template, special tokens, exact decoding). Read back with
 * `Tokenizer.fromFile(join(dir, "tokenizer.json"))`.
 *
 * @example
 * ```ts
 * writeTokenizerFiles("checkpoints/story-4k", trainBpe(texts, { vocabSize: 4096 }))
 * ```
 */
import { mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { serializeTokenizerJson, type TokenizerJson } from "./BpeTrainer.ts"
import { CHAT_TEMPLATE } from "./ChatTemplate.ts"
import type { TokenizerConfig } from "./Tokenizer.ts"

/** tokenizer_config.json for a tokenizer trained by `trainBpe`. */
export const tokenizerConfigFor = (json: TokenizerJson): TokenizerConfig => ({
  tokenizer_class: "PreTrainedTokenizerFast",
  clean_up_tokenization_spaces: false,
  add_bos_token: false,
  add_eos_token: false,
  eos_token: "<|end|>",
  pad_token: json.added_tokens.some((t) => t.content === "<|pad|>") ? "<|pad|>" : null,
  additional_special_tokens: json.added_tokens.map((t) => t.content),
  model_max_length: 2048,
  chat_template: CHAT_TEMPLATE
})

/** Writes `dir/tokenizer.json` and `dir/tokenizer_config.json`; returns the tokenizer.json path. */
export const writeTokenizerFiles = (dir: string, json: TokenizerJson): string => {
  mkdirSync(dir, { recursive: true })
  const path = join(dir, "tokenizer.json")
  writeFileSync(path, serializeTokenizerJson(json))
  writeFileSync(join(dir, "tokenizer_config.json"), `${JSON.stringify(tokenizerConfigFor(json), null, 2)}\n`)
  return path
}
