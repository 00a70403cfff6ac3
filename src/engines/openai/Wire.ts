/**
 * vLLM's OpenAI-compatible API bodies (protocols.md §2) as Effect Schemas, shared by the clients
 * (VllmSampler.ts, the OpenAI-compatible judge and writer) and the server (serve/OpenAIRoutes.ts)
 * so they cannot drift, plus vLLM's server-sent-events framing. Field names are the wire names;
 * each shape cites the pydantic model it mirrors in `vllm-project/vllm`:
 *
 * - `vllm/entrypoints/openai/completion/protocol.py@002032ee2b18e1f7bd924ec47b62504ba3866063`
 * - `vllm/entrypoints/openai/chat_completion/protocol.py@002032ee2b18e1f7bd924ec47b62504ba3866063`
 * - `vllm/entrypoints/generate/base/protocol.py@022e555dbb75a9a96363a04933bfdd1f0b5b123d`
 *   (StopParam, StreamOptions, DeltaMessage)
 * - `vllm/entrypoints/openai/engine/protocol.py@040a2cc2a6295ea9c313d86526ff90a103eacb3e`
 *   (ErrorResponse, UsageInfo, ModelCard, ModelList)
 * - SSE: `vllm/entrypoints/openai/completion/serving.py@030ea52effcb05071543c8c42b8f0145e94cee43`
 *   and `chat_completion/serving.py@006c49d485f9ca479bf4989cbb694d0ac02f44b5`
 *
 * Requests list the fields polaris reads or refuses; vLLM accepts (and logs) unknown keys, and
 * so do these Schemas. Optional fields accept an absent key or `null` (pydantic's `X | None`).
 *
 * @example
 * ```ts
 * const body = yield* Schema.decodeUnknownEffect(Wire.CompletionRequest)(JSON.parse(text))
 * const frame = Wire.sseData({ id: "cmpl-1", object: "text_completion", created: 0, model: "m", choices: [] })
 * // "data: {...}\n\n"; a stream ends with Wire.SSE_DONE
 * ```
 */
import { Option, Schema } from "effect"

const optional = <S extends Schema.Constraint>(schema: S) => Schema.optionalKey(Schema.NullOr(schema))

// ---------------------------------------------------------------------------------------------
// Shared pieces.

/** `StopParam` (strings only; token ids go in `stop_token_ids`). `generate/base/protocol.py@022e555` */
export const StopParam = Schema.Union([Schema.String, Schema.Array(Schema.String)])

/** `include_usage` adds a final chunk with `usage` and no choices. `generate/base/protocol.py@022e555` */
export const StreamOptions = Schema.Struct({
  include_usage: optional(Schema.Boolean),
  continuous_usage_stats: optional(Schema.Boolean)
})
export type StreamOptions = typeof StreamOptions.Type

/** `engine/protocol.py@040a2cc` */
export const UsageInfo = Schema.Struct({
  prompt_tokens: Schema.Int,
  total_tokens: Schema.Int,
  completion_tokens: optional(Schema.Int),
  prompt_tokens_details: optional(Schema.Struct({ cached_tokens: optional(Schema.Int) }))
})
export type UsageInfo = typeof UsageInfo.Type

/** `ErrorInfo` / `ErrorResponse`. `engine/protocol.py@040a2cc` */
export const ErrorResponse = Schema.Struct({
  error: Schema.Struct({
    message: Schema.String,
    type: Schema.String,
    param: optional(Schema.String),
    code: Schema.Int
  })
})
export type ErrorResponse = typeof ErrorResponse.Type

const decodeErrorResponse = Schema.decodeUnknownOption(Schema.fromJsonString(ErrorResponse))

/** `"<type>: <message>"` of an ErrorResponse body, or undefined when `text` is not one (how clients read error replies). */
export const errorMessage = (text: string): string | undefined =>
  Option.getOrUndefined(Option.map(decodeErrorResponse(text), (e) => `${e.error.type}: ${e.error.message}`))

