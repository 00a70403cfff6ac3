/**
 * `train-tokenizer`: a byte-level BPE vocabulary learned from the training stories (never the
 * held-out ones, so held-out perplexity is honest), as the two files a model repository ships.
 */
import { Effect, Schema } from "effect"
import { countWords, serializeTokenizerJson, trainBpeFromCounts } from "../src/model/tokenizer/BpeTrainer.ts"
import { tokenizerConfigFor } from "../src/model/tokenizer/TokenizerFiles.ts"
import { Story } from "../src/data/Story.ts"
import * as Stage from "../src/dag/Stage.ts"
import { TokenizerFiles } from "../src/records/TokenizerFiles.ts"

export const trainTokenizer = Stage.make({
  name: "train-tokenizer",
  version: "1",
  inputs: { stories: Schema.Array(Story) },
  params: Schema.Struct({ vocab_size: Schema.Int.check(Schema.isGreaterThan(260)) }),
  output: TokenizerFiles,
  run: ({ stories }, { vocab_size }, ctx) =>
    Effect.gen(function*() {
      const json = trainBpeFromCounts(countWords(stories.map((s) => s.text)), { vocabSize: vocab_size })
      yield* ctx.metric({ vocab_size: json.model.merges.length + 256 + json.added_tokens.length, merges: json.model.merges.length })
      return { json: serializeTokenizerJson(json), config: `${JSON.stringify(tokenizerConfigFor(json), null, 2)}\n` }
    })
})
