/** A prompt with the human story it was derived from (the reference of HRI). */
import { Schema } from "effect"
import { Prompt } from "../data/Prompts.ts"

/** A prompt with the reference text it was derived from (the human story of HRI). */
export const PromptWithReference = Schema.Struct({ ...Prompt.fields, reference: Schema.String })
export type PromptWithReference = typeof PromptWithReference.Type
