/**
 * The Tinker PolicyEngine against a fake Tinker written from protocols.md §1 and, where they were
 * read, the upstream sources (the SDK, SkyRL's route layer and JAX backend; cited beside each
 * shape), not from any polaris server: JSON bodies, futures and `retrieve_future` outcomes,
 * per-model seq_id order (strictly, in one mode) and idempotent retries, idempotency keys,
 * submission retries, SkyRL's un-sequenced saves and loads, its prompt-logprob shape and metrics,
 * the SkyRL flavour's loss compensation, the start-up model check.
 */
import { createServer, type IncomingHttpHeaders, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Redacted } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import * as TinkerPolicy from "../src/engines/TinkerPolicy.ts"
import { datumOf, PolicyEngine, type PolicyEngineShape, type PolicyError } from "../src/engines/PolicyEngine.ts"
import { engineLoss } from "../src/grpo/TokenLoss.ts"
import { defaultAdamParams } from "../src/model/AdamW.ts"
import { defaultSamplingParams } from "../src/model/Sampling.ts"
import { serializeTokenizerJson, trainBpe } from "../src/model/tokenizer/BpeTrainer.ts"
import { tokenizerConfigFor } from "../src/model/tokenizer/TokenizerFiles.ts"

// ---------------------------------------------------------------------------------------------
// The fake service
//
// Upstream read for it (cited beside each shape below):
//   SDK    thinking-machines-lab/tinker@d595dc2ba62a1494aa0f452fe1d0dbb7b321b870 (v0.25.0),
//          tinker@6b02536 (v0.24.1)
//   SKYRL  NovaSky-AI/SkyRL@a9564572eb8e91076be43c1bd5e4615e3de17265

type Json = Record<string, any>
type SubmitAct = "429" | "500" | "401" | "409" | "drop-before" | "drop-after"
type PollAct = "try_again" | "408" | "410" | "429" | "500"

const MODEL_PATHS = new Set(["forward", "forward_backward", "optim_step", "save_weights", "save_weights_for_sampler", "load_weights"])
// SKYRL skyrl/tinker/api.py: save_weights, save_weights_for_sampler and load_weights call
// create_future without seq_id, so they are never de-duplicated by (model_id, seq_id).
const SKYRL_UNSEQUENCED = new Set(["save_weights", "save_weights_for_sampler", "load_weights"])
const BASE = "Qwen/Qwen3-8B"
const KEY = "tml-secret-key-123"
/** Polls of a future held behind a missing seq_id before the strict fake gives up on it. */
const STALL_POLLS = 25

/** Learner logprob the fake reports for a target token. */
const fakeLp = (token: number) => -0.1 * ((token % 5) + 1)
/** The fake's log p(x_i | x_<i) of prompt token x_i. */
const promptLp = (token: number) => -0.01 * token

/** a ≥ b for dotted versions. */
const atLeast = (a: string, b: string) => {
  const [x, y] = [a.split(".").map(Number), b.split(".").map(Number)]
  for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) > (y[i] ?? 0)
  return true
}

interface FakeOptions {
  /** Run a model's requests strictly in seq_id order (a later one waits), as protocols.md §1.3 says hosted Tinker does. */
  readonly strictOrder?: boolean
  /** `supported_models` of get_server_capabilities; null: the route is missing (404). */
  readonly models?: ReadonlyArray<Json> | null
  /** prompt_logprobs for a sampled prompt (default: the flavour's own shape). */
  readonly promptLogprobs?: (prompt: ReadonlyArray<number>) => unknown
}

interface Fake {
  readonly url: string
  readonly requests: Array<{ method: string; path: string; headers: IncomingHttpHeaders; text: string; body: Json }>
  readonly violations: Array<string>
  readonly submitScript: Map<string, Array<SubmitAct>>
  readonly pollScript: Array<PollAct>
  readonly never: Set<string>
  /** Requests the fake acted on (not answered from the idempotency cache or a scripted fault), by path. */
  readonly executed: Map<string, number>
  /** SkyRL's loss of each optim_step: the mean over accumulated datums of Σ w·ℓ / max(Σw, 1e-9). */
  readonly skyrlStepLosses: Array<number>
  /** The sdk_version each session declared. */
  readonly sdkVersions: Array<string>
  optimApplied: number
  close(): Promise<void>
}

const fakes: Array<Fake> = []
afterEach(async () => {
  await Promise.all(fakes.splice(0).map((f) => f.close()))
})

interface Future {
  path: string
  /** undefined while the request waits for an earlier seq_id (strict order). */
  result: Json | undefined
  expired: boolean
  polls: number
  checkpoint?: { model: string; id: string; type: "training" | "sampler" }
}

interface Model {
  last: number
  seen: Map<number, { text: string; id: string }>
  /** Requests waiting for an earlier seq_id: seq_id -> future id and how to run them. */
  held: Map<number, { id: string; path: string; body: Json }>
  requests: number
}

