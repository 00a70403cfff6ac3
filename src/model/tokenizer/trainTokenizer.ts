/**
 * Trains the embedded model's byte-level BPE on the bundled corpus (examples/anthologies, PG
 * boilerplate stripped) and writes tokenizer.json + tokenizer_config.json to a directory.
 * Prints the training time and tokens per word on a held-out slice (last 5% of each book).
 *
 * Usage: `npx tsx src/model/tokenizer/trainTokenizer.ts OUT_DIR [VOCAB_SIZE=4096]`
 */
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { gutenbergBody } from "../../data/Gutenberg.ts"
import { countWords, trainBpeFromCounts } from "./BpeTrainer.ts"
import { Tokenizer } from "./Tokenizer.ts"
import { writeTokenizerFiles } from "./TokenizerFiles.ts"

const outDir = process.argv[2]
if (outDir === undefined) {
  console.error("usage: trainTokenizer.ts OUT_DIR [VOCAB_SIZE]")
  process.exit(2)
}
const vocabSize = Number(process.argv[3] ?? 4096)
const corpusDir = "examples/anthologies"

const bodies = readdirSync(corpusDir)
  .filter((f) => f.endsWith(".txt"))
  .sort()
  .map((f) => gutenbergBody(readFileSync(join(corpusDir, f))))
const split = (body: string) => Math.floor(body.length * 0.95)
const train = bodies.map((b) => b.slice(0, split(b)))
const heldOut = bodies.map((b) => b.slice(split(b)))

const t0 = performance.now()
const counts = countWords(train)
const t1 = performance.now()
const json = trainBpeFromCounts(counts, { vocabSize })
const t2 = performance.now()
const path = writeTokenizerFiles(outDir, json)

const tok = Tokenizer.fromFile(path)
const t3 = performance.now()
let nTokens = 0
let nWords = 0
for (const text of heldOut) {
  nTokens += tok.encode(text).length
  nWords += text.split(/\s+/).filter((w) => w.length > 0).length
}
const t4 = performance.now()
const roundtrip = heldOut.every((t) => tok.decode(tok.encode(t)) === t)

console.log(`corpus: ${train.reduce((n, t) => n + t.length, 0)} chars train, ${counts.size} unique pre-tokens`)
console.log(`count words: ${((t1 - t0) / 1000).toFixed(2)} s; merges: ${((t2 - t1) / 1000).toFixed(2)} s; total ${((t2 - t0) / 1000).toFixed(2)} s`)
console.log(`vocab ${tok.vocabSize} (${json.model.merges.length} merges) -> ${path}`)
console.log(`held-out: ${nWords} words, ${nTokens} tokens, ${(nTokens / nWords).toFixed(3)} tokens/word; encode ${((t4 - t3) / 1000).toFixed(2)} s; exact roundtrip: ${roundtrip}`)
