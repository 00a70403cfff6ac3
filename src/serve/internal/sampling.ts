/**
 * Sampling helpers both protocols share: stop entries as token ids, a random seed for requests
 * without one, and the engine's teacher-forced prompt logprobs.
 */
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import type { PolicyEngineShape } from "../../engines/PolicyEngine.ts"
import { badRequest, type RequestError, runEngine } from "./RequestError.ts"

/** A random seed for requests without one, so repeated requests differ (as vLLM's `seed: null`). */
export const randomSeed = () => randomBytes(4).readUInt32LE(0)

/** Stop entries as token ids: ints, or strings that are exactly one token. */
export const stopTokens = (engine: PolicyEngineShape, stop: string | ReadonlyArray<string | number>, where: string): Effect.Effect<Array<number>, RequestError> =>
  Effect.forEach(typeof stop === "string" ? [stop] : stop, (s, i) => {
    if (typeof s === "number") return Effect.succeed(s)
    const ids = engine.tokenizer.encode(s)
    const [only] = ids
    return ids.length === 1 && only !== undefined
      ? Effect.succeed(only)
      : Effect.fail(badRequest(`${where}[${i}]: stop string ${JSON.stringify(s)} is not a single token; send token ids`))
  })

/** `[null, log p(prompt[1] | prompt[0]), …]`: the engine's teacher-forced logprobs of the prompt. */
export const promptLogprobs = (engine: PolicyEngineShape, prompt: ReadonlyArray<number>): Effect.Effect<Array<number | null>, RequestError> =>
  prompt.length <= 1
    ? Effect.succeed(prompt.map(() => null))
    : Effect.map(runEngine(engine.logprobs([{ prompt: prompt.slice(0, 1), completion: prompt.slice(1) }])), ([lp]) => [null, ...Array.from(lp ?? [])])
