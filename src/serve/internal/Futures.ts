/**
 * Tinker futures (protocols.md §1.5): work requests answer at once with a `request_id`; the work
 * runs in a fiber of the server's scope and `retrieve_future` long-polls for its outcome. Results
 * stay in memory for the server's life.
 */
import { Deferred, Effect, type Exit, FiberSet, Option, type Scope } from "effect"
import { notFound, type RequestError } from "./RequestError.ts"

/** A result, with the kind that decides its protobuf form (sample and forward results have one). */
export interface Done {
  readonly kind: "forward" | "sample" | "json"
  readonly value: unknown
}

export interface Futures {
  /** Starts `work` now; the id `poll` answers for. */
  readonly submit: (work: Effect.Effect<Done, RequestError>) => Effect.Effect<string>
  /** The outcome of `id`, waiting up to `waitMs` for it (none while it is still running). */
  readonly poll: (id: string, waitMs: number) => Effect.Effect<Option.Option<Exit.Exit<Done, RequestError>>, RequestError>
}

export const make: Effect.Effect<Futures, never, Scope.Scope> = Effect.gen(function*() {
  const fibers = yield* FiberSet.make()
  const outcomes = new Map<string, Deferred.Deferred<Done, RequestError>>()
  let next = 1

  const submit = (work: Effect.Effect<Done, RequestError>) =>
    Effect.gen(function*() {
      const id = String(next++)
      const outcome = Deferred.makeUnsafe<Done, RequestError>()
      outcomes.set(id, outcome)
      yield* FiberSet.run(fibers, Effect.flatMap(Effect.exit(work), (exit) => Deferred.done(outcome, exit)))
      return id
    })

  const poll = (id: string, waitMs: number) =>
    Effect.suspend(() => {
      const outcome = outcomes.get(id)
      if (outcome === undefined) return Effect.fail(notFound(`unknown request_id ${JSON.stringify(id)}`))
      return Deferred.await(outcome).pipe(Effect.exit, Effect.timeoutOption(waitMs))
    })

  return { submit, poll }
})
