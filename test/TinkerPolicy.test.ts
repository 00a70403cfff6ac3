/**
 * The Tinker PolicyEngine against a fake Tinker written from protocols.md §1 (not from any
 * polaris server): JSON bodies, futures and `retrieve_future` outcomes, per-model seq_id order and
 * idempotent retries, submission retries, the SkyRL flavour's loss compensation.
 */
import { createServer, type IncomingHttpHeaders, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { readFileSync, writeFileSync } from "node:fs"
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
import { tempDirInRepo } from "./support/store.ts"

// ---------------------------------------------------------------------------------------------
// The fake service

type Json = Record<string, any>
type SubmitAct = "429" | "500" | "401" | "drop-before" | "drop-after"
type PollAct = "try_again" | "408" | "410" | "429" | "500"

const MODEL_PATHS = new Set(["forward_backward", "optim_step", "save_weights", "save_weights_for_sampler", "load_weights"])
const BASE = "Qwen/Qwen3-8B"
const KEY = "tml-secret-key-123"

/** Learner logprob the fake reports for a target token. */
const fakeLp = (token: number) => -0.1 * ((token % 5) + 1)

interface Fake {
  readonly url: string
  readonly requests: Array<{ path: string; headers: IncomingHttpHeaders; text: string; body: Json }>
  readonly violations: Array<string>
  readonly submitScript: Map<string, Array<SubmitAct>>
  readonly pollScript: Array<PollAct>
  readonly never: Set<string>
  /** SkyRL's loss of each optim_step: the mean over accumulated datums of Σ w·ℓ / max(Σw, 1e-9). */
  readonly skyrlStepLosses: Array<number>
  optimApplied: number
  close(): Promise<void>
}

const fakes: Array<Fake> = []
afterEach(async () => {
  await Promise.all(fakes.splice(0).map((f) => f.close()))
})

const startFake = async (flavour: "hosted" | "skyrl"): Promise<Fake> => {
  let nextId = 100
  let sessions = 0
  const futures = new Map<string, { path: string; result: Json; expired: boolean }>()
  const models = new Map<string, { last: number; seen: Map<number, { text: string; id: string }>; names: Set<string>; requests: number }>()
  const modelSeqs = new Map<string, number>()
  let accumulated: Array<number> = []

  const future = (path: string, result: Json) => {
    const id = String(nextId++)
    futures.set(id, { path, result, expired: false })
    return id
  }

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
      case "optim_step": {
        fake.optimApplied++
        fake.skyrlStepLosses.push(accumulated.reduce((a, x) => a + x, 0) / Math.max(accumulated.length, 1))
        accumulated = []
        return { status: 200, json: { metrics: flavour === "skyrl" ? null : { grad_norm: 2.5 }, type: "optim_step" } }
      }
      case "save_weights": {
        const m = models.get(body.model_id)!
        if (m.names.has(body.path)) return { status: 409, json: { detail: "checkpoint already exists" } }
        m.names.add(body.path)
        return { status: 200, json: { path: `tinker://${body.model_id}/weights/${body.path}`, type: "save_weights" } }
      }
      case "save_weights_for_sampler":
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
        return {
          status: 200,
          json: {
            type: "sample",
            sequences,
            prompt_logprobs: body.prompt_logprobs === true ? [null, ...prompt.slice(1).map((t) => -0.01 * t)] : null,
            topk_prompt_logprobs: null
          }
        }
      }
      default:
        return { status: 404, json: { detail: `no ${path}` } }
    }
  }

  const server: Server = createServer((req, res) => {
    let text = ""
    req.on("data", (c: Buffer) => (text += c.toString("utf8")))
    req.on("end", () => {
      const path = (req.url ?? "").replace(/^\/api\/v1\//, "")
      const body: Json = text === "" ? {} : JSON.parse(text)
      fake.requests.push({ path, headers: req.headers, text, body })
      const send = (status: number, json: Json, headers: Record<string, string> = {}) => {
        res.writeHead(status, { "content-type": "application/json", ...headers })
        res.end(JSON.stringify(json))
      }
      const act = fake.submitScript.get(path)?.shift()
      if (act === "429") return send(429, { detail: "rate limited" }, { "retry-after": "0" })
      if (act === "500") return send(500, { detail: "transient" })
      if (act === "401") return send(401, { detail: "bad key" })
      if (act === "drop-before") return req.socket.destroy()

      const answer = (status: number, json: Json) => (act === "drop-after" ? req.socket.destroy() : send(status, json))

      if (path === "get_server_capabilities") return answer(200, { supported_models: [{ model_name: BASE, max_context_length: 4096 }] })
      if (path === "create_session") return answer(200, { type: "create_session", session_id: `session-${++sessions}`, info_message: null, warning_message: null, error_message: null })
      if (path === "session_heartbeat") return answer(200, { type: "session_heartbeat" })
      if (path === "create_model") {
        const n = body.model_seq_id as number
        if (n !== (modelSeqs.get(body.session_id) ?? -1) + 1) fake.violations.push(`model_seq_id ${n}`)
        modelSeqs.set(body.session_id, n)
        const modelId = `${body.session_id}:train:${n}`
        models.set(modelId, { last: 0, seen: new Map(), names: new Set(), requests: 0 })
        return answer(200, { request_id: future(path, { model_id: modelId, type: "create_model" }), model_id: modelId })
      }
      if (path === "retrieve_future") {
        const f = futures.get(String(body.request_id))
        if (f === undefined) return send(404, { detail: "unknown request" })
        if (body.allow_metadata_only !== false) fake.violations.push("allow_metadata_only")
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
        if (f.result.__status !== undefined) return send(f.result.__status, f.result.json)
        return send(200, f.result)
      }
      if (MODEL_PATHS.has(path)) {
        const m = models.get(body.model_id)
        if (m === undefined) return send(404, { detail: "unknown model" })
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
        if (seq !== m.last + 1) fake.violations.push(`seq_id ${seq} of ${body.model_id} after ${m.last}`)
        if (path === "load_weights" && m.requests > 0) return send(400, { detail: "load_weights must be the first request" })
        m.last = seq
        m.requests++
        const r = run(path, body)
        if (r.status === 409) {
          m.seen.set(seq, { text, id: "" })
          return answer(409, r.json)
        }
        const id = future(path, r.status === 200 ? r.json : { __status: r.status, json: r.json })
        m.seen.set(seq, { text, id })
        return answer(200, { request_id: id, model_id: body.model_id })
      }
      if (path === "asample") {
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
    skyrlStepLosses: [],
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
  const dir = tempDirInRepo("tinker-tok")
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
        yield* e.load(saved)
        yield* e.forwardBackward([datum], { name: "cross_entropy" }).pipe(expectFail) // no weights: BadInput
        const ce = yield* e.forwardBackward([datumOf(prompt, s.tokens, { weights: [1, 1, 0] })], { name: "cross_entropy" })
        expect(ce.metrics["tokens:sum"]).toBe(2)
        yield* e.sample([{ prompt, n: 1, params }])
        return yield* Effect.sleep("60 millis")
      }))
    expect(out).toBeUndefined()
    expect(fake.violations).toEqual([])

    // Every request carries the key header; nothing else does.
    for (const r of fake.requests) expect(r.headers["x-api-key"]).toBe(KEY)
    expect(fake.requests.some((r) => r.path === "session_heartbeat")).toBe(true)

    // seq_ids per model: 1..6 on the first model, 1..3 on the loaded one.
    const seqs = fake.requests.filter((r) => r.body.seq_id !== undefined).map((r) => `${r.body.model_id}#${r.body.seq_id}`)
    expect(seqs).toEqual([
      "session-1:train:0#1", "session-1:train:0#2", "session-1:train:0#3", "session-1:train:0#4", "session-1:train:0#5", "session-1:train:0#6",
      "session-1:train:1#1", "session-1:train:1#2", "session-1:train:1#3"
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
    const started = Date.now()
    const err = await failure(options(fake, { futureTimeout: "300 millis" }), (e) => e.optimStep(defaultAdamParams))
    expect(Date.now() - started).toBeLessThan(4000)
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