/** Sampling fields completions and chat share (vLLM's `*-sampling-params` blocks). */
const samplingFields = {
  model: optional(Schema.String),
  n: optional(Schema.Int),
  seed: optional(Schema.Int),
  temperature: optional(Schema.Number),
  top_p: optional(Schema.Number),
  top_k: optional(Schema.Int),
  min_p: optional(Schema.Number),
  repetition_penalty: optional(Schema.Number),
  presence_penalty: optional(Schema.Number),
  frequency_penalty: optional(Schema.Number),
  stop: optional(StopParam),
  stop_token_ids: optional(Schema.Array(Schema.Int)),
  ignore_eos: optional(Schema.Boolean),
  min_tokens: optional(Schema.Int),
  skip_special_tokens: optional(Schema.Boolean),
  prompt_logprobs: optional(Schema.Int),
  return_token_ids: optional(Schema.Boolean),
  return_tokens_as_token_ids: optional(Schema.Boolean),
  stream: optional(Schema.Boolean),
  stream_options: optional(StreamOptions),
  use_beam_search: optional(Schema.Boolean),
  logit_bias: optional(Schema.Record(Schema.String, Schema.Number)),
  response_format: optional(Schema.Struct({ type: Schema.String })),
  structured_outputs: optional(Schema.Unknown)
}

// ---------------------------------------------------------------------------------------------
// /v1/completions

/** `prompt`: token ids, lists of token ids, a string or strings. `completion/protocol.py@002032ee` `CompletionRequest` */
export const CompletionRequest = Schema.Struct({
  ...samplingFields,
  prompt: Schema.Union([
    Schema.Array(Schema.Int),
    Schema.Array(Schema.Array(Schema.Int)),
    Schema.String,
    Schema.Array(Schema.String)
  ]),
  echo: optional(Schema.Boolean),
  logprobs: optional(Schema.Int),
  /** vLLM's default is 16 (a null becomes 16). */
  max_tokens: optional(Schema.Int),
  suffix: optional(Schema.String)
})
export type CompletionRequest = typeof CompletionRequest.Type

/** `completion/protocol.py@002032ee` `CompletionLogProbs`: `top_logprobs` keyed by decoded text. */
export const CompletionLogProbs = Schema.Struct({
  text_offset: Schema.Array(Schema.Int),
  token_logprobs: Schema.Array(Schema.NullOr(Schema.Number)),
  tokens: Schema.Array(Schema.String),
  top_logprobs: Schema.Array(Schema.NullOr(Schema.Record(Schema.String, Schema.Number)))
})
export type CompletionLogProbs = typeof CompletionLogProbs.Type

/** One prompt position: keyed by token id as a string. `vllm/logprobs.py` `Logprob` as serialized. */
export const PromptLogprob = Schema.NullOr(Schema.Record(Schema.String, Schema.Struct({
  logprob: Schema.Number,
  rank: optional(Schema.Int),
  decoded_token: optional(Schema.String)
})))
export type PromptLogprob = typeof PromptLogprob.Type

/** `completion/protocol.py@002032ee` `CompletionResponseChoice` */
export const CompletionChoice = Schema.Struct({
  index: Schema.Int,
  text: Schema.String,
  logprobs: optional(CompletionLogProbs),
  finish_reason: optional(Schema.String),
  stop_reason: optional(Schema.Union([Schema.Int, Schema.String])),
  token_ids: optional(Schema.Array(Schema.Int)),
  prompt_logprobs: optional(Schema.Array(PromptLogprob)),
  prompt_token_ids: optional(Schema.Array(Schema.Int))
})
export type CompletionChoice = typeof CompletionChoice.Type

/** `completion/protocol.py@002032ee` `CompletionResponse` */
export const CompletionResponse = Schema.Struct({
  id: Schema.String,
  object: Schema.Literal("text_completion"),
  created: Schema.Int,
  model: Schema.String,
  choices: Schema.Array(CompletionChoice),
  usage: UsageInfo,
  system_fingerprint: optional(Schema.String),
  service_tier: optional(Schema.String),
  kv_transfer_params: optional(Schema.Unknown)
})
export type CompletionResponse = typeof CompletionResponse.Type

/** `completion/protocol.py@002032ee` `CompletionResponseStreamChoice`: `text` and `token_ids` are deltas. */
export const CompletionStreamChoice = Schema.Struct({
  index: Schema.Int,
  text: Schema.String,
  logprobs: optional(CompletionLogProbs),
  finish_reason: optional(Schema.String),
  stop_reason: optional(Schema.Union([Schema.Int, Schema.String])),
  prompt_token_ids: optional(Schema.Array(Schema.Int)),
  token_ids: optional(Schema.Array(Schema.Int))
})
export type CompletionStreamChoice = typeof CompletionStreamChoice.Type

/** One `data:` event of a streamed completion. `completion/protocol.py@002032ee` `CompletionStreamResponse` */
export const CompletionStreamResponse = Schema.Struct({
  id: Schema.String,
  object: Schema.String,
  created: Schema.Int,
  model: Schema.String,
  choices: Schema.Array(CompletionStreamChoice),
  usage: optional(UsageInfo)
})
export type CompletionStreamResponse = typeof CompletionStreamResponse.Type

