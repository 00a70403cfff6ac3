/**
 * word-stats: five stages over three paragraphs of public-domain fiction, showing polaris'
 * features at toy scale. Run it twice: the second run executes nothing.
 *
 *   npx polaris run examples/word-stats/recipe.yaml          (a recipe choosing this pipeline)
 *   npx polaris run examples/word-stats/pipeline.ts          (the pipeline with its defaults)
 *   npx tsx examples/word-stats/pipeline.ts [store-dir]      (standalone; store-dir defaults to .polaris)
 *
 * Nodes: count -> rate; count -> seed -> grow/step-000 .. step-002 (a loop); all -> report.
 */
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { Effect, Schema } from "effect"
import { ArtifactStore, Executor, Pipeline, PipelineModule, Progress, Retry, Stage } from "polaris"

const Text = Schema.Struct({ name: Schema.String, text: Schema.String })
const TextStats = Schema.Struct({ name: Schema.String, words: Schema.Number, counts: Schema.Record(Schema.String, Schema.Number) })
const Rating = Schema.Struct({ name: Schema.String, variety: Schema.Number })
const Vocabulary = Schema.Struct({ words: Schema.Array(Schema.String), coverage: Schema.Number })

/** Words: maximal runs of letters/digits with inner apostrophes and hyphens, lower-cased. */
const wordsOf = (text: string) => text.toLowerCase().match(/[\p{L}\p{N}]+(?:['’-][\p{L}\p{N}]+)*/gu) ?? []

/** Share of all word occurrences that `vocabulary` covers. */
const coverage = (stats: ReadonlyArray<typeof TextStats.Type>, vocabulary: ReadonlyArray<string>) => {
  const total = stats.reduce((n, s) => n + s.words, 0)
  const hits = stats.reduce((n, s) => n + vocabulary.reduce((m, w) => m + (s.counts[w] ?? 0), 0), 0)
  return total === 0 ? 0 : hits / total
}

/** Counts words per text. The texts are params, so editing one changes this node's key. */
const countWords = Stage.make({
  name: "count-words",
  version: "1", // memo keys hold the version, not the source: bump it when wordsOf changes
  params: Schema.Struct({ texts: Schema.Array(Text) }),
  output: Schema.Array(TextStats),
  run: (_, { texts }, ctx) =>
    Effect.forEach(texts, (t, i) =>
      // One memo item per text: after a crash, or when a text is added, finished texts are reused.
      ctx.memo("text", t, TextStats, Effect.sync(() => {
        const words = wordsOf(t.text)
        const counts: Record<string, number> = {}
        for (const w of words) counts[w] = (counts[w] ?? 0) + 1
        return { name: t.name, words: words.length, counts }
      })).pipe(Effect.tap(() => ctx.progress(i + 1, texts.length))))
})

let rateCalls = 0 // calls to the pretend remote service in this process

/**
 * Stands in for a remote judge: its first call fails with a 503, and the Schedule retries it.
 * With RATER_DOWN=1 in the environment every call fails: the run fails, and `polaris resume`
 * (without it) finishes the run, reusing every node that had finished.
 */
const rateTexts = Stage.make({
  name: "rate-texts",
  version: "1",
  resource: "rater",
  retry: Retry.backoff({ base: "20 millis", cap: "1 second", attempts: 4 }),
  inputs: { stats: Schema.Array(TextStats) },
  output: Schema.Array(Rating),
  run: ({ stats }) =>
    Effect.suspend(() =>
      ++rateCalls === 1 || process.env.RATER_DOWN === "1"
        ? Effect.fail(new Retry.TransientError({ message: "503 Service Unavailable from the rating service" }))
        : Effect.succeed(stats.map((s) => ({ name: s.name, variety: Object.keys(s.counts).length / s.words }))))
})

/** The loop's initial state: a vocabulary of a few given words. */
const seedVocabulary = Stage.make({
  name: "seed-vocabulary",
  version: "1",
  inputs: { stats: Schema.Array(TextStats) },
  params: Schema.Struct({ words: Schema.Array(Schema.String) }),
  output: Vocabulary,
  run: ({ stats }, { words }) => Effect.succeed({ words, coverage: coverage(stats, words) })
})

/** One loop step: adds the `add` most frequent words not yet in the vocabulary. */
const growVocabulary = Stage.make({
  name: "grow-vocabulary",
  version: "1",
  inputs: { vocabulary: Vocabulary, stats: Schema.Array(TextStats) },
  params: Schema.Struct({ add: Schema.Number.check(Schema.isGreaterThan(0)) }),
  output: Vocabulary,
  run: ({ vocabulary, stats }, { add }, ctx) =>
    Effect.gen(function*() {
      const totals = new Map<string, number>()
      for (const s of stats) for (const [w, n] of Object.entries(s.counts)) totals.set(w, (totals.get(w) ?? 0) + n)
      const known = new Set(vocabulary.words)
      const fresh = [...totals].filter(([w]) => !known.has(w)).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
      const words = [...vocabulary.words, ...fresh.slice(0, add).map(([w]) => w)]
      const next = { words, coverage: coverage(stats, words) }
      yield* ctx.metric({ size: words.length, coverage: next.coverage })
      return next
    })
})

const report = Stage.make({
  name: "report",
  version: "1",
  inputs: { stats: Schema.Array(TextStats), ratings: Schema.Array(Rating), vocabulary: Vocabulary },
  output: Schema.String,
  run: ({ stats, ratings, vocabulary }) =>
    Effect.succeed([
      `${"text".padEnd(28)}${"words".padStart(6)}${"variety".padStart(9)}`,
      ...stats.map((s, i) => `${s.name.padEnd(28)}${String(s.words).padStart(6)}${(ratings[i]?.variety ?? NaN).toFixed(2).padStart(9)}`),
      `vocabulary of ${vocabulary.words.length} words covers ${(100 * vocabulary.coverage).toFixed(1)}% of the text:`,
      `  ${vocabulary.words.join(" ")}`
    ].join("\n"))
})

/** What a recipe may set under `params:` (see recipe.yaml beside this file). */
const Params = Schema.Struct({
  texts: Schema.optionalKey(Schema.String), // folder of .txt files, relative to this module
  grow_steps: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))),
  add_per_step: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThan(0)))
})

