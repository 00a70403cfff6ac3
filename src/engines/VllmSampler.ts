/**
 * The sampling half of a PolicyEngine on vLLM OpenAI-compatible servers (protocols.md §2).
 * Training stays on a trainer engine; the pipeline pairs the two and, after every publish, calls
 * `useAdapter` with the LoRA folder the trainer wrote so sampling follows the new weights.
 *
 * - `sample`: one `POST /v1/completions` per request with token-id prompts, `n`, and every sampling
 *   parameter sent explicitly (omitted ones would come from the model's generation_config.json),
 *   `logprobs: 0` + `return_token_ids: true` (vLLM >= 0.10.2) for tokens and sampler logprobs
 *   (raw or processed as `--logprobs-mode` says; a trainer needs processed_logprobs, VllmLora.ts).
 * - `logprobs`: teacher forcing with `prompt_logprobs: 0` over prompt + completion.
 * - Load balancing: round-robin over the healthy servers; a server that failed with a transport
 *   error, a timeout or a 5xx is re-checked with `GET /health` before it is used again.
 * - Retries: 408/429/5xx/transport/timeouts on `Retry.backoff` (Retry-After honoured), 400/404 are
 *   permanent. Errors name the call (`vllm /v1/completions`) and the server, never the key.
 * - Adapters: `useAdapter` takes a local folder (a PEFT adapter, see engines/tinker/Archive.ts),
 *   never a `tinker://` URI: vLLM resolves `lora_path` as an absolute path, else a Hugging Face
 *   repo id (vllm-project/vllm vllm/lora/utils.py@0fd1570 `get_adapter_absolute_path`).
 * - Bodies are the wire Schemas of openai/Wire.ts, the module `polaris serve` reads and writes them
 *   with: requests are built as `CompletionRequest`, `LoadLoraAdapterRequest` and
 *   `UnloadLoraAdapterRequest` values, `/v1/completions` and `/v1/models` replies are decoded
 *   with `CompletionResponse` and `ModelList` (a reply that does not decode is Malformed, and
 *   retried), error bodies are read as vLLM's `ErrorResponse` (`"<type>: <message>"`).
 * - Start-up checks (`adapters` set, i.e. a trainer publishes adapters): runtime LoRA loading,
 *   `--enable-lora`, `--max-lora-rank`, `--logprobs-mode`, and that the servers read the adapter
 *   folder, each failing at once with the setting that fixes it (VllmLora.ts). The same vLLM
 *   messages on a later load fail it for good instead of being retried.
 *
 * @example
 * const program = Effect.gen(function*() {
 *   const vllm = yield* VllmSampler.make({ urls: ["http://gpu0:8000", "http://gpu1:8000"], model: "Qwen/Qwen3-8B" }, 151645)
 *   const [[seq]] = yield* vllm.sample([{ prompt: ids, n: 1, params }])
 *   yield* vllm.useAdapter("/shared/ckpt/step-1/adapter") // sampling now uses model "polaris-v1"
 * })
 * Effect.runPromise(Effect.provide(program, FetchHttpClient.layer))
 */
import { createHash } from "node:crypto"
import { Cause, Clock, Duration, Effect, Redacted, Schema, Semaphore } from "effect"
import { HttpClient, HttpClientRequest } from "effect/http"
import * as Retry from "../dag/Retry.ts"
import { validate, type SamplingParams } from "../model/Sampling.ts"
import { classifyStatus, LlmError, malformed, trimSlash } from "./llm/Remote.ts"
import { PolicyError, type PolicyEngineShape, type SampledSequence, type PolicyErrorReason } from "./PolicyEngine.ts"
import * as Wire from "./openai/Wire.ts"
import * as VllmLora from "./VllmLora.ts"

