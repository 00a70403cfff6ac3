/**
 * `polaris serve` over real HTTP, against a tiny embedded checkpoint: the Tinker routes (futures,
 * seq_id order and reuse, refused seq_ids, training, forward, sampling, checkpoints, the protobuf
 * wire format of SDK 0.25) and the vLLM routes (token-id completions, logprobs, scoring,
 * adapters, SSE streaming, chat completions through the chat template).
 */
import { Effect } from "effect"
import protobuf from "protobufjs"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as EmbeddedPolicy from "../src/engines/EmbeddedPolicy.ts"
import * as OpenAIWire from "../src/engines/openai/Wire.ts"
import type { PolicyEngineShape } from "../src/engines/PolicyEngine.ts"
import { TINKER_PUBLIC_PROTO } from "../src/engines/tinker/Proto.ts"
import * as Checkpoint from "../src/model/Checkpoint.ts"
import { serializeTokenizerJson, trainBpe } from "../src/model/tokenizer/BpeTrainer.ts"
import { renderChat } from "../src/model/tokenizer/ChatTemplate.ts"
import { Tokenizer } from "../src/model/tokenizer/Tokenizer.ts"
import { tokenizerConfigFor } from "../src/model/tokenizer/TokenizerFiles.ts"
import { decays, defaultConfig, initWeights } from "../src/model/Transformer.ts"
import { serve, type RunningServer } from "../src/serve/Server.ts"
import { tempDirInRepo } from "./support/store.ts"

const MODEL = "polaris/tiny"
const SDK = "0.25.0"
const PROTOBUF = "application/x-protobuf"

const checkpoint = async (): Promise<string> => {
  const json = trainBpe(["Once upon a time a fox wrote a story about a lighthouse and the sea."], { vocabSize: 300 })
  const tokenizer = { json: serializeTokenizerJson(json), config: JSON.stringify(tokenizerConfigFor(json)) }
  const vocabSize = Tokenizer.fromJson(JSON.parse(tokenizer.json)).vocabSize
  const config = { ...defaultConfig, vocabSize, dModel: 32, nLayers: 2, nHeads: 4, dFF: 64, maxContext: 128 }
  const weights = initWeights(config, "serve")
  for (const [name, a] of weights) if (decays(name)) for (let i = 0; i < a.length; i++) a[i]! *= 8
  const dir = tempDirInRepo("ckpt")
  await Checkpoint.write(dir, { config, weights, tokenizer })
  return dir
}

let engine: PolicyEngineShape
let server: RunningServer
let base: string
let checkpointDir: string

beforeAll(async () => {
  checkpointDir = tempDirInRepo("saved")
  engine = await Effect.runPromise(EmbeddedPolicy.make({ checkpoint: await checkpoint(), checkpointDir }))
  server = await serve(engine, { port: 0, modelName: MODEL, checkpointDir, longPollMs: 300 })
  base = server.url
})
afterAll(() => server.close())

