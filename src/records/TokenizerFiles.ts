/** tokenizer.json and tokenizer_config.json, verbatim. */
import { Schema } from "effect"

/** tokenizer.json and tokenizer_config.json, verbatim. */
export const TokenizerFiles = Schema.Struct({ json: Schema.String, config: Schema.String })
export type TokenizerFiles = typeof TokenizerFiles.Type
