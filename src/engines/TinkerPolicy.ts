/**
 * The `tinker` PolicyEngine: the model being trained lives on a Tinker training service (hosted
 * Tinker, or a SkyRL tx server speaking the same API), protocols.md §1, over JSON.
 *
 * - A session (`create_session`) and a LoRA training client (`create_model`) are made on `make`.
 *   A heartbeat (`session_heartbeat`, every 10 s as the SDK does) runs in a fiber scoped to the
 *   layer; its failures are ignored (the hosted service may end a session after 120 s without
 *   one, SkyRL ignores it).
 * - Every call that touches the model (forward_backward, optim_step, save_weights,
 *   save_weights_for_sampler, load_weights) carries `seq_id` 1, 2, 3, … without gaps: ids are
 *   allocated and the requests submitted one at a time under a semaphore, their futures are
 *   then awaited concurrently. A retried submission reuses its seq_id and the identical body
 *   (the server answers the original request_id). A submission that fails for good leaves an
 *   unknown hole in the sequence, so the model is then marked broken: later model calls fail at
 *   once (a gap would stall the server's queue) until `load` makes a fresh training client.
 * - Futures are polled with `retrieve_future` (§1.5 table) until a result, each wait bounded by
 *   `futureTimeout`, each HTTP call by `timeout`.
 * - `sample` and `logprobs` use `asample` on the last published sampler weights
 *   (`save_weights_for_sampler`), or on the base model before the first `publish`.
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
 * divide by 1e-9) are refused with BadInput. The returned `loss:sum` is always computed on the
 * client from the returned logprobs and the caller's own (unscaled) arrays in this flavour,
 * since SkyRL reports `metrics: {}`.
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
import { createHash } from "node:crypto"
import { join } from "node:path"
import { Cause, Duration, Effect, Layer, Redacted, Semaphore } from "effect"
import type { Scope } from "effect"
import { FetchHttpClient, HttpClient, HttpClientRequest } from "effect/http"
import type { AdamParams } from "../model/AdamW.ts"
import { validate, type SamplingParams } from "../model/Sampling.ts"
import { END_TOKEN, promptIds } from "../model/tokenizer/ChatTemplate.ts"
import { Tokenizer } from "../model/tokenizer/Tokenizer.ts"
import { engineLoss } from "../grpo/TokenLoss.ts"
import type * as Retry from "../dag/Retry.ts"
import { attempts, classifyStatus, LlmError, malformed, parseRetryAfter, trimSlash } from "./llm/Remote.ts"
import {
  PolicyEngine,
  PolicyError,
  type CheckpointRef,
  type Datum,
  type ForwardBackwardResult,
  type LossFn,
  type PolicyEngineShape,
  type PolicyErrorReason,
  type SampledSequence
} from "./PolicyEngine.ts"

export type TinkerFlavour = "hosted" | "skyrl"

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

/** What the client says it is in `create_session`. */
export const SDK_VERSION = "0.25.0"
/** The SDK's chunking: at most 1024 datums and about 5 MB per forward_backward request. */
export const MAX_CHUNK_DATUMS = 1024
export const MAX_CHUNK_BYTES = 5_000_000
const DEFAULT_MAX_CONTEXT = 32768
const NAME = /^[A-Za-z0-9_-]+$/

type Json = Record<string, unknown>
type Failure = LlmError | PolicyError

const fail = (reason: PolicyErrorReason, message: string, retryable = false, cause?: unknown) =>
  new PolicyError({ reason, message, retryable, ...(cause !== undefined ? { cause } : {}) })

/** An LlmError of one HTTP call -> the PolicyError of the engine call it served. */
const toPolicy = (call: string) => (e: Failure): PolicyError => {
  if (e instanceof PolicyError) return e
  const reason: PolicyErrorReason = e.retryable ? "Unavailable" : e.status === 400 || e.status === 422 ? "BadInput" : "Backend"
  return fail(reason, `tinker ${call}: ${e.origin}: ${e.message}`, e.retryable, e)
}

const isObject = (u: unknown): u is Json => typeof u === "object" && u !== null && !Array.isArray(u)

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

const tensor = (data: ArrayLike<number>, dtype: "int64" | "float32") => ({
  data: Array.from(data),
  dtype,
  shape: [data.length]
})

