/**
 * The `tinker` PolicyEngine: the model being trained lives on a Tinker training service (hosted
 * Tinker, or a SkyRL tx server speaking the same API), protocols.md §1, over JSON.
 *
 * - Bodies are the wire Schemas of tinker/Wire.ts, the module `polaris serve` reads and writes
 *   them with: requests are built as those Schemas' encoded types, replies and future results
 *   are decoded with them, and a reply that does not decode fails the call (`Backend`, or
 *   `Checkpoint` for saves and loads) with the Schema's account of what was wrong. Error bodies
 *   are read as `{"detail"}` (Wire.ErrorDetail).
 * - A session (`create_session`) and a LoRA training client (`create_model`) are made on `make`.
 *   A heartbeat (`session_heartbeat`, every 10 s as the SDK does) runs in a fiber scoped to the
 *   layer; its failures are ignored (the hosted service may end a session after 120 s without
 *   one, SkyRL ignores it).
 * - At start-up `get_server_capabilities` must list the base model (else the layer fails with the
 *   service's list, `Unsupported`); its `max_context_length`, when given, bounds every call.
 * - Every call that touches the model (forward_backward, optim_step, save_weights,
 *   save_weights_for_sampler, load_weights) carries `seq_id` 1, 2, 3, … without gaps, counted
 *   per training client from 1 as the SDK does (`TrainingClient._request_id_counter` starts at 0,
 *   `seq_id = request_id + 1`: thinking-machines-lab/tinker@d595dc2
 *   `src/tinker/lib/public_interfaces/training_client.py`), also for the fresh client `load` makes:
 *   ids are allocated and the requests submitted one at a time under a semaphore, their futures
 *   are then awaited concurrently. A retried submission reuses its seq_id and the identical body
 *   (the server answers the original request_id). A submission that fails for good leaves an
 *   unknown hole in the sequence, so the model is then marked broken: later model calls fail at
 *   once (a gap would stall the server's queue) until `load` makes a fresh training client.
 * - Saves and loads are not de-duplicated by seq_id on SkyRL (their futures carry none), so a
 *   retry after a dropped connection is answered 409 (save: the checkpoint row exists) or 400
 *   (load: the model already has a request). A 409 on save is success once the run's checkpoint
 *   list shows the checkpoint (waited for up to `futureTimeout`); a refused load retry loads into
 *   another fresh training client.
 * - Every POST carries `X-Idempotency-Key`, one per call and the same on each of its retries, as
 *   the SDK's HTTP layer sends it (`_base_client.py`: `stainless-python-retry-<uuid4>` on every
 *   non-GET request, reused across retries); ours is `polaris-ts-retry-<uuid4>`.
 * - Futures are polled with `retrieve_future` (§1.5 table) until a result, each wait bounded by
 *   `futureTimeout`, each HTTP call by `timeout`.
 * - `sample` and `logprobs` use `asample` on the last published sampler weights
 *   (`save_weights_for_sampler`), or on the base model before the first `publish`. Prompt
 *   logprobs are read in the hosted shape (n entries, a leading null) or SkyRL JAX's (n − 1, no
 *   null): tinker/PromptLogprobs.ts.
 *
 * The API key is `Redacted`: it goes out in the `X-API-Key` header only, never in the
 * fingerprint, a message or a log.
 *
 * **SkyRL flavour.** SkyRL's JAX backend takes each datum's loss as Σ_t w_t·ℓ_t / max(Σ_t w_t, 1e-9)
 * (w = `weights`, all 1 when omitted, and importance_sampling/ppo multiply ℓ by w) and divides
 * the accumulated gradient by the number of datums D accumulated since the last optim_step. Our
 * losses are token SUMS (PolicyEngine.ts). For importance_sampling and ppo the loss is
 * positively homogeneous in A (TokenLoss.ts), so datum d is sent with
 *
 *   weights  w_t = 1 on its loss tokens (advantage or sampler logprob ≠ 0), 0 elsewhere
 *   A'_t     = A_t · S_d · K,   S_d = Σ_t w_t (its loss tokens),  K = datums in this call
 *
 * and the server's (1/D)·Σ_d (1/S_d)·Σ_t w_t·ℓ_t(A') = (K/D)·Σ_d Σ_t ℓ_t(A): exactly our sum when
 * K = D, i.e. when ONE forwardBackward call precedes each optimStep. With several calls per step
 * call c's share is scaled by D_c/D (a warning is logged at optimStep); exactness there would
 * need deferring the backward passes to optimStep. `cross_entropy` CANNOT be compensated: its
 * per-datum loss Σ w·ℓ / Σ w does not change when the weights are scaled, so SkyRL trains on
 * (1/D)·Σ_d (Σ_t w_t·ℓ_t / Σ_t w_t), a weighted mean; weights summing to ≤ 0 (the server would
 * divide by 1e-9) are refused with BadInput. The k3 KL term's gradient goes out as cross_entropy
 * weights of both signs whose sum is about 0, so a recipe with `grpo.beta > 0` and
 * `flavour: skyrl` is refused when it is loaded (RecipeLoader.ts). The returned `loss:sum` is
 * always computed on the client from the returned logprobs and the caller's own (unscaled)
 * arrays in this flavour, since SkyRL reports `metrics: {}`; the gradient norm comes from its
 * `skyrl.ai/grad_norm` (`gradNormOf`).
 *
 * @example
 * ```ts
 * const layer = TinkerPolicy.layer({
 *   baseUrl: "https://tinker.thinkingmachines.dev/services/tinker-prod",
 *   apiKey: Redacted.make(process.env.TINKER_API_KEY!),
 *   baseModel: "Qwen/Qwen3-8B",
 *   tokenizer: "models/qwen3-8b-tokenizer"
 * })
 * ```
 */
