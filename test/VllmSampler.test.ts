/**
 * VllmSampler against local fake vLLM servers written from protocols.md §2 (not from any polaris
 * server): `/v1/completions` replies shaped like Examples A and B (choices prompt-major for
 * n > 1), `/health`, `/v1/models`, `/v1/load_lora_adapter` and `/v1/unload_lora_adapter` with their
 * bare-string bodies, `/reset_prefix_cache` mounted only in dev mode.
 *
 * With `lora` set, the LoRA routes behave as vLLM's source has them (cited beside `loraLoad`):
 * mounted only with runtime updating, the adapter folder read from disk, the rank checked before
 * the tensors, and `/server_info` (dev mode) reporting `lora_config` and `logprobs_mode`.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { isAbsolute, join } from "node:path"
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { Effect, Redacted } from "effect"
import { FetchHttpClient } from "effect/http"
import { afterEach, describe, expect, it } from "vitest"
import { type PolicyError, type SampleRequest } from "../src/engines/PolicyEngine.ts"
import { defaultSamplingParams, type SamplingParams } from "../src/model/Sampling.ts"
import * as VllmSampler from "../src/engines/VllmSampler.ts"
import * as VllmLora from "../src/engines/VllmLora.ts"
import * as Policies from "../src/engines/Policies.ts"
import * as Archive from "../src/engines/tinker/Archive.ts"
import type { PolicyEngineShape } from "../src/engines/PolicyEngine.ts"
import * as PeftAdapter from "../src/model/PeftAdapter.ts"
import { ARCHIVE_KEY, startArchiveFake, type ArchiveFake } from "./support/fakeTinkerArchive.ts"
import { writeSnapshot } from "./support/hubCache.ts"
import { failure, value } from "./support/exit.ts"

const BASE = "Qwen/Qwen3-8B"
const END = 151645
const KEY = "sk-vllm-test-secret"
const EXAMPLE_A_PROMPT = [151644, 872, 198, 13048, 151645, 198, 151644, 77091, 198]

// ---------------------------------------------------------------------------------------------
// The fake vLLM

interface Seen {
  readonly method: string
  readonly path: string
  readonly headers: IncomingMessage["headers"]
  readonly body: any
}
type Reply = (res: ServerResponse) => void

const json = (status: number, body: unknown, headers: Record<string, string> = {}): Reply => (res) => {
  res.writeHead(status, { "content-type": "application/json", ...headers })
  res.end(JSON.stringify(body))
}
/** `{"error":{"message","type","param","code"}}` (protocols.md §2). */
const vllmError = (code: number, type: string, message: string, headers: Record<string, string> = {}) =>
  json(code, { error: { message, type, param: null, code } }, headers)
/** A bare-string body with no media type (load/unload_lora_adapter). */
const bare = (status: number, text: string): Reply => (res) => {
  res.writeHead(status)
  res.end(text)
}
const hang: Reply = () => {}

/** The fake's deterministic "sampler": tokens of choice j for a prompt under a seed. */
const fakeTokens = (seed: number, j: number, maxTokens: number, stopIds: ReadonlyArray<number>): { tokens: Array<number>; finish: "stop" | "length" } => {
  const stops = j % 2 === 0 && stopIds.length > 0
  const length = stops ? Math.min(maxTokens, 2 + j) : maxTokens
  const tokens = Array.from({ length }, (_, k) => 1000 + (seed % 1000) + 100 * j + k)
  if (stops) tokens[length - 1] = stopIds[0]!
  return { tokens, finish: stops ? "stop" : "length" }
}
const fakeLogprob = (j: number, k: number) => -0.1 * (k + 1) - 0.01 * j
/** prompt_logprobs of token `t` at position `i` (Example B's shape). */
const fakePromptLogprob = (i: number, t: number) => -((t % 17) + i) / 8

interface FakeOptions {
  /** Status of GET /health (200 = healthy, 503 = dead); read on every probe. */
  health?: () => number
  /** Mount /reset_prefix_cache (VLLM_SERVER_DEV_MODE=1). */
  devMode?: boolean
  /** Answer without token_ids / prompt_token_ids (vLLM before 0.10.2). */
  old?: boolean
  /** Return choices in reverse order (clients must group by index). */
  reversed?: boolean
  /** Emulate vLLM's LoRA loading (see `loraLoad`) instead of accepting any path. */
  lora?: {
    /** VLLM_ALLOW_RUNTIME_LORA_UPDATING (default true): without it the routes are not mounted. */
    runtimeUpdating?: boolean
    /** --enable-lora (default true). */
    enabled?: boolean
    /** --max-lora-rank (default 16, vLLM's). */
    maxRank?: number
    /** --logprobs-mode, as /server_info reports it (default raw_logprobs, vLLM's). */
    logprobsMode?: string
    /** Whether this "host" can read a folder (default: every folder on this machine). */
    readable?: (path: string) => boolean
  }
}

