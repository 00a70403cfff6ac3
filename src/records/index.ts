/**
 * The records stages exchange (ARCHITECTURE.md §4), Schemas only: what crosses a stage boundary
 * and is stored. Stages import them from here, never from each other, so a record's module
 * is all a consumer's source fingerprint reaches.
 *
 * @example
 * import { Records } from "polaris"
 * const groups = Schema.decodeUnknownSync(Schema.Array(Records.Group))(json)
 */
export * from "./Batch.ts"
export * from "./Comparison.ts"
export * from "./Dataset.ts"
export * from "./Evaluation.ts"
export * from "./Group.ts"
export * from "./Judgement.ts"
export * from "./ModelState.ts"
export * from "./PretrainCorpus.ts"
export * from "./PromptWithReference.ts"
export * from "./Reference.ts"
export * from "./Strata.ts"
export * from "./TokenizerFiles.ts"
export * from "./TrainBatch.ts"
export * from "./TrainState.ts"
