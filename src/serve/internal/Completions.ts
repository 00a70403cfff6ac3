/**
 * `/v1/completions` and `/v1/chat/completions` (protocols.md §2) over a PolicyEngine, with the
 * bodies of `engines/openai/Wire.ts`: whole responses, or (`stream: true`) vLLM's server-sent
 * events, `data: {chunk}\n\n` per token and choice, then a usage chunk when
 * `stream_options.include_usage`, then `data: [DONE]\n\n`. The engine samples whole sequences,
 * so a stream's chunks are sent once sampling finishes; their text and token deltas concatenate
 * to exactly what the same request answers without `stream`.
 *
 * - Completions take token-id or text prompts; chat renders `messages` with the model's chat
 *   template (ChatTemplate.renderChat: the tokenizer's own `chat_template`, else the embedded
 *   model's), `chat_template_kwargs.enable_thinking` passed through.
 * - `logprobs` report the chosen token only (no top-k alternatives), and prompt logprob `rank` is
 *   null: the engine returns the chosen token's logprob, not the distribution.
 * - Features the engine does not have are refused with 400 rather than ignored (UNSUPPORTED).
 */
import { Effect, Stream } from "effect"
import { HttpServerResponse } from "effect/http"
import { randomBytes } from "node:crypto"
import type { PolicyEngineShape, SampledSequence } from "../../engines/PolicyEngine.ts"
import * as Wire from "../../engines/openai/Wire.ts"
import { defaultSamplingParams, type SamplingParams } from "../../model/Sampling.ts"
import { type ChatMessage, renderChat } from "../../model/tokenizer/ChatTemplate.ts"
import type { Tokenizer } from "../../model/tokenizer/Tokenizer.ts"
import { promptLogprobs, randomSeed, stopTokens } from "./sampling.ts"
import { badRequest, type RequestError, runEngine } from "./RequestError.ts"

/** The engine a request's `model` names (the base model, or a loaded adapter). */
export type EngineOf = (model: string | undefined) => Effect.Effect<{ readonly name: string; readonly engine: PolicyEngineShape }, RequestError>

type Common = Wire.CompletionRequest | Wire.ChatCompletionRequest

/** Request fields whose feature the engine lacks: refused, never silently dropped. */
const UNSUPPORTED: ReadonlyArray<readonly [string, (body: Common) => boolean]> = [
  ["use_beam_search", (b) => b.use_beam_search === true],
  ["logit_bias", (b) => b.logit_bias != null && Object.keys(b.logit_bias).length > 0],
  ["response_format", (b) => b.response_format != null && b.response_format.type !== "text"],
  ["structured_outputs", (b) => b.structured_outputs != null],
  ["min_p", (b) => (b.min_p ?? 0) > 0],
  ["min_tokens", (b) => (b.min_tokens ?? 0) > 0],
  ["ignore_eos", (b) => b.ignore_eos === true]
]

const refuse = <B>(checks: ReadonlyArray<readonly [string, (body: B) => boolean]>, body: B): Effect.Effect<void, RequestError> => {
  const hit = checks.find(([, is]) => is(body))
  return hit === undefined ? Effect.void : Effect.fail(badRequest(`${hit[0]} is not supported by this server`))
}

/** vLLM clamps -inf logprobs to -9999. */
const clamp = (x: number) => (Number.isFinite(x) ? x : x > 0 ? x : -9999)

const now = () => Math.floor(Date.now() / 1000)

/**
 * Text deltas of a token sequence that concatenate to `decode(tokens)`: each token's delta is
 * what its prefix's text adds, held back while that text ends in an incomplete UTF-8 character.
 */
export const textDeltas = (tokenizer: Tokenizer, tokens: ReadonlyArray<number>, skipSpecial: boolean): Array<string> => {
  const out: Array<string> = []
  let emitted = ""
  for (let i = 0; i < tokens.length; i++) {
    const text = tokenizer.decode(tokens.slice(0, i + 1), { skipSpecial })
    const last = i === tokens.length - 1
    const delta = text.startsWith(emitted) && (last || !text.endsWith("\uFFFD")) ? text.slice(emitted.length) : ""
    out.push(delta)
    emitted += delta
  }
  return out
}

