/**
 * The Tinker training API (protocols.md §1) over one PolicyEngine, mounted under `/api/v1`.
 *
 * - Work requests (`create_model`, `forward_backward`, `optim_step`, `save_weights`,
 *   `load_weights`, `save_weights_for_sampler`, `asample`, `unload_model`) answer at once with a
 *   future `{request_id}`; the work runs in the background and `retrieve_future` long-polls for
 *   it (408 `{"detail":"Timeout waiting for result"}` while pending, 400 `{"detail"}` once
 *   failed, 404 for an unknown id), as SkyRL does. Results stay in memory.
 * - Requests carrying `seq_id` run per model in `seq_id` order (a later one waits for the
 *   earlier ones; the first may be 0 or 1). A retry of `(model_id, seq_id)` with an identical body
 *   gets the original `request_id`; another body gets 409.
 * - One training model per server. LoRA settings are accepted and ignored: the embedded engine
 *   trains all weights (create_model says so in `info_message`).
 * - Sampler weights: `save_weights_for_sampler` publishes the trainer's weights and also saves
 *   them as a checkpoint, so the `tinker://…/sampler_weights/<name>` path can be sampled later,
 *   or loaded into the vLLM routes as an adapter. The newest one is the engine itself; an older
 *   one, a training checkpoint or a folder is opened as its own sampling engine (cached).
 * - `base_model` sampling uses the engine's published weights, i.e. the newest sampler weights
 *   once training has published some (one engine per server).
 */
import { Cause, Effect } from "effect"
import { randomBytes } from "node:crypto"
import { existsSync } from "node:fs"
import { join, resolve } from "node:path"
import { defaultAdamParams, type AdamParams } from "../model/AdamW.ts"
import { defaultSamplingParams, type SamplingParams } from "../model/Sampling.ts"
import { PolicyError, type Datum, type LossFn, type PolicyEngineShape } from "../engines/PolicyEngine.ts"
import type { Handler, Reply, Request } from "./Server.ts"

// ---------------------------------------------------------------------------------------------
// Shared with OpenAIRoutes: input errors and running engine effects.

/** A request the server refuses, with its HTTP status. */
export class HttpError extends Error {
  /** `kind`: the vLLM error type; default by status. */
  constructor(readonly status: number, message: string, readonly kind?: string) {
    super(message)
  }
}

const STATUS_OF_REASON: Record<PolicyError["reason"], number> = {
  BadInput: 400,
  ContextOverflow: 400,
  Checkpoint: 400,
  Unsupported: 400,
  Unavailable: 503,
  Backend: 500
}

/** Runs an engine effect; a PolicyError becomes an HttpError with the engine's message. */
export const runEngine = async <A>(effect: Effect.Effect<A, PolicyError>): Promise<A> => {
  const exit = await Effect.runPromiseExit(effect)
  if (exit._tag === "Success") return exit.value
  const error = Cause.squash(exit.cause)
  if (error instanceof PolicyError) throw new HttpError(STATUS_OF_REASON[error.reason], error.message)
  throw new HttpError(500, error instanceof Error ? error.message : String(error))
}

export const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v)

export const bad = (message: string): never => {
  throw new HttpError(400, message)
}

/** Reads `name` from a JSON object: undefined when absent or null, else checked by `check`. */
export const field = <A>(body: Record<string, unknown>, name: string, check: (v: unknown, name: string) => A): A | undefined => {
  const v = body[name]
  return v === undefined || v === null ? undefined : check(v, name)
}

export const asNumber = (v: unknown, name: string): number =>
  typeof v === "number" && Number.isFinite(v) ? v : bad(`${name} must be a number, got ${JSON.stringify(v)}`)
export const asInt = (v: unknown, name: string): number =>
  Number.isInteger(v) ? (v as number) : bad(`${name} must be an integer, got ${JSON.stringify(v)}`)
export const asString = (v: unknown, name: string): string =>
  typeof v === "string" ? v : bad(`${name} must be a string, got ${JSON.stringify(v)}`)
export const asBool = (v: unknown, name: string): boolean =>
  typeof v === "boolean" ? v : bad(`${name} must be a boolean, got ${JSON.stringify(v)}`)