// ---------------------------------------------------------------------------------------------
// /v1/chat/completions

/** A content part; only text parts carry text. */
export const ChatContentPart = Schema.Struct({ type: Schema.String, text: optional(Schema.String) })

/** `ChatCompletionMessageParam` (`vllm/entrypoints/chat_utils.py`), the fields a text model reads. */
export const ChatMessageParam = Schema.Struct({
  role: Schema.String,
  content: optional(Schema.Union([Schema.String, Schema.Array(ChatContentPart)])),
  name: optional(Schema.String)
})
export type ChatMessageParam = typeof ChatMessageParam.Type

/** `chat_completion/protocol.py@002032ee` `ChatCompletionRequest` */
export const ChatCompletionRequest = Schema.Struct({
  ...samplingFields,
  messages: Schema.Array(ChatMessageParam),
  /** Whether to return per-token logprobs (a boolean here, unlike completions). */
  logprobs: optional(Schema.Boolean),
  top_logprobs: optional(Schema.Int),
  /** Deprecated in favour of `max_completion_tokens`; vLLM's default is the rest of the context. */
  max_tokens: optional(Schema.Int),
  max_completion_tokens: optional(Schema.Int),
  tools: optional(Schema.Array(Schema.Unknown)),
  tool_choice: optional(Schema.Unknown),
  echo: optional(Schema.Boolean),
  add_generation_prompt: optional(Schema.Boolean),
  continue_final_message: optional(Schema.Boolean),
  chat_template: optional(Schema.String),
  chat_template_kwargs: optional(Schema.Record(Schema.String, Schema.Unknown))
})
export type ChatCompletionRequest = typeof ChatCompletionRequest.Type

/** `chat_completion/protocol.py@002032ee` `ChatCompletionLogProb` / `ChatCompletionLogProbsContent` */
export const ChatLogProbsContent = Schema.Struct({
  token: Schema.String,
  logprob: Schema.Number,
  bytes: optional(Schema.Array(Schema.Int)),
  top_logprobs: Schema.Array(Schema.Struct({ token: Schema.String, logprob: Schema.Number, bytes: optional(Schema.Array(Schema.Int)) }))
})
export type ChatLogProbsContent = typeof ChatLogProbsContent.Type

/** `chat_completion/protocol.py@002032ee` `ChatCompletionLogProbs` */
export const ChatLogProbs = Schema.Struct({ content: optional(Schema.Array(ChatLogProbsContent)) })
export type ChatLogProbs = typeof ChatLogProbs.Type

/** `chat_completion/protocol.py@002032ee` `ChatMessage` (empty `tool_calls` are left out, as vLLM does). */
export const ChatMessage = Schema.Struct({
  role: Schema.String,
  content: optional(Schema.String),
  reasoning: optional(Schema.String),
  tool_calls: Schema.optionalKey(Schema.Array(Schema.Unknown))
})

/** `chat_completion/protocol.py@002032ee` `ChatCompletionResponseChoice` */
export const ChatChoice = Schema.Struct({
  index: Schema.Int,
  message: ChatMessage,
  logprobs: optional(ChatLogProbs),
  finish_reason: optional(Schema.String),
  stop_reason: optional(Schema.Union([Schema.Int, Schema.String])),
  token_ids: optional(Schema.Array(Schema.Int))
})
export type ChatChoice = typeof ChatChoice.Type

/** `chat_completion/protocol.py@002032ee` `ChatCompletionResponse` (prompt ids and logprobs are top-level). */
export const ChatCompletionResponse = Schema.Struct({
  id: Schema.String,
  object: Schema.Literal("chat.completion"),
  created: Schema.Int,
  model: Schema.String,
  choices: Schema.Array(ChatChoice),
  usage: UsageInfo,
  system_fingerprint: optional(Schema.String),
  service_tier: optional(Schema.String),
  prompt_logprobs: optional(Schema.Array(PromptLogprob)),
  prompt_token_ids: optional(Schema.Array(Schema.Int)),
  kv_transfer_params: optional(Schema.Unknown)
})
export type ChatCompletionResponse = typeof ChatCompletionResponse.Type

/** `generate/base/protocol.py@022e555` `DeltaMessage`: the first chunk of a choice carries `role`. */
export const DeltaMessage = Schema.Struct({
  role: optional(Schema.String),
  content: optional(Schema.String),
  reasoning: optional(Schema.String)
})