/** What sampling needs, read from either request. */
interface Generation {
  readonly name: string
  readonly engine: PolicyEngineShape
  readonly prompts: ReadonlyArray<ReadonlyArray<number>>
  readonly n: number
  readonly params: SamplingParams
  /** Stop token id -> what the request named it by (the string or the id), for `stop_reason`. */
  readonly stops: ReadonlyMap<number, string | number>
  readonly skipSpecial: boolean
}

const generation = (engineOf: EngineOf, body: Common, prompts: (engine: PolicyEngineShape) => Effect.Effect<Array<Array<number>>, RequestError>, maxTokens: (engine: PolicyEngineShape, promptLength: number) => number) =>
  Effect.gen(function*() {
    yield* refuse(UNSUPPORTED, body)
    const { name, engine } = yield* engineOf(body.model ?? undefined)
    const ps = yield* prompts(engine)
    if (ps.length === 0 || ps.some((p) => p.length === 0)) return yield* badRequest("prompt has no tokens")
    const n = body.n ?? 1
    if (n < 1) return yield* badRequest(`n must be >= 1, got ${n}`)
    const longest = Math.max(...ps.map((p) => p.length))
    const max = maxTokens(engine, longest)
    if (max < 0) return yield* badRequest(`max_tokens must be >= 0, got ${max}`)
    if (max > 0 && longest + max > engine.maxContext) {
      return yield* badRequest(`This model's maximum context length is ${engine.maxContext} tokens. However, you requested ${longest + max} tokens (${longest} in the messages, ${max} in the completion).`)
    }
    const stops = new Map<number, string | number>()
    for (const id of body.stop_token_ids ?? []) stops.set(id, id)
    const named = body.stop == null ? [] : typeof body.stop === "string" ? [body.stop] : body.stop
    const ids = yield* stopTokens(engine, named, "stop")
    ids.forEach((id, i) => stops.set(id, named[i]!))
    const params: SamplingParams = {
      ...defaultSamplingParams,
      maxTokens: max,
      temperature: body.temperature ?? 1,
      topP: body.top_p ?? 1,
      topK: body.top_k ?? -1,
      repetitionPenalty: body.repetition_penalty ?? 1,
      presencePenalty: body.presence_penalty ?? 0,
      frequencyPenalty: body.frequency_penalty ?? 0,
      stop: [...stops.keys()],
      seed: body.seed ?? randomSeed()
    }
    return { name, engine, prompts: ps, n, params, stops, skipSpecial: body.skip_special_tokens ?? true } satisfies Generation
  })

/** n sequences per prompt; none sampled for `max_tokens: 0` (a scoring request). */
const sample = (g: Generation): Effect.Effect<Array<Array<SampledSequence>>, RequestError> =>
  g.params.maxTokens === 0
    ? Effect.succeed(g.prompts.map(() => Array.from({ length: g.n }, () => ({ tokens: [], logprobs: [], stopReason: "length" as const }))))
    : runEngine(g.engine.sample(g.prompts.map((prompt) => ({ prompt: [...prompt], n: g.n, params: g.params }))))

/** vLLM's `stop_reason`: the stop string or token id that ended the sequence; null for the end token or a length stop. */
const stopReasonOf = (g: Generation, seq: SampledSequence): string | number | null => {
  const last = seq.tokens.at(-1)
  return seq.stopReason === "stop" && last !== undefined && last !== g.engine.endToken ? g.stops.get(last) ?? null : null
}

const usage = (g: Generation, groups: ReadonlyArray<ReadonlyArray<SampledSequence>>): Wire.UsageInfo => {
  const prompt = g.prompts.reduce((a, p) => a + p.length, 0)
  const completion = groups.flat().reduce((a, s) => a + s.tokens.length, 0)
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion, prompt_tokens_details: null }
}

const sseResponse = (chunks: ReadonlyArray<unknown>) =>
  HttpServerResponse.stream(
    Stream.encodeText(Stream.fromIterable([...chunks.map(Wire.sseData), Wire.SSE_DONE])),
    { contentType: Wire.SSE_CONTENT_TYPE, headers: { "cache-control": "no-cache" } }
  )

const includeUsage = (body: Common) => body.stream_options?.include_usage === true

// ---------------------------------------------------------------------------------------------
// /v1/completions