const readTexts = (dir: string) =>
  readdirSync(dir).filter((f) => f.endsWith(".txt")).sort()
    .map((f) => ({ name: f.slice(0, -4), text: readFileSync(join(dir, f), "utf8") }))

/** The graph, from its parameters. */
const build = (b: Pipeline.Builder, params: typeof Params.Type) => {
  const texts = readTexts(join(import.meta.dirname, params.texts ?? "texts"))
  const stats = b.node(countWords, { id: "count", params: { texts } })
  const ratings = b.node(rateTexts, { id: "rate", inputs: { stats } })
  const vocabulary = b.loop("grow", {
    steps: params.grow_steps ?? 3,
    init: b.node(seedVocabulary, { id: "seed", inputs: { stats }, params: { words: ["the", "and"] } }),
    body: (step, vocabulary) => step.node(growVocabulary, { id: "grow", inputs: { vocabulary, stats }, params: { add: params.add_per_step ?? 4 } })
  })
  return { report: b.node(report, { id: "report", inputs: { stats, ratings, vocabulary } }) }
}

/** For recipes (`pipeline: ./pipeline.ts`): `polaris run` takes the default export. */
export default PipelineModule.define("word-stats", (b, recipe) => build(b, Schema.decodeUnknownSync(Params)(recipe.params ?? {})))

/** The same pipeline with its defaults, for code. */
const pipeline = Pipeline.make("word-stats", (b) => build(b, {}))

const program = Effect.gen(function*() {
  const result = yield* Executor.run(pipeline, {
    concurrency: { rater: 1 },
    onStart: (log) => Progress.attach(log, { mode: "auto" }) // progress on stderr
  })
  console.log(result.outputs.report)
  console.log(`nodes: ${pipeline.nodes.length}, executed: ${result.executed}, cached: ${result.cached} (run ${result.runId})`)
})

// Run standalone only when executed directly, not when `polaris run` imports the module.
if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  Effect.runPromise(program.pipe(Effect.provide(ArtifactStore.layer(process.argv[2] ?? ".polaris")))).catch((error) => {
    console.error(error instanceof Error ? error.message : String(error))
    process.exitCode = 1
  })
}