const startFake = async (flavour: "hosted" | "skyrl", fakeOptions: FakeOptions = {}): Promise<Fake> => {
  let nextId = 100
  let sessions = 0
  const futures = new Map<string, Future>()
  const models = new Map<string, Model>()
  const modelSeqs = new Map<string, number>()
  // SKYRL skyrl/tinker/db_models.py CheckpointDB: one row per (model_id, checkpoint_id, type), made
  // PENDING by the save route (create_checkpoint: 409 when it exists), COMPLETED when written.
  const checkpoints = new Map<string, { model: string; id: string; type: "training" | "sampler"; completed: boolean; listsSeen: number }>()
  const byKey = new Map<string, { status: number; json: Json }>()
  const sessionSdk = new Map<string, string>()
  let accumulated: Array<number> = []

  const future = (path: string, result: Json | undefined, extra: Partial<Future> = {}) => {
    const id = String(nextId++)
    futures.set(id, { path, result, expired: false, polls: 0, ...extra })
    return id
  }
  const count = (path: string) => fake.executed.set(path, (fake.executed.get(path) ?? 0) + 1)
  const ckKey = (model: string, id: string, type: string) => `${model}\u0000${id}\u0000${type}`

  const perTokenLoss = (input: Json, lp: Array<number>, lossFn: string, config: Json | null) => {
    const n = lp.length
    const w: Array<number> = input.weights?.data ?? Array(n).fill(1)
    const out: Array<number> = []
    for (let t = 0; t < n; t++) {
      if (lossFn === "cross_entropy") {
        out.push(-w[t]! * lp[t]!)
        continue
      }
      const r = Math.exp(lp[t]! - input.logprobs.data[t])
      const a = input.advantages.data[t] as number
      const lo = config?.clip_low_threshold ?? 0.8
      const hi = config?.clip_high_threshold ?? 1.2
      const l = lossFn === "ppo" ? -Math.min(r * a, Math.min(Math.max(r, lo), hi) * a) : -r * a
      // SkyRL multiplies IS/PPO by the weights; hosted IS/PPO takes none.
      out.push(flavour === "skyrl" ? l * w[t]! : l)
    }
    return { out, w }
  }

  const run = (path: string, body: Json): { status: number; json: Json } => {
    switch (path) {
      case "forward_backward": {
        const { data, loss_fn, loss_fn_config } = body.forward_backward_input
        let lossSum = 0
        const outputs = (data as Array<Json>).map((d) => {
          const lp = (d.loss_fn_inputs.target_tokens.data as Array<number>).map(fakeLp)
          const { out, w } = perTokenLoss(d.loss_fn_inputs, lp, loss_fn, loss_fn_config)
          const sum = out.reduce((a, x) => a + x, 0)
          lossSum += sum
          // SKYRL skyrl/backends/jax.py: per_seq_loss = Σ per_token_losses / max(Σ loss_mask, 1e-9)
          accumulated.push(sum / Math.max(w.reduce((a, x) => a + x, 0), 1e-9))
          return { logprobs: { data: lp, dtype: "float32", shape: [lp.length] }, ...(flavour === "skyrl" ? { elementwise_loss: { data: out, dtype: "float32" } } : {}) }
        })
        return {
          status: 200,
          json: {
            loss_fn_output_type: flavour === "skyrl" ? "scalar" : "ppo",
            loss_fn_outputs: outputs,
            metrics: flavour === "skyrl" ? {} : { "loss:sum": lossSum }
          }
        }
      }
      case "forward": {
        // TINKER src/tinker/types/forward_request.py@d595dc2: {forward_input, model_id, seq_id};
        // SKYRL skyrl/tinker/api.py `forward`: the training model's forward pass, no gradient kept.
        const outputs = (body.forward_input.data as Array<Json>).map((d) => {
          const lp = (d.loss_fn_inputs.target_tokens.data as Array<number>).map(fakeLp)
          return { logprobs: { data: lp, dtype: "float32", shape: [lp.length] } }
        })
        return { status: 200, json: { loss_fn_output_type: "cross_entropy", loss_fn_outputs: outputs, metrics: {} } }
      }
      case "optim_step": {
        fake.optimApplied++
        fake.skyrlStepLosses.push(accumulated.reduce((a, x) => a + x, 0) / Math.max(accumulated.length, 1))
        accumulated = []
        // SKYRL skyrl/backends/jax.py OptimStepMetrics.to_output_metrics:
        //   {"skyrl.ai/grad_norm": float, "skyrl.ai/learning_rate": float}; hosted's name is unconfirmed.
        const metrics = flavour === "skyrl"
          ? { "skyrl.ai/grad_norm": 0.75, "skyrl.ai/learning_rate": body.adam_params.learning_rate }
          : { grad_norm: 2.5 }
        return { status: 200, json: { metrics, type: "optim_step" } }
      }
      case "save_weights":
        // SKYRL skyrl/tinker/engine.py process_save_weights: tinker://{model_id}/weights/{checkpoint_id}
        return { status: 200, json: { path: `tinker://${body.model_id}/weights/${body.path}`, type: "save_weights" } }
      case "save_weights_for_sampler":
        // SKYRL engine.py process_save_weights_for_sampler: tinker://{model_id}/{checkpoint_id} (no sampler_weights/)
        return {
          status: 200,
          json: { path: flavour === "skyrl" ? `tinker://${body.model_id}/${body.path}` : `tinker://${body.model_id}/sampler_weights/${body.path}`, sampling_session_id: null, type: "save_weights_for_sampler" }
        }
      case "load_weights":
        return { status: 200, json: { path: body.path, model_id: body.model_id, type: "load_weights" } }
      case "asample": {
        const addressing = ["base_model", "model_path", "sampling_session_id"].filter((k) => body[k] !== undefined)
        if (addressing.length !== 1) fake.violations.push(`asample addressing ${addressing.join(",")}`)
        const prompt: Array<number> = body.prompt.chunks.flatMap((c: Json) => c.tokens)
        const stop: number = body.sampling_params.stop?.[0] ?? 0
        const sequences = Array.from({ length: body.num_samples }, (_, j) => ({
          stop_reason: "stop",
          tokens: [5 + j, 6, stop],
          logprobs: [-0.5, -0.25, -0.125]
        }))
        // prompt_logprobs, for an n-token prompt:
        //   hosted (protocols.md §1.7; SKYRL skyrl/backends/utils.py convert_vllm_prompt_logprobs):
        //     n entries, None at 0
        //   SkyRL JAX (SKYRL skyrl/tx/utils/generator.py: logits_to_logprobs(all_logits[:, :-1, :],
        //     input_ids[:, 1:]), then prompt_logprobs_host[i, : prompt_lengths_host[i] - 1]): n − 1, no None
        const shaped = fakeOptions.promptLogprobs !== undefined
          ? fakeOptions.promptLogprobs(prompt)
          : flavour === "skyrl" ? prompt.slice(1).map(promptLp) : [null, ...prompt.slice(1).map(promptLp)]
        return {
          status: 200,
          json: { type: "sample", sequences, prompt_logprobs: body.prompt_logprobs === true ? shaped : null, topk_prompt_logprobs: null }
        }
      }
      default:
        return { status: 404, json: { detail: `no ${path}` } }
    }
  }

  /** Runs held requests of `m` whose turn has come (strict order). */
  const drain = (m: Model) => {
    for (let h = m.held.get(m.last + 1); h !== undefined; h = m.held.get(m.last + 1)) {
      m.held.delete(m.last + 1)
      m.last++
      m.requests++
      const r = run(h.path, h.body)
      futures.get(h.id)!.result = r.status === 200 ? r.json : { __status: r.status, json: r.json }
    }
  }

  const server: Server = createServer((req, res) => {
    let text = ""
    req.on("data", (c: Buffer) => (text += c.toString("utf8")))
    req.on("end", () => {
      const path = (req.url ?? "").replace(/^\/api\/v1\//, "")
      const body: Json = text === "" ? {} : JSON.parse(text)
      fake.requests.push({ method: req.method ?? "", path, headers: req.headers, text, body })
      const send = (status: number, json: Json, headers: Record<string, string> = {}) => {
        res.writeHead(status, { "content-type": "application/json", ...headers })
        res.end(JSON.stringify(json))
      }
      const act = fake.submitScript.get(path)?.shift()
      if (act === "429") return send(429, { detail: "rate limited" }, { "retry-after": "0" })
      if (act === "500") return send(500, { detail: "transient" })
      if (act === "401") return send(401, { detail: "bad key" })
      if (act === "409") return send(409, { detail: `Checkpoint '${body.path}' already exists for model '${body.model_id}'` })
      if (act === "drop-before") return req.socket.destroy()

      // Hosted: a POST retried under the same X-Idempotency-Key gets the first answer (the SDK
      // reuses the key across its retries: SDK src/tinker/_base_client.py, "ensure the
      // idempotency key is reused between requests"). SkyRL reads no such header.
      const key = req.headers["x-idempotency-key"]
      const cached = typeof key === "string" && flavour === "hosted" ? byKey.get(key) : undefined
      if (cached !== undefined) return act === "drop-after" ? req.socket.destroy() : send(cached.status, cached.json)
      const answer = (status: number, json: Json) => {
        if (typeof key === "string" && flavour === "hosted" && path !== "retrieve_future") byKey.set(key, { status, json })
        return act === "drop-after" ? req.socket.destroy() : send(status, json)
      }

      // SDK src/tinker/types/get_server_capabilities_response.py:
      //   {"supported_models": [{"model_name": str?, "max_context_length": int?}]}
      // SKYRL api.py get_server_capabilities: [{"model_name": <--base-model>}]
      if (path === "get_server_capabilities") {
        if (req.method !== "GET") fake.violations.push(`${req.method} get_server_capabilities`)
        if (fakeOptions.models === null) return send(404, { detail: "Not Found" })
        return send(200, { supported_models: fakeOptions.models ?? [flavour === "skyrl" ? { model_name: BASE } : { model_name: BASE, max_context_length: 4096 }] })
      }
      // SDK src/tinker/resources/weights.py list: GET /api/v1/training_runs/{model_id}/checkpoints
      // -> {"checkpoints": [{checkpoint_id, checkpoint_type, time, tinker_path}]} (types/checkpoint.py);
      // SKYRL api.py list_checkpoints: COMPLETED rows only.
      const listed = /^training_runs\/([^/]+)\/checkpoints$/.exec(path)
      if (listed !== null) {
        if (req.method !== "GET") fake.violations.push(`${req.method} ${path}`)
        const model = decodeURIComponent(listed[1]!)
        const out: Array<Json> = []
        for (const c of checkpoints.values()) {
          if (c.model !== model) continue
          // A pending checkpoint is written by the engine meanwhile: missing from one list, then there.
          if (!c.completed) {
            if (c.listsSeen++ === 0) continue
            c.completed = true
          }
          const kind = c.type === "training" ? "weights" : "sampler_weights"
          out.push({ checkpoint_id: c.id, checkpoint_type: c.type, time: "2026-08-21T00:00:00Z", tinker_path: `tinker://${model}/${kind}/${c.id}` })
        }
        return send(200, { checkpoints: out })
      }
      // SDK src/tinker/types/create_session_request.py; the dialect the version implies
      // (SDK resources/training.py: 0.25.0 always sends forward_backward as protobuf).
      if (path === "create_session") {
        count(path)
        const id = `session-${++sessions}`
        sessionSdk.set(id, String(body.sdk_version))
        fake.sdkVersions.push(String(body.sdk_version))
        return answer(200, { type: "create_session", session_id: id, info_message: null, warning_message: null, error_message: null })
      }
      if (path === "session_heartbeat") return answer(200, { type: "session_heartbeat" })
      if (path === "create_model") {
        count(path)
        const n = body.model_seq_id as number
        if (n !== (modelSeqs.get(body.session_id) ?? -1) + 1) fake.violations.push(`model_seq_id ${n} after ${modelSeqs.get(body.session_id)}`)
        modelSeqs.set(body.session_id, n)
        const modelId = `${body.session_id}:train:${n}`
        models.set(modelId, { last: 0, seen: new Map(), held: new Map(), requests: 0 })
        return answer(200, { request_id: future(path, { model_id: modelId, type: "create_model" }), model_id: modelId })
      }
      if (path === "retrieve_future") {
        const f = futures.get(String(body.request_id))
        if (f === undefined) return send(404, { detail: "unknown request" })
        if (body.allow_metadata_only !== false) fake.violations.push("allow_metadata_only")
        if (String(req.headers.accept ?? "").includes("protobuf")) fake.violations.push("Accept: protobuf")
        const poll = fake.pollScript.shift()
        if (poll === "try_again") return send(200, { type: "try_again", request_id: body.request_id, queue_state: "active" })
        if (poll === "408") return send(408, { queue_state: "active" })
        if (poll === "410") {
          f.expired = true
          return send(410, { detail: "promise expired" })
        }
        if (poll === "429") return send(429, { detail: "slow down" })
        if (poll === "500") return send(500, { detail: "oops" })
        if (f.expired) fake.violations.push(`poll of expired ${body.request_id}`)
        if (fake.never.has(f.path)) return void setTimeout(() => send(408, { detail: "Timeout waiting for result" }), 20)
        if (f.result === undefined) {
          // Waiting for an earlier seq_id that never comes: give up after a bounded number of polls.
          if (++f.polls > STALL_POLLS) return send(200, { error: `request ${body.request_id} still waits for an earlier seq_id`, category: "server" })
          return send(200, { type: "try_again", request_id: body.request_id, queue_state: "active" })
        }
        if (f.checkpoint !== undefined) checkpoints.get(ckKey(f.checkpoint.model, f.checkpoint.id, f.checkpoint.type))!.completed = true
        if (f.result.__status !== undefined) return send(f.result.__status, f.result.json)
        return send(200, f.result)
      }
      if (MODEL_PATHS.has(path)) {
        const m = models.get(body.model_id)
        if (m === undefined) return send(404, { detail: "unknown model" })
        if (path === "forward_backward") {
          const sdk = sessionSdk.get(String(body.model_id).split(":")[0]!) ?? "0"
          if (atLeast(sdk, "0.25.0") && String(req.headers["content-type"]).startsWith("application/json")) {
            fake.violations.push(`JSON forward_backward in a session that declared sdk_version ${sdk} (0.25.0 always sends protobuf)`)
          }
        }
        if (flavour === "skyrl" && SKYRL_UNSEQUENCED.has(path)) {
          count(path)
          // SKYRL api.py load_weights: "only permitted as a model's first request", else 400.
          if (path === "load_weights" && m.requests > 0) return answer(400, { detail: `LoadWeights is not permitted with seq_id ${body.seq_id}` })
          const type = path === "save_weights" ? "training" : "sampler"
          let checkpoint: Future["checkpoint"]
          if (path !== "load_weights") {
            // SKYRL api.py create_checkpoint: a PENDING row; IntegrityError -> 409.
            const k = ckKey(body.model_id, body.path, type)
            if (checkpoints.has(k)) return answer(409, { detail: `Checkpoint '${body.path}' already exists for model '${body.model_id}'` })
            checkpoints.set(k, { model: body.model_id, id: body.path, type, completed: false, listsSeen: 0 })
            checkpoint = { model: body.model_id, id: body.path, type }
          }
          m.requests++
          const r = run(path, body)
          const id = future(path, r.json, checkpoint !== undefined ? { checkpoint } : {})
          return answer(200, { request_id: id, model_id: body.model_id })
        }
        const seq = body.seq_id as number
        const prev = m.seen.get(seq)
        if (prev !== undefined) {
          if (prev.text !== text) {
            fake.violations.push(`seq_id ${seq} of ${body.model_id} reused with a different body`)
            return send(409, { detail: "Training request sequence number was reused" })
          }
          const f = futures.get(prev.id)!
          if (!f.expired) return answer(200, { request_id: prev.id, model_id: body.model_id })
          const id = future(f.path, f.result)
          m.seen.set(seq, { text, id })
          return answer(200, { request_id: id, model_id: body.model_id })
        }
        count(path)
        if (fakeOptions.strictOrder === true && seq !== m.last + 1) {
          const id = future(path, undefined)
          m.seen.set(seq, { text, id })
          m.held.set(seq, { id, path, body })
          return answer(200, { request_id: id, model_id: body.model_id })
        }
        // SkyRL runs requests by request_id and ignores gaps (its saves and loads take none); hosted
        // runs each model's requests in seq_id order (protocols.md §1.3).
        if (flavour === "hosted" && seq !== m.last + 1) fake.violations.push(`seq_id ${seq} of ${body.model_id} after ${m.last}`)
        if (path === "load_weights" && m.requests > 0) return send(400, { detail: "load_weights must be the first request" })
        m.last = seq
        m.requests++
        const r = run(path, body)
        if (path === "save_weights") {
          const k = ckKey(body.model_id, body.path, "training")
          if (checkpoints.has(k)) {
            m.seen.set(seq, { text, id: "" })
            return answer(409, { detail: "checkpoint already exists" })
          }
          checkpoints.set(k, { model: body.model_id, id: body.path, type: "training", completed: true, listsSeen: 0 })
        }
        const id = future(path, r.status === 200 ? r.json : { __status: r.status, json: r.json })
        m.seen.set(seq, { text, id })
        drain(m)
        return answer(200, { request_id: id, model_id: body.model_id })
      }
      if (path === "asample") {
        count(path)
        const r = run(path, body)
        return answer(200, { request_id: future(path, r.json) })
      }
      return send(404, { detail: `no ${path}` })
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const port = (server.address() as AddressInfo).port
  const fake: Fake = {
    url: `http://127.0.0.1:${port}`,
    requests: [],
    violations: [],
    submitScript: new Map(),
    pollScript: [],
    never: new Set(),
    executed: new Map(),
    skyrlStepLosses: [],
    sdkVersions: [],
    optimApplied: 0,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
  fakes.push(fake)
  return fake
}

// ---------------------------------------------------------------------------------------------
// Helpers

let tokenizerDir: string | undefined
const tokenizer = () => {
  if (tokenizerDir !== undefined) return tokenizerDir
  const json = trainBpe(["Once upon a time a fox wrote a story about a lighthouse and the sea."], { vocabSize: 300 })
  const dir = mkdtempSync(join(tmpdir(), "polaris-tinker-tok-"))
  writeFileSync(join(dir, "tokenizer.json"), serializeTokenizerJson(json))
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(tokenizerConfigFor(json)))
  return (tokenizerDir = dir)
}

const options = (fake: Fake, extra: Partial<TinkerPolicy.TinkerOptions> = {}): TinkerPolicy.TinkerOptions => ({
  baseUrl: fake.url,
  apiKey: Redacted.make(KEY),
  baseModel: BASE,
  tokenizer: tokenizer(),
  timeout: "2 seconds",
  futureTimeout: "5 seconds",
  backoff: { base: "2 millis", cap: "10 millis" },
  ...extra
})

const withEngine = <A>(opts: TinkerPolicy.TinkerOptions, f: (e: PolicyEngineShape) => Effect.Effect<A, PolicyError>) =>
  Effect.provide(Effect.gen(function*() {
    return yield* f(yield* PolicyEngine)
  }), TinkerPolicy.layer(opts))

/** The error of an effect that must fail (a success is a defect). */
const expectFail = <A, E>(e: Effect.Effect<A, E>): Effect.Effect<E> =>
  Effect.flip(e).pipe(Effect.catch(() => Effect.die(new Error("expected a failure"))))

const ok = <A>(opts: TinkerPolicy.TinkerOptions, f: (e: PolicyEngineShape) => Effect.Effect<A, PolicyError>) =>
  Effect.runPromise(withEngine(opts, f))

const failure = (opts: TinkerPolicy.TinkerOptions, f: (e: PolicyEngineShape) => Effect.Effect<unknown, PolicyError>) =>
  Effect.runPromise(Effect.flip(withEngine(opts, f)))

/** Keys and value types, recursively (arrays by their first element). */
const shape = (u: unknown): unknown =>
  Array.isArray(u)
    ? u.length === 0 ? [] : [shape(u[0])]
    : u === null
    ? "null"
    : typeof u === "object"
    ? Object.fromEntries(Object.entries(u as Json).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, shape(v)]))
    : typeof u
const fixture = (name: string): Json => JSON.parse(readFileSync(join(import.meta.dirname, "fixtures", "tinker", `${name}.json`), "utf8"))
const bodies = (fake: Fake, path: string) => fake.requests.filter((r) => r.path === path).map((r) => r.body)

const params = { ...defaultSamplingParams, maxTokens: 8, seed: "run-1" }

// ---------------------------------------------------------------------------------------------

describe("TinkerPolicy", () => {
  it("speaks the documented protocol: session, model, sampling, training, save/load, publish", async () => {
    const fake = await startFake("hosted")
    const out = await ok(options(fake, { heartbeat: "30 millis" }), (e) =>
      Effect.gen(function*() {
        expect(e.fingerprint).toBe(`tinker:${BASE}@hosted`)
        expect(e.maxContext).toBe(4096)
        expect(e.endToken).toBe(e.tokenizer.tokenId("<|end|>"))
        const prompt = e.promptIds("a fox")
        const [group] = yield* e.sample([{ prompt, n: 2, params }])
        expect(group!.map((s) => s.tokens)).toEqual([[5, 6, e.endToken], [6, 6, e.endToken]])
        expect(group![0]!.stopReason).toBe("stop")
        const lps = yield* e.logprobs([{ prompt, completion: [7, 8] }])
        expect(Array.from(lps[0]!)).toEqual([Math.fround(-0.07), Math.fround(-0.08)])

        const s = group![0]!
        const advantages = [0.5, -0.5, 1]
        const datum = datumOf(prompt, s.tokens, { logprobs: s.logprobs, advantages })
        const is = yield* e.forwardBackward([datum], { name: "importance_sampling" })
        const lp = is.logprobs[0]!
        expect(lp).toHaveLength(datum.modelInput.length)
        expect(is.metrics["tokens:sum"]).toBe(3)
        expect(is.metrics["clipped:sum"]).toBe(0)
        // hosted reports the SUM loss; ours agrees with it
        const mine = engineLoss({ logprobs: lp, oldLogprobs: datum.logprobs!, advantages: datum.advantages!, clipLow: 0, clipHigh: Infinity })
        expect(is.metrics["loss:sum"]).toBeCloseTo(mine.loss, 5)

        const ppo = yield* e.forwardBackward([datum], { name: "ppo", clipLow: 0.8, clipHigh: 1.2 })
        const expected = engineLoss({ logprobs: ppo.logprobs[0]!, oldLogprobs: datum.logprobs!, advantages: datum.advantages!, clipLow: 0.8, clipHigh: 1.2 })
        expect(ppo.metrics["clipped:sum"]).toBe(expected.clipped)
        expect(expected.clipped).toBeGreaterThan(0)

        const step = yield* e.optimStep({ ...defaultAdamParams, gradClipNorm: 1 })
        expect(step).toEqual({ gradNorm: 2.5, clipScale: 1 / (2.5 + 1e-6), step: 1 })
        const saved = yield* e.save("step_1")
        expect(saved.path).toBe("tinker://session-1:train:0/weights/step_1")
        expect((yield* e.save("step_1")).path).toBe(saved.path) // 409: the name exists
        yield* e.publish()
        yield* e.sample([{ prompt, n: 1, params }])
        yield* e.load(saved) // the training client holds exactly these weights (nothing trained since the save): no request
        const ce = yield* e.forwardBackward([datumOf(prompt, s.tokens, { weights: [1, 1, 0] })], { name: "cross_entropy" })
        expect(ce.metrics["tokens:sum"]).toBe(2)
        yield* e.load(saved) // trained since: a fresh training client loads it
        yield* e.forwardBackward([datum], { name: "cross_entropy" }).pipe(expectFail) // no weights: BadInput
        yield* e.forwardBackward([datumOf(prompt, s.tokens, { weights: [1, 1, 0] })], { name: "cross_entropy" })
        yield* e.sample([{ prompt, n: 1, params }])
        return yield* Effect.sleep("60 millis")
      }))
    expect(out).toBeUndefined()
    expect(fake.violations).toEqual([])

    // Every request carries the key header; nothing else does.
    for (const r of fake.requests) expect(r.headers["x-api-key"]).toBe(KEY)
    expect(fake.requests.some((r) => r.path === "session_heartbeat")).toBe(true)

    // seq_ids per model: 1..7 on the first model, 1..3 on the loaded one.
    const seqs = fake.requests.filter((r) => r.body.seq_id !== undefined).map((r) => `${r.body.model_id}#${r.body.seq_id}`)
    expect(seqs).toEqual([
      "session-1:train:0#1", "session-1:train:0#2", "session-1:train:0#3", "session-1:train:0#4", "session-1:train:0#5", "session-1:train:0#6",
      "session-1:train:0#7", "session-1:train:1#1", "session-1:train:1#2", "session-1:train:1#3"
    ])

    // Bodies match the documented shapes.
    const [session] = bodies(fake, "create_session")
    expect(session).toMatchObject({ sdk_version: TinkerPolicy.SDK_VERSION, type: "create_session", user_metadata: {} })
    expect(shape(bodies(fake, "create_model")[0])).toEqual(shape(fixture("create_model")))
    expect(shape(bodies(fake, "forward_backward")[0])).toEqual(shape(fixture("forward_backward")))
    expect(bodies(fake, "forward_backward")[1]!.forward_backward_input.loss_fn_config).toEqual({ clip_low_threshold: 0.8, clip_high_threshold: 1.2 })
    expect(shape(bodies(fake, "optim_step")[0])).toEqual(shape(fixture("optim_step")))
    expect(shape(bodies(fake, "save_weights")[0])).toEqual(shape(fixture("save_weights")))
    expect(shape(bodies(fake, "load_weights")[0])).toEqual(shape(fixture("load_weights")))
    expect(shape(bodies(fake, "retrieve_future")[0])).toEqual(shape(fixture("retrieve_future")))
    const samples = bodies(fake, "asample")
    expect(samples[0]!.base_model).toBe(BASE) // before any publish
    expect(samples[0]!.sampling_params.seed).toBe(TinkerPolicy.tinkerSeed("run-1"))
    expect(samples[0]!.sampling_params.stop).toHaveLength(1)
    expect(samples[1]).toMatchObject({ num_samples: 1, prompt_logprobs: true, sampling_params: { max_tokens: 1 } })
    expect(shape(samples[2])).toEqual(shape(fixture("asample")))
    expect(samples[2]!.model_path).toBe("tinker://session-1:train:0/sampler_weights/sampler-1")
    expect(samples[3]!.model_path).toBe("tinker://session-1:train:1/sampler_weights/sampler-2") // load publishes
    expect(bodies(fake, "load_weights")[0]).toEqual({ model_id: "session-1:train:1", seq_id: 1, path: "tinker://session-1:train:0/weights/step_1", optimizer: true, type: "load_weights" })
    const fb = bodies(fake, "forward_backward")[0]!.forward_backward_input.data[0]
    expect(fb.loss_fn_inputs.weights).toBeUndefined() // hosted IS takes no weights
  })

  it("samples the weights a call names (off-policy): sampler weights or the base model by path, never by touching the training client", async () => {
    const fake = await startFake("hosted")
    await ok(options(fake), (e) =>
      Effect.gen(function*() {
        const prompt = e.promptIds("a fox")
        const datum = datumOf(prompt, [5, 6], { logprobs: [-1, -1], advantages: [1, 1] })
        yield* e.forwardBackward([datum], { name: "importance_sampling" })
        yield* e.optimStep(defaultAdamParams)
        const saved = yield* e.save("step_1")
        const published = yield* e.publish()
        // The trainer moves on (step 2 trains) while step 1's policy and the base model are sampled.
        yield* e.forwardBackward([datum], { name: "importance_sampling" })
        yield* e.sample([{ prompt, n: 1, params }], { checkpoint: saved.path, sampler: published!.path })
        yield* e.logprobs([{ prompt, completion: [7] }], { checkpoint: BASE })
        // A checkpoint named without its sampler weights: those this engine published for it.
        yield* e.sample([{ prompt, n: 1, params }], { checkpoint: saved.path })
        yield* e.optimStep(defaultAdamParams)
      }))
    const samples = bodies(fake, "asample")
    expect(samples.map((b) => b.model_path ?? `base:${b.base_model}`)).toEqual([
      "tinker://session-1:train:0/sampler_weights/sampler-1",
      `base:${BASE}`,
      "tinker://session-1:train:0/sampler_weights/sampler-1"
    ])
    // One training client throughout, its seq_ids unbroken: sampling never loaded or created a model.
    expect(fake.requests.filter((r) => r.path === "create_model")).toHaveLength(1)
    expect(fake.requests.filter((r) => r.path === "load_weights")).toEqual([])
    expect(fake.requests.filter((r) => r.body.seq_id !== undefined).map((r) => r.body.seq_id)).toEqual([1, 2, 3, 4, 5, 6])
    expect(fake.violations).toEqual([])
  })

  it("polls through try_again, 408, 410 (resubmitting), 429 and 500, and retries submissions idempotently", async () => {
    const fake = await startFake("hosted")
    await ok(options(fake), (e) =>
      Effect.gen(function*() {
        const prompt = e.promptIds("the sea")
        const datum = datumOf(prompt, [5, 6], { logprobs: [-1, -1], advantages: [1, 1] })
        fake.pollScript.push("try_again", "408", "410", "429", "500")
        fake.submitScript.set("forward_backward", ["429", "500"])
        const r = yield* e.forwardBackward([datum], { name: "importance_sampling" })
        expect(r.logprobs).toHaveLength(1)
        // optim_step: processed, then the connection drops; the retry must reuse seq_id and body
        fake.submitScript.set("optim_step", ["drop-after"])
        yield* e.optimStep(defaultAdamParams)
        fake.submitScript.set("asample", ["drop-before", "500"])
        yield* e.sample([{ prompt, n: 1, params }])
        yield* e.save("after")
      }))
    expect(fake.violations).toEqual([])
    expect(fake.optimApplied).toBe(1)
    const fbs = fake.requests.filter((r) => r.path === "forward_backward")
    expect(fbs.length).toBe(4) // 429, 500, accepted, and the resubmission after 410
    expect(new Set(fbs.map((r) => r.text)).size).toBe(1)
    const optims = fake.requests.filter((r) => r.path === "optim_step")
    expect(optims.length).toBe(2)
    expect(optims[0]!.text).toBe(optims[1]!.text)
    expect(fake.requests.filter((r) => r.body.seq_id !== undefined).map((r) => r.body.seq_id)).toEqual([1, 1, 1, 1, 2, 2, 3])
  })

  it("fails a future that never completes after futureTimeout, naming the call, and keeps the key out of errors", async () => {
    const fake = await startFake("hosted")
    fake.never.add("optim_step")
    const err = await failure(options(fake, { futureTimeout: "300 millis" }), (e) => e.optimStep(defaultAdamParams))
    // It gave up: a bounded number of polls, not one per second until the test's own timeout.
    const polls = fake.requests.filter((r) => r.path === "retrieve_future").length
    expect(polls).toBeGreaterThan(0)
    expect(polls).toBeLessThan(50)
    expect(err.reason).toBe("Unavailable")
    expect(err.message).toMatch(/^tinker optim_step: no result after/)

    const fake2 = await startFake("hosted")
    fake2.submitScript.set("asample", ["401"])
    const denied = await failure(options(fake2), (e) => e.sample([{ prompt: [1, 2], n: 1, params }]))
    expect(denied.reason).toBe("Backend")
    expect(denied.message).toContain("tinker sample")
    expect(`${denied.message} ${JSON.stringify(denied)} ${String(denied.cause)}`).not.toContain(KEY)

    const penalty = await failure(options(fake2), (e) => e.sample([{ prompt: [1, 2], n: 1, params: { ...params, repetitionPenalty: 1.1 } }]))
    expect(penalty.reason).toBe("BadInput")
    expect(penalty.message).toContain("repetitionPenalty")
  })

  it("stops submitting model requests after a submission fails for good (a possible seq_id hole)", async () => {
    const fake = await startFake("hosted")
    fake.submitScript.set("optim_step", ["401"])
    const err = await failure(options(fake), (e) =>
      Effect.gen(function*() {
        yield* e.optimStep(defaultAdamParams).pipe(expectFail)
        return yield* e.save("x")
      }))
    expect(err.message).toMatch(/may lack seq_id 1/)
    expect(fake.requests.filter((r) => r.path === "save_weights")).toHaveLength(0)
  })

  it("skyrl: compensates the per-datum mean and the average over datums so the loss is our SUM", async () => {
    const fake = await startFake("skyrl")
    const result = await ok(options(fake, { flavour: "skyrl" }), (e) =>
      Effect.gen(function*() {
        expect(e.fingerprint).toBe(`tinker:${BASE}@skyrl`)
        const p1 = e.promptIds("a fox")
        const p2 = e.promptIds("the sea and a lighthouse")
        const d1 = datumOf(p1, [5, 6, 7], { logprobs: [-0.9, -0.05, -0.3], advantages: [0.7, 0.7, 0.7] })
        const d2 = datumOf(p2, [8, 9, 10, 11, 12], { logprobs: [-0.2, -0.2, -1.5, -0.1, -0.3], advantages: [-0.4, -0.4, -0.4, -0.4, -0.4] })
        const loss = { name: "ppo", clipLow: 0.8, clipHigh: 1.2 } as const
        const r = yield* e.forwardBackward([d1, d2], loss)
        const sum = [d1, d2].reduce((acc, d, i) =>
          acc + engineLoss({ logprobs: r.logprobs[i]!, oldLogprobs: d.logprobs!, advantages: d.advantages!, clipLow: 0.8, clipHigh: 1.2 }).loss, 0)
        yield* e.optimStep(defaultAdamParams)
        const bad = yield* e.forwardBackward([datumOf(p1, [5], { weights: [-1] })], { name: "cross_entropy" }).pipe(expectFail)
        return { r, sum, bad }
      }))
    expect(fake.violations).toEqual([])
    // the client's loss:sum is the SUM loss, and the server's mean-of-means equals it after compensation
    expect(result.r.metrics["loss:sum"]).toBeCloseTo(result.sum, 5)
    expect(fake.skyrlStepLosses[0]).toBeCloseTo(result.sum, 4)
    expect(result.bad.reason).toBe("BadInput")
    const sent = bodies(fake, "forward_backward")[0]!.forward_backward_input.data as Array<Json>
    // datum 1: 3 loss tokens, 2 datums -> advantages × 6; weights mark the completion tokens
    const w1 = sent[0]!.loss_fn_inputs.weights.data as Array<number>
    expect(w1.filter((x) => x === 1)).toHaveLength(3)
    expect((sent[0]!.loss_fn_inputs.advantages.data as Array<number>).filter((x) => x !== 0)).toEqual([0.7, 0.7, 0.7].map((a) => Math.fround(Math.fround(a) * 6)))
    expect((sent[1]!.loss_fn_inputs.advantages.data as Array<number>).filter((x) => x !== 0)).toEqual(Array(5).fill(Math.fround(Math.fround(-0.4) * 10)))
    expect(sent[0]!.loss_fn_inputs.logprobs.data.filter((x: number) => x !== 0)).toEqual([-0.9, -0.05, -0.3].map(Math.fround))
  })

  it("chunks forward_backward at 1024 datums and derives stable 31-bit seeds", () => {
    expect(TinkerPolicy.chunked(Array.from({ length: 2500 }, (_, i) => i)).map((c) => c.length)).toEqual([1024, 1024, 452])
    for (const s of [0, 17, "run-1", -3, 2 ** 40, 1.5]) {
      const v = TinkerPolicy.tinkerSeed(s)
      expect(Number.isInteger(v) && v >= 0 && v < 2 ** 31).toBe(true)
      expect(TinkerPolicy.tinkerSeed(s)).toBe(v)
    }
    expect(TinkerPolicy.tinkerSeed(17)).toBe(17)
    expect(TinkerPolicy.tinkerSeed("a")).not.toBe(TinkerPolicy.tinkerSeed("b"))
  })
})

describe("TinkerPolicy against the upstream servers' own behaviour", () => {
  const teacherForce = (opts: TinkerPolicy.TinkerOptions) =>
    ok(opts, (e) =>
      Effect.gen(function*() {
        const prompt = e.promptIds("a fox")
        const [lp] = yield* e.logprobs([{ prompt, completion: [7, 8, 9] }])
        return Array.from(lp!)
      }))

  it("1. reads prompt_logprobs in SkyRL JAX's shape (n − 1, no null) and the hosted one (n, leading null) to the same numbers", async () => {
    const hosted = await teacherForce(options(await startFake("hosted")))
    const skyrl = await teacherForce(options(await startFake("skyrl"), { flavour: "skyrl" }))
    // log p(x_i | x_<i) of the completion tokens 7, 8, 9: the fake's −0.01·token, as float32
    const expected = [-0.07, -0.08, -0.09].map(Math.fround)
    expect(hosted).toEqual(expected)
    expect(skyrl).toEqual(expected)
  })

  it("1. fails clearly on prompt_logprobs of any other length, or with no logprobs at all", async () => {
    const short = await startFake("skyrl", { promptLogprobs: (prompt) => prompt.slice(2).map(promptLp) })
    const err = await failure(options(short, { flavour: "skyrl" }), (e) => e.logprobs([{ prompt: [1, 2, 3], completion: [4, 5] }]))
    expect(err.reason).toBe("Backend")
    expect(err.message).toBe("tinker logprobs: prompt_logprobs has 3 entries for a 5-token prompt; expected 5 (hosted Tinker: a leading null) or 4 (SkyRL tx JAX: no null)")
    const none = await startFake("hosted", { promptLogprobs: () => null })
    const err2 = await failure(options(none), (e) => e.logprobs([{ prompt: [1, 2, 3], completion: [4, 5] }]))
    expect(err2.message).toMatch(/^tinker logprobs: no prompt_logprobs in the reply/)
  })

  it("2. numbers the fresh training client of load(base) from seq_id 1, so a server running seq_ids strictly in order does not stall", async () => {
    const fake = await startFake("hosted", { strictOrder: true })
    await ok(options(fake), (e) =>
      Effect.gen(function*() {
        const datum = datumOf(e.promptIds("the sea"), [5, 6], { logprobs: [-1, -1], advantages: [1, 1] })
        yield* e.forwardBackward([datum], { name: "importance_sampling" })
        yield* e.load({ path: BASE })
        yield* e.forwardBackward([datum], { name: "importance_sampling" })
        yield* e.optimStep(defaultAdamParams)
      }))
    // (Numbered from 2, the client's forward_backward would wait behind a seq_id 1 that never
    // comes; the strict fake answers it with an error after STALL_POLLS polls, so it fails, not hangs.)
    const seqs = fake.requests.filter((r) => r.body.seq_id !== undefined).map((r) => `${r.body.model_id}#${r.body.seq_id}`)
    // SDK training_client.py: _request_id_counter = 0 per TrainingClient, seq_id = request_id + 1
    expect(seqs).toEqual(["session-1:train:0#1", "session-1:train:1#1", "session-1:train:1#2"])
    expect(fake.violations).toEqual([])
  })

  it("12. takes the trainer's logprobs from forward on the training model, not from the sampler", async () => {
    for (const flavour of ["hosted", "skyrl"] as const) {
      const fake = await startFake(flavour)
      const prompt = [3, 4]
      const completion = [7, 8, 9]
      const lps = await ok(options(fake, { flavour }), (e) => e.trainerLogprobs([{ prompt, completion }, { prompt: [2], completion: [6] }]))
      // The completion's part of forward's per-target logprobs (targets = full[1:]).
      expect(lps.map((a) => Array.from(a))).toEqual([completion.map((t) => Math.fround(fakeLp(t))), [Math.fround(fakeLp(6))]])
      const [fwd] = bodies(fake, "forward")
      expect(fwd).toMatchObject({ forward_input: { loss_fn: "cross_entropy" }, seq_id: 1 })
      expect(fwd!.forward_input.data[0].model_input.chunks[0].tokens).toEqual([3, 4, 7, 8])
      expect(bodies(fake, "asample")).toEqual([]) // never the sampler
      expect(fake.violations).toEqual([])
    }
  })

  it("4. reads SkyRL's gradient norm from skyrl.ai/grad_norm", async () => {
    const fake = await startFake("skyrl")
    const step = await ok(options(fake, { flavour: "skyrl" }), (e) => e.optimStep({ ...defaultAdamParams, gradClipNorm: 1 }))
    // SKYRL jax.py: {"skyrl.ai/grad_norm": …, "skyrl.ai/learning_rate": …}; SkyRL clips nothing
    expect(step).toEqual({ gradNorm: 0.75, clipScale: 1, step: 1 })
    expect(TinkerPolicy.gradNormOf({ "skyrl.ai/learning_rate": 1e-4 })).toBeNaN()
    expect(TinkerPolicy.gradNormOf({ "grad_norm:mean": 3 })).toBe(3)
  })

  it("4. sends X-Idempotency-Key on every POST, the same on each retry of a call, so a retried create_model or asample is not done twice", async () => {
    const fake = await startFake("hosted")
    fake.submitScript.set("create_model", ["drop-after"])
    fake.submitScript.set("asample", ["drop-after"])
    await ok(options(fake), (e) => e.sample([{ prompt: e.promptIds("a fox"), n: 1, params }]))
    expect(fake.violations).toEqual([])
    expect(fake.executed.get("create_model")).toBe(1)
    expect(fake.executed.get("asample")).toBe(1)
    const keyOf = (path: string) => fake.requests.filter((r) => r.path === path).map((r) => r.headers["x-idempotency-key"])
    const [m1, m2] = keyOf("create_model")
    const [s1, s2] = keyOf("asample")
    expect(m1).toMatch(/^polaris-ts-retry-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    expect(m2).toBe(m1)
    expect(s2).toBe(s1)
    expect(s1).not.toBe(m1)
    // every POST has one, every GET none (SDK _base_client.py: "method.lower() != 'get'")
    for (const r of fake.requests) expect(r.headers["x-idempotency-key"] === undefined).toBe(r.method === "GET")
    const polls = keyOf("retrieve_future")
    expect(new Set(polls).size).toBe(polls.length)
  })

  it("4. declares sdk_version 0.24.1, the last SDK whose forward_backward goes out as JSON by default", async () => {
    const fake = await startFake("hosted")
    await ok(options(fake), (e) => e.forwardBackward([datumOf([1, 2], [5, 6], { logprobs: [-1, -1], advantages: [1, 1] })], { name: "importance_sampling" }))
    expect(fake.sdkVersions).toEqual(["0.24.1"])
    expect(fake.violations).toEqual([])
    const fb = fake.requests.find((r) => r.path === "forward_backward")!
    expect(fb.headers["content-type"]).toMatch(/^application\/json/)
  })

  it("5. a save retried after a dropped connection and answered 409 succeeds once the checkpoint list shows it", async () => {
    const fake = await startFake("skyrl")
    const out = await ok(options(fake, { flavour: "skyrl" }), (e) =>
      Effect.gen(function*() {
        fake.submitScript.set("save_weights", ["drop-after"])
        const saved = yield* e.save("step_9")
        fake.submitScript.set("save_weights_for_sampler", ["drop-after"])
        const published = yield* e.publish()
        // the model is not marked broken: training goes on
        const step = yield* e.optimStep(defaultAdamParams)
        yield* e.sample([{ prompt: [1, 2], n: 1, params }])
        return { saved, published, step }
      }))
    expect(out.saved.path).toBe("tinker://session-1:train:0/weights/step_9")
    expect(out.published!.path).toBe("tinker://session-1:train:0/sampler_weights/sampler-1")
    expect(out.step.step).toBe(1)
    expect(bodies(fake, "asample").at(-1)!.model_path).toBe(out.published!.path)
    expect(fake.executed.get("save_weights")).toBe(2) // the first and its refused retry
    // the first list missed the still-pending checkpoint, the second found it
    expect(fake.requests.filter((r) => r.method === "GET" && r.path.endsWith("/checkpoints")).length).toBe(4)
    expect(fake.violations).toEqual([])
  })

  it("5. a 409 on save fails clearly when the checkpoint is not there", async () => {
    const fake = await startFake("skyrl")
    fake.submitScript.set("save_weights", ["409"])
    const err = await failure(options(fake, { flavour: "skyrl", futureTimeout: "400 millis" }), (e) => e.save("step_9"))
    expect(err.reason).toBe("Checkpoint")
    expect(err.message).toMatch(/^tinker save_weights: the server answered 409 \(checkpoint "step_9" exists\) but model session-1:train:0 lists no training checkpoint "step_9" after/)
  })

  it("5. a load retried after a dropped connection and refused (400) loads into another fresh training client", async () => {
    const fake = await startFake("skyrl")
    const datum = datumOf([1, 2], [5, 6], { logprobs: [-1, -1], advantages: [1, 1] })
    await ok(options(fake, { flavour: "skyrl" }), (e) =>
      Effect.gen(function*() {
        const saved = yield* e.save("start")
        yield* e.forwardBackward([datum], { name: "importance_sampling" }) // trained since the save: the load is real
        fake.submitScript.set("load_weights", ["drop-after"])
        yield* e.load(saved)
        yield* e.forwardBackward([datum], { name: "importance_sampling" })
      }))
    const loads = fake.requests.filter((r) => r.path === "load_weights").map((r) => r.body.model_id)
    // SKYRL api.py load_weights: the retry into train:1 is refused; train:2 gets the load
    expect(loads).toEqual(["session-1:train:1", "session-1:train:1", "session-1:train:2"])
    expect(bodies(fake, "forward_backward").map((b) => `${b.model_id}#${b.seq_id}`)).toEqual(["session-1:train:0#2", "session-1:train:2#3"])
    expect(fake.violations).toEqual([])
  })

  it("14. fails at start-up with the service's list when it does not serve the model", async () => {
    const fake = await startFake("hosted", { models: [{ model_name: "Qwen/Qwen3-8B", max_context_length: 32768 }, { model_name: "openai/gpt-oss-20b" }] })
    const err = await failure(options(fake, { baseModel: "Qwen/Qwen3.5-9B" }), (e) => Effect.succeed(e.fingerprint))
    expect(err.reason).toBe("Unsupported")
    expect(err.message).toBe(`tinker ${fake.url}/api/v1: Qwen/Qwen3.5-9B is not among the service's models (get_server_capabilities lists Qwen/Qwen3-8B, openai/gpt-oss-20b)`)
    expect(fake.requests.map((r) => r.path)).toEqual(["get_server_capabilities"])

    // a server without the route is trusted (and the context is then the default)
    const old = await startFake("hosted", { models: null })
    expect(await ok(options(old), (e) => Effect.succeed(e.maxContext))).toBe(32768)
  })
})