export const asInts = (v: unknown, name: string): Array<number> =>
  Array.isArray(v) && v.every((x) => Number.isInteger(x)) ? (v as Array<number>) : bad(`${name} must be a list of integers`)
export const asRecord = (v: unknown, name: string): Record<string, unknown> =>
  isRecord(v) ? v : bad(`${name} must be an object`)

/** A random seed for requests without one, so repeated requests differ (as vLLM's `seed: null`). */
export const randomSeed = () => randomBytes(4).readUInt32LE(0)

// ---------------------------------------------------------------------------------------------
// Futures and per-model sequencing.

interface Future {
  state: "pending" | "done" | "failed"
  result?: unknown
  error?: string
  readonly settled: Promise<void>
}

interface TrainingModel {
  readonly id: string
  /** The next seq_id to run; null before the first (which may be 0 or 1). */
  nextSeq: number | null
  busy: boolean
  readonly waiting: Map<number, () => Promise<void>>
  /** Every accepted seq_id: the body it came with and its request_id (for retries). */
  readonly seen: Map<number, { readonly body: string; readonly requestId: string }>
}

/** Canonical JSON (sorted keys), to compare a retried body with the original. */
const canonical = (v: unknown): string =>
  Array.isArray(v)
    ? `[${v.map(canonical).join(",")}]`
    : isRecord(v)
      ? `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(",")}}`
      : JSON.stringify(v) ?? "null"

const shortId = (prefix: string) => `${prefix}_${randomBytes(4).toString("hex")}`

// ---------------------------------------------------------------------------------------------
// Wire shapes.

interface TensorData {
  readonly data: Array<number>
  readonly dtype: "int64" | "float32"
  readonly shape: Array<number>
}

const tensor = (data: ArrayLike<number>, dtype: TensorData["dtype"]): TensorData => ({
  data: Array.from(data),
  dtype,
  shape: [data.length]
})

const tensorData = (v: unknown, name: string, length: number): Array<number> => {
  const t = asRecord(v, name)
  const data = t["data"]
  if (!Array.isArray(data) || !data.every((x) => typeof x === "number")) return bad(`${name}.data must be a list of numbers`)
  const shape = field(t, "shape", asInts)
  if (shape !== undefined && shape.length !== 1) return bad(`${name}: only 1-D tensors are supported, got shape ${JSON.stringify(shape)}`)
  if (data.length !== length) return bad(`${name} has ${data.length} entries, model_input ${length}`)
  return data as Array<number>
}

/** `model_input.chunks[].tokens`, concatenated (text chunks only). */
const modelInput = (v: unknown, name: string): Array<number> => {
  const chunks = asRecord(v, name)["chunks"]
  if (!Array.isArray(chunks)) return bad(`${name}.chunks must be a list`)
  return chunks.flatMap((c, i) => {
    const chunk = asRecord(c, `${name}.chunks[${i}]`)
    const type = chunk["type"] ?? "encoded_text"
    if (type !== "encoded_text") return bad(`${name}.chunks[${i}]: chunk type ${JSON.stringify(type)} is not supported (text only)`)
    return asInts(chunk["tokens"], `${name}.chunks[${i}].tokens`)
  })
}

const datum = (v: unknown, i: number): Datum => {
  const d = asRecord(v, `data[${i}]`)
  const input = modelInput(d["model_input"], `data[${i}].model_input`)
  const inputs = asRecord(d["loss_fn_inputs"] ?? {}, `data[${i}].loss_fn_inputs`)
  const n = input.length
  const targets = inputs["target_tokens"]
  if (targets === undefined) return bad(`data[${i}].loss_fn_inputs.target_tokens is required`)
  const targetTokens = tensorData(targets, `data[${i}].loss_fn_inputs.target_tokens`, n)
  const optional = (key: "weights" | "logprobs" | "advantages") => {
    const t = inputs[key]
    return t === undefined || t === null ? {} : { [key]: Float32Array.from(tensorData(t, `data[${i}].loss_fn_inputs.${key}`, n)) }
  }
  return { modelInput: input, targetTokens, ...optional("weights"), ...optional("logprobs"), ...optional("advantages") }
}

