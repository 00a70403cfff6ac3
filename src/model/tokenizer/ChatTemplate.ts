/**
 * The chat layout of the embedded story model, as a Jinja chat template (rendered with
 * `@huggingface/jinja`, the way real models' `chat_template` is), and the token ids of its two
 * halves. Sampling feeds `promptIds` and generates until `<|end|>`; teacher forcing scores
 * `completionIds`; both come from the same template and the same loader, so
 * `promptIds(p) ++ completionIds(c)` equals the ids of the whole rendered conversation.
 *
 * Layout: `<|user|>{prompt}<|end|><|assistant|>` then `{completion}<|end|>`.
 *
 * @example
 * ```ts
 * const prompt = promptIds(tok, "Write a story about a lighthouse.")
 * const target = completionIds(tok, "The keeper had not slept in three nights.")
 * // sampling: engine.sample(prompt, ...); teacher forcing: engine.logprobs(prompt, target)
 * ```
 */
import type { Template } from "@huggingface/jinja"
import { createRequire } from "node:module"
import type { Tokenizer } from "./Tokenizer.ts"

/** The embedded model's chat template (also written into tokenizer_config.json). */
export const CHAT_TEMPLATE =
  "{% for message in messages %}" +
  "{% if message['role'] == 'user' %}{{ '<|user|>' + message['content'] + '<|end|>' }}" +
  "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>' + message['content'] + '<|end|>' }}" +
  "{% endif %}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"

export interface ChatMessage {
  readonly role: "user" | "assistant"
  readonly content: string
}

// The template engine on first render (a command that only builds a pipeline never renders).
// Required by name, so the fingerprint still sees the value library it is.
const require = createRequire(import.meta.url)
let jinja: typeof import("@huggingface/jinja") | undefined
const templateEngine = () => (jinja ??= require("@huggingface/jinja") as typeof import("@huggingface/jinja"))

const compiled = new Map<string, Template>()

/** Renders messages with a chat template (the tokenizer's own `chat_template` if it has one). */
export const renderChat = (
  tokenizer: Tokenizer,
  messages: ReadonlyArray<ChatMessage>,
  addGenerationPrompt: boolean,
  options: ChatOptions = {}
): string => {
  const source = typeof tokenizer.config.chat_template === "string" ? tokenizer.config.chat_template : CHAT_TEMPLATE
  let template = compiled.get(source)
  if (template === undefined) compiled.set(source, (template = new (templateEngine().Template)(source)))
  // The variables transformers' apply_chat_template passes: the special tokens, and
  // `enable_thinking` only when asked for (templates test `enable_thinking is defined`).
  const special = Object.fromEntries(["bos_token", "eos_token", "pad_token", "unk_token"].flatMap((k) => {
    const v = tokenString(tokenizer.config[k])
    return v === undefined ? [] : [[k, v]]
  }))
  return template.render({
    ...special,
    messages: messages.map((m) => ({ ...m })),
    add_generation_prompt: addGenerationPrompt,
    ...(options.enableThinking !== undefined ? { enable_thinking: options.enableThinking } : {})
  })
}

/** Template switches (Qwen3-style `enable_thinking`). */
export interface ChatOptions {
  readonly enableThinking?: boolean
}

/** Ids of the rendered user turn plus the generation prompt: what sampling starts from. */
export const promptIds = (tokenizer: Tokenizer, prompt: string, options: ChatOptions = {}): Array<number> =>
  tokenizer.encode(renderChat(tokenizer, [{ role: "user", content: prompt }], true, options))

/**
 * Ids of `{completion}{end token}`: the tokens teacher forcing scores after `promptIds`. The
 * prompt ends in a special token, which the loader never merges across, so these ids do not
 * depend on the prompt: for our template `encode(renderChat([user, assistant]))` is
 * `promptIds ++ completionIds`.
 */
export const completionIds = (tokenizer: Tokenizer, completion: string): Array<number> =>
  tokenizer.encode(`${completion}${endToken(tokenizer)}`)

/** The token that ends a turn in the embedded model's template. */
export const END_TOKEN = "<|end|>"

const tokenString = (v: unknown): string | undefined =>
  typeof v === "string" ? v : typeof v === "object" && v !== null && "content" in v ? String((v as { content: unknown }).content) : undefined

/** The string that ends a turn: tokenizer_config.json's `eos_token` (a string or `{content}`), else `<|end|>`. */
export const endToken = (tokenizer: Tokenizer): string => tokenString(tokenizer.config["eos_token"]) ?? END_TOKEN