export interface VllmOptions {
  /** Base URLs of the vLLM servers (`http://host:8000`; a trailing `/v1` is ignored). */
  readonly urls: ReadonlyArray<string>
  /** The served base model name (`--served-model-name`, else the model path). */
  readonly model: string
  /** `--api-key` of the servers: sent as `Authorization: Bearer`, never logged. */
  readonly apiKey?: Redacted.Redacted<string>
  /** Time limit of one HTTP call (default 10 minutes: long generations are slow). */
  readonly timeout?: Duration.Input
  /** Total attempts per call, the first included (default 5). */
  readonly attempts?: number
  readonly backoff?: Retry.BackoffOptions
  /** How often a server that failed its health check is probed again (default 5 seconds). */
  readonly healthEvery?: Duration.Input
  /** Most requests in flight at once per server (default 64). */
  readonly inFlightPerServer?: number
  /**
   * Set when a trainer will publish LoRA adapters here: the servers are checked at start-up for
   * runtime LoRA loading, the rank, the logprobs mode and (with `probeDir`) that they can read
   * adapter folders written there.
   */
  readonly adapters?: VllmLora.Requirements
}

export interface VllmSampler {
  readonly sample: PolicyEngineShape["sample"]
  readonly logprobs: PolicyEngineShape["logprobs"]
  /**
   * After a trainer published new weights at `path` (a LoRA adapter folder the servers can read):
   * loads it on every server as `polaris-v<k>`, resets the prefix cache where the route exists
   * (404 tolerated: it needs VLLM_SERVER_DEV_MODE=1), switches sampling to the new name, then
   * unloads the previous adapter.
   */
  readonly useAdapter: (path: string) => Effect.Effect<void, PolicyError>
  /** The name sampling uses now (the base model or the current adapter): part of the rollout cache key. */
  readonly currentModel: () => string
  readonly fingerprint: string
  /** The smallest `max_model_len` the servers report for the base model in `/v1/models`, if any. */
  readonly maxModelLen: number | undefined
}

// ---------------------------------------------------------------------------------------------
// Replies

type Choice = Wire.CompletionChoice
const decodeCompletion = Schema.decodeUnknownResult(Schema.fromJsonString(Wire.CompletionResponse))
const decodeModels = Schema.decodeUnknownResult(Schema.fromJsonString(Wire.ModelList))

const readCompletion = (origin: string, text: string): Effect.Effect<ReadonlyArray<Choice>, LlmError> => {
  const decoded = decodeCompletion(text)
  return decoded._tag === "Failure"
    ? Effect.fail(malformed(origin, `unexpected /v1/completions reply: ${decoded.failure.message}`, decoded.failure))
    : Effect.succeed(decoded.success.choices)
}

/** A non-2xx answer as an LlmError: classified by status, its message read as vLLM's Wire.ErrorResponse (else the body). */
const failureOf = (origin: string, answer: VllmLora.Answer): LlmError =>
  classifyStatus(origin, answer.status, answer.headers, answer.text, Wire.errorMessage)

/** Choices of one prompt with `n` samples -> the sequences in index order (or why not). */
const sequencesOf = (origin: string, choices: ReadonlyArray<Choice>, n: number): Effect.Effect<Array<SampledSequence>, LlmError | PolicyError> => {
  const byIndex: Array<SampledSequence | undefined> = new Array(n).fill(undefined)
  for (const c of choices) {
    if (!(Number.isInteger(c.index) && c.index >= 0 && c.index < n) || byIndex[c.index] !== undefined) {
      return Effect.fail(malformed(origin, `choice index ${c.index} is out of range or repeated (n = ${n})`))
    }
    if (c.token_ids === undefined || c.token_ids === null) {
      return Effect.fail(
        new PolicyError({
          reason: "Unsupported",
          retryable: false,
          message: `${origin}: the reply has no token_ids; polaris needs vLLM >= 0.10.2 (return_token_ids) to get the sampled token ids`
        })
      )
    }
    const lps = c.logprobs?.token_logprobs
    if (lps === undefined || lps.length !== c.token_ids.length || lps.some((x) => x === null)) {
      return Effect.fail(malformed(origin, `choice ${c.index}: token_logprobs do not match its ${c.token_ids.length} token_ids`))
    }
    const finish = c.finish_reason ?? null
    if (finish !== "stop" && finish !== "length") {
      return Effect.fail(
        new PolicyError({
          reason: finish === "abort" ? "Unavailable" : "Backend",
          retryable: finish === "abort",
          message: `${origin}: choice ${c.index} finished with finish_reason ${JSON.stringify(finish)} (expected "stop" or "length")`
        })
      )
    }
    byIndex[c.index] = { tokens: c.token_ids, logprobs: lps as ReadonlyArray<number>, stopReason: finish }
  }
  const missing = byIndex.findIndex((s) => s === undefined)
  if (missing >= 0) return Effect.fail(malformed(origin, `reply has ${choices.length} choices, expected n = ${n} (index ${missing} missing)`))
  return Effect.succeed(byIndex as Array<SampledSequence>)
}