import { createHash, randomUUID } from "node:crypto"
import { join } from "node:path"
import { Cause, Duration, Effect, Layer, Redacted, Schema, Semaphore } from "effect"
import type { Scope } from "effect"
import { FetchHttpClient, HttpClient, HttpClientRequest } from "effect/http"
import type { AdamParams } from "../model/AdamW.ts"
import { validate, type SamplingParams } from "../model/Sampling.ts"
import { END_TOKEN, promptIds } from "../model/tokenizer/ChatTemplate.ts"
import { Tokenizer } from "../model/tokenizer/Tokenizer.ts"
import type * as Retry from "../dag/Retry.ts"
import { attempts, classifyStatus, LlmError, malformed, parseRetryAfter, trimSlash } from "./llm/Remote.ts"
import { readCapabilities, servedModel } from "./tinker/Capabilities.ts"
import { checkpointsPath, findCheckpoint, type CheckpointType } from "./tinker/Checkpoints.ts"
import { completionLogprobs } from "./tinker/PromptLogprobs.ts"
import { checkDatum, chunked, datumMetrics, gradNormOf, mergeMetrics, modelInput, type TinkerFlavour, wireDatum } from "./tinker/Datums.ts"
import * as Wire from "./tinker/Wire.ts"
import {
  PolicyEngine,
  PolicyError,
  type CheckpointRef,
  type ForwardBackwardResult,
  type PolicyEngineShape,
  type SamplingWeights,
  type PolicyErrorReason,
  type SampledSequence
} from "./PolicyEngine.ts"

export type { TinkerFlavour } from "./tinker/Datums.ts"
export { chunked, gradNormOf, MAX_CHUNK_BYTES, MAX_CHUNK_DATUMS, wireDatum } from "./tinker/Datums.ts"

export interface TinkerOptions {
  /** The service root; requests go to `${baseUrl}/api/v1/...`. */
  readonly baseUrl: string
  /** Sent as `X-API-Key` (SkyRL checks none). */
  readonly apiKey?: Redacted.Redacted<string>
  /** e.g. `Qwen/Qwen3-8B`. */
  readonly baseModel: string
  /** A local folder with the model's tokenizer.json (+ tokenizer_config.json). */
  readonly tokenizer: string
  /** LoRA rank (default 32). */
  readonly loraRank?: number
  /** Which server: hosted Tinker (SUM losses) or SkyRL tx (mean losses, see the module doc). */
  readonly flavour?: TinkerFlavour
  /** Time limit of one HTTP call (default 60 seconds). */
  readonly timeout?: Duration.Input
  /** Give up on a future after this long (default 30 minutes). */
  readonly futureTimeout?: Duration.Input
  /** Attempts per submission, the first included (default 5). */
  readonly attempts?: number
  /** Backoff of submissions and of failed polls (Retry.backoff's defaults). */
  readonly backoff?: Retry.BackoffOptions
  /** Heartbeat period (default 10 seconds). */
  readonly heartbeat?: Duration.Input
}

/**
 * What the client says it is in `create_session`: the SDK version whose wire dialect it speaks.
 * SDK 0.25.0 always sends forward_backward as protobuf and asks for protobuf futures
 * (thinking-machines-lab/tinker@d595dc2ba62a1494aa0f452fe1d0dbb7b321b870 `src/tinker/resources/training.py`,
 * `src/tinker/lib/api_future_impl.py`: `Accept: application/x-protobuf`); 0.24.1 sends JSON unless
 * the server's `/client/config` turns on `proto_write_fwdbwd` (default false), and accepts JSON
 * results (tinker@6b02536 `src/tinker/types/client_config_response.py`, `resources/training.py`,
 * `lib/api_future_impl.py`: `Accept: application/x-protobuf, application/json`). This client sends
 * JSON, never asks `/client/config`, and reads JSON: 0.24.1's dialect.
 */
export const SDK_VERSION = "0.24.1"
const DEFAULT_MAX_CONTEXT = 32768
const NAME = /^[A-Za-z0-9_-]+$/

type Failure = LlmError | PolicyError

const fail = (reason: PolicyErrorReason, message: string, retryable = false, cause?: unknown) =>
  new PolicyError({ reason, message, retryable, ...(cause !== undefined ? { cause } : {}) })

/** An LlmError of one HTTP call -> the PolicyError of the engine call it served. */
const toPolicy = (call: string) => (e: Failure): PolicyError => {
  if (e instanceof PolicyError) return e
  const reason: PolicyErrorReason = e.retryable ? "Unavailable" : e.status === 400 || e.status === 422 ? "BadInput" : "Backend"
  return fail(reason, `tinker ${call}: ${e.origin}: ${e.message}`, e.retryable, e)
}

const isObject = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/**
 * A request body: a value of its wire Schema's encoded type, serialized. (The request Schemas
 * have no transformations, so the value is its own encoding.)
 */
const encode = <S extends Schema.Top>(_schema: S, body: S["Encoded"]): string => JSON.stringify(body)

/** A short excerpt of a JSON value, for messages. */
const excerpt = (u: unknown): string => (JSON.stringify(u) ?? String(u)).slice(0, 160)

/**
 * A reply decoded with its wire Schema; a mismatch is a PolicyError (`reason`) naming the call,
 * with the Schema's message (what was expected, and where) and an excerpt of the reply.
 */
const decodeReply = <S extends Schema.ConstraintDecoder<unknown>>(schema: S, call: string, reason: PolicyErrorReason = "Backend") => {
  const decode = Schema.decodeUnknownResult(schema)
  return (reply: unknown): Effect.Effect<S["Type"], PolicyError> => {
    const decoded = decode(reply)
    return decoded._tag === "Success"
      ? Effect.succeed(decoded.success)
      : Effect.fail(fail(reason, `tinker ${call}: unexpected reply ${excerpt(reply)}: ${decoded.failure.message.replace(/\n\s*/g, " ")}`, false, decoded.failure))
  }
}

const decodeFuture = Schema.decodeUnknownResult(Wire.UntypedAPIFuture)
const isPending = Schema.is(Wire.FuturePending)
const isFailed = Schema.is(Wire.FutureFailed)
const isCategory = Schema.is(Wire.RequestErrorCategory)

/** A URL without user:password, for messages. */
const safeOrigin = (url: string) => {
  try {
    const u = new URL(url)
    u.username = ""
    u.password = ""
    return u.toString()
  } catch {
    return url
  }
}

/**
 * A 31-bit integer seed from our seed (number or string), deterministically: small non-negative
 * integers are kept, anything else is hashed.
 */
