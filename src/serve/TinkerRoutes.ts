/**
 * The Tinker training API (protocols.md §1) over one PolicyEngine, as HttpRouter routes under
 * `/api/v1`, with the bodies of `engines/tinker/Wire.ts`.
 *
 * - Work requests (`create_model`, `forward_backward`, `forward`, `optim_step`, `save_weights`,
 *   `load_weights`, `save_weights_for_sampler`, `asample`, `unload_model`) answer at once with a
 *   future `{request_id}`; `retrieve_future` long-polls for it: 408 `{"detail"}` while pending,
 *   the result when done, `{"error","category"}` (200, the SDK's RequestFailedResponse) once
 *   failed, 404 for an unknown id.
 * - Wire formats, as SDK 0.25 negotiates them: `forward_backward` takes JSON or
 *   `Content-Type: application/x-protobuf` (its `forward_only` flag is 0.25's `forward`); a
 *   `retrieve_future` with `Accept: application/x-protobuf` gets sample and forward results as
 *   protobuf (engines/tinker/Proto.ts), everything else as JSON. `client/config` says
 *   `proto_compress_fwdbwd: false`, so bodies arrive uncompressed.
 * - Requests carrying `seq_id` run per model in `seq_id` order (SeqQueue). A retry of
 *   `(model_id, seq_id)` with an identical body gets the original answer; another body gets 409.
 *   A request refused after its model was found (a bad body, a 404 checkpoint, a 409 name) still
 *   uses up its seq_id, so later requests do not wait for it.
 * - One training model per server. LoRA settings are accepted, remembered for `weights_info`,
 *   and otherwise ignored: the embedded engine trains all weights.
 * - `forward` scores with the trainer's current weights (`PolicyEngine.trainerLogprobs`, a
 *   teacher-forcing pass), so its datums must be a shifted sequence
 *   (`target_tokens[i] = model_input[i+1]`).
 * - `base_model` sampling uses the engine's published weights, i.e. the newest sampler weights
 *   once training has published some (one engine per server).
 */
import { Cause, Deferred, Effect, Exit, Option, Schema, type Scope } from "effect"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import { createHash, randomBytes } from "node:crypto"
import type { PolicyEngineShape, PolicyError } from "../engines/PolicyEngine.ts"
import * as Proto from "../engines/tinker/Proto.ts"
import * as Wire from "../engines/tinker/Wire.ts"
import * as Body from "./internal/body.ts"
import * as Checkpoints from "./internal/Checkpoints.ts"
import { forwardMetrics } from "./internal/forwardMetrics.ts"
import * as Futures from "./internal/Futures.ts"
import { badRequest, conflict, fromCause, notFound, RequestError, runEngine } from "./internal/RequestError.ts"
import { promptLogprobs } from "./internal/sampling.ts"
import * as SeqQueue from "./internal/SeqQueue.ts"
import { adamOf, datumOf, forwardOutput, lossOf, samplingParamsOf, tokensOf } from "./internal/tinkerInputs.ts"

export interface TinkerOptions {
  readonly modelName: string
  /** The base model's checkpoint folder: a new training client starts from it. */
  readonly baseCheckpoint?: string
  /** How long `retrieve_future` waits for a pending result before answering 408. */
  readonly longPollMs: number
  readonly openEngine: (path: string) => Effect.Effect<PolicyEngineShape, PolicyError>
  readonly checkpointDir?: string
}

export interface TinkerRoutes {
  readonly routes: ReadonlyArray<HttpRouter.Route<never, never>>
  /**
   * The engine that samples a checkpoint path: undefined (the base model), a `tinker://` path
   * of this server (`…/weights/<name>`, `…/sampler_weights/<name>`, SkyRL's `…/<name>`) or a folder.
   */
  readonly engineFor: (path: string | undefined) => Effect.Effect<PolicyEngineShape, RequestError>
}

export const PREFIX = "/api/v1"

type Handler = Effect.Effect<HttpServerResponse.HttpServerResponse, RequestError, HttpServerRequest.HttpServerRequest | HttpRouter.RouteContext>

/** Tinker's (FastAPI's) error body. */
export const errorResponse = (error: RequestError): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.jsonUnsafe({ detail: error.message } satisfies Wire.ErrorDetail, { status: error.status })