/** prompt_logprobs of `full` -> the logprobs of positions prompt.length.. (the completion). */
const completionLogprobs = (
  origin: string,
  choices: ReadonlyArray<Choice>,
  full: ReadonlyArray<number>,
  promptLength: number
): Effect.Effect<Float32Array, LlmError> => {
  const table = choices[0]?.prompt_logprobs
  if (table === undefined || table === null) return Effect.fail(malformed(origin, "reply has no prompt_logprobs"))
  if (table.length !== full.length) return Effect.fail(malformed(origin, `prompt_logprobs has ${table.length} entries for a ${full.length}-token prompt`))
  const out = new Float32Array(full.length - promptLength)
  for (let i = promptLength; i < full.length; i++) {
    const entry = table[i]?.[String(full[i])]
    if (entry === undefined) return Effect.fail(malformed(origin, `prompt_logprobs[${i}] has no entry for token ${full[i]}`))
    out[i - promptLength] = entry.logprob
  }
  return Effect.succeed(out)
}

// ---------------------------------------------------------------------------------------------
// Errors

const CONTEXT = /maximum context length|maximum model length|longer than the maximum/i

const toPolicyError = (e: LlmError | PolicyError): PolicyError => {
  if (e instanceof PolicyError) return e
  const reason: PolicyErrorReason = e.retryable
    ? "Unavailable"
    : e.reason === "BadRequest" && CONTEXT.test(e.message)
      ? "ContextOverflow"
      : e.reason === "BadRequest" || e.reason === "NotFound"
        ? "BadInput"
        : "Backend"
  return new PolicyError({ reason, retryable: e.retryable, message: `${e.origin}: ${e.reason}: ${e.message}`, cause: e })
}

/** A 31-bit vLLM seed from a polaris seed: small non-negative integers as is, anything else hashed. */
export const vllmSeed = (seed: number | string): number => {
  if (typeof seed === "number" && Number.isInteger(seed) && seed >= 0 && seed < 2 ** 31) return seed
  return createHash("sha256").update(`polaris-seed:${typeof seed}:${String(seed)}`).digest().readUInt32BE(0) & 0x7fffffff
}

/** The /v1/completions body of one sample request; every sampling parameter is explicit. */
export const sampleBody = (model: string, prompt: ReadonlyArray<number>, n: number, params: SamplingParams, endToken: number): typeof Wire.CompletionRequest.Encoded => ({
  model,
  prompt: [...prompt],
  n,
  max_tokens: params.maxTokens,
  temperature: params.temperature,
  top_p: params.topP,
  top_k: params.topK > 0 ? params.topK : -1,
  min_p: 0,
  repetition_penalty: params.repetitionPenalty,
  presence_penalty: params.presencePenalty,
  frequency_penalty: params.frequencyPenalty,
  seed: vllmSeed(params.seed),
  stop_token_ids: [endToken, ...params.stop],
  ignore_eos: false,
  min_tokens: 0,
  logprobs: 0,
  return_token_ids: true,
  skip_special_tokens: false
})

/** The /v1/completions body that scores `full` teacher-forced (prompt_logprobs; one throwaway token). */
export const scoreBody = (model: string, full: ReadonlyArray<number>): typeof Wire.CompletionRequest.Encoded => ({
  model,
  prompt: [...full],
  n: 1,
  max_tokens: 1,
  temperature: 1,
  top_p: 1,
  top_k: -1,
  min_p: 0,
  repetition_penalty: 1,
  presence_penalty: 0,
  frequency_penalty: 0,
  seed: 0,
  prompt_logprobs: 0
})

// ---------------------------------------------------------------------------------------------