/** Tinker's `loss_fn` + `loss_fn_config` as the engine's LossFn. */
const lossFn = (name: unknown, config: Record<string, unknown> | undefined): LossFn => {
  switch (name) {
    case "cross_entropy":
      return { name: "cross_entropy" }
    case "importance_sampling":
      return { name: "importance_sampling" }
    case "ppo": {
      const c = config ?? {}
      return {
        name: "ppo",
        clipLow: field(c, "clip_low_threshold", asNumber) ?? 0.8,
        clipHigh: field(c, "clip_high_threshold", asNumber) ?? 1.2
      }
    }
    default:
      return bad(`loss_fn ${JSON.stringify(name)} is not supported (cross_entropy, importance_sampling, ppo)`)
  }
}

const adamParams = (v: unknown): AdamParams => {
  const a = asRecord(v ?? {}, "adam_params")
  return {
    learningRate: field(a, "learning_rate", asNumber) ?? defaultAdamParams.learningRate,
    beta1: field(a, "beta1", asNumber) ?? defaultAdamParams.beta1,
    beta2: field(a, "beta2", asNumber) ?? defaultAdamParams.beta2,
    eps: field(a, "eps", asNumber) ?? defaultAdamParams.eps,
    weightDecay: field(a, "weight_decay", asNumber) ?? defaultAdamParams.weightDecay,
    gradClipNorm: field(a, "grad_clip_norm", asNumber) ?? defaultAdamParams.gradClipNorm
  }
}

/** Stop entries as token ids: ints, or strings that are exactly one token. */
export const stopTokens = (engine: PolicyEngineShape, v: unknown, name: string): Array<number> => {
  const list = typeof v === "string" ? [v] : Array.isArray(v) ? v : bad(`${name} must be a list`)
  return list.map((s, i) => {
    if (Number.isInteger(s)) return s as number
    if (typeof s !== "string") return bad(`${name}[${i}] must be a token id or a string`)
    const ids = engine.tokenizer.encode(s)
    const [only] = ids
    return ids.length === 1 && only !== undefined ? only : bad(`${name}[${i}]: stop string ${JSON.stringify(s)} is not a single token; send token ids`)
  })
}

const samplingParams = (engine: PolicyEngineShape, v: unknown, promptLength: number): SamplingParams => {
  const p = asRecord(v ?? {}, "sampling_params")
  const maxTokens = field(p, "max_tokens", asInt) ?? Math.max(1, engine.maxContext - promptLength)
  if (maxTokens < 1) bad(`sampling_params.max_tokens must be > 0, got ${maxTokens}`)
  return {
    ...defaultSamplingParams,
    maxTokens,
    temperature: field(p, "temperature", asNumber) ?? 1,
    topP: field(p, "top_p", asNumber) ?? 1,
    topK: field(p, "top_k", asInt) ?? -1,
    stop: field(p, "stop", (s, n) => stopTokens(engine, s, `sampling_params.${n}`)) ?? [],
    seed: field(p, "seed", asInt) ?? randomSeed()
  }
}

/** `[null, log p(prompt[1] | prompt[0]), …]`: the engine's teacher-forced logprobs of the prompt. */
export const promptLogprobs = async (engine: PolicyEngineShape, prompt: ReadonlyArray<number>): Promise<Array<number | null>> => {
  if (prompt.length <= 1) return prompt.map(() => null)
  const [lp] = await runEngine(engine.logprobs([{ prompt: prompt.slice(0, 1), completion: prompt.slice(1) }]))
  return [null, ...Array.from(lp ?? [])]
}

// ---------------------------------------------------------------------------------------------

export interface TinkerOptions {
  readonly modelName: string
  /** The base model's checkpoint folder: a new training client starts from it. */
  readonly baseCheckpoint?: string
  readonly longPollMs: number
  readonly openEngine: (path: string) => Promise<PolicyEngineShape>
  readonly checkpointDir?: string
}

export interface TinkerRoutes {
  readonly handle: Handler
  /**
   * The engine that samples a checkpoint path: undefined (the base model), a `tinker://` path from
   * this server (`…/weights/<name>`, `…/sampler_weights/<name>` or SkyRL's `…/<name>`) or a folder.
   */
  readonly engineFor: (path: string | undefined) => Promise<PolicyEngineShape>
  readonly close: () => void
}

