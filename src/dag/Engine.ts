/**
 * Engines are services (PolicyEngine, Judge, Writer, Tokenizer) chosen by the recipe. A stage
 * lists the engines whose identity changes its output; their fingerprints enter its cache key.
 */
import type { Context } from "effect"

/** A service that can say what it is, e.g. `"gemini-3-flash@rubric-story-quality/2"`. No secrets. */
export interface Fingerprinted {
  readonly fingerprint: string
}

/** A service key whose service has a fingerprint. */
export type EngineKey = Context.Key<any, Fingerprinted>