interface Server {
  readonly url: string
  healthy: boolean
  /** When /health was last probed (ms); -Infinity = probe before the next use. */
  checkedAt: number
}

type Answer = VllmLora.Answer

/** A vLLM sampler's fingerprint, from its options alone (no server needed). */
export const fingerprintOf = (options: Pick<VllmOptions, "model">): string => `vllm:${options.model}`

export const make = (options: VllmOptions, endToken: number): Effect.Effect<VllmSampler, PolicyError, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    if (options.urls.length === 0) return yield* Effect.fail(new PolicyError({ reason: "BadInput", retryable: false, message: "vllm: no server urls" }))
    const servers: Array<Server> = options.urls.map((u) => ({ url: trimSlash(u).replace(/\/v1$/, ""), healthy: true, checkedAt: Number.NEGATIVE_INFINITY }))
    const timeout = Duration.fromInputUnsafe(options.timeout ?? "10 minutes")
    const healthTimeout = Duration.min(timeout, Duration.seconds(10))
    const healthEvery = Duration.toMillis(Duration.fromInputUnsafe(options.healthEvery ?? "5 seconds"))
    const schedule = Retry.backoff({ ...options.backoff, attempts: options.attempts ?? options.backoff?.attempts ?? 5 })
    const headers: Record<string, string> = {
      "content-type": "application/json",
      ...(options.apiKey === undefined ? {} : { authorization: `Bearer ${Redacted.value(options.apiKey)}` })
    }
    const concurrency = Math.max(1, options.inFlightPerServer ?? 64) * servers.length
    const adapterLock = yield* Semaphore.make(1)
    let current = options.model
    let version = 0
    let cursor = 0

    const originOf = (path: string, server: Server) => `vllm ${path} @ ${server.url}`

    /** One HTTP exchange with a time limit; timeouts and transport failures become LlmErrors. */
    const send = (server: Server, method: "GET" | "POST", path: string, body: unknown, limit: Duration.Duration): Effect.Effect<Answer, LlmError> => {
      const origin = originOf(path, server)
      const url = `${server.url}${path}`
      const base = method === "GET" ? HttpClientRequest.get(url) : HttpClientRequest.post(url)
      const request = HttpClientRequest.setHeaders(base, headers)
      return client.execute(body === undefined ? request : HttpClientRequest.bodyJsonUnsafe(request, body)).pipe(
        Effect.flatMap((response) => Effect.map(response.text, (text): Answer => ({ status: response.status, headers: response.headers, text }))),
        Effect.timeout(limit),
        Effect.mapError((e): LlmError => {
          if (Cause.isTimeoutError(e)) {
            return new LlmError({ reason: "Timeout", origin, message: `no answer within ${Duration.format(limit)}`, retryable: true, cause: e })
          }
          return new LlmError({ reason: "Transport", origin, message: String((e as { message?: unknown }).message ?? e), retryable: true, cause: e })
        })
      )
    }

    const probe = (server: Server): Effect.Effect<boolean> =>
      Effect.gen(function*() {
        server.checkedAt = yield* Clock.currentTimeMillis
        const answer = yield* Effect.result(send(server, "GET", "/health", undefined, healthTimeout))
        server.healthy = answer._tag === "Success" && answer.success.status === 200
        return server.healthy
      })

    /** The next healthy server, round-robin; a server due for a health check is probed first. */
    const pick: Effect.Effect<Server, PolicyError> = Effect.gen(function*() {
      const start = cursor
      cursor = (cursor + 1) % servers.length
      for (let i = 0; i < servers.length; i++) {
        const server = servers[(start + i) % servers.length]!
        if (server.healthy) return server
        const now = yield* Clock.currentTimeMillis
        if (now - server.checkedAt >= healthEvery && (yield* probe(server))) return server
      }
      return yield* Effect.fail(
        new PolicyError({ reason: "Unavailable", retryable: true, message: `vllm: no healthy server among ${servers.map((s) => s.url).join(", ")}` })
      )
    })

    const suspect = (server: Server) => (e: LlmError | PolicyError) =>
      Effect.sync(() => {
        if (e instanceof LlmError && (e.reason === "Transport" || e.reason === "Timeout" || (e.status !== undefined && e.status >= 500))) {
          server.healthy = false
          server.checkedAt = Number.NEGATIVE_INFINITY
        }
      })

    /** A 2xx answer's text, or the classified status. */
    const ok = (origin: string, answer: Answer): Effect.Effect<string, LlmError> =>
      answer.status >= 200 && answer.status < 300
        ? Effect.succeed(answer.text)
        : Effect.fail(failureOf(origin, answer))

    /** POST to the next healthy server, with retries (each attempt may go to another server). */
    const balanced = <A>(path: string, body: () => unknown, read: (origin: string, text: string) => Effect.Effect<A, LlmError | PolicyError>) => {
      const once = Effect.gen(function*() {
        const server = yield* pick
        const origin = originOf(path, server)
        return yield* send(server, "POST", path, body(), timeout).pipe(
          Effect.flatMap((answer) => ok(origin, answer)),
          Effect.tapError(suspect(server)),
          Effect.flatMap((text) => read(origin, text))
        )
      })
      return Retry.transient(once, schedule).pipe(Effect.mapError(toPolicyError))
    }

    /** POST to one given server, with retries. */
    const on = (server: Server, path: string, body: unknown) =>
      Retry.transient(
        Effect.flatMap(send(server, "POST", path, body, timeout), (answer) => ok(originOf(path, server), answer)),
        schedule
      )

    // Start: every server's health, and the base model among those served.
    yield* Effect.forEach(servers, probe, { concurrency: "unbounded", discard: true })
    const alive = servers.filter((s) => s.healthy)
    if (alive.length === 0) {
      return yield* Effect.fail(
        new PolicyError({ reason: "Unavailable", retryable: true, message: `vllm: no healthy server (GET /health) among ${servers.map((s) => s.url).join(", ")}` })
      )
    }
    const modelLens = yield* Effect.forEach(
      alive,
      (server) =>
        Effect.gen(function*() {
          const origin = originOf("/v1/models", server)
          const answer = yield* Retry.transient(send(server, "GET", "/v1/models", undefined, healthTimeout), schedule)
          const text = yield* ok(origin, answer)
          const models = decodeModels(text)
          if (models._tag === "Failure") return yield* Effect.fail(malformed(origin, `unexpected /v1/models reply: ${models.failure.message}`))
          const ids = models.success.data.map((m) => m.id)
          if (!ids.includes(options.model)) {
            return yield* Effect.fail(
              new PolicyError({ reason: "BadInput", retryable: false, message: `${origin}: serves ${JSON.stringify(ids)}, not ${JSON.stringify(options.model)}` })
            )
          }
          return models.success.data.find((m) => m.id === options.model)?.max_model_len ?? undefined
        }).pipe(Effect.mapError(toPolicyError)),
      { concurrency: "unbounded" }
    )
    const knownLens = modelLens.filter((n): n is number => typeof n === "number" && n > 0)
    const maxModelLen = knownLens.length > 0 ? Math.min(...knownLens) : undefined

    /** One `load_lora_adapter`, retried when transient; vLLM's known permanent failures fail with their fix. */
    const load = (server: Server, name: string, path: string, rank: number): Effect.Effect<void, LlmError | PolicyError> => {
      const origin = originOf("/v1/load_lora_adapter", server)
      const body: typeof Wire.LoadLoraAdapterRequest.Encoded = { lora_name: name, lora_path: path }
      const once = Effect.flatMap(send(server, "POST", "/v1/load_lora_adapter", body, timeout), (answer) => {
        if (answer.status >= 200 && answer.status < 300) return Effect.void
        if (VllmLora.isUnmounted(answer.status, answer.text)) {
          return Effect.fail(VllmLora.misconfigured(server.url, "POST /v1/load_lora_adapter is not mounted (404)", VllmLora.LORA_FIXES.runtimeUpdating))
        }
        const error = failureOf(origin, answer)
        const fix = VllmLora.loraFailure(error.message, { rank, path })
        return Effect.fail(fix === undefined ? error : VllmLora.misconfigured(server.url, `loading ${path} as ${name}: ${error.message}`, fix))
      })
      return Retry.transient(once, schedule)
    }

    // Start: with adapters to come, the servers' LoRA settings (VllmLora.ts).
    if (options.adapters !== undefined) {
      yield* VllmLora.checkServers(
        alive.map((server) => ({ url: server.url, send: (method, path, body, limit) => send(server, method, path, body, limit) })),
        options.adapters,
        { timeout, healthTimeout, schedule }
      )
    }

    const badInput = (message: string) => Effect.fail(new PolicyError({ reason: "BadInput", retryable: false, message: `vllm: ${message}` }))

    const sample: VllmSampler["sample"] = (requests) =>
      Effect.forEach(
        requests,
        (request, r) =>
          Effect.suspend(() => {
            try {
              validate(request.params)
            } catch (e) {
              return badInput(`request ${r}: ${(e as Error).message}`)
            }
            if (!(Number.isInteger(request.n) && request.n >= 1)) return badInput(`request ${r}: n must be an integer >= 1, got ${request.n}`)
            if (request.prompt.length === 0) return badInput(`request ${r}: the prompt is empty`)
            const model = current // fixed per request, retries included: one request, one set of weights
            return balanced(
              "/v1/completions",
              () => sampleBody(model, request.prompt, request.n, request.params, endToken),
              (origin, text) => Effect.flatMap(readCompletion(origin, text), (choices) => sequencesOf(origin, choices, request.n))
            )
          }),
        { concurrency }
      )

    const logprobs: VllmSampler["logprobs"] = (items) =>
      Effect.forEach(
        items,
        (item, i) =>
          Effect.suspend(() => {
            if (item.completion.length === 0) return Effect.succeed(new Float32Array(0))
            if (item.prompt.length === 0) return badInput(`item ${i}: the prompt is empty (the first token has no logprob)`)
            const full = [...item.prompt, ...item.completion]
            const model = current
            return balanced(
              "/v1/completions",
              () => scoreBody(model, full),
              (origin, text) => Effect.flatMap(readCompletion(origin, text), (choices) => completionLogprobs(origin, choices, full, item.prompt.length))
            )
          }),
        { concurrency }
      )

    const everywhere = <A>(f: (server: Server) => Effect.Effect<A, LlmError | PolicyError>) =>
      Effect.forEach(servers, f, { concurrency: "unbounded" }).pipe(Effect.mapError(toPolicyError))

    const unload = (name: string) =>
      everywhere((server) =>
        on(server, "/v1/unload_lora_adapter", { lora_name: name } satisfies typeof Wire.UnloadLoraAdapterRequest.Encoded).pipe(
          Effect.asVoid,
          Effect.catchIf((e) => e.status === 404, () => Effect.void) // already gone
        )
      )

    const useAdapter: VllmSampler["useAdapter"] = (path) =>
      adapterLock.withPermit(
        Effect.gen(function*() {
          if (VllmLora.URI.test(path) && options.adapters?.uris !== true) {
            return yield* badInput(
              `useAdapter(${JSON.stringify(path)}): vLLM reads lora_path as a local folder (else a Hugging Face repo id), not a URI; ` +
                "set policy.adapter_dir so Tinker sampler checkpoints are downloaded and converted to PEFT folders there"
            )
          }
          const name = `polaris-v${++version}`
          const previous = current
          yield* everywhere((server) => load(server, name, path, options.adapters?.rank ?? 0)).pipe(
            Effect.tapError(() => Effect.ignore(unload(name))) // no half-loaded adapter left behind
          )
          yield* everywhere((server) =>
            on(server, "/reset_prefix_cache", undefined).pipe(
              Effect.asVoid,
              Effect.catchIf((e) => e.status === 404, () => Effect.void) // not mounted without VLLM_SERVER_DEV_MODE=1
            )
          )
          current = name
          if (previous !== options.model) {
            yield* unload(previous).pipe(
              Effect.catch((e) => Effect.logWarning(`vllm: could not unload adapter ${previous}: ${e.message}`))
            )
          }
        })
      )

    return {
      sample,
      logprobs,
      useAdapter,
      currentModel: () => current,
      fingerprint: fingerprintOf(options),
      maxModelLen
    } satisfies VllmSampler
  })