/** Positions that take an RL loss: a non-zero advantage or sampler logprob. */
const lossMask = (d: Datum): Float32Array =>
  Float32Array.from({ length: d.modelInput.length }, (_, t) => ((d.advantages?.[t] ?? 0) !== 0 || (d.logprobs?.[t] ?? 0) !== 0 ? 1 : 0))

/** Checks the per-token arrays `loss` reads; throws a BadInput PolicyError. */
const checkDatum = (d: Datum, loss: LossFn, index: number, maxContext: number | undefined): void => {
  const n = d.modelInput.length
  if (n === 0) throw fail("BadInput", `datum ${index}: empty modelInput`)
  if (maxContext !== undefined && n + 1 > maxContext) throw fail("ContextOverflow", `datum ${index}: ${n + 1} tokens exceeds the model's context (${maxContext})`)
  if (d.targetTokens.length !== n) throw fail("BadInput", `datum ${index}: targetTokens has ${d.targetTokens.length} entries, modelInput ${n}`)
  const need = loss.name === "cross_entropy" ? (["weights"] as const) : (["logprobs", "advantages"] as const)
  for (const name of need) {
    const a = d[name]
    if (a === undefined) throw fail("BadInput", `datum ${index}: loss ${loss.name} needs ${name}`)
    if (a.length !== n) throw fail("BadInput", `datum ${index}: ${name} has ${a.length} entries, modelInput ${n}`)
  }
}

/**
 * One datum as Tinker JSON (§1.4). In the skyrl flavour RL datums get `weights` = their loss
 * mask and advantages scaled by S_d·K (module doc), K = `datumsInCall`.
 */
export const wireDatum = (d: Datum, loss: LossFn, flavour: TinkerFlavour, datumsInCall: number): Json => {
  const inputs: Json = { target_tokens: tensor(d.targetTokens, "int64") }
  if (loss.name === "cross_entropy") {
    inputs.weights = tensor(d.weights!, "float32")
  } else {
    inputs.logprobs = tensor(d.logprobs!, "float32")
    if (flavour === "skyrl") {
      const mask = lossMask(d)
      const s = mask.reduce((a, x) => a + x, 0)
      const scale = s * datumsInCall
      inputs.advantages = tensor(Float32Array.from(d.advantages!, (a) => a * scale), "float32")
      inputs.weights = tensor(mask, "float32")
    } else {
      inputs.advantages = tensor(d.advantages!, "float32")
    }
  }
  return { model_input: { chunks: [{ type: "encoded_text", tokens: Array.from(d.modelInput) }] }, loss_fn_inputs: inputs }
}

/** The client-side metrics of one datum: loss (SUM semantics), loss tokens, clipped tokens. */
const datumMetrics = (d: Datum, loss: LossFn, lp: Float32Array) => {
  const n = d.modelInput.length
  let tokens = 0
  for (let t = 0; t < n; t++) {
    if ((d.weights?.[t] ?? 0) !== 0 && loss.name === "cross_entropy") tokens++
    else if (loss.name !== "cross_entropy" && (d.advantages?.[t] ?? 0) !== 0) tokens++
  }
  if (loss.name === "cross_entropy") {
    let l = 0
    for (let t = 0; t < n; t++) l -= (d.weights![t] ?? 0) * (lp[t] ?? 0)
    return { loss: l, tokens, clipped: 0 }
  }
  const bounds = loss.name === "ppo" ? { clipLow: loss.clipLow, clipHigh: loss.clipHigh } : { clipLow: 0, clipHigh: Number.POSITIVE_INFINITY }
  const r = engineLoss({ logprobs: lp, oldLogprobs: d.logprobs!, advantages: d.advantages!, ...bounds })
  return { loss: r.loss, tokens, clipped: loss.name === "ppo" ? r.clipped : 0 }
}

/** Merges Tinker metrics by the suffix after `:` (sum, min, max; others: mean of the chunks). */
const mergeMetrics = (all: ReadonlyArray<Json>): Record<string, number> => {
  const out: Record<string, number> = {}
  const counts: Record<string, number> = {}
  for (const m of all) {
    for (const [k, v] of Object.entries(m)) {
      if (typeof v !== "number") continue
      const kind = k.split(":").at(-1)
      const prev = out[k]
      counts[k] = (counts[k] ?? 0) + 1
      if (prev === undefined) out[k] = v
      else if (kind === "sum") out[k] = prev + v
      else if (kind === "min") out[k] = Math.min(prev, v)
      else if (kind === "max") out[k] = Math.max(prev, v)
      else out[k] = prev + (v - prev) / counts[k]!
    }
  }
  return out
}

