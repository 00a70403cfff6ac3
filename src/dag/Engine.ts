/**
 * Engines are services (PolicyEngine, Judge, Writer, Tokenizer) chosen by the recipe. A stage
 * lists the engines whose identity changes its output; their fingerprints enter its cache key.
 */
import { type Context, Redacted } from "effect"
import { canonicalJson, sha256 } from "./Canonical.ts"

/** A service that can say what it is, e.g. `"gemini-3-flash@rubric-story-quality/2"`. No secrets. */
export interface Fingerprinted {
  readonly fingerprint: string
  /**
   * Variables of the secrets this engine was configured with that are unset (Secret.ts): a node
   * that lists the engine fails with `MissingSecret` when it would execute; cached, it is reused.
   */
  readonly missingSecrets?: ReadonlyArray<string>
  /**
   * The engine computes in this process, deterministically, for free, and faster than a memo item
   * is stored and read back (the extractive writer, the proxy judge; not the embedded policy,
   * whose rollouts take seconds): a crash that repeats a call loses nothing, so `memoCall` calls
   * it directly.
   */
  readonly local?: boolean
}

/** A service key whose service has a fingerprint. */
export type EngineKey = Context.Key<any, Fingerprinted>

/**
 * One Layer object per equal configuration, so that runs built with one `Layer.MemoMap` (the
 * variants of a sweep) share one engine, and with it its rate limiter and call totals. Equal:
 * the same canonical JSON, secrets included by value. The map lives in memory only; a secret
 * never reaches a key on disk.
 *
 * @example
 * export const fromRecipe = (section: JudgeSection) => sharedByConfig("judge", section, () => build(section))
 */
export const sharedByConfig = <L>(kind: string, config: unknown, make: () => L): L => {
  const secrets: Array<string> = []
  const visit = (v: unknown): void => {
    if (Redacted.isRedacted(v)) secrets.push(String(Redacted.value(v)))
    else if (Array.isArray(v)) v.forEach(visit)
    else if (v !== null && typeof v === "object") Object.values(v).forEach(visit)
  }
  visit(config)
  const key = `${kind}:${canonicalJson(config, "mask")}:${sha256(secrets.join("\u0000"))}`
  const found = shared.get(key)
  if (found !== undefined) return found as L
  const made = make()
  shared.set(key, made)
  return made
}

const shared = new Map<string, unknown>()