/** `prompt` as lists of token ids: int[], int[][], a string or strings. */
const completionPrompts = (engine: PolicyEngineShape, prompt: Wire.CompletionRequest["prompt"]): Array<Array<number>> => {
  if (typeof prompt === "string") return [engine.tokenizer.encode(prompt)]
  if (prompt.length === 0) return [[]]
  if (typeof prompt[0] === "number") return [[...(prompt as ReadonlyArray<number>)]]
  return (prompt as ReadonlyArray<string | ReadonlyArray<number>>).map((p) => (typeof p === "string" ? engine.tokenizer.encode(p) : [...p]))
}

/** `logprobs` of `ids` (text offsets from `offset`); null logprobs for unscored positions. */
const completionLogprobs = (tokenizer: Tokenizer, ids: ReadonlyArray<number>, lps: ReadonlyArray<number | null>, offset = 0): Wire.CompletionLogProbs => {
  const tokens = ids.map((id) => tokenizer.decode([id]))
  let at = offset
  return {
    tokens,
    token_logprobs: lps.map((x) => (x === null ? null : clamp(x))),
    top_logprobs: lps.map((x, t) => (x === null ? null : { [tokens[t]!]: clamp(x) })),
    text_offset: tokens.map((s) => {
      const here = at
      at += s.length
      return here
    })
  }
}

const promptLogprobsBlock = (tokenizer: Tokenizer, prompt: ReadonlyArray<number>, lps: ReadonlyArray<number | null>): Array<Wire.PromptLogprob> =>
  lps.map((x, t) => (x === null ? null : { [String(prompt[t])]: { logprob: clamp(x), rank: null, decoded_token: tokenizer.decode([prompt[t]!]) } }))

export const completion = (engineOf: EngineOf, body: Wire.CompletionRequest): Effect.Effect<HttpServerResponse.HttpServerResponse, RequestError> =>
  Effect.gen(function*() {
    if (body.suffix != null && body.suffix !== "") return yield* badRequest("suffix is not supported by this server")
    const stream = body.stream === true
    if (stream && body.prompt_logprobs != null && body.prompt_logprobs !== 0) return yield* badRequest("`prompt_logprobs` are not available when `stream=True`.")
    const g = yield* generation(engineOf, body, (engine) => Effect.succeed(completionPrompts(engine, body.prompt)), () => body.max_tokens ?? 16)
    const tokenizer = g.engine.tokenizer
    const groups = yield* sample(g)
    const logprobs = body.logprobs ?? undefined
    const echo = body.echo === true
    const returnIds = body.return_token_ids === true
    const wantPromptLogprobs = !stream && body.prompt_logprobs != null
    const promptLps = wantPromptLogprobs || (echo && logprobs !== undefined)
      ? yield* Effect.forEach(g.prompts, (p) => promptLogprobs(g.engine, p))
      : undefined
    const decode = (ids: ReadonlyArray<number>) => tokenizer.decode(ids, { skipSpecial: g.skipSpecial })
    const id = `cmpl-${randomBytes(8).toString("hex")}`
    const created = now()

    if (!stream) {
      const choices = g.prompts.flatMap((prompt, pi) =>
        groups[pi]!.map((seq, j): Wire.CompletionChoice => {
          const plp = promptLps?.[pi]
          const ids = echo ? [...prompt, ...seq.tokens] : [...seq.tokens]
          const lps: Array<number | null> = echo ? [...(plp ?? prompt.map(() => null)), ...seq.logprobs] : [...seq.logprobs]
          return {
            index: pi * g.n + j,
            text: echo ? decode(prompt) + decode(seq.tokens) : decode(seq.tokens),
            logprobs: logprobs !== undefined ? completionLogprobs(tokenizer, ids, lps) : null,
            finish_reason: seq.stopReason,
            stop_reason: stopReasonOf(g, seq),
            prompt_token_ids: returnIds ? [...prompt] : null,
            token_ids: returnIds ? [...seq.tokens] : null,
            prompt_logprobs: wantPromptLogprobs && plp !== undefined ? promptLogprobsBlock(tokenizer, prompt, plp) : null
          }
        })
      )
      return HttpServerResponse.jsonUnsafe({
        id,
        object: "text_completion",
        created,
        model: g.name,
        choices,
        usage: usage(g, groups),
        system_fingerprint: null,
        service_tier: null,
        kv_transfer_params: null
      } satisfies Wire.CompletionResponse)
    }

    const chunk = (choice: Wire.CompletionStreamChoice): Wire.CompletionStreamResponse => ({ id, object: "text_completion", created, model: g.name, choices: [choice] })
    const chunks: Array<Wire.CompletionStreamResponse> = []
    g.prompts.forEach((prompt, pi) =>
      groups[pi]!.forEach((seq, j) => {
        const index = pi * g.n + j
        let offset = 0
        let first = true
        const firstIds = () => {
          const ids = first && returnIds ? [...prompt] : null
          first = false
          return ids
        }
        if (echo) {
          const text = decode(prompt)
          const plp = promptLps?.[pi] ?? prompt.map(() => null)
          chunks.push(chunk({
            index,
            text,
            logprobs: logprobs !== undefined ? completionLogprobs(tokenizer, prompt, plp) : null,
            finish_reason: seq.tokens.length === 0 ? seq.stopReason : null,
            stop_reason: null,
            prompt_token_ids: firstIds(),
            token_ids: returnIds ? [...prompt] : null
          }))
          offset += text.length
          if (seq.tokens.length === 0) return
        }
        if (seq.tokens.length === 0) {
          chunks.push(chunk({ index, text: "", logprobs: null, finish_reason: seq.stopReason, stop_reason: null, prompt_token_ids: firstIds(), token_ids: returnIds ? [] : null }))
          return
        }
        const deltas = textDeltas(tokenizer, seq.tokens, g.skipSpecial)
        seq.tokens.forEach((token, t) => {
          const last = t === seq.tokens.length - 1
          chunks.push(chunk({
            index,
            text: deltas[t]!,
            logprobs: logprobs !== undefined ? completionLogprobs(tokenizer, [token], [seq.logprobs[t]!], offset) : null,
            finish_reason: last ? seq.stopReason : null,
            stop_reason: last ? stopReasonOf(g, seq) : null,
            prompt_token_ids: firstIds(),
            token_ids: returnIds ? [token] : null
          }))
          offset += deltas[t]!.length
        })
      })
    )
    if (includeUsage(body)) chunks.push({ id, object: "text_completion", created, model: g.name, choices: [], usage: usage(g, groups) })
    return sseResponse(chunks)
  })