/** A route under /api/v1 whose failures answer `{"detail"}` with their status. */
const route = (method: "GET" | "POST", path: `/${string}`, handler: Handler): HttpRouter.Route<never, never> =>
  HttpRouter.route(method, `${PREFIX}${path}`, handler.pipe(
    Effect.catchCause((cause) => (Cause.hasInterruptsOnly(cause) ? Effect.failCause(cause) : Effect.succeed(errorResponse(fromCause(cause)))))
  ) as Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest | HttpRouter.RouteContext>)

const ok = (body: unknown) => Effect.succeed(HttpServerResponse.jsonUnsafe(body))

const shortId = (prefix: string) => `${prefix}_${randomBytes(4).toString("hex")}`

/** Canonical JSON (sorted keys), hashed: compares a retried body with the original. */
const digest = (v: unknown): string => {
  const canonical = (x: unknown): string =>
    Array.isArray(x)
      ? `[${x.map(canonical).join(",")}]`
      : typeof x === "object" && x !== null
        ? `{${Object.keys(x).sort().map((k) => `${JSON.stringify(k)}:${canonical((x as Record<string, unknown>)[k])}`).join(",")}}`
        : JSON.stringify(x) ?? "null"
  return createHash("sha256").update(canonical(v)).digest("hex")
}

// ---------------------------------------------------------------------------------------------

interface TrainingModel {
  readonly id: string
  readonly lora: Checkpoints.LoraSettings
  readonly queue: SeqQueue.SeqQueue
  /** Every seq_id received: its body's digest and its answer (a request_id, or the refusal). */
  readonly seen: Map<number, { readonly key: string; readonly answer: Deferred.Deferred<string, RequestError> }>
}

/** Enough of a model-addressed body to find the model and seq_id even when the rest is invalid. */
const Addressed = Schema.Struct({
  model_id: Schema.String,
  seq_id: Schema.optionalKey(Schema.NullOr(Schema.Int))
})

