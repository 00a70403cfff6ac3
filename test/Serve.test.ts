/**
 * `polaris serve` over real HTTP: the Tinker routes (futures, seq_id order and reuse, training,
 * sampling, checkpoints) and the vLLM routes (token-id completions, logprobs, scoring, adapters),
 * against a tiny embedded checkpoint.
 */
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as EmbeddedPolicy from "../src/engines/EmbeddedPolicy.ts"
import type { PolicyEngineShape } from "../src/engines/PolicyEngine.ts"
import * as Checkpoint from "../src/model/Checkpoint.ts"
import { serializeTokenizerJson, trainBpe } from "../src/model/tokenizer/BpeTrainer.ts"
import { Tokenizer } from "../src/model/tokenizer/Tokenizer.ts"
import { tokenizerConfigFor } from "../src/model/tokenizer/TokenizerFiles.ts"
import { decays, defaultConfig, initWeights } from "../src/model/Transformer.ts"
import { serve, type RunningServer } from "../src/serve/Server.ts"
import { tempDirInRepo } from "./support/store.ts"

const MODEL = "polaris/tiny"

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

const post = async (path: string, body: unknown) => {
  const r = await fetch(`${base}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })
  const text = await r.text()
  return { status: r.status, text, json: text !== "" && r.headers.get("content-type")?.includes("json") ? JSON.parse(text) : undefined }
}
const tinker = (path: string, body: unknown) => post(`/api/v1${path}`, body)

/** Polls a future until it leaves 408 (pending). */
const result = async (requestId: string) => {
  for (;;) {
    const r = await tinker("/retrieve_future", { request_id: requestId })
    if (r.status !== 408) return r
  }
}
const ok = async (r: { status: number; json: any }) => {
  expect(r.status, JSON.stringify(r.json)).toBe(200)
  const out = await result(r.json.request_id)
  expect(out.status, JSON.stringify(out.json)).toBe(200)
  return out.json
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

let modelId = ""

describe("serve: Tinker routes", () => {
  it("answers health and capabilities, creates a session and a model (a new one replaces it)", async () => {
    expect((await fetch(`${base}/api/v1/healthz`).then((r) => r.json()))).toEqual({ status: "ok" })
    const caps = await fetch(`${base}/api/v1/get_server_capabilities`).then((r) => r.json() as Promise<any>)
    expect(caps.supported_models[0].model_name).toBe(MODEL)
    const session = await tinker("/create_session", { tags: [], type: "create_session" })
    expect(session.json.session_id).toMatch(/^session_/)
    const created = await tinker("/create_model", { session_id: session.json.session_id, model_seq_id: 0, base_model: MODEL, lora_config: { rank: 32 } })
    expect(created.json.info_message).toMatch(/all weights/)
    const out = await ok(created)
    expect(out.type).toBe("create_model")
    // A second training client replaces the first (one engine serves one at a time).
    const second = await ok(await tinker("/create_model", { session_id: session.json.session_id, model_seq_id: 1, base_model: MODEL }))
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
    // seq 2 (optim_step) arrives first: it waits for seq 1.
    const optim = { model_id: modelId, seq_id: 2, adam_params: { learning_rate: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-12, weight_decay: 0, grad_clip_norm: 1 }, type: "optim_step" }
    const step = await tinker("/optim_step", optim)
    expect(step.status).toBe(200)
    expect((await tinker("/retrieve_future", { request_id: step.json.request_id })).status).toBe(408)
    const fbBody = {
      model_id: modelId,
      seq_id: 1,
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

  it("saves weights to a tinker:// path (409 on a taken name) and loads them back", async () => {
    const saved = await ok(await tinker("/save_weights", { model_id: modelId, path: "step-1", seq_id: 3, type: "save_weights" }))
    expect(saved.path).toBe(`tinker://${modelId}/weights/step-1`)
    const again = await tinker("/save_weights", { model_id: modelId, path: "step-1", seq_id: 4, type: "save_weights" })
    expect(again.status).toBe(409)
    const loaded = await ok(await tinker("/load_weights", { model_id: modelId, path: saved.path, seq_id: 4, optimizer: true, type: "load_weights" }))
    expect(loaded.type).toBe("load_weights")
    const missing = await tinker("/load_weights", { model_id: modelId, path: `tinker://${modelId}/weights/nope`, seq_id: 5 })
    expect(missing.status).toBe(404)
    expect(missing.json.detail).toMatch(/no checkpoint/)
  })

  it("publishes sampler weights and samples them through a sampling session", async () => {
    const published = await ok(await tinker("/save_weights_for_sampler", { model_id: modelId, path: "s1", seq_id: 5, type: "save_weights_for_sampler" }))
    expect(published.path).toBe(`tinker://${modelId}/sampler_weights/s1`)
    const session = await tinker("/create_sampling_session", { session_id: "x", sampling_session_seq_id: 0, model_path: published.path })
    const prompt = tokens("a lighthouse")
    const out = await ok(await tinker("/asample", { sampling_session_id: session.json.sampling_session_id, seq_id: 0, num_samples: 1, prompt: chunk(prompt), sampling_params: { max_tokens: 6, seed: 2, stop: [engine.endToken] } }))
    expect(out.sequences[0].tokens.length).toBeGreaterThan(0)
    expect(out.prompt_logprobs).toBeNull()
  })

  it("reports errors as {detail}: unknown futures, bad inputs, failed futures", async () => {
    expect((await tinker("/retrieve_future", { request_id: "999999" })).status).toBe(404)
    const badLoss = await tinker("/forward_backward", { model_id: modelId, forward_backward_input: { data: [rlDatum([1, 2], [3], [0], 1)], loss_fn: "dro" } })
    expect(badLoss.status).toBe(400)
    expect(badLoss.json.detail).toMatch(/loss_fn "dro"/)
    // Valid JSON the engine rejects: the future fails with the engine's message.
    const tooLong = await tinker("/asample", { base_model: MODEL, num_samples: 1, prompt: chunk(Array(200).fill(5)), sampling_params: { max_tokens: 4, seed: 1 } })
    const failed = await result(tooLong.json.request_id)
    expect(failed.status).toBe(400)
    expect(typeof failed.json.detail).toBe("string")
    expect((await tinker("/nope", {})).status).toBe(404)
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
  })
})