// ---------------------------------------------------------------------------------------------
// /v1/chat/completions

const CHAT_UNSUPPORTED: ReadonlyArray<readonly [string, (body: Wire.ChatCompletionRequest) => boolean]> = [
  ["tools", (b) => b.tools != null && b.tools.length > 0],
  ["continue_final_message", (b) => b.continue_final_message === true],
  ["chat_template", (b) => b.chat_template != null],
  ["echo", (b) => b.echo === true]
]

/** A message's text: a string, or its text parts joined. */
const messageText = (m: Wire.ChatMessageParam, i: number): Effect.Effect<string, RequestError> => {
  if (m.content == null) return Effect.succeed("")
  if (typeof m.content === "string") return Effect.succeed(m.content)
  const other = m.content.find((p) => p.type !== "text")
  if (other !== undefined) return Effect.fail(badRequest(`messages[${i}]: content part type ${JSON.stringify(other.type)} is not supported (text only)`))
  return Effect.succeed(m.content.map((p) => p.text ?? "").join(""))
}

/** The token ids the model's chat template renders `messages` into (what /tokenize's chat form answers). */
export const chatPromptIds = (
  tokenizer: Tokenizer,
  messages: ReadonlyArray<Wire.ChatMessageParam>,
  addGenerationPrompt: boolean,
  kwargs: Readonly<Record<string, unknown>> | null | undefined
): Effect.Effect<Array<number>, RequestError> =>
  Effect.gen(function*() {
    // The template reads role and content; roles other than user/assistant reach it as given.
    const rendered: Array<ChatMessage> = []
    for (const [i, m] of messages.entries()) rendered.push({ role: m.role as ChatMessage["role"], content: yield* messageText(m, i) })
    const thinking = kwargs?.["enable_thinking"]
    const text = yield* Effect.try({
      try: () => renderChat(tokenizer, rendered, addGenerationPrompt, typeof thinking === "boolean" ? { enableThinking: thinking } : {}),
      catch: (e) => badRequest(`the chat template failed: ${(e as Error).message}`)
    })
    return tokenizer.encode(text)
  })

const chatLogprobs = (tokenizer: Tokenizer, ids: ReadonlyArray<number>, lps: ReadonlyArray<number>): Wire.ChatLogProbs => ({
  content: ids.map((id, t) => {
    const token = tokenizer.decode([id])
    const logprob = clamp(lps[t]!)
    const bytes = [...Buffer.from(token, "utf8")]
    return { token, logprob, bytes, top_logprobs: [{ token, logprob, bytes }] }
  })
})

