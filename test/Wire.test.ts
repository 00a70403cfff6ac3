/**
 * The wire Schemas that the clients (TinkerPolicy, VllmSampler) and `polaris serve` share,
 * engines/tinker/Wire.ts and engines/openai/Wire.ts. Each client runs against the real server,
 * which is backed by a recording stub engine (no model). The test checks both directions:
 *
 * - The bodies the clients send decode with the same Schemas the server reads them with
 *   (`Body.decode` from serve/internal/body.ts). The server's own readers (`datumOf`,
 *   `tokensOf`, the engine calls) then give back the values the client started from.
 * - The replies the server builds as Wire values (`satisfies Wire.X`, metric names from
 *   `Wire.GRAD_NORM`, errors as `Wire.ErrorResponse`) decode in the clients to the engine's
 *   outputs.
 *
 * If either side kept a private copy of a shape and it drifted, one of these directions would
 * fail. A reply that breaks a shared Schema is refused by the client, and the error names the
 * call.
 */
import { mkdtempSync, writeFileSync } from "node:fs"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Layer, Schema } from "effect"
import { FetchHttpClient, HttpClient } from "effect/http"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as OpenAIWire from "../src/engines/openai/Wire.ts"
import { datumOf, type Datum, type LossFn, type PolicyEngineShape, type SampleRequest } from "../src/engines/PolicyEngine.ts"
import * as TinkerWire from "../src/engines/tinker/Wire.ts"
import * as TinkerPolicy from "../src/engines/TinkerPolicy.ts"
import * as VllmSampler from "../src/engines/VllmSampler.ts"
import { type AdamParams, defaultAdamParams } from "../src/model/AdamW.ts"
import { defaultSamplingParams } from "../src/model/Sampling.ts"
import { serializeTokenizerJson, trainBpe } from "../src/model/tokenizer/BpeTrainer.ts"
import { END_TOKEN } from "../src/model/tokenizer/ChatTemplate.ts"
import { Tokenizer } from "../src/model/tokenizer/Tokenizer.ts"
import { tokenizerConfigFor } from "../src/model/tokenizer/TokenizerFiles.ts"
import * as Body from "../src/serve/internal/body.ts"
import { tokensOf, datumOf as serverDatumOf } from "../src/serve/internal/tinkerInputs.ts"
import { serve, type RunningServer } from "../src/serve/Server.ts"

const MODEL = "polaris/stub"

// ---------------------------------------------------------------------------------------------
// A stub engine behind the real server: deterministic outputs, every input recorded.

const tokenizerDir = mkdtempSync(join(tmpdir(), "polaris-wire-tok-"))
const bpe = trainBpe(["Once upon a time a fox wrote a story about a lighthouse and the sea."], { vocabSize: 300 })
writeFileSync(join(tokenizerDir, "tokenizer.json"), serializeTokenizerJson(bpe))
writeFileSync(join(tokenizerDir, "tokenizer_config.json"), JSON.stringify(tokenizerConfigFor(bpe)))
const tokenizer = Tokenizer.fromFile(join(tokenizerDir, "tokenizer.json"))
const END = tokenizer.tokenId(END_TOKEN)

/** The stub's learner logprob of a target token, and its teacher-forced logprob of a prompt token. */
const learnerLp = (t: number) => -0.1 * ((t % 5) + 1)
const promptLp = (t: number) => -0.01 * t
/** The j-th sequence the stub samples. */
const sampled = (j: number) => ({ tokens: [10 + j, 11, END], logprobs: [-0.5 - j, -0.25, -0.125], stopReason: "stop" as const })

const received = {
  sample: [] as Array<SampleRequest>,
  forwardBackward: [] as Array<{ readonly datums: ReadonlyArray<Datum>; readonly loss: LossFn }>,
  optimStep: [] as Array<AdamParams>
}

const engine: PolicyEngineShape = {
  fingerprint: "stub",
  tokenizer,
  endToken: END,
  maxContext: 256,
  promptIds: (prompt) => tokenizer.encode(prompt),
  sample: (requests) =>
    Effect.sync(() => {
      received.sample.push(...requests)
      return requests.map((r) => Array.from({ length: r.n }, (_, j) => sampled(j)))
    }),
  logprobs: (items) => Effect.succeed(items.map(({ completion }) => Float32Array.from(completion, promptLp))),
  trainerLogprobs: (items) => Effect.succeed(items.map(({ completion }) => Float32Array.from(completion, learnerLp))),
  forwardBackward: (datums, loss) =>
    Effect.sync(() => {
      received.forwardBackward.push({ datums, loss })
      return { logprobs: datums.map((d) => Float32Array.from(d.targetTokens, learnerLp)), metrics: { "loss:sum": 1.5 } }
    }),
  optimStep: (params) =>
    Effect.sync(() => {
      received.optimStep.push(params)
      return { gradNorm: 2.5, clipScale: 1, step: received.optimStep.length }
    }),
  save: (name) => Effect.succeed({ path: join(tokenizerDir, name) }),
  load: () => Effect.void,
  publish: () => Effect.succeed(undefined)
}