const post = async (path: string, body: unknown, headers: Record<string, string> = {}) => {
  const r = await fetch(`${base}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) })
  const text = await r.text()
  return { status: r.status, text, json: text !== "" && r.headers.get("content-type")?.includes("json") ? JSON.parse(text) : undefined }
}
const tinker = (path: string, body: unknown, headers?: Record<string, string>) => post(`/api/v1${path}`, body, headers)

/**
 * Polls a future until it leaves 408 (pending), at most `polls` times: a request stuck behind a
 * seq_id that never comes fails the test by count, not by a clock.
 */
const result = async (requestId: string, polls = 40) => {
  for (let i = 0; i < polls; i++) {
    const r = await tinker("/retrieve_future", { request_id: requestId })
    if (r.status !== 408) return r
  }
  throw new Error(`request ${requestId} still pending after ${polls} polls`)
}
const ok = async (r: { status: number; json: any }) => {
  expect(r.status, JSON.stringify(r.json)).toBe(200)
  const out = await result(r.json.request_id)
  expect(out.status, JSON.stringify(out.json)).toBe(200)
  expect(out.json.error, JSON.stringify(out.json)).toBeUndefined()
  return out.json
}
/** The raw bytes of a finished future, asked for with `accept`. */
const resultBytes = async (requestId: string, accept: string) => {
  for (let i = 0; i < 40; i++) {
    const r = await fetch(`${base}/api/v1/retrieve_future`, {
      method: "POST",
      headers: { "content-type": "application/json", accept },
      body: JSON.stringify({ request_id: requestId, allow_metadata_only: false })
    })
    if (r.status !== 408) return { status: r.status, type: r.headers.get("content-type") ?? "", bytes: new Uint8Array(await r.arrayBuffer()) }
  }
  throw new Error(`request ${requestId} still pending`)
}

const tokens = (text: string) => engine.promptIds(text)
const chunk = (ids: ReadonlyArray<number>) => ({ chunks: [{ type: "encoded_text", tokens: ids }] })
const td = (data: ReadonlyArray<number>, dtype = "float32") => ({ data, dtype, shape: [data.length] })

/** A Tinker datum for "prompt then completion" with RL inputs on the completion positions. */
const rlDatum = (prompt: ReadonlyArray<number>, completion: ReadonlyArray<number>, logprobs: ReadonlyArray<number>, advantage: number) => {
  const full = [...prompt, ...completion]
  const pad = (xs: ReadonlyArray<number>) => [...Array(prompt.length - 1).fill(0), ...xs]
  return {
    model_input: chunk(full.slice(0, -1)),
    loss_fn_inputs: {
      target_tokens: td(full.slice(1), "int64"),
      logprobs: td(pad(logprobs)),
      advantages: td(pad(completion.map(() => advantage)))
    }
  }
}

// The SDK's protobuf messages, from the .proto text with protobufjs (independently of the server's codecs).
const proto = protobuf.parse(TINKER_PUBLIC_PROTO, { keepCase: true }).root
const ForwardBackwardRequest = proto.lookupType("tinker_public.ForwardBackwardRequest")
const ForwardBackwardOutput = proto.lookupType("tinker_public.ForwardBackwardOutput")
const SampleResponse = proto.lookupType("tinker_public.SampleResponse")
const f32 = (xs: ReadonlyArray<number>) => new Uint8Array(Float32Array.from(xs).buffer)
const i32 = (xs: ReadonlyArray<number>) => new Uint8Array(Int32Array.from(xs).buffer)
const i64 = (xs: ReadonlyArray<number>) => new Uint8Array(BigInt64Array.from(xs.map(BigInt)).buffer)
const readF32 = (b: Uint8Array) => Array.from(new Float32Array(b.slice().buffer))
const readI32 = (b: Uint8Array) => Array.from(new Int32Array(b.slice().buffer))
const readI64 = (b: Uint8Array) => Array.from(new BigInt64Array(b.slice().buffer), Number)

/** `request_conv.forward_backward_request_to_proto` of the SDK, for RL datums. */
const fbProto = (modelId: string, seqId: number, datum: ReturnType<typeof rlDatum>, forwardOnly = false) =>
  ForwardBackwardRequest.encode(ForwardBackwardRequest.fromObject({
    model_id: modelId,
    seq_id: seqId,
    loss_fn: "ppo",
    loss_fn_config: { clip_low_threshold: 0.8, clip_high_threshold: 1.2 },
    forward_only: forwardOnly,
    data: [{
      model_input: [{ encoded_text: { tokens: i32(datum.model_input.chunks[0]!.tokens) } }],
      loss_fn_inputs: {
        target_tokens: { dense: i64(datum.loss_fn_inputs.target_tokens.data), dtype: 2, shape: [datum.loss_fn_inputs.target_tokens.data.length] },
        logprobs: { dense: f32(datum.loss_fn_inputs.logprobs.data), dtype: 1, shape: [datum.loss_fn_inputs.logprobs.data.length] },
        advantages: { dense: f32(datum.loss_fn_inputs.advantages.data), dtype: 1, shape: [datum.loss_fn_inputs.advantages.data.length] }
      }
    }]
  })).finish()

let modelId = ""
let seq = 0
/** The training client's next seq_id (the SDK's `request_id + 1`). */
const nextSeq = () => ++seq

describe("serve: Tinker routes", () => {
  it("answers health and capabilities, creates a session and a model (a new one replaces it)", async () => {
    expect((await fetch(`${base}/api/v1/healthz`).then((r) => r.json()))).toEqual({ status: "ok" })
    const caps = await fetch(`${base}/api/v1/get_server_capabilities`).then((r) => r.json() as Promise<any>)
    expect(caps.supported_models[0].model_name).toBe(MODEL)
    const config = await tinker("/client/config", { sdk_version: SDK })
    expect(config.json).toMatchObject({ proto_compress_fwdbwd: false, create_model_via_load_weights: false })
    const session = await tinker("/create_session", { tags: [], user_metadata: {}, sdk_version: SDK, type: "create_session" })
    expect(session.json.session_id).toMatch(/^session_/)
    const created = await tinker("/create_model", { session_id: session.json.session_id, model_seq_id: 0, base_model: MODEL, lora_config: { rank: 32 } })
    expect(created.json.info_message).toMatch(/all weights/)
    const out = await ok(created)
    expect(out.type).toBe("create_model")
    // A second training client replaces the first (one engine serves one at a time).
    const second = await ok(await tinker("/create_model", { session_id: session.json.session_id, model_seq_id: 1, base_model: MODEL, lora_config: { rank: 8, train_unembed: false } }))
    expect(second.model_id).not.toBe(out.model_id)
    expect((await tinker("/get_info", { model_id: out.model_id })).status).toBe(404)
    modelId = second.model_id
    const info = await tinker("/get_info", { model_id: modelId })
    expect(info.json).toMatchObject({ model_id: modelId, model_name: MODEL, is_lora: false })
  })

  it("samples with asample: tokens, logprobs the engine reproduces, and prompt logprobs", async () => {
    const prompt = tokens("a fox")
    const sampled = await ok(await tinker("/asample", {
      base_model: MODEL,
      num_samples: 2,
      prompt: chunk(prompt),
      sampling_params: { max_tokens: 12, temperature: 1, top_p: 1, top_k: -1, seed: 5 },
      prompt_logprobs: true
    }))
    expect(sampled.type).toBe("sample")
    expect(sampled.sequences).toHaveLength(2)
    const lps = await Effect.runPromise(engine.logprobs(sampled.sequences.map((s: any) => ({ prompt, completion: s.tokens }))))
    sampled.sequences.forEach((s: any, i: number) => {
      expect(["stop", "length"]).toContain(s.stop_reason)
      if (s.stop_reason === "length") expect(s.tokens).toHaveLength(12)
      else expect(s.tokens.at(-1)).toBe(engine.endToken)
      s.logprobs.forEach((lp: number, t: number) => expect(lp).toBeCloseTo(lps[i]![t]!, 4))
    })
    const [expected] = await Effect.runPromise(engine.logprobs([{ prompt: prompt.slice(0, 1), completion: prompt.slice(1) }]))
    expect(sampled.prompt_logprobs[0]).toBeNull()
    expect(sampled.prompt_logprobs.slice(1)).toHaveLength(prompt.length - 1)
    sampled.prompt_logprobs.slice(1).forEach((lp: number, t: number) => expect(lp).toBeCloseTo(expected![t]!, 5))
  })

  it("runs forward_backward and optim_step in seq_id order, dedupes retries, rejects a reused seq_id", async () => {
    const prompt = tokens("the sea")
    const s = (await ok(await tinker("/asample", { base_model: MODEL, num_samples: 1, prompt: chunk(prompt), sampling_params: { max_tokens: 8, seed: 1 } }))).sequences[0]
    const fbSeq = nextSeq()
    const stepSeq = nextSeq()
    // The optim_step arrives first: it waits for the forward_backward before it.
    const optim = { model_id: modelId, seq_id: stepSeq, adam_params: { learning_rate: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-12, weight_decay: 0, grad_clip_norm: 1 }, type: "optim_step" }
    const step = await tinker("/optim_step", optim)
    expect(step.status).toBe(200)
    expect((await tinker("/retrieve_future", { request_id: step.json.request_id })).status).toBe(408)
    const fbBody = {
      model_id: modelId,
      seq_id: fbSeq,
      forward_backward_input: { data: [rlDatum(prompt, s.tokens, s.logprobs, 1)], loss_fn: "ppo", loss_fn_config: { clip_low_threshold: 0.8, clip_high_threshold: 1.2 } }
    }
    const fb = await tinker("/forward_backward", fbBody)
    // A retry with the identical body gets the same future; another body with the same seq_id is a 409.
    expect((await tinker("/forward_backward", fbBody)).json.request_id).toBe(fb.json.request_id)
    const reused = await tinker("/forward_backward", { ...fbBody, forward_backward_input: { ...fbBody.forward_backward_input, loss_fn: "importance_sampling" } })
    expect(reused.status).toBe(409)
    expect(reused.json.detail).toBe("Training request sequence number was reused")
    const out = await ok(fb)
    expect(out.loss_fn_outputs).toHaveLength(1)
    const lp = out.loss_fn_outputs[0].logprobs
    expect(lp.shape).toEqual([prompt.length + s.tokens.length - 1])
    // Before the step, the learner's logprobs on the completion equal the sampler's, so r = 1 and
    // the PPO loss is -Σ A = -(completion length).
    lp.data.slice(prompt.length - 1).forEach((x: number, t: number) => expect(x).toBeCloseTo(s.logprobs[t], 4))
    expect(out.metrics["loss:sum"]).toBeCloseTo(-s.tokens.length, 3)
    const stepped = await result(step.json.request_id)
    expect(stepped.status).toBe(200)
    expect(stepped.json.metrics["step:max"]).toBe(1)
    expect(stepped.json.metrics["grad_norm:mean"]).toBeGreaterThan(0)
  })

  it("forward scores the trainer's weights: after an optim_step, before any publish, it matches forward_backward, not the sampler", async () => {
    const prompt = tokens("a fox")
    const datum = rlDatum(prompt, tokens("the sea").slice(1), Array(tokens("the sea").length - 1).fill(-1), 1)
    const forward = await ok(await tinker("/forward", { model_id: modelId, seq_id: nextSeq(), forward_input: { data: [datum], loss_fn: "importance_sampling" } }))
    const fb = await ok(await tinker("/forward_backward", { model_id: modelId, seq_id: nextSeq(), forward_backward_input: { data: [datum], loss_fn: "importance_sampling" } }))
    expect(forward.loss_fn_outputs[0].logprobs.data).toEqual(fb.loss_fn_outputs[0].logprobs.data)
    // The sampler still has the weights last published: its teacher forcing differs after training.
    const sampler = await Effect.runPromise(engine.logprobs([{ prompt: prompt.slice(0, 1), completion: datum.loss_fn_inputs.target_tokens.data }]))
    expect(Array.from(sampler[0]!)).not.toEqual(forward.loss_fn_outputs[0].logprobs.data)
  })

  it("saves weights to a tinker:// path (409 on a taken name) and loads them back", async () => {
    const saved = await ok(await tinker("/save_weights", { model_id: modelId, path: "step-1", seq_id: nextSeq(), type: "save_weights" }))
    expect(saved.path).toBe(`tinker://${modelId}/weights/step-1`)
    const again = await tinker("/save_weights", { model_id: modelId, path: "step-1", seq_id: nextSeq(), type: "save_weights" })
    expect(again.status).toBe(409)
    const loaded = await ok(await tinker("/load_weights", { model_id: modelId, path: saved.path, seq_id: nextSeq(), optimizer: true, type: "load_weights" }))
    expect(loaded.type).toBe("load_weights")
    const missing = await tinker("/load_weights", { model_id: modelId, path: `tinker://${modelId}/weights/nope`, seq_id: nextSeq(), optimizer: true })
    expect(missing.status).toBe(404)
    expect(missing.json.detail).toMatch(/no checkpoint/)
  })

  it("counts a refused request's seq_id as used: later seq_ids run (a 409, a 404, a bad body)", async () => {
    // Before the fix, each refusal left a hole and the next request waited forever (result() would throw).
    const taken = await tinker("/save_weights", { model_id: modelId, path: "step-1", seq_id: nextSeq() })
    expect(taken.status).toBe(409)
    const afterConflict = await ok(await tinker("/save_weights", { model_id: modelId, path: "after-409", seq_id: nextSeq() }))
    expect(afterConflict.path).toBe(`tinker://${modelId}/weights/after-409`)
    const missingSeq = nextSeq()
    const missing = await tinker("/load_weights", { model_id: modelId, path: "/definitely/not/here", seq_id: missingSeq, optimizer: false })
    expect(missing.status).toBe(404)
    // A retry of the refused request gets the same answer, not a hang and not a new slot.
    expect((await tinker("/load_weights", { model_id: modelId, path: "/definitely/not/here", seq_id: missingSeq, optimizer: false })).status).toBe(404)
    const badBody = await tinker("/optim_step", { model_id: modelId, seq_id: nextSeq(), adam_params: { learning_rate: "fast" } })
    expect(badBody.status).toBe(400)
    const afterAll = await ok(await tinker("/save_weights", { model_id: modelId, path: "after-404", seq_id: nextSeq() }))
    expect(afterAll.path).toMatch(/after-404$/)
  })

  it("publishes sampler weights and samples them through a sampling session", async () => {
    const published = await ok(await tinker("/save_weights_for_sampler", { model_id: modelId, path: "s1", seq_id: nextSeq(), type: "save_weights_for_sampler" }))
    expect(published.path).toBe(`tinker://${modelId}/sampler_weights/s1`)
    const session = await tinker("/create_sampling_session", { session_id: "x", sampling_session_seq_id: 0, model_path: published.path })
    const prompt = tokens("a lighthouse")
    const out = await ok(await tinker("/asample", { sampling_session_id: session.json.sampling_session_id, seq_id: 0, num_samples: 1, prompt: chunk(prompt), sampling_params: { max_tokens: 6, seed: 2, stop: [engine.endToken] } }))
    expect(out.sequences[0].tokens.length).toBeGreaterThan(0)
    expect(out.prompt_logprobs).toBeNull()
  })

  it("answers weights_info for a saved checkpoint with the LoRA settings its client asked for", async () => {
    const info = await tinker("/weights_info", { tinker_path: `tinker://${modelId}/weights/step-1` })
    expect(info.status).toBe(200)
    // create_training_client_from_state asserts is_lora and a rank, then creates a LoRA client with these.
    expect(info.json).toEqual({ base_model: MODEL, is_lora: true, lora_rank: 8, train_unembed: false, train_mlp: true, train_attn: true })
    const sampler = await tinker("/weights_info", { tinker_path: `tinker://${modelId}/sampler_weights/s1` })
    expect(sampler.json.lora_rank).toBe(8)
    const missing = await tinker("/weights_info", { tinker_path: `tinker://${modelId}/weights/nope` })
    expect(missing.status).toBe(404)
    expect(missing.json.detail).toMatch(/no checkpoint/)
  })

  it("runs /forward: forward_backward's logprobs and loss, the engine's logprobs, no gradient", async () => {
    const prompt = tokens("a fox")
    const s = (await ok(await tinker("/asample", { base_model: MODEL, num_samples: 1, prompt: chunk(prompt), sampling_params: { max_tokens: 6, seed: 3 } }))).sequences[0]
    const datum = rlDatum(prompt, s.tokens, s.logprobs.map((x: number) => x - 0.1), 0.5)
    const input = { data: [datum], loss_fn: "ppo", loss_fn_config: { clip_low_threshold: 0.8, clip_high_threshold: 1.2 } }
    const forward = await ok(await tinker("/forward", { model_id: modelId, seq_id: nextSeq(), forward_input: input }))
    const fb = await ok(await tinker("/forward_backward", { model_id: modelId, seq_id: nextSeq(), forward_backward_input: input }))
    expect(forward.loss_fn_output_type).toBe("ArrayRecord")
    expect(Object.keys(forward.loss_fn_outputs[0])).toEqual(["logprobs"])
    const lp = forward.loss_fn_outputs[0].logprobs
    expect(lp.dtype).toBe("float32")
    expect(lp.shape).toEqual([datum.model_input.chunks[0]!.tokens.length])
    lp.data.forEach((x: number, t: number) => expect(x).toBeCloseTo(fb.loss_fn_outputs[0].logprobs.data[t], 4))
    const [teacher] = await Effect.runPromise(engine.logprobs([{ prompt: datum.model_input.chunks[0]!.tokens.slice(0, 1), completion: datum.loss_fn_inputs.target_tokens.data }]))
    lp.data.forEach((x: number, t: number) => expect(x).toBeCloseTo(teacher![t]!, 5))
    expect(forward.metrics["loss:sum"]).toBeCloseTo(fb.metrics["loss:sum"], 3)
    expect(forward.metrics["tokens:sum"]).toBe(fb.metrics["tokens:sum"])
    expect(forward.metrics["clipped:sum"]).toBe(fb.metrics["clipped:sum"])
    // A forward over targets that are not the input shifted is refused (the seq_id is still used).
    const odd = { ...datum, loss_fn_inputs: { ...datum.loss_fn_inputs, target_tokens: td(datum.loss_fn_inputs.target_tokens.data.map(() => 7), "int64") } }
    const refused = await tinker("/forward", { model_id: modelId, seq_id: nextSeq(), forward_input: { ...input, data: [odd] } })
    expect(refused.status).toBe(400)
    expect(refused.json.detail).toMatch(/shifted/)
  })

  it("speaks protobuf as SDK 0.25: a protobuf forward_backward, results as protobuf equal to the JSON ones", async () => {
    const prompt = tokens("the sea")
    const s = (await ok(await tinker("/asample", { base_model: MODEL, num_samples: 1, prompt: chunk(prompt), sampling_params: { max_tokens: 8, seed: 11 } }))).sequences[0]
    const datum = rlDatum(prompt, s.tokens, s.logprobs, 1)
    const submit = await fetch(`${base}/api/v1/forward_backward`, { method: "POST", headers: { "content-type": PROTOBUF }, body: fbProto(modelId, nextSeq(), datum) })
    expect(submit.status).toBe(200)
    const { request_id } = (await submit.json()) as { request_id: string }

    const asProto = await resultBytes(request_id, PROTOBUF)
    expect(asProto.status).toBe(200)
    expect(asProto.type).toBe(PROTOBUF)
    const asJson = await resultBytes(request_id, "application/json")
    expect(asJson.type).toMatch(/json/)
    const json = JSON.parse(new TextDecoder().decode(asJson.bytes))
    // response_conv.deserialize_forward_backward_output: one ArrayRecord, datums split by int64 byte offsets.
    const out = ForwardBackwardOutput.toObject(ForwardBackwardOutput.decode(asProto.bytes), { longs: Number }) as any
    expect(out.loss_fn_output_type).toBe(json.loss_fn_output_type)
    expect(out.metrics).toEqual(json.metrics)
    const [record] = out.loss_fn_outputs
    expect(record.num_datums).toBe(1)
    const logprobs = record.fields.logprobs
    expect(logprobs.dtype).toBe(1) // DTYPE_FLOAT32
    expect(logprobs.trailing_shape ?? []).toEqual([])
    const offsets = readI64(logprobs.offsets)
    const values = readF32(logprobs.data)
    expect(offsets).toEqual([0, values.length * 4])
    expect(values).toEqual(json.loss_fn_outputs[0].logprobs.data)
    expect([values.length]).toEqual(json.loss_fn_outputs[0].logprobs.shape)
    // The same datum sent as JSON gives the same numbers (the weights did not change).
    const viaJson = await ok(await tinker("/forward_backward", { model_id: modelId, seq_id: nextSeq(), forward_backward_input: { data: [datum], loss_fn: "ppo", loss_fn_config: { clip_low_threshold: 0.8, clip_high_threshold: 1.2 } } }))
    expect(viaJson.loss_fn_outputs[0].logprobs.data).toEqual(values)
    expect(viaJson.metrics).toEqual(out.metrics)

    // SDK 0.25's forward(): forward_backward with forward_only, same logprobs.
    const fwd = await fetch(`${base}/api/v1/forward_backward`, { method: "POST", headers: { "content-type": PROTOBUF }, body: fbProto(modelId, nextSeq(), datum, true) })
    const fwdOut = ForwardBackwardOutput.toObject(ForwardBackwardOutput.decode((await resultBytes(((await fwd.json()) as any).request_id, PROTOBUF)).bytes), { longs: Number }) as any
    readF32(fwdOut.loss_fn_outputs[0].fields.logprobs.data).forEach((x, t) => expect(x).toBeCloseTo(values[t]!, 5))
    expect(fwdOut.metrics["loss:sum"]).toBeCloseTo(out.metrics["loss:sum"], 3)

    // Sampling results: Accept as SDK 0.25 sends it, and as 0.24.1 does.
    const sampled = await tinker("/asample", { base_model: MODEL, num_samples: 2, prompt: chunk(prompt), sampling_params: { max_tokens: 6, seed: 4 }, prompt_logprobs: true, topk_prompt_logprobs: 0, type: "sample" })
    const sampleJson = JSON.parse(new TextDecoder().decode((await resultBytes(sampled.json.request_id, "application/json")).bytes))
    for (const accept of [PROTOBUF, `${PROTOBUF}, application/json`]) {
      const r = await resultBytes(sampled.json.request_id, accept)
      expect(r.type).toBe(PROTOBUF)
      const m = SampleResponse.toObject(SampleResponse.decode(r.bytes)) as any
      expect(m.sequences).toHaveLength(2)
      m.sequences.forEach((seqMsg: any, i: number) => {
        expect(seqMsg.stop_reason ?? 0).toBe(sampleJson.sequences[i].stop_reason === "length" ? 1 : 0)
        expect(readI32(seqMsg.tokens)).toEqual(sampleJson.sequences[i].tokens)
        // float32 on this wire: the JSON numbers rounded to float32.
        expect(readF32(seqMsg.logprobs)).toEqual(sampleJson.sequences[i].logprobs.map(Math.fround))
      })
      const plp = readF32(m.prompt_logprobs)
      expect(Number.isNaN(plp[0])).toBe(true)
      expect(plp.slice(1)).toEqual(sampleJson.prompt_logprobs.slice(1).map(Math.fround))
    }
    // Other routes take JSON only.
    expect((await fetch(`${base}/api/v1/optim_step`, { method: "POST", headers: { "content-type": PROTOBUF }, body: new Uint8Array([8, 1]) })).status).toBe(415)
  })

  it("reports errors: {detail} for refused requests, {error, category} for failed futures", async () => {
    expect((await tinker("/retrieve_future", { request_id: "999999" })).status).toBe(404)
    const badLoss = await tinker("/forward_backward", { model_id: modelId, forward_backward_input: { data: [rlDatum([1, 2], [3], [0], 1)], loss_fn: "dro" } })
    expect(badLoss.status).toBe(400)
    expect(badLoss.json.detail).toMatch(/loss_fn "dro"/)
    const noSdkVersion = await tinker("/create_session", { tags: [] })
    expect(noSdkVersion.status).toBe(400)
    expect(noSdkVersion.json.detail).toMatch(/sdk_version/)
    // Valid JSON the engine rejects: the future fails with the engine's message, as the SDK's
    // RequestFailedResponse (200), which it raises as RequestFailedError (a 400 it would retry).
    const tooLong = await tinker("/asample", { base_model: MODEL, num_samples: 1, prompt: chunk(Array(200).fill(5)), sampling_params: { max_tokens: 4, seed: 1 } })
    const failed = await result(tooLong.json.request_id)
    expect(failed.status).toBe(200)
    expect(failed.json.category).toBe("user")
    expect(typeof failed.json.error).toBe("string")
    const unknown = await tinker("/nope", {})
    expect(unknown.status).toBe(404)
    expect(unknown.json).toEqual({ detail: "Not Found" })
  })
})