export const tinkerSeed = (seed: number | string): number => {
  if (typeof seed === "number" && Number.isInteger(seed) && seed >= 0 && seed < 2 ** 31) return seed
  return createHash("sha256").update(`${typeof seed}:${String(seed)}`).digest().readUInt32BE(0) & 0x7fffffff
}

const endTokenOf = (tokenizer: Tokenizer): number => {
  const eos = tokenizer.config["eos_token"]
  const name = typeof eos === "string" ? eos : isObject(eos) && "content" in eos ? String(eos.content) : END_TOKEN
  return tokenizer.tokenId(name)
}

/** A non-2xx reply as an LlmError: classified by status, its message the `{"detail"}` of Wire.ErrorDetail (else the body). */
const failure = (origin: string, r: Reply): LlmError => classifyStatus(origin, r.status, r.headers, r.text, Wire.errorMessage)

/** `X-Idempotency-Key` of one call, formed as the SDK forms its own (`stainless-python-retry-<uuid4>`). */
const idempotencyKey = (): string => `polaris-ts-retry-${randomUUID()}`

/** Attempts made by one call so far. */
interface Sent {
  count: number
}

interface Reply {
  readonly status: number
  readonly headers: Readonly<Record<string, string | undefined>>
  readonly text: string
}

/** A submitted request: its future id and how to send it again (same body, same seq_id). */
interface Submitted {
  readonly requestId: string
  readonly resubmit: Effect.Effect<string, Failure>
}

/** A Tinker engine's fingerprint, from its options alone (no session needed). */
export const fingerprintOf = (options: Pick<TinkerOptions, "baseModel" | "flavour">): string => `tinker:${options.baseModel}@${options.flavour ?? "hosted"}`

