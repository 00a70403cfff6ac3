/**
 * `polaris data`: look at the stories the ingest step finds in source files before a run.
 *
 *   polaris data split FILE... [--json]
 *   polaris data stats RECIPE [--json]
 *
 * Prints, per source, each story's title, first words and word count, then a total; `--json`
 * prints one array of `{ file, anthology, id, title, words, preview }` records.
 */
import { Console, Effect, Layer, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as ArtifactStore from "../dag/ArtifactStore.ts"
import { ingest } from "../data/Ingest.ts"
import { type Prompt, promptText } from "../data/Prompts.ts"
import type { Story } from "../data/Story.ts"
import * as Executor from "../dag/Executor.ts"
import { ModuleError } from "../dag/PipelineModule.ts"
import type { Strata } from "../records/Strata.ts"
import { storeOverride } from "./flags.ts"
import { resolveTarget } from "./target.ts"

/** The first `n` whitespace-separated tokens of a story's text, with an ellipsis when there are more. */
export const preview = (story: Story, n = 8): string => {
  const tokens = story.text.trim().split(/\s+/)
  const first = tokens.slice(0, n).join(" ")
  return tokens.length > n ? `${first} …` : first
}

/** One source's stories as the text listing prints them. */
export const formatSplit = (file: string, stories: ReadonlyArray<Story>): string => {
  const total = stories.reduce((n, s) => n + s.words, 0)
  const width = String(stories.length).length
  const lines = stories.map((s, i) => `  ${String(i + 1).padStart(width)}. ${s.title}  (${s.words.toLocaleString("en-US")} words)  ${preview(s)}`)
  return [`${file}: ${stories.length} ${stories.length === 1 ? "story" : "stories"}, ${total.toLocaleString("en-US")} words`, ...lines].join("\n")
}

const files = Argument.String("file").pipe(
  Argument.withDescription("A source: a Project Gutenberg .txt, a .jsonl of {title, text}, an .epub, or a folder of .txt/.md stories or PG books"),
  Argument.atLeast(1)
)
const json = Flag.Boolean("json").pipe(Flag.withDescription("Print a JSON array of the stories found (text omitted)"), Flag.withDefault(false))

const splitCommand = Command.make("split", { files, json }, (a) =>
  Effect.gen(function*() {
    const rows: Array<Record<string, unknown>> = []
    let stories = 0
    let total = 0
    for (const file of a.files) {
      const found = yield* ingest(file)
      stories += found.length
      total += found.reduce((n, s) => n + s.words, 0)
      if (a.json) for (const s of found) rows.push({ file, anthology: s.anthology, id: s.id, title: s.title, words: s.words, preview: preview(s) })
      else yield* Console.log(formatSplit(file, found) + "\n")
    }
    if (a.json) return yield* Console.log(JSON.stringify(rows, null, 2))
    yield* Console.log(`total: ${stories} ${stories === 1 ? "story" : "stories"}, ${total.toLocaleString("en-US")} words in ${a.files.length} ${a.files.length === 1 ? "source" : "sources"}`)
  })).pipe(
    Command.withDescription("Show the stories found in source files: title, first words, word count"),
    Command.withExamples([
      { command: "polaris data split examples/anthologies/pg2776-ohenry-the-four-million.txt", description: "The stories of one Project Gutenberg book" },
      { command: "polaris data split examples/anthologies", description: "A folder of books (each .txt with PG markers is one anthology)" },
      { command: "polaris data split stories.jsonl book.epub --json", description: "Several sources, as a JSON array for scripts" }
    ])
  )

/** What `data stats` reads from a data pipeline's outputs. */
interface DataOutputs {
  readonly dataset: { readonly train: ReadonlyArray<Story>; readonly heldout: ReadonlyArray<Story>; readonly report: Readonly<Record<string, number>> }
  readonly prompts: ReadonlyArray<Prompt>
  readonly strata: Strata
}

/** The stats of a recipe's data, as lines for people. */
export const formatStats = (o: DataOutputs): string => {
  const lines: Array<string> = []
  const perAnthology = new Map<string, { train: number; heldout: number }>()
  for (const [split, stories] of [["train", o.dataset.train], ["heldout", o.dataset.heldout]] as const) {
    for (const s of stories) {
      const row = perAnthology.get(s.anthology) ?? { train: 0, heldout: 0 }
      row[split]++
      perAnthology.set(s.anthology, row)
    }
  }
  lines.push(`stories: ${o.dataset.train.length} train, ${o.dataset.heldout.length} held out  (${Object.entries(o.dataset.report).map(([k, v]) => `${k} ${v}`).join(", ")})`)
  const width = Math.max(...[...perAnthology.keys()].map((k) => k.length), 10)
  for (const [name, row] of [...perAnthology].sort()) lines.push(`  ${name.padEnd(width)}  ${String(row.train).padStart(4)} train  ${String(row.heldout).padStart(3)} held out`)
  const all = [...o.dataset.train, ...o.dataset.heldout]
  const bins = new Map<number, number>()
  for (const s of all) bins.set(Math.floor(s.words / 1000), (bins.get(Math.floor(s.words / 1000)) ?? 0) + 1)
  const most = Math.max(...bins.values(), 1)
  lines.push("", "story words:")
  for (const [bin, n] of [...bins].sort((a, b) => a[0] - b[0])) lines.push(`  ${`${bin}k-${bin + 1}k`.padEnd(8)} ${String(n).padStart(4)}  ${"#".repeat(Math.ceil((40 * n) / most))}`)
  lines.push("", `prompts per bucket (requested words)${o.strata.outside > 0 ? `; ${o.strata.outside} outside every bucket` : ""}:`)
  o.strata.names.forEach((name, i) => lines.push(`  ${name.padEnd(12)} ${String(o.strata.buckets[i]!.length).padStart(4)}  weight ${o.strata.weights[i]}`))
  lines.push("", "sample prompts:")
  const byId = new Map(o.prompts.map((p) => [p.id, p]))
  for (const ids of o.strata.buckets) {
    const p = ids[0] === undefined ? undefined : byId.get(ids[0])
    if (p !== undefined) lines.push(`  ${promptText(p.requested_words, p.premise)}`)
  }
  return lines.join("\n")
}

const statsCommand = Command.make(
  "stats",
  {
    recipe: Argument.String("recipe").pipe(Argument.withDescription("A recipe whose pipeline has dataset, prompts and strata outputs (e.g. polaris-data)")),
    sets: Flag.String("set").pipe(Flag.withDescription("Override a recipe value (repeatable)"), Flag.atLeast(0)),
    store: storeOverride,
    json: Flag.Boolean("json").pipe(Flag.withDescription("Print the counts as JSON"), Flag.withDefault(false))
  },
  (a) =>
    Effect.gen(function*() {
      const t = yield* resolveTarget(a.recipe, { sets: a.sets, store: Option.getOrUndefined(a.store) })
      for (const name of ["dataset", "prompts", "strata"]) {
        if (!(name in t.pipeline.outputs)) {
          return yield* new ModuleError({ file: a.recipe, reason: `pipeline ${t.pipeline.name} has no "${name}" output; data stats needs dataset, prompts and strata` })
        }
      }
      // Runs the pipeline: cached nodes are read back, so on a finished recipe this only reads.
      const result = yield* Executor.run(t.pipeline, { config: t.config, concurrency: t.concurrency, pools: t.pools, retries: t.retries }).pipe(
        Effect.provide(Layer.merge(ArtifactStore.layer(t.store), t.layer))
      )
      const o = result.outputs as unknown as DataOutputs
      if (!a.json) return yield* Console.log(formatStats(o))
      yield* Console.log(JSON.stringify({
        report: o.dataset.report,
        buckets: Object.fromEntries(o.strata.names.map((n, i) => [n, o.strata.buckets[i]!.length])),
        outside: o.strata.outside,
        anthologies: [...new Set([...o.dataset.train, ...o.dataset.heldout].map((s) => s.anthology))].sort()
      }))
    })
).pipe(
  Command.withDescription("Stories per anthology, a histogram of story words, prompts per bucket and sample prompts of a recipe's data"),
  Command.withExamples([{ command: "polaris data stats recipes/polaris-data.yaml", description: "Check a dataset before training on it" }])
)

/** `polaris data`: inspect source data (`split`) and a recipe's dataset (`stats`). */
export const dataCommand = Command.make("data").pipe(
  Command.withDescription("Inspect source data: the stories the ingest step finds, and a recipe's dataset"),
  Command.withExamples([
    { command: "polaris data split examples/anthologies", description: "List the stories of the bundled corpus" },
    { command: "polaris data stats recipes/polaris-data.yaml", description: "Buckets, histogram and sample prompts" }
  ]),
  Command.withSubcommands([splitCommand, statsCommand])
)
