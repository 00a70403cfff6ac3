/** The pretraining corpus as token windows in store blobs. */
import { Schema } from "effect"
import { BlobRef } from "../dag/ArtifactStore.ts"

export const PretrainCorpus = Schema.Struct({
  train: BlobRef,
  heldout: BlobRef,
  heldout_chat: BlobRef,
  stats: Schema.Record(Schema.String, Schema.Number)
})
export type PretrainCorpus = typeof PretrainCorpus.Type