let server: RunningServer
beforeAll(async () => {
  server = await serve(engine, { modelName: MODEL, longPollMs: 50, openEngine: () => Effect.succeed(engine) })
})
afterAll(() => server.close())

/** The fetch client, recording the JSON body of every request it sends, by path. */
const recording = (sent: Array<{ readonly path: string; readonly body: unknown }>) =>
  Layer.effect(
    HttpClient.HttpClient,
    Effect.map(HttpClient.HttpClient, HttpClient.tapRequest((request) =>
      Effect.sync(() => {
        if (request.body._tag !== "Uint8Array") return
        sent.push({ path: new URL(request.url).pathname, body: JSON.parse(new TextDecoder().decode(request.body.body)) })
      })))
  ).pipe(Layer.provide(FetchHttpClient.layer))

const bodiesTo = (sent: ReadonlyArray<{ readonly path: string; readonly body: unknown }>, path: string) => sent.filter((s) => s.path === path).map((s) => s.body)

/** What the server's reader makes of a body, or the test fails with the server's message. */
const serverReads = <S extends Schema.ConstraintDecoder<unknown>>(schema: S, body: unknown): Promise<S["Type"]> => Effect.runPromise(Body.decode(schema, body))

const params = { ...defaultSamplingParams, maxTokens: 8, seed: "run-1" }

// ---------------------------------------------------------------------------------------------

describe("engines/tinker/Wire.ts, shared by TinkerPolicy and polaris serve", () => {
  it("the client's bodies are what the server's Schemas read, and the server's replies are what the client reads", async () => {
    const sent: Array<{ readonly path: string; readonly body: unknown }> = []
    const options: TinkerPolicy.TinkerOptions = { baseUrl: server.url, baseModel: MODEL, tokenizer: tokenizerDir, timeout: "5 seconds", futureTimeout: "10 seconds" }
    const prompt = tokenizer.encode("a fox")
    const datum = datumOf(prompt, [7, 8, 9], { logprobs: [-0.9, -0.05, -0.3], advantages: [0.5, 0.5, -1] })
    const out = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const e = yield* TinkerPolicy.make(options)
      const before = received.sample.length
      const samples = yield* e.sample([{ prompt, n: 2, params }])
      const engineGot = received.sample.slice(before)
      const [logprobs] = yield* e.logprobs([{ prompt, completion: [7, 8] }])
      const fb = yield* e.forwardBackward([datum], { name: "importance_sampling" })
      const step = yield* e.optimStep({ ...defaultAdamParams, learningRate: 3e-4 })
      const [trainer] = yield* e.trainerLogprobs([{ prompt, completion: [7, 8, 9] }])
      return { samples, engineGot, logprobs: Array.from(logprobs!), fb, step, trainer: Array.from(trainer!) }
    })).pipe(Effect.provide(recording(sent))))

    // Client -> server: the recorded bodies decode with the server's Schemas to the client's values.
    const [fbBody] = bodiesTo(sent, "/api/v1/forward_backward")
    const fbRequest = await serverReads(TinkerWire.ForwardBackwardRequest, fbBody)
    expect(fbRequest.forward_backward_input.loss_fn).toBe("importance_sampling")
    const serverDatum = await Effect.runPromise(serverDatumOf(fbRequest.forward_backward_input.data[0]!, 0))
    expect(serverDatum.modelInput).toEqual(datum.modelInput)
    expect(serverDatum.targetTokens).toEqual(datum.targetTokens)
    expect(Array.from(serverDatum.logprobs!)).toEqual(Array.from(datum.logprobs!))
    expect(Array.from(serverDatum.advantages!)).toEqual(Array.from(datum.advantages!))
    const [sampleBody] = bodiesTo(sent, "/api/v1/asample")
    const sampleRequest = await serverReads(TinkerWire.SampleRequest, sampleBody)
    expect(await Effect.runPromise(tokensOf(sampleRequest.prompt, "prompt"))).toEqual(prompt)
    expect(sampleRequest).toMatchObject({ num_samples: 2, base_model: MODEL, sampling_params: { max_tokens: 8, stop: [END], seed: TinkerPolicy.tinkerSeed("run-1") } })
    for (const [path, schema] of [
      ["/api/v1/create_session", TinkerWire.CreateSessionRequest],
      ["/api/v1/create_model", TinkerWire.CreateModelRequest],
      ["/api/v1/optim_step", TinkerWire.OptimStepRequest],
      ["/api/v1/forward", TinkerWire.ForwardRequest],
      ["/api/v1/retrieve_future", TinkerWire.FutureRetrieveRequest]
    ] as const) {
      const bodies = bodiesTo(sent, path)
      expect(bodies.length, path).toBeGreaterThan(0)
      for (const body of bodies) await serverReads(schema, body)
    }
    // ...and the engine behind the server got exactly them.
    expect(received.forwardBackward.at(-1)!.loss).toEqual({ name: "importance_sampling" })
    expect(received.optimStep.at(-1)!.learningRate).toBe(3e-4)
    expect(out.engineGot).toEqual([{ prompt, n: 2, params: expect.objectContaining({ maxTokens: 8, seed: TinkerPolicy.tinkerSeed("run-1"), stop: [END] }) }])

    // Server -> client: Wire replies (futures, SampleResponse, ForwardBackwardOutput, optim metrics) read back to the engine's outputs.
    expect(out.samples).toEqual([[sampled(0), sampled(1)]])
    expect(out.logprobs).toEqual([7, 8].map((t) => Math.fround(promptLp(t))))
    expect(Array.from(out.fb.logprobs[0]!)).toEqual(datum.targetTokens.map((t) => Math.fround(learnerLp(t))))
    expect(out.fb.metrics["loss:sum"]).toBe(1.5) // hosted: the server's SUM loss
    expect(out.step.gradNorm).toBe(2.5) // `${Wire.GRAD_NORM}:mean`, named once for both sides
    expect(out.trainer).toEqual([7, 8, 9].map((t) => Math.fround(learnerLp(t))))
  })

  it("a reply that breaks a shared Schema is refused, naming the call and what was wrong", async () => {
    // A "server" whose capabilities reply has a string where Wire says an integer.
    const stub: Server = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" })
      res.end(JSON.stringify({ supported_models: [{ model_name: MODEL, max_context_length: "4096" }] }))
    })
    await new Promise<void>((resolve) => stub.listen(0, "127.0.0.1", resolve))
    try {
      const url = `http://127.0.0.1:${(stub.address() as AddressInfo).port}`
      const err = await Effect.runPromise(Effect.flip(Effect.scoped(TinkerPolicy.make({ baseUrl: url, baseModel: MODEL, tokenizer: tokenizerDir }))).pipe(
        Effect.provide(FetchHttpClient.layer)
      ))
      expect(err.reason).toBe("Backend")
      expect(err.message).toMatch(/^tinker get_server_capabilities: unexpected reply .*max_context_length/)
    } finally {
      await new Promise<void>((resolve) => stub.close(() => resolve()))
    }
  })
})