export const make = (options: TinkerOptions): Effect.Effect<PolicyEngineShape, PolicyError, HttpClient.HttpClient | Scope.Scope> =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const flavour = options.flavour ?? "hosted"
    const root = `${trimSlash(options.baseUrl)}/api/v1`
    const timeout = options.timeout ?? "60 seconds"
    const futureTimeout = Duration.fromInputUnsafe(options.futureTimeout ?? "30 minutes")
    const base = Duration.toMillis(options.backoff?.base ?? "200 millis")
    const factor = options.backoff?.factor ?? 2
    const cap = Duration.toMillis(options.backoff?.cap ?? "30 seconds")
    const jitter = options.backoff?.jitter !== false
    const delay = (n: number) => Math.min(base * factor ** n, cap) * (jitter ? 0.8 + 0.4 * Math.random() : 1)
    const headers: Record<string, string> = {
      "content-type": "application/json",
      ...(options.apiKey !== undefined ? { "x-api-key": Redacted.value(options.apiKey) } : {})
    }
    const origin = (path: string) => `POST ${safeOrigin(`${root}/${path}`)}`

    // -- HTTP --------------------------------------------------------------------------------

    /**
     * One HTTP call, no retry, no time limit (callers add them). A POST carries `key` as
     * `X-Idempotency-Key` (a fresh one when none is given); a GET carries none, as in the SDK
     * (tinker@d595dc2 `src/tinker/_base_client.py`: a key for every non-GET request).
     */
    const raw = (method: "GET" | "POST", path: string, body?: string, key?: string): Effect.Effect<Reply, unknown> => {
      const url = `${root}/${path}`
      const request = method === "GET"
        ? HttpClientRequest.get(url).pipe(HttpClientRequest.setHeaders(headers))
        : HttpClientRequest.post(url).pipe(
          HttpClientRequest.setHeaders({ ...headers, "x-idempotency-key": key ?? idempotencyKey() }),
          HttpClientRequest.bodyText(body ?? "{}", "application/json")
        )
      return client.execute(request).pipe(
        Effect.flatMap((response) => Effect.map(response.text, (text) => ({ status: response.status, headers: response.headers, text })))
      )
    }

    /** A 2xx body: a JSON object (anything else fails the attempt, as retryable). */
    const parse = (o: string, text: string): Effect.Effect<Record<string, unknown>, LlmError> => {
      try {
        const u: unknown = JSON.parse(text)
        return isObject(u) ? Effect.succeed(u) : Effect.fail(malformed(o, `reply is not a JSON object: ${text.slice(0, 120)}`))
      } catch (e) {
        return Effect.fail(malformed(o, `reply is not JSON: ${text.slice(0, 120)}`, e))
      }
    }

    /**
     * A POST with the call timeout and retries of 408/429/5xx/transport (Remote.attempts), one
     * idempotency key for all its attempts (a new one each time the effect runs). `sent` counts
     * the attempts: past 1, an earlier one may have reached the server.
     */
    const post = (path: string, body: string, sent: Sent = { count: 0 }): Effect.Effect<unknown, LlmError> =>
      Effect.suspend(() => {
        const key = idempotencyKey()
        return attempts(
          options,
          origin(path),
          Effect.suspend(() => {
            sent.count++
            return Effect.flatMap(raw("POST", path, body, key), (r) =>
              r.status >= 200 && r.status < 300 ? parse(origin(path), r.text) : Effect.fail(failure(origin(path), r))
            )
          })
        )
      })

    /** A GET with the call timeout and retries; `path` is under `/api/v1/`. */
    const get = (path: string): Effect.Effect<unknown, LlmError> => {
      const o = `GET ${safeOrigin(`${root}/${path}`)}`
      return attempts(
        options,
        o,
        Effect.flatMap(raw("GET", path), (r) => r.status === 200 ? parse(o, r.text) : Effect.fail(failure(o, r)))
      )
    }

    /** A work request's immediate answer, Wire.UntypedAPIFuture: its request_id. */
    const requestIdOf = (o: string, reply: unknown): Effect.Effect<string, LlmError> => {
      const future = decodeFuture(reply)
      return future._tag === "Success"
        ? Effect.succeed(future.success.request_id)
        : Effect.fail(malformed(o, `no request_id in ${excerpt(reply)}`, future.failure))
    }

    /**
     * Submits a request that answers with a future; `resubmit` sends the identical body again
     * (after a 410, under a new idempotency key: the SDK resubmits through a new request).
     */
    const submit = (path: string, body: string, sent?: Sent): Effect.Effect<Submitted, LlmError> => {
      const once = (s?: Sent) => Effect.flatMap(post(path, body, s), (r) => requestIdOf(origin(path), r))
      return Effect.map(once(sent), (requestId) => ({ requestId, resubmit: once() }))
    }

    // -- futures (§1.5) ----------------------------------------------------------------------

    /** A failed request's answer (Wire.FutureFailed); a category outside the SDK's reads as "unknown", as the SDK reads it. */
    const futureError = (call: string, body: typeof Wire.FutureFailed.Type): PolicyError => {
      const category: Wire.RequestErrorCategory = isCategory(body.category) ? body.category : "unknown"
      return fail(category === "user" ? "BadInput" : "Backend", `tinker ${call}: request failed (${category}): ${body.error}`)
    }

    /**
     * Polls a future until its result, decoded with `result` (a mismatch fails with
     * `settings.reason`, default Backend). `conflict` turns a 409 into a result (a save: the
     * checkpoint exists, confirmed by `savedCheckpoint`); `retryable` is what a futureTimeout
     * error says (false for model calls: a caller's retry would send the work again under new
     * seq_ids while the first may still run).
     */
    const awaitFuture = <S extends Schema.ConstraintDecoder<unknown>>(
      call: string,
      submitted: Submitted,
      result: S,
      settings: { readonly retryable: boolean; readonly reason?: PolicyErrorReason; readonly conflict?: Effect.Effect<S["Type"], PolicyError> }
    ): Effect.Effect<S["Type"], PolicyError> => {
      const poll = (id: string) =>
        raw("POST", "retrieve_future", encode(Wire.FutureRetrieveRequest, { request_id: id, allow_metadata_only: false })).pipe(Effect.timeout(timeout))
      const o = origin("retrieve_future")
      const loop = Effect.gen(function*() {
        let id = submitted.requestId
        let n429 = 0
        let nFail = 0
        let n400 = 0
        for (;;) {
          const r = yield* Effect.result(poll(id))
          if (r._tag === "Failure") {
            // A long poll that outlived our call timeout is a 408; a transport failure backs off.
            if (!Cause.isTimeoutError(r.failure)) yield* Effect.sleep(Duration.millis(delay(nFail++)))
            continue
          }
          const { status, text } = r.success
          if (status === 200) {
            const parsed = yield* Effect.result(parse(o, text))
            if (parsed._tag === "Failure") {
              yield* Effect.sleep(Duration.millis(delay(nFail++)))
              continue
            }
            const body = parsed.success
            if (isPending(body)) continue
            if (isFailed(body)) return yield* Effect.fail(futureError(call, body))
            return yield* decodeReply(result, call, settings.reason)(body)
          }
          if (status === 408) continue
          if (status === 410) {
            id = yield* Effect.mapError(submitted.resubmit, toPolicy(call))
            continue
          }
          if (status === 429) {
            const after = parseRetryAfter(r.success.headers["retry-after"])
            const wait = Math.min(1000 * 2 ** n429++, 30_000, cap)
            yield* Effect.sleep(Duration.millis(Math.max(wait, after === undefined ? 0 : Math.min(Duration.toMillis(after), 30_000))))
            continue
          }
          if (status >= 500) {
            yield* Effect.sleep(Duration.millis(delay(nFail++)))
            continue
          }
          if (status === 400 && n400 < 3) {
            n400++
            yield* Effect.sleep(Duration.millis(delay(n400 - 1)))
            continue
          }
          if (status === 402) {
            // Billing: the SDK pauses in 5 s sleeps; futureTimeout bounds it here.
            yield* Effect.sleep(Duration.millis(Math.min(5000, cap)))
            continue
          }
          if (status === 409 && settings.conflict !== undefined) return yield* settings.conflict
          return yield* Effect.fail(toPolicy(call)(failure(o, r.success)))
        }
      })
      return loop.pipe(
        Effect.timeoutOrElse({
          duration: futureTimeout,
          orElse: () => Effect.fail(fail("Unavailable", `tinker ${call}: no result after ${Duration.format(futureTimeout)}`, settings.retryable))
        })
      )
    }

    /** A request (`body`, serialized) answered with a future, awaited and decoded with `result`. */
    const call = <S extends Schema.ConstraintDecoder<unknown>>(name: string, path: string, body: string, result: S, retryable: boolean): Effect.Effect<S["Type"], PolicyError> =>
      Effect.flatMap(Effect.mapError(submit(path, body), toPolicy(name)), (s) => awaitFuture(name, s, result, { retryable }))

    // -- session and model -------------------------------------------------------------------

    const tokenizer = yield* Effect.try({
      try: () => Tokenizer.fromFile(join(options.tokenizer, "tokenizer.json")),
      catch: (e) => fail("Checkpoint", `tinker tokenizer ${options.tokenizer}: ${(e as Error).message}`, false, e)
    })
    const endToken = yield* Effect.try({ try: () => endTokenOf(tokenizer), catch: (e) => fail("Checkpoint", `tinker tokenizer: ${(e as Error).message}`) })

    // The service's own list of models (tinker/Capabilities.ts): a model it lacks fails here, with
    // the list, not at create_model. A server without the route (404) is trusted, with a warning.
    const decodeCapabilities = decodeReply(Wire.GetServerCapabilitiesResponse, "get_server_capabilities")
    const capabilities = yield* get("get_server_capabilities").pipe(
      Effect.map((reply) => ({ reply })),
      Effect.catchIf((e) => e.status === 404, () => Effect.succeed(undefined)),
      Effect.mapError(toPolicy("get_server_capabilities")),
      Effect.flatMap((found) => (found === undefined ? Effect.succeed(undefined) : Effect.map(decodeCapabilities(found.reply), readCapabilities)))
    )
    if (capabilities === undefined) {
      yield* Effect.logWarning(`tinker: ${safeOrigin(root)} lists no models (get_server_capabilities); ${options.baseModel} is assumed served`)
    }
    const served = capabilities === undefined ? undefined : servedModel(capabilities, options.baseModel)
    if (served !== undefined && "error" in served) {
      return yield* Effect.fail(fail("Unsupported", `tinker ${safeOrigin(root)}: ${served.error}`))
    }
    const knownContext = served?.model.maxContext
    const maxContext = knownContext ?? DEFAULT_MAX_CONTEXT

    const session = yield* post("create_session", encode(Wire.CreateSessionRequest, { tags: ["polaris"], user_metadata: {}, sdk_version: SDK_VERSION, type: "create_session" })).pipe(
      Effect.mapError(toPolicy("create_session")),
      Effect.flatMap(decodeReply(Wire.CreateSessionResponse, "create_session"))
    )
    const sessionId = session.session_id

    const heartbeat = post("session_heartbeat", encode(Wire.SessionHeartbeatRequest, { session_id: sessionId, type: "session_heartbeat" })).pipe(
      Effect.catch((e) => Effect.logDebug(`tinker heartbeat failed: ${e.message}`))
    )
    yield* Effect.forkScoped(Effect.forever(Effect.andThen(Effect.sleep(options.heartbeat ?? "10 seconds"), heartbeat)))

    let modelSeqId = 0
    const createModel = Effect.suspend(() => {
      const body = encode(Wire.CreateModelRequest, {
        session_id: sessionId,
        model_seq_id: modelSeqId++,
        base_model: options.baseModel,
        user_metadata: {},
        lora_config: { rank: options.loraRank ?? 32, seed: null, train_unembed: true, train_mlp: true, train_attn: true },
        type: "create_model"
      })
      return Effect.map(call("create_model", "create_model", body, Wire.CreateModelResponse, false), (r) => r.model_id)
    })

    // The training client's state: its id, the last seq_id used, and whether a hole was left.
    let modelId = yield* createModel
    let seq = 0
    let broken: string | undefined
    const submissions = Semaphore.makeUnsafe(1)

    /**
     * Allocates consecutive seq_ids and submits the bodies in order (one permit for all, so a
     * call's chunks are contiguous). A submission that fails marks the model broken, except a
     * 409 when `conflictOk` (a save: the checkpoint exists), which returns undefined.
     */
    const submitModel = (
      name: string,
      path: string,
      bodies: ReadonlyArray<(model: string, seqId: number) => string>,
      conflictOk = false
    ): Effect.Effect<Array<Submitted | undefined>, PolicyError> =>
      submissions.withPermits(1)(
        Effect.gen(function*() {
          if (broken !== undefined) return yield* Effect.fail(fail("Backend", `tinker ${name}: ${broken}`))
          const out: Array<Submitted | undefined> = []
          for (const build of bodies) {
            const seqId = ++seq
            const r = yield* Effect.result(submit(path, build(modelId, seqId)))
            if (r._tag === "Success") {
              out.push(r.success)
              continue
            }
            if (conflictOk && r.failure.status === 409) {
              out.push(undefined)
              continue
            }
            broken = `model ${modelId} may lack seq_id ${seqId} (its ${name} submission failed: ${r.failure.message}); load a checkpoint to continue`
            return yield* Effect.fail(toPolicy(name)(r.failure))
          }
          return out
        })
      )

    const awaitModel = <S extends Schema.ConstraintDecoder<unknown>>(
      name: string,
      s: Submitted | undefined,
      result: S,
      settings: { readonly reason?: PolicyErrorReason; readonly conflict?: Effect.Effect<S["Type"], PolicyError> } = {}
    ): Effect.Effect<S["Type"], PolicyError> =>
      s === undefined && settings.conflict !== undefined
        ? settings.conflict
        : awaitFuture(name, s!, result, { retryable: false, ...settings })

    /**
     * After a 409 on a save: `{ path }` of checkpoint `name` once `model`'s checkpoint list
     * (tinker/Checkpoints.ts) shows it, polled with backoff up to `futureTimeout` (SkyRL lists a
     * checkpoint when it is written, and the first attempt's save may still be queued). A server
     * without the list route (404) is trusted at the conventional path, with a warning.
     */
    const savedCheckpoint = (call: string, model: string, name: string, type: CheckpointType): Effect.Effect<{ readonly path: string }, PolicyError> => {
      const decodeList = decodeReply(Wire.CheckpointsListResponse, `${call} (checkpoint list)`, "Checkpoint")
      const conventional = `tinker://${model}/${type === "training" ? "weights" : "sampler_weights"}/${name}`
      const loop = Effect.gen(function*() {
        for (let n = 0; ; n++) {
          const listed = yield* get(checkpointsPath(model)).pipe(
            Effect.map((reply) => ({ reply })),
            Effect.catchIf((e) => e.status === 404, () => Effect.succeed(undefined)),
            Effect.mapError(toPolicy(call)),
            Effect.flatMap((found) =>
              found === undefined
                ? Effect.succeed(undefined)
                : Effect.map(decodeList(found.reply), (reply): string | null => findCheckpoint(reply, name, type) ?? null)
            )
          )
          if (listed === undefined) {
            yield* Effect.logWarning(`tinker ${call}: 409 for ${JSON.stringify(name)} and no checkpoint list to confirm it; taking ${conventional}`)
            return { path: conventional }
          }
          if (listed !== null) return { path: listed }
          yield* Effect.sleep(Duration.millis(delay(n)))
        }
      })
      return loop.pipe(
        Effect.timeoutOrElse({
          duration: futureTimeout,
          orElse: () =>
            Effect.fail(fail(
              "Checkpoint",
              `tinker ${call}: the server answered 409 (checkpoint ${JSON.stringify(name)} exists) but model ${model} lists no ${type} checkpoint ${JSON.stringify(name)} after ${Duration.format(futureTimeout)}`
            ))
        })
      )
    }

    /**
     * save_weights / save_weights_for_sampler of `name`, its result decoded with `result` (a
     * mismatch fails with `reason`); a 409 is success once `savedCheckpoint` confirms it.
     */
    const saveAs = (
      call: "save_weights" | "save_weights_for_sampler",
      name: string,
      type: CheckpointType,
      body: (model: string, seqId: number) => string,
      result: typeof Wire.SaveWeightsResponse | typeof Wire.SaveWeightsForSamplerResponse,
      reason: PolicyErrorReason
    ): Effect.Effect<{ readonly path?: string | null | undefined }, PolicyError> =>
      Effect.gen(function*() {
        let model = modelId
        const [s] = yield* submitModel(call, call, [(m, seqId) => {
          model = m
          return body(m, seqId)
        }], true)
        return yield* awaitModel(call, s, result, { reason, conflict: Effect.suspend(() => savedCheckpoint(call, model, name, type)) })
      })

    // -- the engine --------------------------------------------------------------------------

    let published: string | undefined
    let publishes = 0
    let steps = 0
    let callsSinceStep = 0

    /** The checkpoint the training client holds untouched (loaded or just saved; none once trained since). */
    let holding: string | undefined
    /** Sampler weights made here, by the checkpoint they were published from. */
    const samplerOf = new Map<string, string>()
    const addressingLock = Semaphore.makeUnsafe(1)

    type Addressing = Pick<typeof Wire.SampleRequest.Encoded, "model_path" | "base_model">
    /**
     * Where a sampling call points: the sampler weights `weights` names (SampleRequest's
     * `model_path`), the base model itself (`base_model`), or with no weights the last published.
     * A training checkpoint with no known sampler weights (a run resumed from a checkpoint that
     * was published by another process) is loaded and published once, as `load` does: that goes
     * through the training client, so it is only safe when nothing trains meanwhile.
     */
    const addressingOf = (weights: SamplingWeights | undefined): Effect.Effect<Addressing, PolicyError> => {
      if (weights === undefined) return Effect.succeed(published !== undefined ? { model_path: published } : { base_model: options.baseModel })
      if (weights.sampler !== undefined) return Effect.succeed({ model_path: weights.sampler })
      if (weights.checkpoint === options.baseModel) return Effect.succeed({ base_model: options.baseModel })
      const known = samplerOf.get(weights.checkpoint)
      if (known !== undefined) return Effect.succeed({ model_path: known })
      return addressingLock.withPermits(1)(Effect.gen(function*() {
        const again = samplerOf.get(weights.checkpoint)
        if (again !== undefined) return { model_path: again }
        yield* Effect.logWarning(`tinker: no sampler weights known for ${weights.checkpoint}; loading it into the training client to publish them`)
        yield* engine.load({ path: weights.checkpoint })
        return { model_path: samplerOf.get(weights.checkpoint) ?? published! }
      }))
    }

    const asample = (name: string, at: Addressing, body: Omit<typeof Wire.SampleRequest.Encoded, "model_path" | "base_model" | "type">) =>
      call(name, "asample", encode(Wire.SampleRequest, { ...body, ...at, type: "sample" }), Wire.SampleResponse, true)

    const sampleOne = (at: Addressing, prompt: ReadonlyArray<number>, n: number, p: SamplingParams): Effect.Effect<Array<SampledSequence>, PolicyError> =>
      Effect.gen(function*() {
        const r = yield* asample("sample", at, {
          num_samples: n,
          prompt: modelInput(prompt),
          sampling_params: {
            max_tokens: p.maxTokens,
            temperature: p.temperature,
            top_p: p.topP,
            top_k: p.topK > 0 ? p.topK : -1,
            stop: [endToken, ...p.stop],
            seed: tinkerSeed(p.seed)
          },
          prompt_logprobs: false,
          topk_prompt_logprobs: 0
        })
        if (r.sequences.length !== n) return yield* Effect.fail(fail("Backend", `tinker sample: ${r.sequences.length} sequences for num_samples ${n}`))
        const out: Array<SampledSequence> = []
        for (const s of r.sequences) {
          if (s.logprobs == null || s.logprobs.length !== s.tokens.length) {
            return yield* Effect.fail(fail("Backend", "tinker sample: a sequence without tokens and one logprob per token"))
          }
          out.push({ tokens: s.tokens, logprobs: s.logprobs, stopReason: s.stop_reason })
        }
        return out
      })

    const publishNow = Effect.gen(function*() {
      const name = `sampler-${++publishes}`
      const r = yield* saveAs("save_weights_for_sampler", name, "sampler", (model, seqId) =>
        encode(Wire.SaveWeightsForSamplerRequest, {
          model_id: model,
          path: name,
          seq_id: seqId,
          type: "save_weights_for_sampler"
        }), Wire.SaveWeightsForSamplerResponse, "Backend")
      if (r.path == null) return yield* Effect.fail(fail("Backend", "tinker save_weights_for_sampler: no path in the result"))
      published = r.path
      if (holding !== undefined) samplerOf.set(holding, r.path)
      return { path: r.path } satisfies CheckpointRef
    })

    const engine: PolicyEngineShape = {
      fingerprint: fingerprintOf(options),
      tokenizer,
      endToken,
      maxContext,
      promptIds: (prompt) => promptIds(tokenizer, prompt),

      sample: (requests, weights) =>
        Effect.gen(function*() {
          for (const r of requests) {
            yield* Effect.try({ try: () => validate(r.params), catch: (e) => fail("BadInput", `sampling params: ${(e as Error).message}`) })
            if (!Number.isInteger(r.n) || r.n < 1) return yield* Effect.fail(fail("BadInput", `n must be a positive integer, got ${r.n}`))
            if (r.params.maxTokens < 1) return yield* Effect.fail(fail("BadInput", `tinker sample: maxTokens must be at least 1, got ${r.params.maxTokens}`))
            const p = r.params
            const penalties = [
              p.repetitionPenalty !== 1 ? `repetitionPenalty ${p.repetitionPenalty}` : undefined,
              p.presencePenalty !== 0 ? `presencePenalty ${p.presencePenalty}` : undefined,
              p.frequencyPenalty !== 0 ? `frequencyPenalty ${p.frequencyPenalty}` : undefined
            ].filter((x) => x !== undefined)
            if (penalties.length > 0) return yield* Effect.fail(fail("BadInput", `tinker sample: Tinker has no penalties (${penalties.join(", ")})`))
            if (knownContext !== undefined && r.prompt.length >= knownContext) {
              return yield* Effect.fail(fail("ContextOverflow", `tinker sample: a ${r.prompt.length}-token prompt exceeds the model's context (${knownContext})`))
            }
          }
          const at = yield* addressingOf(weights)
          return yield* Effect.forEach(requests, (r) => sampleOne(at, r.prompt, r.n, r.params), { concurrency: "unbounded" })
        }),

      logprobs: (items, weights) =>
        Effect.flatMap(addressingOf(weights), (at) => Effect.forEach(items, ({ prompt, completion }) =>
          Effect.gen(function*() {
            if (prompt.length === 0) return yield* Effect.fail(fail("BadInput", "logprobs: a prompt needs at least one token"))
            if (completion.length === 0) return new Float32Array(0)
            const full = [...prompt, ...completion]
            if (knownContext !== undefined && full.length >= knownContext) {
              return yield* Effect.fail(fail("ContextOverflow", `tinker logprobs: ${full.length} tokens exceed the model's context (${knownContext})`))
            }
            const r = yield* asample("logprobs", at, {
              num_samples: 1,
              prompt: modelInput(full),
              sampling_params: { max_tokens: 1, temperature: 1, top_p: 1, top_k: -1 },
              prompt_logprobs: true
            })
            const decoded = completionLogprobs(r.prompt_logprobs, prompt.length, completion.length)
            if ("error" in decoded) return yield* Effect.fail(fail("Backend", `tinker logprobs: ${decoded.error}`))
            return decoded.logprobs
          }), { concurrency: "unbounded" })),

      // Tinker's `forward` (ForwardRequest {forward_input, model_id, seq_id}: tinker
      // src/tinker/types/forward_request.py@d595dc2) on the training model: the logprobs the next
      // forward_backward starts from, where `logprobs` asks the sampler. The loss is not used.
      trainerLogprobs: (items) =>
        Effect.gen(function*() {
          if (items.length === 0) return []
          if (items.some((i) => i.prompt.length === 0)) return yield* Effect.fail(fail("BadInput", "tinker forward: a prompt needs at least one token"))
          const datums = items.map(({ prompt, completion }) => {
            const full = [...prompt, ...completion]
            return { modelInput: full.slice(0, -1), targetTokens: full.slice(1), weights: new Float32Array(full.length - 1).fill(1) }
          })
          const loss = { name: "cross_entropy" } as const
          yield* Effect.try({
            try: () => datums.forEach((d, i) => checkDatum(d, loss, i, knownContext)),
            catch: (e) => (e instanceof PolicyError ? e : fail("BadInput", String(e)))
          })
          const wire = datums.map((d) => wireDatum(d, loss, flavour, datums.length))
          const submitted = yield* submitModel(
            "forward",
            "forward",
            chunked(wire).map((data) => (model: string, seqId: number) =>
              encode(Wire.ForwardRequest, {
                forward_input: { data, loss_fn: loss.name, loss_fn_config: null },
                model_id: model,
                seq_id: seqId
              })
            )
          )
          const results = yield* Effect.forEach(submitted, (s) => awaitModel("forward", s, Wire.ForwardBackwardOutput), { concurrency: "unbounded" })
          const outputs = results.flatMap((r) => r.loss_fn_outputs)
          if (outputs.length !== datums.length) return yield* Effect.fail(fail("Backend", `tinker forward: ${outputs.length} outputs for ${datums.length} datums`))
          return yield* Effect.forEach(outputs, (o, i) => {
            const data = o["logprobs"]?.data
            const n = datums[i]!.modelInput.length
            return data === undefined || data.length !== n
              ? Effect.fail(fail("Backend", `tinker forward: datum ${i} has no logprobs of length ${n}`))
              : Effect.succeed(Float32Array.from(data).slice(items[i]!.prompt.length - 1))
          })
        }),

      forwardBackward: (datums, loss) =>
        Effect.gen(function*() {
          if (datums.length === 0) return { logprobs: [], metrics: { "loss:sum": 0, "tokens:sum": 0, "clipped:sum": 0 } } satisfies ForwardBackwardResult
          yield* Effect.try({
            try: () => datums.forEach((d, i) => checkDatum(d, loss, i, knownContext)),
            catch: (e) => (e instanceof PolicyError ? e : fail("BadInput", String(e)))
          })
          if (flavour === "skyrl" && loss.name === "cross_entropy") {
            const bad = datums.findIndex((d) => Array.from(d.weights!).reduce((a, x) => a + x, 0) <= 0)
            if (bad >= 0) {
              return yield* Effect.fail(fail("BadInput", `tinker forward_backward (skyrl): datum ${bad}'s cross_entropy weights sum to ≤ 0; SkyRL divides by max(Σweights, 1e-9)`))
            }
          }
          const wire = datums.map((d) => wireDatum(d, loss, flavour, datums.length))
          const config = loss.name === "ppo" ? { clip_low_threshold: loss.clipLow, clip_high_threshold: loss.clipHigh } : null
          // Each chunk's body is built and serialized once, so a retry sends it byte for byte.
          const submitted = yield* submitModel(
            "forward_backward",
            "forward_backward",
            chunked(wire).map((data) => (model: string, seqId: number) =>
              encode(Wire.ForwardBackwardRequest, {
                forward_backward_input: { data, loss_fn: loss.name, loss_fn_config: config },
                model_id: model,
                seq_id: seqId
              })
            )
          )
          callsSinceStep++
          holding = undefined
          const results = yield* Effect.forEach(submitted, (s) => awaitModel("forward_backward", s, Wire.ForwardBackwardOutput), { concurrency: "unbounded" })
          const outputs = results.flatMap((r) => r.loss_fn_outputs)
          if (outputs.length !== datums.length) {
            return yield* Effect.fail(fail("Backend", `tinker forward_backward: ${outputs.length} outputs for ${datums.length} datums`))
          }
          const logprobs: Array<Float32Array> = []
          let lossSum = 0
          let tokens = 0
          let clipped = 0
          for (let i = 0; i < datums.length; i++) {
            const data = outputs[i]?.["logprobs"]?.data
            const d = datums[i]!
            if (data === undefined || data.length !== d.modelInput.length) {
              return yield* Effect.fail(fail("Backend", `tinker forward_backward: datum ${i} has no logprobs of length ${d.modelInput.length}`))
            }
            const lp = Float32Array.from(data)
            logprobs.push(lp)
            const m = datumMetrics(d, loss, lp)
            lossSum += m.loss
            tokens += m.tokens
            clipped += m.clipped
          }
          const server = mergeMetrics(results.map((r) => r.metrics))
          const metrics: Record<string, number> = {
            ...server,
            // hosted reports the SUM loss itself; SkyRL reports {} (and would report a mean)
            "loss:sum": flavour === "hosted" && server["loss:sum"] !== undefined ? server["loss:sum"] : lossSum,
            "tokens:sum": tokens,
            "clipped:sum": clipped
          }
          return { logprobs, metrics } satisfies ForwardBackwardResult
        }),

      optimStep: (params: AdamParams) =>
        Effect.gen(function*() {
          if (flavour === "skyrl" && callsSinceStep > 1) {
            yield* Effect.logWarning(`tinker (skyrl): ${callsSinceStep} forwardBackward calls in one step; the sum-loss compensation is exact for one call per step only`)
          }
          const [s] = yield* submitModel("optim_step", "optim_step", [
            (model, seqId) =>
              encode(Wire.OptimStepRequest, {
                adam_params: {
                  learning_rate: params.learningRate,
                  beta1: params.beta1,
                  beta2: params.beta2,
                  eps: params.eps,
                  weight_decay: params.weightDecay,
                  grad_clip_norm: params.gradClipNorm
                },
                model_id: model,
                seq_id: seqId,
                type: "optim_step"
              })
          ])
          callsSinceStep = 0
          holding = undefined
          const r = yield* awaitModel("optim_step", s, Wire.OptimStepResponse)
          steps++
          const norm = gradNormOf(r.metrics ?? {})
          // SkyRL ignores grad_clip_norm (§1.10): nothing is clipped there.
          const clipScale = flavour === "skyrl" || params.gradClipNorm <= 0
            ? 1
            : Number.isFinite(norm)
            ? Math.min(1, params.gradClipNorm / (norm + 1e-6))
            : Number.NaN
          return { gradNorm: norm, clipScale, step: steps }
        }),

      save: (name) =>
        Effect.gen(function*() {
          if (!NAME.test(name)) return yield* Effect.fail(fail("BadInput", `tinker save: checkpoint name ${JSON.stringify(name)}: letters, digits, '_' or '-'`))
          const r = yield* saveAs("save_weights", name, "training", (model, seqId) =>
            encode(Wire.SaveWeightsRequest, {
              model_id: model,
              path: name,
              seq_id: seqId,
              ttl_seconds: null,
              overwrite: false,
              type: "save_weights"
            }), Wire.SaveWeightsResponse, "Checkpoint")
          if (r.path == null) return yield* Effect.fail(fail("Checkpoint", "tinker save_weights: no path in the result"))
          if (callsSinceStep === 0) holding = r.path
          return { path: r.path } satisfies CheckpointRef
        }),

      load: (ref) =>
        Effect.gen(function*() {
          // The training client already holds exactly these weights (the update before saved
          // them): a fresh client would only cost a model and a load. Sampling follows them.
          if (ref.path === holding) {
            if (ref.path !== options.baseModel && samplerOf.get(ref.path) !== published) yield* publishNow
            return
          }
          if (ref.path === options.baseModel) {
            // The base model itself: a fresh training client holds exactly its weights. Its first
            // request is seq_id 1, as for every training client the SDK makes.
            yield* submissions.withPermits(1)(Effect.gen(function*() {
              modelId = yield* createModel
              seq = 0
              broken = undefined
              callsSinceStep = 0
            }))
            published = undefined
            holding = ref.path
            return
          }
          if (!ref.path.startsWith("tinker://")) return yield* Effect.fail(fail("BadInput", `tinker load: ${JSON.stringify(ref.path)} is neither a tinker:// path nor the base model`))
          // load_weights must be a model's first request: a new training client, then switch.
          // SkyRL does not de-duplicate load_weights by seq_id (its future carries none) and
          // refuses a second request to a loaded model (400 "LoadWeights is not permitted with
          // seq_id …": SkyRL@a9564572 skyrl/tinker/api.py load_weights), so a retry after an
          // attempt that may have arrived (dropped connection, timeout, 5xx) is refused: the
          // client's state is then unknown, and the load goes into another fresh client.
          yield* submissions.withPermits(1)(Effect.gen(function*() {
            const rounds = Math.max(1, options.attempts ?? 5)
            let fresh = ""
            for (let round = 1; ; round++) {
              fresh = yield* createModel
              const body = encode(Wire.LoadWeightsRequest, { model_id: fresh, seq_id: 1, path: ref.path, optimizer: true, type: "load_weights" })
              const sent: Sent = { count: 0 }
              const r = yield* Effect.result(submit("load_weights", body, sent))
              if (r._tag === "Success") {
                yield* awaitFuture("load_weights", r.success, Wire.LoadWeightsResponse, { retryable: false }).pipe(
                  Effect.mapError((e) => fail("Checkpoint", e.message, false, e))
                )
                break
              }
              const refusedRetry = sent.count > 1 && (r.failure.status === 400 || r.failure.status === 409)
              if (!refusedRetry || round >= rounds) return yield* Effect.fail(toPolicy("load_weights")(r.failure))
              yield* Effect.logWarning(`tinker load_weights: a retry into ${fresh} was refused (${r.failure.message}) after an attempt that may have arrived; loading into a fresh training client`)
            }
            modelId = fresh
            seq = 1
            broken = undefined
            callsSinceStep = 0
          }))
          holding = ref.path
          // As the embedded engine, the loaded weights are also the ones sampled from.
          yield* publishNow
        }),

      publish: () => publishNow
    }
    return engine
  })

/** The Tinker engine as a PolicyEngine layer, over the fetch HTTP client. */
export const layer = (options: TinkerOptions): Layer.Layer<PolicyEngine, PolicyError> =>
  Layer.effect(PolicyEngine, make(options)).pipe(Layer.provide(FetchHttpClient.layer))