const SAMPLER_PREFIX = "sampler."
const TINKER_PATH = /^tinker:\/\/([^/]+)\/(?:(weights|sampler_weights)\/)?([^/]+)$/

export const make = (engine: PolicyEngineShape, options: TinkerOptions): TinkerRoutes => {
  const futures = new Map<string, Future>()
  let nextRequestId = 1
  let model: TrainingModel | undefined
  const sessions = new Set<string>()
  /** Sampling sessions: the checkpoint path each samples (undefined: the base model). */
  const samplingSessions = new Map<string, string | undefined>()
  /** Training checkpoints by name: the engine's folder. */
  const weights = new Map<string, string>()
  /** Sampler checkpoints by name: the folder, and which publish it was. */
  const samplers = new Map<string, { readonly path: string; readonly version: number }>()
  /** Bumped whenever the engine's published weights change (publish, load). */
  let publishedVersion = 0
  /** Sampling engines opened from folders, by folder. */
  const opened = new Map<string, Promise<PolicyEngineShape>>()
  let closed = false

  const submit = (work: () => Promise<unknown>): string => {
    const requestId = String(nextRequestId++)
    let settle = () => {}
    const future: Future = { state: "pending", settled: new Promise<void>((r) => (settle = r)) }
    futures.set(requestId, future)
    queueMicrotask(() => {
      work().then(
        (result) => Object.assign(future, { state: "done", result }),
        (e: unknown) => Object.assign(future, { state: "failed", error: e instanceof Error ? e.message : String(e) })
      ).finally(settle)
    })
    return requestId
  }

  /** Starts whichever waiting request is next in seq_id order, if none is running. */
  const pump = (m: TrainingModel) => {
    if (m.busy || m.waiting.size === 0) return
    let seq = m.nextSeq
    if (seq === null) {
      const first = Math.min(...m.waiting.keys())
      if (first > 1) return
      seq = first
    }
    const run = m.waiting.get(seq)
    if (run === undefined) return
    m.waiting.delete(seq)
    m.nextSeq = seq + 1
    m.busy = true
    void run().finally(() => {
      m.busy = false
      pump(m)
    })
  }

  const trainingModel = (body: Record<string, unknown>): TrainingModel => {
    const id = field(body, "model_id", asString)
    if (id === undefined) return bad("model_id is required")
    if (model === undefined || model.id !== id) throw new HttpError(404, `unknown model_id ${JSON.stringify(id)}`, "NotFoundError")
    return model
  }

  /**
   * A training request: a future that runs in the model's seq_id order. A retry of a seq_id
   * with the same body returns the original request_id; another body is a 409.
   */
  const submitTraining = (route: string, body: Record<string, unknown>, work: () => Promise<unknown>, checkNew = () => {}): Reply => {
    const m = trainingModel(body)
    const seq = field(body, "seq_id", asInt)
    if (seq === undefined) {
      checkNew()
      return futureReply(submit(work), m.id)
    }
    const key = canonical({ route, body })
    const previous = m.seen.get(seq)
    if (previous !== undefined) {
      if (previous.body === key) return futureReply(previous.requestId, m.id)
      throw new HttpError(409, "Training request sequence number was reused", "Conflict")
    }
    if (m.nextSeq !== null && seq < m.nextSeq) throw new HttpError(409, `seq_id ${seq} is behind the model's next seq_id ${m.nextSeq}`, "Conflict")
    checkNew()
    const requestId = submit(() =>
      new Promise<unknown>((resolveResult, rejectResult) => {
        m.waiting.set(seq, () => work().then(resolveResult, rejectResult))
        pump(m)
      })
    )
    m.seen.set(seq, { body: key, requestId })
    return futureReply(requestId, m.id)
  }

  const futureReply = (requestId: string, modelId?: string): Reply => ({
    status: 200,
    json: { request_id: requestId, future_id: requestId, status: "pending", ...(modelId !== undefined ? { model_id: modelId } : {}) }
  })

  const tinkerPath = (kind: "weights" | "sampler_weights", name: string) => `tinker://${model?.id ?? "base"}/${kind}/${name}`

  const openFolder = (path: string): Promise<PolicyEngineShape> => {
    const key = resolve(path)
    let engineP = opened.get(key)
    if (engineP === undefined) {
      engineP = options.openEngine(key)
      // A failed open is not cached, so a later request can try again.
      engineP.catch(() => opened.delete(key))
      opened.set(key, engineP)
    }
    return engineP
  }

  /** The folder a saved name lives in: this run's record, else one saved by an earlier run. */
  const savedFolder = (names: ReadonlyMap<string, string>, name: string, diskName: string): string | undefined =>
    names.get(name) ?? (options.checkpointDir !== undefined && existsSync(join(options.checkpointDir, diskName)) ? join(options.checkpointDir, diskName) : undefined)

  const engineFor = async (path: string | undefined): Promise<PolicyEngineShape> => {
    if (path === undefined || path === options.modelName) return engine
    const m = TINKER_PATH.exec(path)
    if (m !== null) {
      const kind = m[2]
      const name = m[3]!
      if (kind !== "weights") {
        const sampler = samplers.get(name)
        if (sampler !== undefined) return sampler.version === publishedVersion ? engine : openFolder(sampler.path)
        const folder = savedFolder(new Map(), name, SAMPLER_PREFIX + name)
        if (folder !== undefined) return openFolder(folder)
        if (kind === "sampler_weights") throw new HttpError(404, `no sampler weights ${JSON.stringify(path)}`, "NotFoundError")
      }
      const folder = savedFolder(weights, name, name)
      if (folder === undefined) throw new HttpError(404, `no checkpoint ${JSON.stringify(path)}`, "NotFoundError")
      return openFolder(folder)
    }
    if (path.startsWith("tinker://")) throw new HttpError(400, `not a checkpoint path: ${JSON.stringify(path)}`)
    if (!existsSync(path)) throw new HttpError(404, `no checkpoint folder ${JSON.stringify(path)}`, "NotFoundError")
    return openFolder(path)
  }

  /** The folder `load_weights` reads: a `tinker://…/weights/<name>` of this server, or a folder. */
  const loadFolder = (path: string): string => {
    const m = TINKER_PATH.exec(path)
    if (m !== null) {
      const name = m[3]!
      const folder = m[2] === "sampler_weights"
        ? samplers.get(name)?.path ?? savedFolder(new Map(), name, SAMPLER_PREFIX + name)
        : savedFolder(weights, name, name)
      if (folder === undefined) throw new HttpError(404, `no checkpoint ${JSON.stringify(path)}`, "NotFoundError")
      return folder
    }
    if (!existsSync(path)) throw new HttpError(404, `no checkpoint folder ${JSON.stringify(path)}`, "NotFoundError")
    return path
  }

  const pendingSaves = new Set<string>()
  let samplerCounter = 0

  const routes: Record<string, (body: Record<string, unknown>, request: Request) => Promise<Reply> | Reply> = {
    "GET /healthz": () => ({ status: 200, json: { status: "ok" } }),

    "GET /get_server_capabilities": () => ({
      status: 200,
      json: { supported_models: [{ model_name: options.modelName, max_context_length: engine.maxContext }] }
    }),

    "POST /client/config": () => ({ status: 200, json: { pjwt_auth_enabled: false } }),

    "POST /create_session": () => {
      const id = shortId("session")
      sessions.add(id)
      return { status: 200, json: { type: "create_session", session_id: id, info_message: null, warning_message: null, error_message: null } }
    },

    "POST /session_heartbeat": () => ({ status: 200, json: { type: "session_heartbeat" } }),

    "POST /create_model": (body) => {
      const base = field(body, "base_model", asString) ?? options.modelName
      if (base !== options.modelName) return bad(`base_model ${JSON.stringify(base)} is not served here; this server has ${JSON.stringify(options.modelName)}`)
      // One engine serves one training client at a time: a new model replaces the previous one and
      // starts from the base weights (as a fresh LoRA does), so a client can `load` by creating one.
      const replacing = model !== undefined
      const id = shortId("model")
      model = { id, nextSeq: null, busy: false, waiting: new Map(), seen: new Map() }
      const requestId = submit(async () => {
        if (replacing && options.baseCheckpoint !== undefined) await runEngine(engine.load({ path: options.baseCheckpoint }))
        return { model_id: id, type: "create_model" }
      })
      return {
        status: 200,
        json: {
          request_id: requestId,
          future_id: requestId,
          status: "pending",
          model_id: id,
          base_model: base,
          // LoRA settings are accepted for compatibility, but the embedded engine trains every weight.
          info_message: "lora_config is ignored: this server trains all weights of the model"
        }
      }
    },

    "POST /get_info": (body) => {
      const m = trainingModel(body)
      return {
        status: 200,
        json: {
          model_id: m.id,
          model_data: { arch: "polaris-story", model_name: options.modelName, tokenizer_id: options.modelName },
          is_lora: false,
          lora_rank: null,
          model_name: options.modelName,
          type: "get_info"
        }
      }
    },

    "POST /unload_model": (body) => {
      const m = trainingModel(body)
      model = undefined
      return futureReply(submit(async () => ({ model_id: m.id, type: "unload_model" })), m.id)
    },

    "POST /forward_backward": (body) => {
      const input = asRecord(body["forward_backward_input"], "forward_backward_input")
      const data = input["data"]
      if (!Array.isArray(data) || data.length === 0) return bad("forward_backward_input.data must be a non-empty list")
      const datums = data.map(datum)
      const loss = lossFn(input["loss_fn"], field(input, "loss_fn_config", asRecord))
      return submitTraining("forward_backward", body, async () => {
        const out = await runEngine(engine.forwardBackward(datums, loss))
        return {
          loss_fn_output_type: "scalar",
          loss_fn_outputs: out.logprobs.map((lp) => ({ logprobs: tensor(lp, "float32") })),
          metrics: out.metrics
        }
      })
    },

    "POST /optim_step": (body) => {
      const adam = adamParams(body["adam_params"])
      return submitTraining("optim_step", body, async () => {
        const r = await runEngine(engine.optimStep(adam))
        return { type: "optim_step", metrics: { "grad_norm:mean": r.gradNorm, "clip_scale:mean": r.clipScale, "step:max": r.step } }
      })
    },

    "POST /save_weights": (body) => {
      const name = field(body, "path", asString)
      if (name === undefined) return bad("path (a checkpoint name) is required")
      const reply = submitTraining("save_weights", body, async () => {
        try {
          const ref = await runEngine(engine.save(name))
          weights.set(name, ref.path)
          return { path: tinkerPath("weights", name), type: "save_weights" }
        } finally {
          pendingSaves.delete(name)
        }
      }, () => {
        // Checked for new requests only: a retry of the same seq_id gets its original future.
        if (weights.has(name) || pendingSaves.has(name) || savedFolder(new Map(), name, name) !== undefined) {
          throw new HttpError(409, `checkpoint ${JSON.stringify(name)} already exists`, "Conflict")
        }
        pendingSaves.add(name)
      })
      return reply
    },

    "POST /load_weights": (body) => {
      const path = field(body, "path", asString)
      if (path === undefined) return bad("path is required")
      const folder = loadFolder(path)
      return submitTraining("load_weights", body, async () => {
        // The engine loads weights and optimizer state together; `optimizer: false` is not honored.
        await runEngine(engine.load({ path: folder }))
        publishedVersion++
        return { path, model_id: model?.id ?? null, type: "load_weights" }
      })
    },

    "POST /save_weights_for_sampler": (body) => {
      const given = field(body, "path", asString)
      const name = given ?? `ephemeral-${++samplerCounter}`
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) return bad(`path ${JSON.stringify(name)}: letters, digits, '.', '_' or '-'`)
      const wantsSession = given === undefined || field(body, "sampling_session_seq_id", asInt) !== undefined
      return submitTraining("save_weights_for_sampler", body, async () => {
        await runEngine(engine.publish())
        const version = ++publishedVersion
        const ref = await runEngine(engine.save(SAMPLER_PREFIX + name))
        opened.delete(resolve(ref.path))
        samplers.set(name, { path: ref.path, version })
        const path = tinkerPath("sampler_weights", name)
        let sessionId: string | null = null
        if (wantsSession) {
          sessionId = shortId("sampling")
          samplingSessions.set(sessionId, path)
        }
        return { path, sampling_session_id: sessionId, type: "save_weights_for_sampler" }
      })
    },

    "POST /create_sampling_session": async (body) => {
      const path = field(body, "model_path", asString)
      const base = field(body, "base_model", asString)
      if (base !== undefined && base !== options.modelName) throw new HttpError(404, `base_model ${JSON.stringify(base)} is not served here`, "NotFoundError")
      if (path !== undefined) await engineFor(path) // fail now on a bad path
      const id = shortId("sampling")
      samplingSessions.set(id, path)
      return { status: 200, json: { sampling_session_id: id, type: "create_sampling_session" } }
    },

    "GET /samplers": (_, request) => {
      const id = request.path.split("/")[2] ?? ""
      if (!samplingSessions.has(id)) throw new HttpError(404, `unknown sampler ${JSON.stringify(id)}`, "NotFoundError")
      return { status: 200, json: { sampler_id: id, base_model: options.modelName, model_path: samplingSessions.get(id) ?? null } }
    },

    "POST /asample": async (body) => {
      const sessionId = field(body, "sampling_session_id", asString)
      const modelPath = field(body, "model_path", asString)
      const base = field(body, "base_model", asString)
      let path: string | undefined
      if (sessionId !== undefined) {
        if (!samplingSessions.has(sessionId)) throw new HttpError(404, `unknown sampling_session_id ${JSON.stringify(sessionId)}`, "NotFoundError")
        path = samplingSessions.get(sessionId)
      } else if (modelPath !== undefined) path = modelPath
      else if (base !== undefined) {
        if (base !== options.modelName) throw new HttpError(404, `base_model ${JSON.stringify(base)} is not served here`, "NotFoundError")
      } else return bad("asample needs sampling_session_id, model_path or base_model")
      const prompt = modelInput(body["prompt"], "prompt")
      if (prompt.length === 0) return bad("prompt has no tokens")
      const n = field(body, "num_samples", asInt) ?? 1
      if (n < 1) return bad(`num_samples must be >= 1, got ${n}`)
      const params = samplingParams(engine, body["sampling_params"], prompt.length)
      const wantPromptLogprobs = field(body, "prompt_logprobs", asBool) ?? false
      const target = await engineFor(path)
      return futureReply(submit(async () => {
        const [sequences] = await runEngine(target.sample([{ prompt, n, params }]))
        return {
          type: "sample",
          sequences: (sequences ?? []).map((s) => ({ stop_reason: s.stopReason, tokens: [...s.tokens], logprobs: [...s.logprobs] })),
          prompt_logprobs: wantPromptLogprobs ? await promptLogprobs(target, prompt) : null,
          topk_prompt_logprobs: null
        }
      }))
    },

    "POST /retrieve_future": async (body) => {
      const id = field(body, "request_id", (v, n) => (typeof v === "number" ? String(v) : asString(v, n)))
      if (id === undefined) return bad("request_id is required")
      const future = futures.get(id)
      if (future === undefined) throw new HttpError(404, `unknown request_id ${JSON.stringify(id)}`, "NotFoundError")
      if (future.state === "pending" && !closed) {
        let timer: ReturnType<typeof setTimeout> | undefined
        await Promise.race([future.settled, new Promise<void>((r) => (timer = setTimeout(r, options.longPollMs)))])
        clearTimeout(timer)
      }
      if (future.state === "done") return { status: 200, json: future.result }
      if (future.state === "failed") return { status: 400, json: { detail: future.error ?? "request failed" } }
      return { status: 408, json: { detail: "Timeout waiting for result" } }
    }
  }

  const handle: Handler = async (request) => {
    const segments = request.path.split("/")
    const key = `${request.method} ${segments[1] === "samplers" ? "/samplers" : request.path}`
    const route = routes[key]
    if (route === undefined) return undefined
    try {
      const body = request.method === "GET" ? {} : asRecord(request.body ?? {}, "request body")
      return await route(body, request)
    } catch (e) {
      if (e instanceof HttpError) return { status: e.status, json: { detail: e.message } }
      throw e
    }
  }

  return { handle, engineFor, close: () => void (closed = true) }
}