export const make = (engine: PolicyEngineShape, options: TinkerOptions): Effect.Effect<TinkerRoutes, never, Scope.Scope> =>
  Effect.gen(function*() {
    const futures = yield* Futures.make
    const checkpoints = Checkpoints.make(engine, options)
    let model: TrainingModel | undefined
    /** Sampling sessions: the checkpoint path each samples (undefined: the base model). */
    const samplingSessions = new Map<string, string | undefined>()
    /** Whether an optim_step changed the trainer's weights since they were last published or loaded. */
    const pendingSaves = new Set<string>()
    let samplerCounter = 0

    const trainingModel = (id: string): Effect.Effect<TrainingModel, RequestError> =>
      model !== undefined && model.id === id ? Effect.succeed(model) : Effect.fail(notFound(`unknown model_id ${JSON.stringify(id)}`))

    const futureReply = (requestId: string, modelId?: string) =>
      HttpServerResponse.jsonUnsafe({
        request_id: requestId,
        model_id: modelId ?? null,
        // SkyRL's extras.
        future_id: requestId,
        status: "pending"
      })

    /**
     * A request on the training model: `prepare` validates the body and returns the work, which
     * runs in the model's seq_id order as a future. A seq_id counts as used once the model is
     * found, whether `prepare` accepts the request or not.
     */
    const training = (route: string, raw: unknown, prepare: (m: TrainingModel) => Effect.Effect<Effect.Effect<Futures.Done, RequestError>, RequestError>) =>
      Effect.gen(function*() {
        const address = yield* Body.decode(Addressed, raw)
        const m = yield* trainingModel(address.model_id)
        const seq = address.seq_id ?? undefined
        if (seq === undefined) return futureReply(yield* futures.submit(yield* prepare(m)), m.id)
        const key = digest({ route, raw })
        const previous = m.seen.get(seq)
        if (previous !== undefined) {
          if (previous.key !== key) return yield* conflict("Training request sequence number was reused")
          return futureReply(yield* Deferred.await(previous.answer), m.id)
        }
        const next = m.queue.next()
        if (next !== null && seq < next) return yield* conflict(`seq_id ${seq} is behind the model's next seq_id ${next}`)
        const answer = Deferred.makeUnsafe<string, RequestError>()
        m.seen.set(seq, { key, answer })
        const submitted = yield* Effect.exit(Effect.flatMap(prepare(m), (work) => futures.submit(m.queue.inTurn(seq, work))))
        if (Exit.isFailure(submitted)) m.queue.skip(seq)
        yield* Deferred.done(answer, submitted)
        return futureReply(yield* submitted, m.id)
      })

    /**
     * forward_backward, and forward (JSON `/forward`, or protobuf `forward_only`): `input`
     * decodes the body's ForwardBackwardInput (inside `training`, so a bad body uses its seq_id).
     */
    const forwardBackward = (route: string, raw: unknown, input: Effect.Effect<Wire.ForwardBackwardInput, RequestError>, forwardOnly: boolean) =>
      training(route, raw, () =>
        Effect.gen(function*() {
          const { data, ...rest } = yield* input
          if (data.length === 0) return yield* badRequest("the input's data must be a non-empty list")
          const datums = yield* Effect.forEach(data, datumOf)
          const loss = yield* lossOf({ data, ...rest })
          if (!forwardOnly) {
            return Effect.map(runEngine(engine.forwardBackward(datums, loss)), (out): Futures.Done => ({
              kind: "forward",
              value: forwardOutput(out.logprobs, out.metrics)
            }))
          }
          const unshifted = datums.findIndex((d) => d.modelInput.some((t, i) => i > 0 && d.targetTokens[i - 1] !== t))
          if (unshifted >= 0) {
            return yield* badRequest(`forward: data[${unshifted}] is not a shifted sequence (target_tokens[i] = model_input[i+1]); this server's forward pass is teacher forcing`)
          }
          return Effect.gen(function*() {
            const logprobs = yield* runEngine(engine.trainerLogprobs(datums.map((d) => ({ prompt: d.modelInput.slice(0, 1), completion: d.targetTokens }))))
            return { kind: "forward", value: forwardOutput(logprobs, forwardMetrics(datums, logprobs, loss)) } satisfies Futures.Done
          })
        }))

    const json = (value: unknown): Futures.Done => ({ kind: "json", value })

    const routes: Array<HttpRouter.Route<never, never>> = [
      route("GET", "/healthz", ok({ status: "ok" } satisfies typeof Wire.HealthResponse.Type)),

      route("GET", "/get_server_capabilities", ok({
        supported_models: [{ model_name: options.modelName, max_context_length: engine.maxContext }]
      } satisfies typeof Wire.GetServerCapabilitiesResponse.Type)),

      route("POST", "/client/config", Effect.andThen(Body.json(Wire.ClientConfigRequest), ok({
        pjwt_auth_enabled: false,
        // SDK 0.24.1 then sends JSON forward_backward and /forward; 0.25 always sends protobuf.
        proto_write_fwdbwd: false,
        proto_compress_fwdbwd: false,
        fwd_via_fwdbwd: false,
        create_model_via_load_weights: false
      } satisfies Wire.ClientConfigResponse))),

      route("POST", "/client/dynamic_config", ok({ refresh_interval_sec: 300 } satisfies typeof Wire.ClientDynamicConfigResponse.Type)),

      // The SDK's telemetry: accepted and dropped.
      route("POST", "/telemetry", ok({ status: "accepted" })),

      route("POST", "/create_session", Effect.andThen(Body.json(Wire.CreateSessionRequest), () =>
        ok({
          type: "create_session",
          session_id: shortId("session"),
          info_message: null,
          warning_message: null,
          error_message: null
        } satisfies Wire.CreateSessionResponse))),

      route("POST", "/session_heartbeat", Effect.andThen(Body.json(Wire.SessionHeartbeatRequest), ok({ type: "session_heartbeat" }))),

      route("POST", "/create_model", Effect.gen(function*() {
        const body = yield* Body.json(Wire.CreateModelRequest)
        if (body.base_model !== options.modelName) {
          return yield* badRequest(`base_model ${JSON.stringify(body.base_model)} is not served here; this server has ${JSON.stringify(options.modelName)}`)
        }
        // One engine serves one training client at a time: a new model replaces the previous one and
        // starts from the base weights (as a fresh LoRA does).
        const replacing = model !== undefined
        const lora = body.lora_config
        const id = shortId("model")
        model = {
          id,
          lora: lora == null
            ? Checkpoints.DEFAULT_LORA
            : { rank: lora.rank, trainUnembed: lora.train_unembed ?? true, trainMlp: lora.train_mlp ?? true, trainAttn: lora.train_attn ?? true },
          queue: SeqQueue.make(),
          seen: new Map()
        }
        const requestId = yield* futures.submit(Effect.gen(function*() {
          if (replacing && options.baseCheckpoint !== undefined) {
            yield* runEngine(engine.load({ path: options.baseCheckpoint }))
            checkpoints.published()
          }
          return json({ model_id: id, type: "create_model" } satisfies Wire.CreateModelResponse)
        }))
        return HttpServerResponse.jsonUnsafe({
          request_id: requestId,
          future_id: requestId,
          status: "pending",
          model_id: id,
          base_model: body.base_model,
          info_message: "lora_config is accepted for compatibility; this server trains all weights of the model"
        })
      })),

      route("POST", "/get_info", Effect.gen(function*() {
        const m = yield* Effect.flatMap(Body.json(Wire.ModelRequest), (b) => trainingModel(b.model_id))
        return HttpServerResponse.jsonUnsafe({
          type: "get_info",
          model_id: m.id,
          model_data: { arch: "polaris-story", model_name: options.modelName, tokenizer_id: options.modelName },
          is_lora: false,
          lora_rank: null,
          model_name: options.modelName
        } satisfies Wire.GetInfoResponse)
      })),

      route("POST", "/unload_model", Effect.gen(function*() {
        const m = yield* Effect.flatMap(Body.json(Wire.ModelRequest), (b) => trainingModel(b.model_id))
        model = undefined
        return futureReply(yield* futures.submit(Effect.succeed(json({ model_id: m.id, type: "unload_model" }))), m.id)
      })),

      route("POST", "/forward_backward", Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const bytes = yield* Body.bytes
        if (Body.sends(request, Wire.PROTOBUF)) {
          const encoding = request.headers["content-encoding"] ?? "identity"
          if (encoding !== "identity") {
            return yield* new RequestError({
              reason: "UnsupportedMediaType",
              message: `Content-Encoding ${encoding} is not supported (client/config says proto_compress_fwdbwd: false)`
            })
          }
          const proto = yield* Effect.try({
            try: () => Proto.decodeForwardBackwardRequest(bytes),
            catch: (e) => badRequest(`forward_backward: ${(e as Error).message}`)
          })
          const input = Effect.map(Body.decode(Wire.ForwardBackwardRequest, proto.request), (b) => b.forward_backward_input)
          return yield* forwardBackward(proto.forwardOnly ? "forward" : "forward_backward", proto.request, input, proto.forwardOnly)
        }
        const raw = yield* Body.parseJson(bytes)
        return yield* forwardBackward("forward_backward", raw, Effect.map(Body.decode(Wire.ForwardBackwardRequest, raw), (b) => b.forward_backward_input), false)
      })),

      route("POST", "/forward", Effect.gen(function*() {
        const raw = yield* Body.json(Schema.Unknown)
        return yield* forwardBackward("forward", raw, Effect.map(Body.decode(Wire.ForwardRequest, raw), (b) => b.forward_input), true)
      })),

      route("POST", "/optim_step", Effect.gen(function*() {
        const raw = yield* Body.json(Schema.Unknown)
        return yield* training("optim_step", raw, () =>
          Effect.map(Body.decode(Wire.OptimStepRequest, raw), (body) =>
            Effect.gen(function*() {
              const r = yield* runEngine(engine.optimStep(adamOf(body.adam_params)))
              return json({
                type: "optim_step",
                metrics: { [`${Wire.GRAD_NORM}:mean`]: r.gradNorm, "clip_scale:mean": r.clipScale, "step:max": r.step }
              } satisfies Wire.OptimStepResponse)
            })))
      })),

      route("POST", "/save_weights", Effect.gen(function*() {
        const raw = yield* Body.json(Schema.Unknown)
        return yield* training("save_weights", raw, (m) =>
          Effect.gen(function*() {
            const body = yield* Body.decode(Wire.SaveWeightsRequest, raw)
            const name = body.path
            if (name == null) return yield* badRequest("path (a checkpoint name) is required")
            if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) return yield* badRequest(`path ${JSON.stringify(name)}: letters, digits, '.', '_' or '-'`)
            if (body.overwrite !== true && (checkpoints.weightsTaken(name) || pendingSaves.has(name))) {
              return yield* conflict(`checkpoint ${JSON.stringify(name)} already exists`)
            }
            pendingSaves.add(name)
            return Effect.gen(function*() {
              const ref = yield* runEngine(engine.save(name))
              checkpoints.recordWeights(name, { folder: ref.path, lora: m.lora })
              return json({ path: checkpoints.tinkerPath(m.id, "weights", name), type: "save_weights" } satisfies Wire.SaveWeightsResponse)
            }).pipe(Effect.ensuring(Effect.sync(() => pendingSaves.delete(name))))
          }))
      })),

      route("POST", "/load_weights", Effect.gen(function*() {
        const raw = yield* Body.json(Schema.Unknown)
        return yield* training("load_weights", raw, (m) =>
          Effect.gen(function*() {
            const body = yield* Body.decode(Wire.LoadWeightsRequest, raw)
            if (body.session_id != null) return yield* badRequest("load_weights with session addressing needs create_model_via_load_weights, which this server does not offer")
            const folder = yield* checkpoints.folderOf(body.path)
            return Effect.gen(function*() {
              // The engine loads weights and optimizer state together; `optimizer: false` is not honored.
              yield* runEngine(engine.load({ path: folder }))
              checkpoints.published()
              return json({ path: body.path, model_id: m.id, type: "load_weights" } satisfies Wire.LoadWeightsResponse)
            })
          }))
      })),

      route("POST", "/save_weights_for_sampler", Effect.gen(function*() {
        const raw = yield* Body.json(Schema.Unknown)
        return yield* training("save_weights_for_sampler", raw, (m) =>
          Effect.gen(function*() {
            const body = yield* Body.decode(Wire.SaveWeightsForSamplerRequest, raw)
            const name = body.path ?? `ephemeral-${++samplerCounter}`
            if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) return yield* badRequest(`path ${JSON.stringify(name)}: letters, digits, '.', '_' or '-'`)
            const wantsSession = body.path == null || body.sampling_session_seq_id != null
            return Effect.gen(function*() {
              yield* runEngine(engine.publish())
              checkpoints.published()
              const ref = yield* runEngine(engine.save(Checkpoints.SAMPLER_PREFIX + name))
              checkpoints.recordSampler(name, { folder: ref.path, lora: m.lora })
              const path = checkpoints.tinkerPath(m.id, "sampler_weights", name)
              let sessionId: string | null = null
              if (wantsSession) {
                sessionId = shortId("sampling")
                samplingSessions.set(sessionId, path)
              }
              return json({ path, sampling_session_id: sessionId, type: "save_weights_for_sampler" } satisfies Wire.SaveWeightsForSamplerResponse)
            })
          }))
      })),

      route("POST", "/weights_info", Effect.gen(function*() {
        const body = yield* Body.json(Wire.WeightsInfoRequest)
        const saved = yield* checkpoints.infoOf(body.tinker_path)
        // The SDK's create_training_client_from_state asserts `is_lora` and a rank, and makes a
        // LoRA client with these settings: they are the ones the checkpoint's client asked for.
        return HttpServerResponse.jsonUnsafe({
          base_model: options.modelName,
          is_lora: true,
          lora_rank: saved.lora.rank,
          train_unembed: saved.lora.trainUnembed,
          train_mlp: saved.lora.trainMlp,
          train_attn: saved.lora.trainAttn
        } satisfies Wire.WeightsInfoResponse)
      })),

      route("POST", "/create_sampling_session", Effect.gen(function*() {
        const body = yield* Body.json(Wire.CreateSamplingSessionRequest)
        if (body.base_model != null && body.base_model !== options.modelName) {
          return yield* notFound(`base_model ${JSON.stringify(body.base_model)} is not served here`)
        }
        const path = body.model_path ?? undefined
        if (path !== undefined) yield* checkpoints.engineFor(path) // fail now on a bad path
        const id = shortId("sampling")
        samplingSessions.set(id, path)
        return HttpServerResponse.jsonUnsafe({ type: "create_sampling_session", sampling_session_id: id } satisfies typeof Wire.CreateSamplingSessionResponse.Type)
      })),

      route("GET", "/samplers/:id", Effect.gen(function*() {
        const id = (yield* HttpRouter.params)["id"] ?? ""
        if (!samplingSessions.has(id)) return yield* notFound(`unknown sampler ${JSON.stringify(id)}`)
        return HttpServerResponse.jsonUnsafe({
          sampler_id: id,
          base_model: options.modelName,
          model_path: samplingSessions.get(id) ?? null
        } satisfies typeof Wire.GetSamplerResponse.Type)
      })),

      route("POST", "/asample", Effect.gen(function*() {
        const body = yield* Body.json(Wire.SampleRequest)
        let path: string | undefined
        if (body.sampling_session_id != null) {
          if (!samplingSessions.has(body.sampling_session_id)) return yield* notFound(`unknown sampling_session_id ${JSON.stringify(body.sampling_session_id)}`)
          path = samplingSessions.get(body.sampling_session_id)
        } else if (body.model_path != null) path = body.model_path
        else if (body.base_model != null) {
          if (body.base_model !== options.modelName) return yield* notFound(`base_model ${JSON.stringify(body.base_model)} is not served here`)
        } else return yield* badRequest("asample needs sampling_session_id, model_path or base_model")
        const prompt = yield* tokensOf(body.prompt, "prompt")
        if (prompt.length === 0) return yield* badRequest("prompt has no tokens")
        const n = body.num_samples ?? 1
        if (n < 1) return yield* badRequest(`num_samples must be >= 1, got ${n}`)
        if ((body.topk_prompt_logprobs ?? 0) > 0) return yield* badRequest("topk_prompt_logprobs is not supported: the engine scores the prompt's own tokens only")
        const params = yield* samplingParamsOf(engine, body.sampling_params, prompt.length)
        const target = yield* checkpoints.engineFor(path)
        const requestId = yield* futures.submit(Effect.gen(function*() {
          const [sequences] = yield* runEngine(target.sample([{ prompt, n, params }]))
          return {
            kind: "sample",
            value: {
              type: "sample",
              sequences: (sequences ?? []).map((s) => ({ stop_reason: s.stopReason, tokens: [...s.tokens], logprobs: [...s.logprobs] })),
              prompt_logprobs: body.prompt_logprobs === true ? yield* promptLogprobs(target, prompt) : null,
              topk_prompt_logprobs: null
            } satisfies Wire.SampleResponse
          } satisfies Futures.Done
        }))
        return futureReply(requestId)
      })),

      route("POST", "/retrieve_future", Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const body = yield* Body.json(Wire.FutureRetrieveRequest)
        const outcome = yield* futures.poll(body.request_id, options.longPollMs)
        if (Option.isNone(outcome)) return HttpServerResponse.jsonUnsafe({ detail: "Timeout waiting for result" } satisfies Wire.ErrorDetail, { status: 408 })
        const exit = outcome.value
        if (Exit.isFailure(exit)) {
          const error = fromCause(exit.cause)
          return HttpServerResponse.jsonUnsafe({
            error: error.message,
            category: error.status < 500 ? "user" : "server"
          } satisfies Wire.RequestFailedResponse)
        }
        const done = exit.value
        if (done.kind !== "json" && Body.accepts(request, Wire.PROTOBUF)) {
          const bytes = done.kind === "sample"
            ? Proto.encodeSampleResponse(done.value as Wire.SampleResponse)
            : Proto.encodeForwardBackwardOutput(done.value as Wire.ForwardBackwardOutput)
          return HttpServerResponse.uint8Array(bytes, { contentType: Wire.PROTOBUF })
        }
        return HttpServerResponse.jsonUnsafe(done.value)
      }))
    ]

    return { routes, engineFor: checkpoints.engineFor }
  })