/** Greedy chunks of at most MAX_CHUNK_DATUMS datums and about MAX_CHUNK_BYTES of JSON. */
export const chunked = <A>(items: ReadonlyArray<A>): Array<Array<A>> => {
  const out: Array<Array<A>> = []
  let cur: Array<A> = []
  let bytes = 0
  for (const item of items) {
    const size = JSON.stringify(item).length + 1
    if (cur.length > 0 && (cur.length >= MAX_CHUNK_DATUMS || bytes + size > MAX_CHUNK_BYTES)) {
      out.push(cur)
      cur = []
      bytes = 0
    }
    cur.push(item)
    bytes += size
  }
  if (cur.length > 0) out.push(cur)
  return out
}

const endTokenOf = (tokenizer: Tokenizer): number => {
  const eos = tokenizer.config["eos_token"]
  const name = typeof eos === "string" ? eos : isObject(eos) && "content" in eos ? String(eos.content) : END_TOKEN
  return tokenizer.tokenId(name)
}

const numbers = (u: unknown): Array<number> | undefined =>
  Array.isArray(u) && u.every((x) => typeof x === "number") ? (u as Array<number>) : undefined

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

    /** One HTTP call, no retry, no time limit (callers add them). */
    const raw = (method: "GET" | "POST", path: string, body?: string): Effect.Effect<Reply, unknown> => {
      const url = `${root}/${path}`
      const request = method === "GET"
        ? HttpClientRequest.get(url).pipe(HttpClientRequest.setHeaders(headers))
        : HttpClientRequest.post(url).pipe(HttpClientRequest.setHeaders(headers), HttpClientRequest.bodyText(body ?? "{}", "application/json"))
      return client.execute(request).pipe(
        Effect.flatMap((response) => Effect.map(response.text, (text) => ({ status: response.status, headers: response.headers, text })))
      )
    }

    const parse = (o: string, text: string): Effect.Effect<Json, LlmError> => {
      try {
        const u: unknown = JSON.parse(text)
        return isObject(u) ? Effect.succeed(u) : Effect.fail(malformed(o, `reply is not a JSON object: ${text.slice(0, 120)}`))
      } catch (e) {
        return Effect.fail(malformed(o, `reply is not JSON: ${text.slice(0, 120)}`, e))
      }
    }

    /** A POST with the call timeout and retries of 408/429/5xx/transport (Remote.attempts). */
    const post = (path: string, body: string): Effect.Effect<Json, LlmError> =>
      attempts(
        options,
        origin(path),
        Effect.flatMap(raw("POST", path, body), (r) =>
          r.status >= 200 && r.status < 300 ? parse(origin(path), r.text) : Effect.fail(classifyStatus(origin(path), r.status, r.headers, r.text))
        )
      )

    const requestIdOf = (o: string, reply: Json): Effect.Effect<string, LlmError> => {
      const id = reply.request_id ?? reply.future_id
      return typeof id === "string" || typeof id === "number"
        ? Effect.succeed(String(id))
        : Effect.fail(malformed(o, `no request_id in ${JSON.stringify(reply).slice(0, 120)}`))
    }

    /** Submits a request that answers with a future; `resubmit` sends the identical body again. */
    const submit = (path: string, body: string): Effect.Effect<Submitted, LlmError> => {
      const once = Effect.flatMap(post(path, body), (r) => requestIdOf(origin(path), r))
      return Effect.map(once, (requestId) => ({ requestId, resubmit: once }))
    }

    // -- futures (§1.5) ----------------------------------------------------------------------

    const futureError = (call: string, body: Json): PolicyError => {
      const category = typeof body.category === "string" ? body.category : "unknown"
      return fail(category === "user" ? "BadInput" : "Backend", `tinker ${call}: request failed (${category}): ${String(body.error)}`)
    }

    /**
     * Polls a future until its result. `conflict` turns a 409 into a result (save_weights);
     * `retryable` is what a futureTimeout error says (false for model calls: a caller's retry
     * would send the work again under new seq_ids while the first may still run).
     */
    const awaitFuture = (
      call: string,
      submitted: Submitted,
      settings: { readonly retryable: boolean; readonly conflict?: () => Json }
    ): Effect.Effect<Json, PolicyError> => {
      const poll = (id: string) =>
        raw("POST", "retrieve_future", JSON.stringify({ request_id: id, allow_metadata_only: false })).pipe(Effect.timeout(timeout))
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
            if (body.type === "try_again" || body.status === "complete_metadata") continue
            if (typeof body.error === "string") return yield* Effect.fail(futureError(call, body))
            return body
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
          if (status === 409 && settings.conflict !== undefined) return settings.conflict()
          return yield* Effect.fail(toPolicy(call)(classifyStatus(o, status, r.success.headers, text)))
        }
      })
      return loop.pipe(
        Effect.timeoutOrElse({
          duration: futureTimeout,
          orElse: () => Effect.fail(fail("Unavailable", `tinker ${call}: no result after ${Duration.format(futureTimeout)}`, settings.retryable))
        })
      )
    }

    /** A request answered with a future, awaited. */
    const call = (name: string, path: string, body: Json, retryable: boolean): Effect.Effect<Json, PolicyError> =>
      Effect.flatMap(Effect.mapError(submit(path, JSON.stringify(body)), toPolicy(name)), (s) => awaitFuture(name, s, { retryable }))

    // -- session and model -------------------------------------------------------------------

    const tokenizer = yield* Effect.try({
      try: () => Tokenizer.fromFile(join(options.tokenizer, "tokenizer.json")),
      catch: (e) => fail("Checkpoint", `tinker tokenizer ${options.tokenizer}: ${(e as Error).message}`, false, e)
    })
    const endToken = yield* Effect.try({ try: () => endTokenOf(tokenizer), catch: (e) => fail("Checkpoint", `tinker tokenizer: ${(e as Error).message}`) })

    // The context length is best-effort: an old server may not answer get_server_capabilities.
    const capabilities = yield* attempts(
      options,
      `GET ${safeOrigin(`${root}/get_server_capabilities`)}`,
      Effect.flatMap(raw("GET", "get_server_capabilities"), (r) =>
        r.status === 200 ? parse("get_server_capabilities", r.text) : Effect.fail(classifyStatus("get_server_capabilities", r.status, r.headers, r.text))
      )
    ).pipe(Effect.option)
    const models = capabilities._tag === "Some" && Array.isArray(capabilities.value.supported_models) ? capabilities.value.supported_models : []
    const entry = models.find((m): m is Json => isObject(m) && m.model_name === options.baseModel)
    const knownContext = typeof entry?.max_context_length === "number" ? entry.max_context_length : undefined
    const maxContext = knownContext ?? DEFAULT_MAX_CONTEXT

    const session = yield* Effect.mapError(
      post("create_session", JSON.stringify({ tags: ["polaris"], user_metadata: {}, sdk_version: SDK_VERSION, type: "create_session" })),
      toPolicy("create_session")
    )
    if (typeof session.session_id !== "string") return yield* Effect.fail(fail("Backend", `tinker create_session: no session_id in the reply`))
    const sessionId = session.session_id

    const heartbeat = post("session_heartbeat", JSON.stringify({ session_id: sessionId, type: "session_heartbeat" })).pipe(
      Effect.catch((e) => Effect.logDebug(`tinker heartbeat failed: ${e.message}`))
    )
    yield* Effect.forkScoped(Effect.forever(Effect.andThen(Effect.sleep(options.heartbeat ?? "10 seconds"), heartbeat)))

    let modelSeqId = 0
    const createModel = Effect.gen(function*() {
      const body = {
        session_id: sessionId,
        model_seq_id: modelSeqId++,
        base_model: options.baseModel,
        user_metadata: {},
        lora_config: { rank: options.loraRank ?? 32, seed: null, train_unembed: true, train_mlp: true, train_attn: true },
        type: "create_model"
      }
      const r = yield* call("create_model", "create_model", body, false)
      if (typeof r.model_id !== "string") return yield* Effect.fail(fail("Backend", "tinker create_model: no model_id in the result"))
      return r.model_id
    })

    // The training client's state: its id, the last seq_id used, and whether a hole was left.
    let modelId = yield* createModel
    let seq = 0
    let broken: string | undefined
    const submissions = Semaphore.makeUnsafe(1)

    /**
     * Allocates consecutive seq_ids and submits the bodies in order (one permit for all, so a
     * call's chunks are contiguous). A submission that fails marks the model broken, except a
     * 409 when `conflictOk` (save_weights: the name exists), which returns undefined.
     */
    const submitModel = (
      name: string,
      path: string,
      bodies: ReadonlyArray<(model: string, seqId: number) => Json>,
      conflictOk = false
    ): Effect.Effect<Array<Submitted | undefined>, PolicyError> =>
      submissions.withPermits(1)(
        Effect.gen(function*() {
          if (broken !== undefined) return yield* Effect.fail(fail("Backend", `tinker ${name}: ${broken}`))
          const out: Array<Submitted | undefined> = []
          for (const build of bodies) {
            const seqId = ++seq
            const r = yield* Effect.result(submit(path, JSON.stringify(build(modelId, seqId))))
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

    const awaitModel = (name: string, s: Submitted | undefined, conflict?: () => Json) =>
      s === undefined && conflict !== undefined
        ? Effect.succeed(conflict())
        : awaitFuture(name, s!, { retryable: false, ...(conflict !== undefined ? { conflict } : {}) })

    // -- the engine --------------------------------------------------------------------------

    let published: string | undefined
    let publishes = 0
    let steps = 0
    let callsSinceStep = 0

    const addressing = (): Json => (published !== undefined ? { model_path: published } : { base_model: options.baseModel })

    const asample = (name: string, body: Json) => call(name, "asample", { ...body, ...addressing(), type: "sample" }, true)

    const sampleOne = (prompt: ReadonlyArray<number>, n: number, p: SamplingParams): Effect.Effect<Array<SampledSequence>, PolicyError> =>
      Effect.gen(function*() {
        const r = yield* asample("sample", {
          num_samples: n,
          prompt: { chunks: [{ type: "encoded_text", tokens: Array.from(prompt) }] },
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
        const sequences = Array.isArray(r.sequences) ? r.sequences : []
        if (sequences.length !== n) return yield* Effect.fail(fail("Backend", `tinker sample: ${sequences.length} sequences for num_samples ${n}`))
        const out: Array<SampledSequence> = []
        for (const s of sequences) {
          const tokens = isObject(s) ? numbers(s.tokens) : undefined
          const logprobs = isObject(s) ? numbers(s.logprobs) : undefined
          if (tokens === undefined || logprobs === undefined || logprobs.length !== tokens.length) {
            return yield* Effect.fail(fail("Backend", "tinker sample: a sequence without tokens and one logprob per token"))
          }
          const stop = isObject(s) ? s.stop_reason : undefined
          out.push({ tokens, logprobs, stopReason: stop === "length" ? "length" : "stop" })
        }
        return out
      })

    const publishNow = Effect.gen(function*() {
      const name = `sampler-${++publishes}`
      const [s] = yield* submitModel("save_weights_for_sampler", "save_weights_for_sampler", [
        (model, seqId) => ({ model_id: model, path: name, seq_id: seqId, type: "save_weights_for_sampler" })
      ])
      const r = yield* awaitModel("save_weights_for_sampler", s)
      if (typeof r.path !== "string") return yield* Effect.fail(fail("Backend", "tinker save_weights_for_sampler: no path in the result"))
      published = r.path
      return { path: r.path } satisfies CheckpointRef
    })

    const engine: PolicyEngineShape = {
      fingerprint: `tinker:${options.baseModel}@${flavour}`,
      tokenizer,
      endToken,
      maxContext,
      promptIds: (prompt) => promptIds(tokenizer, prompt),

      sample: (requests) =>
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
          return yield* Effect.forEach(requests, (r) => sampleOne(r.prompt, r.n, r.params), { concurrency: "unbounded" })
        }),

      logprobs: (items) =>
        Effect.forEach(items, ({ prompt, completion }) =>
          Effect.gen(function*() {
            if (prompt.length === 0) return yield* Effect.fail(fail("BadInput", "logprobs: a prompt needs at least one token"))
            if (completion.length === 0) return new Float32Array(0)
            const full = [...prompt, ...completion]
            if (knownContext !== undefined && full.length >= knownContext) {
              return yield* Effect.fail(fail("ContextOverflow", `tinker logprobs: ${full.length} tokens exceed the model's context (${knownContext})`))
            }
            const r = yield* asample("logprobs", {
              num_samples: 1,
              prompt: { chunks: [{ type: "encoded_text", tokens: full }] },
              sampling_params: { max_tokens: 1, temperature: 1, top_p: 1, top_k: -1 },
              prompt_logprobs: true
            })
            const lps = Array.isArray(r.prompt_logprobs) ? r.prompt_logprobs : []
            const out = new Float32Array(completion.length)
            for (let i = 0; i < completion.length; i++) {
              const v = lps[prompt.length + i]
              if (typeof v !== "number") return yield* Effect.fail(fail("Backend", `tinker logprobs: no prompt logprob at position ${prompt.length + i}`))
              out[i] = v
            }
            return out
          }), { concurrency: "unbounded" }),

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
            chunked(wire).map((data) => (model: string, seqId: number) => ({
              forward_backward_input: { data, loss_fn: loss.name, loss_fn_config: config },
              model_id: model,
              seq_id: seqId
            }))
          )
          callsSinceStep++
          const results = yield* Effect.forEach(submitted, (s) => awaitModel("forward_backward", s), { concurrency: "unbounded" })
          const outputs = results.flatMap((r) => (Array.isArray(r.loss_fn_outputs) ? r.loss_fn_outputs : []))
          if (outputs.length !== datums.length) {
            return yield* Effect.fail(fail("Backend", `tinker forward_backward: ${outputs.length} outputs for ${datums.length} datums`))
          }
          const logprobs: Array<Float32Array> = []
          let lossSum = 0
          let tokens = 0
          let clipped = 0
          for (let i = 0; i < datums.length; i++) {
            const o = outputs[i]
            const data = isObject(o) && isObject(o.logprobs) ? numbers(o.logprobs.data) : undefined
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
          const server = mergeMetrics(results.map((r) => (isObject(r.metrics) ? r.metrics : {})))
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
            (model, seqId) => ({
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
          const r = yield* awaitModel("optim_step", s)
          steps++
          const metrics = isObject(r.metrics) ? r.metrics : {}
          const key = Object.keys(metrics).find((k) => k === "grad_norm" || k.startsWith("grad_norm:"))
          const norm = key !== undefined && typeof metrics[key] === "number" ? metrics[key] : Number.NaN
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
          let savedModel = ""
          const [s] = yield* submitModel("save_weights", "save_weights", [
            (model, seqId) => {
              savedModel = model
              return { model_id: model, path: name, seq_id: seqId, ttl_seconds: null, overwrite: false, type: "save_weights" }
            }
          ], true)
          // 409: the name exists; the SDK takes that as success at the conventional path.
          const existing = () => ({ path: `tinker://${savedModel}/weights/${name}` })
          const r = yield* awaitModel("save_weights", s, existing)
          if (typeof r.path !== "string") return yield* Effect.fail(fail("Checkpoint", "tinker save_weights: no path in the result"))
          return { path: r.path } satisfies CheckpointRef
        }),

      load: (ref) =>
        Effect.gen(function*() {
          if (ref.path === options.baseModel) {
            // The base model itself: a fresh training client holds exactly its weights.
            yield* submissions.withPermits(1)(Effect.gen(function*() {
              modelId = yield* createModel
              seq = 1
              broken = undefined
              callsSinceStep = 0
            }))
            published = undefined
            return
          }
          if (!ref.path.startsWith("tinker://")) return yield* Effect.fail(fail("BadInput", `tinker load: ${JSON.stringify(ref.path)} is neither a tinker:// path nor the base model`))
          // load_weights must be a model's first request: a new training client, then switch.
          yield* submissions.withPermits(1)(Effect.gen(function*() {
            const fresh = yield* createModel
            const body = JSON.stringify({ model_id: fresh, seq_id: 1, path: ref.path, optimizer: true, type: "load_weights" })
            const s = yield* Effect.mapError(submit("load_weights", body), toPolicy("load_weights"))
            yield* awaitFuture("load_weights", s, { retryable: false }).pipe(
              Effect.mapError((e) => fail("Checkpoint", e.message, false, e))
            )
            modelId = fresh
            seq = 1
            broken = undefined
            callsSinceStep = 0
          }))
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
