/** An anthology source, named by its path relative to the recipe, and the digest of its bytes. */
import { Schema } from "effect"

/** A source path and the digest of its content (see `sourceDigests`). */
export const Source = Schema.Struct({ path: Schema.String, digest: Schema.String })