export const chatCompletion = (engineOf: EngineOf, body: Wire.ChatCompletionRequest): Effect.Effect<HttpServerResponse.HttpServerResponse, RequestError> =>
  Effect.gen(function*() {
    yield* refuse(CHAT_UNSUPPORTED, body)
    if (body.messages.length === 0) return yield* badRequest("messages must not be empty")
    const stream = body.stream === true
    if (stream && body.prompt_logprobs != null && body.prompt_logprobs !== 0) return yield* badRequest("`prompt_logprobs` are not available when `stream=True`.")
    const g = yield* generation(
      engineOf,
      body,
      (engine) => Effect.map(chatPromptIds(engine.tokenizer, body.messages, body.add_generation_prompt ?? true, body.chat_template_kwargs), (ids) => [ids]),
      // vLLM's default: the rest of the context.
      (engine, promptLength) => body.max_completion_tokens ?? body.max_tokens ?? engine.maxContext - promptLength
    )
    const tokenizer = g.engine.tokenizer
    const prompt = g.prompts[0]!
    const [sequences] = yield* sample(g)
    const seqs = sequences ?? []
    const wantLogprobs = body.logprobs === true
    const returnIds = body.return_token_ids === true
    const decode = (ids: ReadonlyArray<number>) => tokenizer.decode(ids, { skipSpecial: g.skipSpecial })
    const id = `chatcmpl-${randomBytes(8).toString("hex")}`
    const created = now()

    if (!stream) {
      const plp = body.prompt_logprobs != null ? yield* promptLogprobs(g.engine, prompt) : undefined
      return HttpServerResponse.jsonUnsafe({
        id,
        object: "chat.completion",
        created,
        model: g.name,
        choices: seqs.map((seq, index): Wire.ChatChoice => ({
          index,
          message: { role: "assistant", content: decode(seq.tokens), reasoning: null },
          logprobs: wantLogprobs ? chatLogprobs(tokenizer, seq.tokens, seq.logprobs) : null,
          finish_reason: seq.stopReason,
          stop_reason: stopReasonOf(g, seq),
          token_ids: returnIds ? [...seq.tokens] : null
        })),
        usage: usage(g, [seqs]),
        system_fingerprint: null,
        service_tier: null,
        prompt_logprobs: plp !== undefined ? promptLogprobsBlock(tokenizer, prompt, plp) : null,
        prompt_token_ids: returnIds ? [...prompt] : null,
        kv_transfer_params: null
      } satisfies Wire.ChatCompletionResponse)
    }

    const chunk = (choice: Wire.ChatStreamChoice, extra: Partial<Wire.ChatCompletionStreamResponse> = {}): Wire.ChatCompletionStreamResponse =>
      ({ id, object: "chat.completion.chunk", created, model: g.name, choices: [choice], ...extra })
    const chunks: Array<Wire.ChatCompletionStreamResponse> = []
    // The first chunk of every choice carries the role (vLLM sends these before any content).
    seqs.forEach((_, index) =>
      chunks.push(chunk(
        { index, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null },
        index === 0 && returnIds ? { prompt_token_ids: [...prompt] } : {}
      ))
    )
    seqs.forEach((seq, index) => {
      const deltas = textDeltas(tokenizer, seq.tokens, g.skipSpecial)
      if (seq.tokens.length === 0) {
        chunks.push(chunk({ index, delta: { content: "" }, logprobs: null, finish_reason: seq.stopReason, stop_reason: null, token_ids: returnIds ? [] : null }))
      }
      seq.tokens.forEach((token, t) => {
        const last = t === seq.tokens.length - 1
        chunks.push(chunk({
          index,
          delta: { content: deltas[t]! },
          logprobs: wantLogprobs ? chatLogprobs(tokenizer, [token], [seq.logprobs[t]!]) : null,
          finish_reason: last ? seq.stopReason : null,
          ...(last ? { stop_reason: stopReasonOf(g, seq) } : {}),
          token_ids: returnIds ? [token] : null
        }))
      })
    })
    if (includeUsage(body)) chunks.push({ id, object: "chat.completion.chunk", created, model: g.name, choices: [], usage: usage(g, [seqs]) })
    return sseResponse(chunks)
  })