/** `chat_completion/protocol.py@002032ee` `ChatCompletionResponseStreamChoice` */
export const ChatStreamChoice = Schema.Struct({
  index: Schema.Int,
  delta: DeltaMessage,
  logprobs: optional(ChatLogProbs),
  finish_reason: optional(Schema.String),
  stop_reason: optional(Schema.Union([Schema.Int, Schema.String])),
  token_ids: optional(Schema.Array(Schema.Int))
})
export type ChatStreamChoice = typeof ChatStreamChoice.Type

/** One `data:` event of a streamed chat completion. `chat_completion/protocol.py@002032ee` `ChatCompletionStreamResponse` */
export const ChatCompletionStreamResponse = Schema.Struct({
  id: Schema.String,
  object: Schema.Literal("chat.completion.chunk"),
  created: Schema.Int,
  model: Schema.String,
  choices: Schema.Array(ChatStreamChoice),
  usage: optional(UsageInfo),
  prompt_token_ids: optional(Schema.Array(Schema.Int))
})
export type ChatCompletionStreamResponse = typeof ChatCompletionStreamResponse.Type

// ---------------------------------------------------------------------------------------------
// Models, adapters, tokenizer.

/** `engine/protocol.py@040a2cc` `ModelCard` (a LoRA adapter has `parent` set). */
export const ModelCard = Schema.Struct({
  id: Schema.String,
  object: Schema.Literal("model"),
  created: Schema.Int,
  owned_by: Schema.String,
  root: optional(Schema.String),
  parent: optional(Schema.String),
  max_model_len: optional(Schema.Int),
  permission: Schema.Array(Schema.Unknown)
})
/** `engine/protocol.py@040a2cc` `ModelList` */
export const ModelList = Schema.Struct({ object: Schema.Literal("list"), data: Schema.Array(ModelCard) })
export type ModelList = typeof ModelList.Type

/** POST /v1/load_lora_adapter (vLLM `LoadLoRAAdapterRequest`); the reply is a bare text body. */
export const LoadLoraAdapterRequest = Schema.Struct({
  lora_name: Schema.String,
  lora_path: Schema.String,
  load_inplace: optional(Schema.Boolean)
})
/** POST /v1/unload_lora_adapter (vLLM `UnloadLoRAAdapterRequest`). */
export const UnloadLoraAdapterRequest = Schema.Struct({
  lora_name: Schema.String,
  lora_int_id: optional(Schema.Int)
})

/** POST /tokenize: the completion form (`prompt`) or the chat form (`messages`). vLLM `TokenizeRequest` */
export const TokenizeRequest = Schema.Struct({
  model: optional(Schema.String),
  prompt: optional(Schema.String),
  messages: optional(Schema.Array(ChatMessageParam)),
  add_special_tokens: optional(Schema.Boolean),
  add_generation_prompt: optional(Schema.Boolean),
  continue_final_message: optional(Schema.Boolean),
  chat_template_kwargs: optional(Schema.Record(Schema.String, Schema.Unknown)),
  return_token_strs: optional(Schema.Boolean)
})
export type TokenizeRequest = typeof TokenizeRequest.Type

/** vLLM `TokenizeResponse` */
export const TokenizeResponse = Schema.Struct({
  count: Schema.Int,
  max_model_len: Schema.Int,
  tokens: Schema.Array(Schema.Int),
  token_strs: optional(Schema.Array(Schema.String))
})

/** POST /detokenize. vLLM `DetokenizeRequest` / `DetokenizeResponse` */
export const DetokenizeRequest = Schema.Struct({ model: optional(Schema.String), tokens: Schema.Array(Schema.Int) })
export const DetokenizeResponse = Schema.Struct({ prompt: Schema.String })

// ---------------------------------------------------------------------------------------------
// Server-sent events, as vLLM frames them: `data: <json>\n\n` per chunk, then `data: [DONE]\n\n`.

export const SSE_CONTENT_TYPE = "text/event-stream"

/** One event. */
export const sseData = (chunk: unknown): string => `data: ${JSON.stringify(chunk)}\n\n`

/** The stream's last event. */
export const SSE_DONE = "data: [DONE]\n\n"

/** The JSON payloads of an SSE body, in order, up to `[DONE]` (for clients and tests). */
export const parseSse = (body: string): Array<unknown> => {
  const out: Array<unknown> = []
  for (const event of body.split("\n\n")) {
    const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n")
    if (data === "") continue
    if (data === "[DONE]") break
    out.push(JSON.parse(data))
  }
  return out
}
