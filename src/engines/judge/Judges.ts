/**
 * The Judge layers, and the one a recipe's `judge:` section describes.
 *
 * - `proxy(rubric?)`: embedded, no network (Proxy.ts), rubric `proxy-text-stats` only.
 * - `gemini`: @google/genai (Gemini.ts); with `batch: true`, through the Batch API (GeminiBatch.ts).
 * - `openai`: any OpenAI-compatible endpoint (OpenAI.ts).
 *   The remote ones are imported only when built (the public API exports them as `JudgeClients`).
 * - `simulated`: Gemini's latency and rate limit, made-up deterministic scores (Simulated.ts).
 *
 * @example
 * ```ts
 * Effect.provide(program, Judges.fromRecipe(recipe.judge ?? { backend: "proxy" }))
 * ```
 */
import { Duration, Effect, Layer } from "effect"
import { sharedByConfig } from "../../dag/Engine.ts"
import * as Secret from "../../dag/Secret.ts"
import type { Recipe } from "../../recipe/Recipe.ts"
import { Judge } from "./Judge.ts"
import { makeProxy } from "./Proxy.ts"
import * as Rubric from "./Rubric.ts"
import { makeSimulated } from "./Simulated.ts"


/** The embedded judge over its own rubric (the shipped proxy-text-stats, or a copy of it). */
export const proxy = (rubricPath: string = Rubric.PROXY_RUBRIC): Layer.Layer<Judge, Rubric.RubricError | Error> =>
  Layer.effect(Judge, Effect.flatMap(Rubric.load(rubricPath), (rubric) => Effect.try({ try: () => makeProxy(rubric), catch: (e) => e as Error })))

/** Shipped rubrics by id; anything else is a path to a rubric YAML file. */
const SHIPPED: Readonly<Record<string, string>> = {
  "story-quality": Rubric.DEFAULT_RUBRIC,
  "proxy-text-stats": Rubric.PROXY_RUBRIC
}

export const rubricPath = (rubric: string | undefined, fallback: string): string =>
  rubric === undefined ? fallback : SHIPPED[rubric] ?? rubric

type JudgeSection = NonNullable<Recipe["judge"]>

/**
 * A recipe's judge: backend, model, rubric, sampling settings, limits and prices. A section
 * missing what its backend needs throws at once (before anything runs), naming the key.
 */
export const fromRecipe = (section: JudgeSection): Layer.Layer<Judge, Rubric.RubricError | Error> =>
  // Equal sections give one Layer object: a sweep's variants then share one judge and its rate limit.
  sharedByConfig("judge", section, () =>
    // Only the remote backends send the key: an unset one marks their judge (Secret.ts).
    Secret.layerRequiring(Judge, build(section), [section.backend === "gemini" || section.backend === "openai" ? section.api_key : undefined]))

const build = (section: JudgeSection): Layer.Layer<Judge, Rubric.RubricError | Error> => {
  if (section.backend === "proxy") return proxy(rubricPath(section.rubric, Rubric.PROXY_RUBRIC))
  if (section.backend === "simulated") {
    return Layer.effect(Judge, Effect.flatMap(Rubric.load(rubricPath(section.rubric, Rubric.DEFAULT_RUBRIC)), (rubric) => makeSimulated({
      rubric,
      ...(section.model !== undefined ? { model: section.model } : {}),
      ...(section.time_scale !== undefined ? { timeScale: section.time_scale } : {}),
      ...(section.requests_per_minute !== undefined ? { requestsPerMinute: section.requests_per_minute } : {}),
      ...(section.max_in_flight !== undefined ? { maxInFlight: section.max_in_flight } : {}),
      ...(section.price_per_million !== undefined ? { price: section.price_per_million } : {})
    })))
  }
  const model = section.model
  if (model === undefined) throw new Error(`judge.model is required for the ${section.backend} judge`)
  const limits = {
    ...(section.requests_per_minute !== undefined ? { requestsPerMinute: section.requests_per_minute } : {}),
    ...(section.tokens_per_minute !== undefined ? { tokensPerMinute: section.tokens_per_minute } : {}),
    ...(section.max_in_flight !== undefined ? { maxInFlight: section.max_in_flight } : {})
  }
  const shared = {
    limits,
    timeout: Duration.seconds(section.timeout_s ?? 120),
    attempts: section.attempts ?? 6,
    ...(section.price_per_million !== undefined ? { price: section.price_per_million } : {}),
    ...(section.expected_output_tokens !== undefined ? { expectedOutputTokens: section.expected_output_tokens } : {}),
    ...(section.temperature !== undefined ? { temperature: section.temperature } : {})
  }
  // The remote clients (and Google's SDK) are imported when such a judge is built.
  const withRubric = <M>(load: () => Promise<M>, make: (module: M, rubric: Rubric.Rubric) => Layer.Layer<Judge>) =>
    Layer.unwrap(Effect.map(Effect.all([Effect.promise(load), Rubric.load(rubricPath(section.rubric, Rubric.DEFAULT_RUBRIC))]), ([module, rubric]) => make(module, rubric)))
  if (section.backend === "gemini") {
    if (section.api_key === undefined) throw new Error("judge.api_key is required for the gemini judge (write ${GEMINI_API_KEY})")
    // Unset, the judge is built all the same (its fingerprint keys cached verdicts) and never called.
    const apiKey = Secret.standIn(section.api_key)
    const level = section.thinking_level?.toUpperCase()
    if (level !== undefined && !["MINIMAL", "LOW", "MEDIUM", "HIGH"].includes(level)) {
      throw new Error(`judge.thinking_level must be minimal, low, medium or high, got ${section.thinking_level}`)
    }
    if (section.batch === true) {
      return withRubric(() => import("./GeminiBatch.ts"), ({ geminiBatch }, rubric) => geminiBatch({
        rubric, model, apiKey,
        ...(section.price_per_million !== undefined ? { price: section.price_per_million } : {}),
        ...(section.temperature !== undefined ? { temperature: section.temperature } : {}),
        ...(section.base_url !== undefined ? { baseUrl: section.base_url } : {}),
        ...(section.batch_poll_s !== undefined ? { pollEvery: Duration.seconds(section.batch_poll_s) } : {}),
        ...(level !== undefined ? { thinkingLevel: level as "MINIMAL" | "LOW" | "MEDIUM" | "HIGH" } : {})
      }))
    }
    return withRubric(() => import("./Gemini.ts"), ({ gemini }, rubric) => gemini({
      ...shared, rubric, model, apiKey,
      ...(section.base_url !== undefined ? { baseUrl: section.base_url } : {}),
      ...(level !== undefined ? { thinkingLevel: level as "MINIMAL" | "LOW" | "MEDIUM" | "HIGH" } : {})
    }))
  }
  const baseUrl = section.base_url
  if (baseUrl === undefined) throw new Error("judge.base_url is required for the openai judge")
  return withRubric(() => import("./OpenAI.ts"), ({ openai }, rubric) => openai({ ...shared, rubric, model, baseUrl, ...(section.api_key !== undefined ? { apiKey: Secret.standIn(section.api_key) } : {}) }))
}
