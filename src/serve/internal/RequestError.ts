/**
 * A request `polaris serve` refuses or fails, with the HTTP status its reason maps to. Each
 * protocol renders it in its own error body (Tinker `{"detail"}`, vLLM `{"error":{…}}`); engine
 * failures (PolicyError) keep their message and map by reason.
 */
import { Cause, Data, Effect } from "effect"
import type { PolicyError } from "../../engines/PolicyEngine.ts"

export type RequestErrorReason =
  | "BadRequest" // a body the protocol or the engine cannot use
  | "NotFound" // an unknown model, future, checkpoint, adapter or route
  | "Conflict" // a reused seq_id, a taken checkpoint name
  | "UnsupportedMediaType" // a body format the route does not take
  | "Unavailable" // the engine is down
  | "Internal" // the engine, or this server, failed

export const STATUS: Record<RequestErrorReason, number> = {
  BadRequest: 400,
  NotFound: 404,
  Conflict: 409,
  UnsupportedMediaType: 415,
  Unavailable: 503,
  Internal: 500
}

export class RequestError extends Data.TaggedError("RequestError")<{
  readonly reason: RequestErrorReason
  readonly message: string
  /** vLLM's error `type` when it differs from the status's default (e.g. InvalidUserInput). */
  readonly kind?: string
  readonly cause?: unknown
}> {
  get status(): number {
    return STATUS[this.reason]
  }
}

export const badRequest = (message: string, kind?: string) =>
  new RequestError({ reason: "BadRequest", message, ...(kind !== undefined ? { kind } : {}) })
export const notFound = (message: string) => new RequestError({ reason: "NotFound", message })
export const conflict = (message: string) => new RequestError({ reason: "Conflict", message })

const REASON_OF_POLICY: Record<PolicyError["reason"], RequestErrorReason> = {
  BadInput: "BadRequest",
  ContextOverflow: "BadRequest",
  Checkpoint: "BadRequest",
  Unsupported: "BadRequest",
  Unavailable: "Unavailable",
  Backend: "Internal"
}

/** Runs an engine effect; a PolicyError becomes a RequestError with the engine's message. */
export const runEngine = <A>(effect: Effect.Effect<A, PolicyError>): Effect.Effect<A, RequestError> =>
  Effect.mapError(effect, (e) => new RequestError({ reason: REASON_OF_POLICY[e.reason], message: e.message, cause: e }))

/** The RequestError a failed handler stands for: its own, or an Internal one for a defect. */
export const fromCause = (cause: Cause.Cause<RequestError>): RequestError => {
  const error = Cause.squash(cause)
  if (error instanceof RequestError) return error
  return new RequestError({ reason: "Internal", message: error instanceof Error ? error.message : String(error), cause: error })
}