interface Fake {
  readonly url: string
  readonly seen: Array<Seen>
  /** Scripted replies for the next /v1/completions calls, before the normal answer. */
  readonly script: Array<Reply>
  readonly adapters: Map<string, string>
  readonly options: FakeOptions
  readonly close: () => Promise<void>
  readonly completions: () => Array<Seen>
}

const fakes: Array<Fake> = []
afterEach(async () => {
  await Promise.all(fakes.splice(0).map((f) => f.close()))
})

const startFake = async (options: FakeOptions = {}): Promise<Fake> => {
  const seen: Array<Seen> = []
  const script: Array<Reply> = []
  const adapters = new Map<string, string>()
  let counter = 0

  const completion = (body: any): Reply => {
    const model = body.model
    if (model !== BASE && !adapters.has(model)) return vllmError(404, "NotFoundError", `The model \`${model}\` does not exist.`)
    const prompts: Array<Array<number>> = Array.isArray(body.prompt?.[0]) ? body.prompt : [body.prompt]
    const n = body.n ?? 1
    const id = `cmpl-${(++counter).toString(16)}`
    const created = 1767225600 + counter
    if (body.prompt_logprobs !== undefined && body.prompt_logprobs !== null) {
      // Example B: teacher-forced scoring.
      const p = prompts[0]!
      return json(200, {
        id,
        object: "text_completion",
        created,
        model,
        choices: [
          {
            index: 0,
            text: ".",
            logprobs: null,
            finish_reason: "length",
            stop_reason: null,
            prompt_token_ids: null,
            token_ids: null,
            prompt_logprobs: [
              null,
              ...p.slice(1).map((t, k) => ({ [String(t)]: { logprob: fakePromptLogprob(k + 1, t), rank: 1 + (t % 5), decoded_token: ` t${t}` } }))
            ]
          }
        ],
        usage: { prompt_tokens: p.length, total_tokens: p.length + 1, completion_tokens: 1, prompt_tokens_details: null }
      })
    }
    // Example A: sampling; index runs prompt-major over len(prompts)·n choices.
    const choices: Array<any> = []
    prompts.forEach((p, pi) => {
      for (let j = 0; j < n; j++) {
        const { tokens, finish } = fakeTokens(body.seed ?? 0, j, body.max_tokens ?? 16, body.stop_token_ids ?? [])
        const strs = tokens.map((t) => ` t${t}`)
        const lps = tokens.map((_, k) => fakeLogprob(j, k))
        choices.push({
          index: pi * n + j,
          text: strs.join(""),
          logprobs: body.logprobs === undefined || body.logprobs === null
            ? null
            : {
              text_offset: strs.map((_, k) => strs.slice(0, k).join("").length),
              token_logprobs: lps,
              tokens: strs,
              top_logprobs: strs.map((s, k) => ({ [s]: lps[k] }))
            },
          finish_reason: finish,
          stop_reason: finish === "stop" ? tokens.at(-1) : null,
          ...(options.old ? {} : { prompt_token_ids: body.return_token_ids ? p : null, token_ids: body.return_token_ids ? tokens : null }),
          prompt_logprobs: null
        })
      }
    })
    const completionTokens = choices.reduce((s, c) => s + (c.token_ids?.length ?? 0), 0)
    const promptTokens = prompts.reduce((s, p) => s + p.length, 0)
    return json(200, {
      id,
      object: "text_completion",
      created,
      model,
      choices: options.reversed ? choices.reverse() : choices,
      usage: { prompt_tokens: promptTokens, total_tokens: promptTokens + completionTokens, completion_tokens: completionTokens, prompt_tokens_details: null },
      system_fingerprint: null,
      service_tier: null,
      kv_transfer_params: null
    })
  }

  /**
   * POST /v1/load_lora_adapter as vLLM answers it: request model {lora_name, lora_path}
   * (vllm/entrypoints/serve/lora/protocol.py@7fd1b43); a duplicate name is a 400 InvalidUserInput
   * and an engine failure a 500 InternalServerError, "No adapter found" a 404
   * (vllm/frontend/entrypoints/openai/models/serving.py@055e47c `load_lora_adapter`); the engine
   * resolves an absolute path as is and anything else as a Hub repo id
   * (vllm/lora/utils.py@0fd1570 `get_adapter_absolute_path`), reads adapter_config.json
   * ("Loading lora <name> failed: No adapter found for <path>" when it cannot), checks the rank
   * ("LoRA rank <r> is greater than max_lora_rank <m>.", vllm/lora/peft_helper.py@e745baf
   * `validate_legal`), then the tensors ("<dir> doesn't contain tensors",
   * vllm/lora/lora_model.py@532cc25); without --enable-lora the runner raises "LoRA is not enabled.".
   */
  const loraLoad = (body: any): Reply => {
    const lora = options.lora!
    const name = body?.lora_name
    const path = body?.lora_path
    if (typeof name !== "string" || typeof path !== "string") return vllmError(400, "BadRequestError", "[{'type': 'missing', 'loc': ('body', 'lora_name'), 'msg': 'Field required'}]")
    if (adapters.has(name)) return vllmError(400, "InvalidUserInput", `The lora adapter '${name}' has already been loaded.`)
    if (lora.enabled === false) return vllmError(500, "InternalServerError", "LoRA is not enabled.")
    const readable = lora.readable ?? (() => true)
    const config = join(path, "adapter_config.json")
    if (!isAbsolute(path) || !readable(path) || !existsSync(config)) return vllmError(404, "NotFoundError", `Loading lora ${name} failed: No adapter found for ${path}`)
    const r = JSON.parse(readFileSync(config, "utf8")).r
    const max = lora.maxRank ?? 16
    if (r > max) return vllmError(500, "InternalServerError", `LoRA rank ${r} is greater than max_lora_rank ${max}.`)
    if (!existsSync(join(path, "adapter_model.safetensors"))) return vllmError(500, "InternalServerError", `${path} doesn't contain tensors`)
    adapters.set(name, path)
    return bare(200, `Success: LoRA adapter '${name}' added successfully.`)
  }

  const route = (req: Seen): Reply => {
    if (req.method === "GET" && req.path === "/health") return bare(options.health?.() ?? 200, "")
    if (req.path.startsWith("/v1/") && req.headers["authorization"] !== `Bearer ${KEY}`) return vllmError(401, "AuthenticationError", "Unauthorized")
    if (req.method === "GET" && req.path === "/v1/models") {
      return json(200, {
        object: "list",
        data: [
          { id: BASE, object: "model", created: 1767225600, owned_by: "vllm", root: BASE, parent: null, max_model_len: 32768, permission: [] },
          ...[...adapters].map(([name, path]) => ({ id: name, object: "model", created: 1767225600, owned_by: "vllm", root: path, parent: BASE, max_model_len: 32768, permission: [] }))
        ]
      })
    }
    if (req.method === "POST" && req.path === "/v1/completions") return script.shift() ?? completion(req.body)
    if (req.method === "GET" && req.path === "/server_info?config_format=json" && options.devMode) {
      // vllm/entrypoints/serve/instrumentator/server_info.py@4652ef5: the VllmConfig dumped as JSON.
      return json(200, {
        vllm_config: {
          model_config: { model: BASE, max_model_len: 32768, logprobs_mode: options.lora?.logprobsMode ?? "raw_logprobs" },
          lora_config: options.lora?.enabled === false ? null : { max_lora_rank: options.lora?.maxRank ?? 16, max_loras: 1, lora_dtype: "auto" }
        },
        vllm_env: { VLLM_ALLOW_RUNTIME_LORA_UPDATING: options.lora?.runtimeUpdating !== false, VLLM_SERVER_DEV_MODE: true },
        system_env: {}
      })
    }
    if (req.path.endsWith("_lora_adapter") && options.lora?.runtimeUpdating === false) return json(404, { detail: "Not Found" })
    if (req.method === "POST" && req.path === "/v1/load_lora_adapter" && options.lora !== undefined) return loraLoad(req.body)
    if (req.method === "POST" && req.path === "/v1/load_lora_adapter") {
      const { lora_name: name, lora_path: path } = req.body
      if (adapters.has(name)) return vllmError(400, "InvalidUserInput", `The lora adapter '${name}' has already been loaded.`)
      adapters.set(name, path)
      return bare(200, `Success: LoRA adapter '${name}' added successfully.`)
    }
    if (req.method === "POST" && req.path === "/v1/unload_lora_adapter") {
      const name = req.body.lora_name
      if (!adapters.delete(name)) return vllmError(404, "NotFoundError", `The lora adapter '${name}' cannot be found.`)
      return bare(200, `Success: LoRA adapter '${name}' removed successfully.`)
    }
    if (req.method === "POST" && req.path.split("?")[0] === "/reset_prefix_cache" && options.devMode) return bare(200, "")
    return json(404, { detail: "Not Found" })
  }

  const server: Server = createServer((req, res) => {
    let raw = ""
    req.on("data", (c: Buffer) => (raw += c.toString("utf8")))
    req.on("end", () => {
      const s: Seen = { method: req.method ?? "", path: req.url ?? "", headers: req.headers, body: raw === "" ? undefined : JSON.parse(raw) }
      seen.push(s)
      route(s)(res)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const fake: Fake = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    script,
    adapters,
    options,
    completions: () => seen.filter((s) => s.path === "/v1/completions"),
    close: () => {
      server.closeAllConnections()
      return new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
  fakes.push(fake)
  return fake
}

// ---------------------------------------------------------------------------------------------

const options = (urls: ReadonlyArray<string>, extra: Partial<VllmSampler.VllmOptions> = {}): VllmSampler.VllmOptions => ({
  urls,
  model: BASE,
  apiKey: Redacted.make(KEY),
  timeout: "2 seconds",
  attempts: 4,
  backoff: { base: "5 millis", jitter: false },
  ...extra
})

const run = <A>(opts: VllmSampler.VllmOptions, f: (v: VllmSampler.VllmSampler) => Effect.Effect<A, PolicyError>) =>
  Effect.runPromiseExit(Effect.provide(Effect.flatMap(VllmSampler.make(opts, END), f), FetchHttpClient.layer))


const params = (p: Partial<SamplingParams> = {}): SamplingParams => ({ ...defaultSamplingParams, maxTokens: 4, seed: 3, ...p })
const req = (n: number, p: Partial<SamplingParams> = {}, prompt: ReadonlyArray<number> = EXAMPLE_A_PROMPT): SampleRequest => ({ prompt, n, params: params(p) })

/** protocols.md §2.1 field names of POST /v1/completions. */
const PROTOCOL_FIELDS = new Set([
  "model", "prompt", "n", "max_tokens", "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty",
  "frequency_penalty", "seed", "stop", "stop_token_ids", "include_stop_str_in_output", "skip_special_tokens", "ignore_eos",
  "min_tokens", "logprobs", "prompt_logprobs", "return_token_ids", "return_tokens_as_token_ids", "echo", "add_special_tokens"
])
const SAMPLING_FIELDS = ["n", "max_tokens", "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty", "seed", "stop_token_ids"]

const FIXTURES = new URL("./fixtures/vllm/", import.meta.url)
/** Golden-file check (UPDATE_FIXTURES=1 rewrites). */
const golden = (name: string, body: unknown) => {
  const file = new URL(name, FIXTURES)
  if (process.env.UPDATE_FIXTURES === "1") writeFileSync(file, JSON.stringify(body, null, 2) + "\n")
  expect(body).toEqual(JSON.parse(readFileSync(file, "utf8")))
}

describe("VllmSampler.sample", () => {
  it("sends one /v1/completions per request with every sampling parameter explicit, and maps choices by index", async () => {
    const a = await startFake()
    const p = params({ temperature: 0.8, topP: 0.95, topK: 0, repetitionPenalty: 1.1, presencePenalty: 0.2, frequencyPenalty: 0.3, stop: [7] })
    const exit = await run(options([a.url]), (v) => v.sample([{ prompt: EXAMPLE_A_PROMPT, n: 3, params: p }, req(1, { seed: "story-17" }, [5, 6, 7])]))
    const [first, second] = value(exit)
    const calls = a.completions()
    expect(calls).toHaveLength(2)
    const body = calls.find((c) => c.body.n === 3)!.body
    expect(body).toEqual({
      model: BASE,
      prompt: EXAMPLE_A_PROMPT,
      n: 3,
      max_tokens: 4,
      temperature: 0.8,
      top_p: 0.95,
      top_k: -1, // 0 = off in polaris; vLLM's off is -1 in every version
      min_p: 0,
      repetition_penalty: 1.1,
      presence_penalty: 0.2,
      frequency_penalty: 0.3,
      seed: 3,
      stop_token_ids: [END, 7],
      ignore_eos: false,
      min_tokens: 0,
      logprobs: 0,
      return_token_ids: true,
      skip_special_tokens: false
    })
    for (const c of calls) {
      for (const f of SAMPLING_FIELDS) expect(c.body[f], f).not.toBeUndefined()
      for (const k of Object.keys(c.body)) expect(PROTOCOL_FIELDS.has(k), k).toBe(true)
      expect(c.headers["authorization"]).toBe(`Bearer ${KEY}`)
    }
    // A string seed becomes a deterministic 31-bit int.
    const hashed = calls.find((c) => c.body.n === 1)!.body.seed
    expect(Number.isInteger(hashed) && hashed >= 0 && hashed < 2 ** 31).toBe(true)
    expect(VllmSampler.vllmSeed("story-17")).toBe(hashed)
    expect(VllmSampler.vllmSeed(2 ** 40)).toBe(VllmSampler.vllmSeed(2 ** 40))
    expect(VllmSampler.vllmSeed(-1)).toBeLessThan(2 ** 31)

    expect(first).toHaveLength(3)
    first!.forEach((s, j) => {
      const want = fakeTokens(3, j, 4, [END, 7])
      expect(s.tokens).toEqual(want.tokens)
      expect(s.stopReason).toBe(want.finish)
      expect(s.logprobs).toEqual(want.tokens.map((_, k) => fakeLogprob(j, k)))
    })
    expect(first![0]!.tokens.at(-1)).toBe(END)
    expect(second).toHaveLength(1)
    expect(second![0]!.tokens).toEqual(fakeTokens(hashed, 0, 4, [END, 7]).tokens)
  })

  it("matches the saved request fixture (Example A's fields)", async () => {
    const a = await startFake()
    value(await run(options([a.url]), (v) => v.sample([req(2)])))
    golden("completions-sample.json", a.completions()[0]!.body)
  })

  it("groups choices by index, not by order", async () => {
    const a = await startFake({ reversed: true })
    const [seqs] = value(await run(options([a.url]), (v) => v.sample([req(4)])))
    expect(seqs!.map((s) => s.tokens)).toEqual([0, 1, 2, 3].map((j) => fakeTokens(3, j, 4, [END]).tokens))
  })

  it("alternates between two healthy servers", async () => {
    const a = await startFake()
    const b = await startFake()
    value(await run(options([a.url, b.url]), (v) => Effect.forEach([1, 2, 3, 4], () => v.sample([req(1)]))))
    expect(a.completions()).toHaveLength(2)
    expect(b.completions()).toHaveLength(2)
  })

  it("skips a server whose /health answers 503", async () => {
    const a = await startFake()
    const b = await startFake({ health: () => 503 })
    value(await run(options([a.url, b.url]), (v) => Effect.forEach([1, 2, 3, 4], () => v.sample([req(1)]))))
    expect(a.completions()).toHaveLength(4)
    expect(b.completions()).toHaveLength(0)
  })

  it("after a 500, re-checks the server's health before using it again; the sample still succeeds", async () => {
    const a = await startFake()
    let bHealth = 200
    const b = await startFake({ health: () => bHealth })
    b.script.push((res) => {
      bHealth = 503 // the engine died
      vllmError(500, "InternalServerError", "EngineCore encountered an issue.")(res)
    })
    const out = value(await run(options([a.url, b.url]), (v) => Effect.forEach([1, 2, 3, 4], () => v.sample([req(1)]))))
    expect(out).toHaveLength(4)
    expect(b.completions()).toHaveLength(1)
    expect(a.completions()).toHaveLength(4)
    expect(b.seen.filter((s) => s.path === "/health").length).toBeGreaterThanOrEqual(2) // at start, and after the failure
  })

  it("retries a 429 after its Retry-After, then succeeds", async () => {
    const a = await startFake()
    a.script.push(vllmError(429, "RateLimitError", "Too many requests", { "retry-after": "1" }))
    const started = Date.now()
    const [seqs] = value(await run(options([a.url]), (v) => v.sample([req(1)])))
    expect(Date.now() - started).toBeGreaterThanOrEqual(900)
    expect(seqs).toHaveLength(1)
    expect(a.completions()).toHaveLength(2)
  })

  it("times out a stalled request with an error naming the call and the server, never the key", async () => {
    const a = await startFake()
    a.script.push(hang)
    const e = failure(await run(options([a.url], { timeout: "200 millis", attempts: 1 }), (v) => v.sample([req(1)])))
    expect(e.reason).toBe("Unavailable")
    expect(e.retryable).toBe(true)
    expect(e.message).toContain("vllm /v1/completions")
    expect(e.message).toContain(a.url)
    expect(e.message).toContain("Timeout")
    expect(e.message).not.toContain(KEY)
  })

  it("fails clearly on a vLLM without return_token_ids (< 0.10.2), without retrying", async () => {
    const a = await startFake({ old: true })
    const e = failure(await run(options([a.url]), (v) => v.sample([req(1)])))
    expect(e.reason).toBe("Unsupported")
    expect(e.message).toContain("vLLM >= 0.10.2")
    expect(a.completions()).toHaveLength(1)
  })

  it("treats a 400 as permanent (context overflow named as such)", async () => {
    const a = await startFake()
    a.script.push(vllmError(400, "BadRequestError", "This model's maximum context length is 32768 tokens. However, you requested 40000 tokens."))
    const e = failure(await run(options([a.url]), (v) => v.sample([req(1)])))
    expect(e.reason).toBe("ContextOverflow")
    expect(e.retryable).toBe(false)
    expect(a.completions()).toHaveLength(1)
  })

  it("fails make when every server is down, naming them", async () => {
    const a = await startFake({ health: () => 503 })
    const e = failure(await run(options([a.url, "http://127.0.0.1:9"]), () => Effect.void))
    expect(e.reason).toBe("Unavailable")
    expect(e.message).toContain(a.url)
    expect(e.message).toContain("http://127.0.0.1:9")
  })

  it("fails make when the base model is not served", async () => {
    const a = await startFake()
    const e = failure(await run(options([a.url], { model: "meta-llama/Llama-3.1-8B" }), () => Effect.void))
    expect(e.reason).toBe("BadInput")
    expect(e.message).toContain(BASE)
  })
})

describe("VllmSampler.logprobs", () => {
  it("scores the completion teacher-forced from prompt_logprobs", async () => {
    const a = await startFake()
    const prompt = [785, 6722, 315]
    const completion = [9625, 374, 12095]
    const [lp, empty] = value(await run(options([a.url]), (v) => v.logprobs([{ prompt, completion }, { prompt, completion: [] }])))
    expect(Array.from(lp!)).toEqual(completion.map((t, i) => Math.fround(fakePromptLogprob(prompt.length + i, t))))
    expect(empty).toHaveLength(0)
    const calls = a.completions()
    expect(calls).toHaveLength(1)
    expect(calls[0]!.body.prompt).toEqual([...prompt, ...completion])
    expect(calls[0]!.body.max_tokens).toBe(1)
    expect(calls[0]!.body.prompt_logprobs).toBe(0)
    expect(calls[0]!.body.temperature).toBe(1)
    for (const k of Object.keys(calls[0]!.body)) expect(PROTOCOL_FIELDS.has(k), k).toBe(true)
    golden("completions-score.json", calls[0]!.body)
  })
})

describe("VllmSampler.useAdapter", () => {
  it("loads versioned adapters on every server, resets prefix caches (404 tolerated), samples with them, unloads the previous", async () => {
    const a = await startFake({ devMode: true })
    const b = await startFake()
    const models: Array<string> = []
    const exit = await run(options([a.url, b.url]), (v) =>
      Effect.gen(function*() {
        models.push(v.currentModel())
        yield* v.useAdapter("/ckpt/step-1/adapter")
        models.push(v.currentModel())
        yield* Effect.forEach([1, 2], () => v.sample([req(1)]))
        yield* v.useAdapter("/ckpt/step-2/adapter")
        models.push(v.currentModel())
        yield* Effect.forEach([1, 2], () => v.sample([req(1)]))
        yield* v.logprobs([{ prompt: [1, 2], completion: [3] }])
        return v.fingerprint
      }))
    expect(value(exit)).toBe(`vllm:${BASE}`)
    expect(models).toEqual([BASE, "polaris-v1", "polaris-v2"])
    for (const f of [a, b]) {
      const admin = f.seen.filter((s) => s.path !== "/health" && s.path !== "/v1/models" && s.path !== "/v1/completions")
      expect(admin.map((s) => [s.path, s.body])).toEqual([
        ["/v1/load_lora_adapter", { lora_name: "polaris-v1", lora_path: "/ckpt/step-1/adapter" }],
        ["/reset_prefix_cache", undefined],
        ["/v1/load_lora_adapter", { lora_name: "polaris-v2", lora_path: "/ckpt/step-2/adapter" }],
        ["/reset_prefix_cache", undefined],
        ["/v1/unload_lora_adapter", { lora_name: "polaris-v1" }]
      ])
      expect([...f.adapters.keys()]).toEqual(["polaris-v2"])
      expect(f.completions().map((c) => c.body.model)).toEqual(f === a ? ["polaris-v1", "polaris-v2", "polaris-v2"] : ["polaris-v1", "polaris-v2"])
    }
  })

  it("fails when a server cannot load the adapter, leaving sampling on the previous model", async () => {
    const a = await startFake()
    const b = await startFake()
    b.adapters.set("polaris-v1", "/stale") // a leftover from an earlier run: load answers 400
    const exit = await run(options([a.url, b.url]), (v) =>
      Effect.gen(function*() {
        const r = yield* Effect.result(v.useAdapter("/ckpt/step-1/adapter"))
        return [r._tag, v.currentModel()] as const
      }))
    expect(value(exit)).toEqual(["Failure", BASE])
    expect(a.adapters.has("polaris-v1")).toBe(false) // unloaded again
  })
})

// ---------------------------------------------------------------------------------------------
// LoRA set-up and adapter paths

const loads = (f: Fake) => f.seen.filter((s) => s.path === "/v1/load_lora_adapter")
const probeDir = () => mkdtempSync(join(tmpdir(), "polaris-adapter-dir-"))

describe("VllmSampler start-up checks (adapters)", () => {
  it("fails at once with the fix when runtime LoRA updating is off (the route is not mounted), and passes when it is on", async () => {
    const off = await startFake({ lora: { runtimeUpdating: false, maxRank: 32 } })
    const e = failure(await run(options([off.url], { adapters: { rank: 32 } }), () => Effect.void))
    expect([e.reason, e.retryable]).toEqual(["Backend", false])
    expect(e.message).toContain(off.url)
    expect(e.message).toContain("VLLM_ALLOW_RUNTIME_LORA_UPDATING=True")
    expect(loads(off)).toHaveLength(1) // not retried
    const on = await startFake({ lora: { maxRank: 32 } })
    value(await run(options([on.url], { adapters: { rank: 32 } }), () => Effect.void))
    expect(loads(on).map((s) => s.body)).toEqual([{}]) // the empty-body route check only
  })

  it("fails when --max-lora-rank is below policy.lora_rank: from /server_info in dev mode, from the probe adapter otherwise", async () => {
    const dev = await startFake({ devMode: true, lora: { maxRank: 16, logprobsMode: "processed_logprobs" } })
    const e1 = failure(await run(options([dev.url], { adapters: { rank: 32 } }), () => Effect.void))
    expect(e1.message).toContain("--max-lora-rank is 16 (/server_info)")
    expect(e1.message).toContain("start vLLM with --max-lora-rank 32")

    const dir = probeDir()
    const plain = await startFake({ lora: { maxRank: 16 } })
    const e2 = failure(await run(options([plain.url], { adapters: { rank: 32, probeDir: dir } }), () => Effect.void))
    expect(e2.retryable).toBe(false)
    expect(e2.message).toContain("LoRA rank 32 is greater than max_lora_rank 16")
    expect(e2.message).toContain("start vLLM with --max-lora-rank 32")
    expect(loads(plain)).toHaveLength(2) // {} then the probe, whose 500 is not retried
    expect(readdirSync(dir)).toEqual([]) // the probe folder is removed
    // rank 48 needs 64 (vLLM accepts 1, 8, 16, 32, 64, 128, 256, 320, 512)
    expect(VllmLora.maxLoraRankFor(48)).toBe(64)
  })

  it("fails on raw logprobs (/server_info) with --logprobs-mode processed_logprobs, and without --enable-lora", async () => {
    const raw = await startFake({ devMode: true, lora: { maxRank: 32, logprobsMode: "raw_logprobs" } })
    const e1 = failure(await run(options([raw.url], { adapters: { rank: 32 } }), () => Effect.void))
    expect(e1.message).toContain("--logprobs-mode is raw_logprobs")
    expect(e1.message).toContain("--logprobs-mode processed_logprobs")
    const disabled = await startFake({ devMode: true, lora: { enabled: false } })
    expect(failure(await run(options([disabled.url], { adapters: { rank: 32 } }), () => Effect.void)).message).toContain("--enable-lora")
    const disabledProbe = await startFake({ lora: { enabled: false } })
    expect(failure(await run(options([disabledProbe.url], { adapters: { rank: 32, probeDir: probeDir() } }), () => Effect.void)).message).toContain("--enable-lora")
  })

  it("fails when the host cannot read policy.adapter_dir", async () => {
    const dir = probeDir()
    const elsewhere = await startFake({ lora: { maxRank: 32, readable: () => false } })
    const e = failure(await run(options([elsewhere.url], { adapters: { rank: 32, probeDir: dir } }), () => Effect.void))
    expect(e.message).toContain("No adapter found")
    expect(e.message).toContain(`cannot read ${dir}`)
    expect(e.message).toContain("policy.adapter_dir")
  })

  it("starts when everything fits, leaving no probe adapter or folder behind, and reports max_model_len", async () => {
    const dir = probeDir()
    const good = await startFake({ devMode: true, lora: { maxRank: 32, logprobsMode: "processed_logprobs" } })
    const len = value(await run(options([good.url], { adapters: { rank: 32, probeDir: dir } }), (v) => Effect.succeed(v.maxModelLen)))
    expect(len).toBe(32768)
    expect(loads(good)).toHaveLength(2)
    expect(good.adapters.size).toBe(0)
    expect(readdirSync(dir)).toEqual([])
  })

  it("never sends a tinker:// path; with `uris`, a server that cannot resolve them fails at start-up with the adapter_dir fix", async () => {
    const a = await startFake({ lora: { maxRank: 32 } })
    const e = failure(await run(options([a.url], { adapters: { rank: 32 } }), (v) => v.useAdapter("tinker://run-1/sampler_weights/s1")))
    expect(e.reason).toBe("BadInput")
    expect(e.message).toContain("policy.adapter_dir")
    expect(loads(a).map((s) => s.body)).toEqual([{}])
    const real = await startFake({ lora: { maxRank: 32 } })
    const e2 = failure(await run(options([real.url], { adapters: { rank: 32, uris: true } }), () => Effect.void))
    expect(e2.message).toContain("cannot load a tinker:// checkpoint")
    expect(e2.message).toContain("set policy.adapter_dir")
  })

  it("a load that fails with vLLM's 500 for the rank is not retried and names the fix", async () => {
    const dir = probeDir()
    writeFileSync(join(dir, "adapter_config.json"), JSON.stringify({ r: 64, lora_alpha: 64, target_modules: ["q_proj"] }))
    const a = await startFake({ lora: { maxRank: 32 } })
    const e = failure(await run(options([a.url]), (v) => v.useAdapter(dir)))
    expect(e.retryable).toBe(false)
    expect(e.message).toContain("start vLLM with --max-lora-rank 64")
    expect(loads(a)).toHaveLength(1)
  })
})

describe("vllm sampling with a Tinker trainer (Policies.withVllmSampling + Archive)", () => {
  const archives: Array<ArchiveFake> = []
  afterEach(async () => {
    await Promise.all(archives.splice(0).map((f) => f.close()))
  })

  it("loads each published tinker:// checkpoint as a local PEFT folder under adapter_dir, and removes the previous one", async () => {
    const tar = new Uint8Array(readFileSync(new URL("./fixtures/tinker-archive/qwen3-tiny-f32.tar", import.meta.url)))
    const archive = await startArchiveFake({ archives: { "run-1/sampler_weights/sampler-1": tar, "run-1/sampler_weights/sampler-2": tar } })
    archives.push(archive)
    const expectedBases = JSON.parse(readFileSync(new URL("./fixtures/tinker-archive/expected.json", import.meta.url), "utf8")).bases
    const cache = mkdtempSync(join(tmpdir(), "polaris-hub-"))
    writeSnapshot(cache, "polaris-test/qwen3-tiny", {
      "config.json": JSON.stringify(expectedBases.untied.config),
      "model.safetensors.index.json": JSON.stringify({ weight_map: Object.fromEntries(expectedBases.untied.weights.map((w: string) => [w, "model.safetensors"])) })
    })
    const base = await PeftAdapter.baseModel(["polaris-test/qwen3-tiny"], { HF_HUB_CACHE: cache })
    const adapterDir = probeDir()
    const vllm = await startFake({ lora: { maxRank: 16 } })

    let published = 0
    const trainer = {
      fingerprint: "fake-trainer",
      publish: () => Effect.sync(() => ({ path: `tinker://run-1/sampler_weights/sampler-${++published}` })),
      load: () => Effect.void
    } as unknown as PolicyEngineShape
    const folders: Policies.AdapterFolders = {
      folderOf: (path) => Effect.provide(Archive.toPeftFolder({ baseUrl: archive.url, apiKey: Redacted.make(ARCHIVE_KEY), adapterDir, base }, path), FetchHttpClient.layer),
      remove: (folder) => Effect.sync(() => rmSync(folder, { recursive: true, force: true }))
    }
    const exit = await run(options([vllm.url], { adapters: { rank: 2, probeDir: adapterDir } }), (sampler) =>
      Effect.gen(function*() {
        const engine = Policies.withVllmSampling(trainer, sampler, folders)
        yield* engine.publish()
        yield* engine.publish()
        yield* engine.sample([req(1)])
        return sampler.currentModel()
      }))
    expect(value(exit)).toBe("polaris-v2")
    const paths = loads(vllm).map((s) => s.body.lora_path).filter((p) => p !== undefined)
    const [probe, first, second] = paths
    expect(probe).toContain(".polaris-probe-")
    expect([first, second]).toEqual([join(adapterDir, "run-1", "sampler-1"), join(adapterDir, "run-1", "sampler-2")])
    for (const p of paths) expect(p.startsWith("tinker://")).toBe(false)
    expect(existsSync(join(second, "adapter_model.safetensors"))).toBe(true)
    expect(existsSync(first)).toBe(false) // switched away from: removed
    expect([...vllm.adapters]).toEqual([["polaris-v2", second]])
    expect(vllm.completions().at(-1)!.body.model).toBe("polaris-v2")
  })
})