describe("engines/openai/Wire.ts, shared by VllmSampler and polaris serve", () => {
  it("completions and adapter bodies are what the server's Schemas read; its completions, model list and errors are what the client reads", async () => {
    const sent: Array<{ readonly path: string; readonly body: unknown }> = []
    const adapter = mkdtempSync(join(tmpdir(), "polaris-wire-adapter-"))
    const prompt = tokenizer.encode("the sea")
    const out = await Effect.runPromise(Effect.gen(function*() {
      const v = yield* VllmSampler.make({ urls: [server.url], model: MODEL, timeout: "5 seconds", attempts: 2 }, END)
      const before = received.sample.length
      const [group] = yield* v.sample([{ prompt, n: 2, params }])
      const engineGot = received.sample.slice(before)
      const [logprobs] = yield* v.logprobs([{ prompt, completion: [7, 8] }])
      yield* v.useAdapter(adapter)
      yield* v.sample([{ prompt, n: 1, params }])
      const missing = yield* Effect.flip(v.useAdapter(join(adapter, "no-such-folder")))
      return { maxModelLen: v.maxModelLen, group, engineGot, logprobs: Array.from(logprobs!), missing }
    }).pipe(Effect.provide(recording(sent))))

    // Client -> server.
    const completions = bodiesTo(sent, "/v1/completions")
    const [sampleRequest, scoreRequest, adapterRequest] = await Promise.all(completions.map((b) => serverReads(OpenAIWire.CompletionRequest, b)))
    expect(sampleRequest).toMatchObject({ model: MODEL, prompt, n: 2, max_tokens: 8, logprobs: 0, return_token_ids: true, stop_token_ids: [END] })
    expect(scoreRequest).toMatchObject({ prompt: [...prompt, 7, 8], prompt_logprobs: 0, max_tokens: 1 })
    expect(adapterRequest!.model).toBe("polaris-v1")
    expect(await serverReads(OpenAIWire.LoadLoraAdapterRequest, bodiesTo(sent, "/v1/load_lora_adapter")[0])).toEqual({ lora_name: "polaris-v1", lora_path: adapter })
    expect(out.engineGot).toEqual([{ prompt, n: 2, params: expect.objectContaining({ maxTokens: 8, seed: VllmSampler.vllmSeed("run-1"), stop: [END] }) }])

    // Server -> client: ModelList, CompletionResponse (token ids, logprobs, prompt_logprobs), ErrorResponse.
    expect(out.maxModelLen).toBe(engine.maxContext)
    expect(out.group).toEqual([sampled(0), sampled(1)])
    expect(out.logprobs).toEqual([7, 8].map((t) => Math.fround(promptLp(t))))
    expect(out.missing.reason).toBe("BadInput")
    expect(out.missing.message).toContain("404 NotFoundError: no checkpoint folder")
  })
})
