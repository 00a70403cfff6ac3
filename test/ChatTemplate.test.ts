/**
 * Real models' chat templates through THE tokenizer loader: a Qwen3-style template (the
 * structure of Qwen3's `tokenizer_config.json`: `<|im_start|>role\n…<|im_end|>`, and the
 * `enable_thinking is defined and enable_thinking is false` branch that inserts an empty think
 * block), special-token variables, and the completion's end token from `eos_token`.
 */
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { serializeTokenizerJson, trainBpe } from "../src/model/tokenizer/BpeTrainer.ts"
import { completionIds, endToken, promptIds, renderChat } from "../src/model/tokenizer/ChatTemplate.ts"
import { Tokenizer } from "../src/model/tokenizer/Tokenizer.ts"
import { tempDirInRepo } from "./support/store.ts"

const QWEN3_STYLE =
  "{%- for message in messages %}" +
  "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}" +
  "{%- endfor %}" +
  "{%- if add_generation_prompt %}" +
  "{{- '<|im_start|>assistant\\n' }}" +
  "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}" +
  "{%- endif %}"

const tokenizerDir = () => {
  const json = trainBpe(["a story about the sea and a fox"], { vocabSize: 300 })
  const withSpecial = {
    ...json,
    added_tokens: [...json.added_tokens, ...["<|im_start|>", "<|im_end|>"].map((content, i) => ({
      id: 300 + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true
    }))]
  }
  const dir = tempDirInRepo("qwen-tok-")
  writeFileSync(join(dir, "tokenizer.json"), serializeTokenizerJson(withSpecial))
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ chat_template: QWEN3_STYLE, eos_token: { content: "<|im_end|>" }, clean_up_tokenization_spaces: false }))
  return Tokenizer.fromFile(join(dir, "tokenizer.json"))
}

describe("chat templates of real models", () => {
  it("renders the model's own template, with enable_thinking only when asked", () => {
    const tok = tokenizerDir()
    const user = [{ role: "user" as const, content: "Write a story." }]
    expect(renderChat(tok, user, true)).toBe("<|im_start|>user\nWrite a story.<|im_end|>\n<|im_start|>assistant\n")
    expect(renderChat(tok, user, true, { enableThinking: true })).toBe("<|im_start|>user\nWrite a story.<|im_end|>\n<|im_start|>assistant\n")
    expect(renderChat(tok, user, true, { enableThinking: false })).toBe("<|im_start|>user\nWrite a story.<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")
    const ids = promptIds(tok, "Write a story.", { enableThinking: false })
    expect(tok.decode(ids)).toBe("<|im_start|>user\nWrite a story.<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")
    expect(ids[0]).toBe(tok.tokenId("<|im_start|>"))
  })

  it("ends a completion with the model's eos token", () => {
    const tok = tokenizerDir()
    expect(endToken(tok)).toBe("<|im_end|>")
    const ids = completionIds(tok, "The sea.")
    expect(ids.at(-1)).toBe(tok.tokenId("<|im_end|>"))
    expect(tok.decode(ids)).toBe("The sea.<|im_end|>")
  })
})
