/**
 * One memoized request: the memo key IS the request, and the call sees nothing but the request.
 * Whatever the engine is sent (prompt text or token ids, sampling params, the checkpoint's
 * identity, the story judged) is therefore in the key, so a changed prompt can never be
 * answered from the cache of another (ARCHITECTURE.md §5, "a memo key is the request"). The
 * engines' fingerprints (model, rubric, settings) join the key as for every memo.
 *
 * Given the `engine` that answers, a `local` one (Engine.ts) is called without a memo: its
 * answer is free and the same every time, and storing it cost far more than the call (on the
 * quickstart: a proxy verdict 0.16 ms, its memo item about 5 ms; docs/benchmarks.md).
 *
 * @example
 * const verdict = yield* memoCall(ctx, "verdict", { prompt, story: text, sample }, Verdict, judge.score, { engine: judge })
 */
import { Effect, type Schema } from "effect"
import type { Fingerprinted } from "./Engine.ts"
import type { MemoOptions, StageContext } from "./Stage.ts"

export const memoCall = <Req, A, I, E, R>(
  ctx: StageContext,
  namespace: string,
  request: Req,
  schema: Schema.Codec<A, I>,
  call: (request: Req) => Effect.Effect<A, E, R>,
  options?: MemoOptions<A> & { readonly engine?: Fingerprinted }
): Effect.Effect<A, E, R> => {
  if (options?.engine?.local === true) return Effect.suspend(() => call(request))
  const { engine: _, ...memoOptions } = options ?? {}
  return ctx.memo(namespace, request, schema, Effect.suspend(() => call(request)), memoOptions)
}