describe("serve: OpenAI routes", () => {
  it("completes token-id prompts with logprobs, token ids and prompt logprobs", async () => {
    const prompts = [tokens("a fox"), tokens("the sea")]
    const r = await post("/v1/completions", { model: MODEL, prompt: prompts, n: 2, max_tokens: 5, temperature: 1, top_p: 1, top_k: -1, seed: 3, logprobs: 0, return_token_ids: true, prompt_logprobs: 0 })
    expect(r.status).toBe(200)
    const body = r.json
    expect(body.object).toBe("text_completion")
    expect(body.choices.map((c: any) => c.index)).toEqual([0, 1, 2, 3])
    for (const c of body.choices) {
      const prompt = prompts[Math.floor(c.index / 2)]!
      expect(c.prompt_token_ids).toEqual(prompt)
      expect(c.logprobs.token_logprobs).toHaveLength(c.token_ids.length)
      expect(c.text).toBe(engine.tokenizer.decode(c.token_ids, { skipSpecial: true }))
      const [lps] = await Effect.runPromise(engine.logprobs([{ prompt, completion: c.token_ids }]))
      c.logprobs.token_logprobs.forEach((x: number, t: number) => expect(x).toBeCloseTo(lps![t]!, 4))
      const [plp] = await Effect.runPromise(engine.logprobs([{ prompt: prompt.slice(0, 1), completion: prompt.slice(1) }]))
      expect(c.prompt_logprobs[0]).toBeNull()
      c.prompt_logprobs.slice(1).forEach((entry: any, t: number) => expect(entry[String(prompt[t + 1])].logprob).toBeCloseTo(plp![t]!, 4))
    }
    expect(body.usage.prompt_tokens).toBe(prompts[0]!.length + prompts[1]!.length)
    expect(body.usage.total_tokens).toBe(body.usage.prompt_tokens + body.usage.completion_tokens)
  })

  it("scores a prompt with echo and max_tokens 0", async () => {
    const prompt = tokens("a fox and the sea")
    const r = await post("/v1/completions", { model: MODEL, prompt, max_tokens: 0, echo: true, logprobs: 0 })
    const c = r.json.choices[0]
    expect(c.finish_reason).toBe("length")
    expect(c.text).toBe(engine.tokenizer.decode(prompt, { skipSpecial: true }))
    expect(c.logprobs.token_logprobs[0]).toBeNull()
    const [plp] = await Effect.runPromise(engine.logprobs([{ prompt: prompt.slice(0, 1), completion: prompt.slice(1) }]))
    c.logprobs.token_logprobs.slice(1).forEach((x: number, t: number) => expect(x).toBeCloseTo(plp![t]!, 4))
    expect(r.json.usage.completion_tokens).toBe(0)
  })

  it("streams completions as SSE: the chunks concatenate to the non-stream completion", async () => {
    const prompts = [tokens("a fox"), tokens("the sea")]
    const request = { model: MODEL, prompt: prompts, n: 2, max_tokens: 10, seed: 21, logprobs: 0, return_token_ids: true }
    const whole = (await post("/v1/completions", request)).json
    const r = await fetch(`${base}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ ...request, stream: true, stream_options: { include_usage: true } }) })
    expect(r.status).toBe(200)
    expect(r.headers.get("content-type")).toMatch(/^text\/event-stream/)
    const text = await r.text()
    expect(text.endsWith("data: [DONE]\n\n")).toBe(true)
    expect(text.split("\n\n").filter((e) => e !== "").every((e) => e.startsWith("data: "))).toBe(true)
    const chunks = OpenAIWire.parseSse(text) as Array<any>
    const usage = chunks.at(-1)
    expect(usage.choices).toEqual([])
    expect(usage.usage).toEqual(whole.usage)
    for (const c of whole.choices) {
      const mine = chunks.filter((k) => k.choices[0]?.index === c.index).map((k) => k.choices[0])
      expect(mine.length).toBe(c.token_ids.length)
      expect(mine.map((k: any) => k.text).join("")).toBe(c.text)
      expect(mine.flatMap((k: any) => k.token_ids)).toEqual(c.token_ids)
      expect(mine.flatMap((k: any) => k.logprobs.token_logprobs)).toEqual(c.logprobs.token_logprobs)
      expect(mine[0].prompt_token_ids).toEqual(c.prompt_token_ids)
      expect(mine.slice(0, -1).every((k: any) => k.finish_reason === null)).toBe(true)
      expect(mine.at(-1).finish_reason).toBe(c.finish_reason)
    }
    // vLLM refuses prompt logprobs on a stream.
    const refused = await post("/v1/completions", { ...request, stream: true, prompt_logprobs: 1 })
    expect(refused.status).toBe(400)
    expect(refused.json.error.message).toMatch(/stream/)
  })

  it("serves chat completions through the model's chat template (whole and streamed)", async () => {
    const messages = [
      { role: "user", content: "Write about a fox." },
      { role: "assistant", content: "Once upon a time." },
      { role: "user", content: [{ type: "text", text: "And the " }, { type: "text", text: "sea?" }] }
    ]
    const rendered = renderChat(engine.tokenizer, [
      { role: "user", content: "Write about a fox." },
      { role: "assistant", content: "Once upon a time." },
      { role: "user", content: "And the sea?" }
    ], true)
    expect(rendered).toBe("<|user|>Write about a fox.<|end|><|assistant|>Once upon a time.<|end|><|user|>And the sea?<|end|><|assistant|>")
    const promptIds = engine.tokenizer.encode(rendered)
    const chat = await post("/v1/chat/completions", { model: MODEL, messages, max_tokens: 8, seed: 5, logprobs: true, return_token_ids: true })
    expect(chat.status).toBe(200)
    const body = chat.json
    expect(body.object).toBe("chat.completion")
    expect(body.id).toMatch(/^chatcmpl-/)
    expect(body.prompt_token_ids).toEqual(promptIds)
    expect(body.usage.prompt_tokens).toBe(promptIds.length)
    const [choice] = body.choices
    expect(choice.message.role).toBe("assistant")
    expect(choice.message.content).toBe(engine.tokenizer.decode(choice.token_ids, { skipSpecial: true }))
    // The same ids and seed through /v1/completions sample the same tokens: the template is the prompt.
    const plain = await post("/v1/completions", { model: MODEL, prompt: promptIds, max_tokens: 8, seed: 5, logprobs: 0, return_token_ids: true })
    expect(choice.token_ids).toEqual(plain.json.choices[0].token_ids)
    expect(choice.logprobs.content.map((x: any) => x.logprob)).toEqual(plain.json.choices[0].logprobs.token_logprobs)
    // A single user turn is exactly the engine's promptIds.
    const single = await post("/tokenize", { model: MODEL, messages: [{ role: "user", content: "a fox" }] })
    expect(single.json.tokens).toEqual(engine.promptIds("a fox"))

    const r = await fetch(`${base}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: MODEL, messages, max_tokens: 8, seed: 5, stream: true, return_token_ids: true }) })
    const chunks = OpenAIWire.parseSse(await r.text()) as Array<any>
    expect(chunks.every((k) => k.object === "chat.completion.chunk")).toBe(true)
    expect(chunks[0].choices[0].delta).toEqual({ role: "assistant", content: "" })
    expect(chunks[0].prompt_token_ids).toEqual(promptIds)
    const rest = chunks.slice(1).map((k) => k.choices[0])
    expect(rest.map((c: any) => c.delta.content).join("")).toBe(choice.message.content)
    expect(rest.flatMap((c: any) => c.token_ids)).toEqual(choice.token_ids)
    expect(rest.at(-1).finish_reason).toBe(choice.finish_reason)
    // What the engine cannot do is refused, not ignored.
    const structured = await post("/v1/chat/completions", { model: MODEL, messages, response_format: { type: "json_object" } })
    expect(structured.status).toBe(400)
    expect(structured.json.error.message).toMatch(/response_format/)
  })

  it("loads a sampler checkpoint as a LoRA adapter, lists it, samples with it, unloads it", async () => {
    const path = `tinker://${modelId}/sampler_weights/s1`
    const load = await post("/v1/load_lora_adapter", { lora_name: "step1", lora_path: path })
    expect(load.status).toBe(200)
    expect(load.text).toBe("Success: LoRA adapter 'step1' added successfully.")
    expect((await post("/v1/load_lora_adapter", { lora_name: "step1", lora_path: path })).status).toBe(400)
    const models = await fetch(`${base}/v1/models`).then((r) => r.json() as Promise<any>)
    expect(models.data.map((m: any) => [m.id, m.parent])).toEqual([[MODEL, null], ["step1", MODEL]])
    const prompt = tokens("a fox")
    const viaAdapter = await post("/v1/completions", { model: "step1", prompt, max_tokens: 6, seed: 9, return_token_ids: true })
    const viaBase = await post("/v1/completions", { model: MODEL, prompt, max_tokens: 6, seed: 9, return_token_ids: true })
    expect(viaAdapter.status).toBe(200)
    expect(viaAdapter.json.model).toBe("step1")
    // s1 is the engine's current published weights, so both names sample the same tokens.
    expect(viaAdapter.json.choices[0].token_ids).toEqual(viaBase.json.choices[0].token_ids)
    expect((await post("/v1/unload_lora_adapter", { lora_name: "step1" })).status).toBe(200)
    expect((await post("/v1/unload_lora_adapter", { lora_name: "step1" })).status).toBe(404)
  })

  it("samples an adapter that is not the engine's current weights from its own checkpoint", async () => {
    // A training checkpoint (…/weights/…) is always opened as its own sampling engine.
    expect((await post("/v1/load_lora_adapter", { lora_name: "trained", lora_path: `tinker://${modelId}/weights/step-1` })).status).toBe(200)
    const prompt = tokens("the sea")
    const r = await post("/v1/completions", { model: "trained", prompt, max_tokens: 6, seed: 4, logprobs: 0, return_token_ids: true })
    expect(r.status).toBe(200)
    const c = r.json.choices[0]
    const own = await Effect.runPromise(EmbeddedPolicy.make({ checkpoint: `${checkpointDir}/step-1` }))
    const [lps] = await Effect.runPromise(own.logprobs([{ prompt, completion: c.token_ids }]))
    c.logprobs.token_logprobs.forEach((x: number, t: number) => expect(x).toBeCloseTo(lps![t]!, 4))
  })

  it("answers health, reset_prefix_cache, and errors in vLLM's shape", async () => {
    const health = await fetch(`${base}/health`)
    expect(health.status).toBe(200)
    expect(await health.text()).toBe("")
    expect((await post("/reset_prefix_cache", {})).status).toBe(200)
    const unknown = await post("/v1/completions", { model: "nope", prompt: [1, 2], max_tokens: 2 })
    expect(unknown.status).toBe(404)
    expect(unknown.json.error).toMatchObject({ type: "NotFoundError", code: 404, param: null })
    const badPrompt = await post("/v1/completions", { model: MODEL, prompt: [{}], max_tokens: 2 })
    expect(badPrompt.status).toBe(400)
    expect(badPrompt.json.error.type).toBe("BadRequestError")
    const notJson = await fetch(`${base}/v1/completions`, { method: "POST", body: "{" })
    expect(notJson.status).toBe(400)
    expect(((await notJson.json()) as any).error.message).toMatch(/not JSON/)
    const missing = await post("/v1/load_lora_adapter", { lora_name: "x", lora_path: "/definitely/not/here" })
    expect(missing.status).toBe(404)
    const noRoute = await post("/v1/embeddings", {})
    expect(noRoute.status).toBe(404)
    expect(noRoute.json.error.type).toBe("NotFoundError")
  })
})
