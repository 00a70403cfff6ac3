/**
 * `pretrain-corpus`: the pretraining text as token windows. Two kinds of sequence:
 * - plain story text (title, blank line, body) cut into windows of `seq_len` tokens;
 * - chat examples in the embedded model's template: a prompt ("Write a N-word story about ...",
 *   with an extractive premise) then the story's opening, cut at a paragraph to at most
 *   `chat_words` words (several lengths per story), closed by `<|end|>`, so the model learns the
 *   chat layout, to stop, and that N means length.
 * The held-out stories give the held-out sets (plain and chat) for perplexity.
 */
import { Effect, Schema } from "effect"
import { premise } from "../src/data/Premise.ts"
import { excerpt, promptText, requestedWords } from "../src/data/Prompts.ts"
import { Story } from "../src/data/Story.ts"
import { completionIds, promptIds } from "../src/model/tokenizer/ChatTemplate.ts"
import { Tokenizer } from "../src/model/tokenizer/Tokenizer.ts"
import * as TokenCorpus from "../src/model/TokenCorpus.ts"
import * as Stage from "../src/dag/Stage.ts"
import { countWords } from "../src/text/WordCount.ts"
import { TokenizerFiles } from "../src/records/TokenizerFiles.ts"
import { PretrainCorpus } from "../src/records/PretrainCorpus.ts"

/** Windows shorter than this are dropped: they teach little and cost a padded row. */
const MIN_WINDOW = 32

export const pretrainCorpus = Stage.make({
  name: "pretrain-corpus",
  version: "1",
  inputs: {
    tokenizer: TokenizerFiles,
    train: Schema.Array(Story),
    heldout: Schema.Array(Story)
  },
  params: Schema.Struct({
    seq_len: Schema.Int.check(Schema.isGreaterThan(MIN_WINDOW)),
    chat_words: Schema.Array(Schema.Int.check(Schema.isGreaterThan(0)))
  }),
  output: PretrainCorpus,
  run: (inputs, { seq_len, chat_words }, ctx) =>
    Effect.gen(function*() {
      const tok = Tokenizer.fromJson(JSON.parse(inputs.tokenizer.json), JSON.parse(inputs.tokenizer.config))
      const plain = (stories: ReadonlyArray<Story>) =>
        stories.flatMap((s) => TokenCorpus.windows(tok.encode(`${s.title}\n\n${s.text}`), seq_len, MIN_WINDOW))
      const chat = (stories: ReadonlyArray<Story>) =>
        stories.flatMap((s) => {
          const about = premise(s)
          const openings = [...new Set(chat_words.map((w) => excerpt(s.text, w)))]
          return openings.map((text) =>
            [...promptIds(tok, promptText(requestedWords(countWords(text), 10), about)), ...completionIds(tok, text)].slice(0, seq_len + 1))
        })
      const trainChat = chat(inputs.train)
      const train = TokenCorpus.fromSequences([...plain(inputs.train), ...trainChat])
      const heldout = TokenCorpus.fromSequences(plain(inputs.heldout))
      const heldoutChat = TokenCorpus.fromSequences(chat(inputs.heldout))
      const stats = {
        train_sequences: TokenCorpus.size(train),
        train_tokens: train.tokens.length,
        train_chat_sequences: trainChat.length,
        train_chat_ended: trainChat.filter((q) => q.length <= seq_len + 1 && q.at(-1) === tok.tokenId("<|end|>")).length,
        heldout_tokens: heldout.tokens.length,
        heldout_chat_tokens: heldoutChat.tokens.length,
        vocab_size: tok.vocabSize
      }
      yield* ctx.metric(stats)
      return {
        train: yield* ctx.putBlob(TokenCorpus.encode(train)),
        heldout: yield* ctx.putBlob(TokenCorpus.encode(heldout)),
        heldout_chat: yield* ctx.putBlob(TokenCorpus.encode(heldoutChat)),
        stats
      }
    })
})
