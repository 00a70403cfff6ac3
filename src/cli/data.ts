/**
 * `polaris data`: look at the stories the ingest step finds in source files before a run.
 *
 *   polaris data split FILE... [--json]
 *
 * Prints, per source, each story's title, first words and word count, then a total; `--json`
 * prints one array of `{ file, anthology, id, title, words, preview }` records.
 */
import { Console, Effect } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { ingest } from "../data/Ingest.ts"
import type { Story } from "../data/Story.ts"

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

/** `polaris data`: inspect source data (`split`). */
export const dataCommand = Command.make("data").pipe(
  Command.withDescription("Inspect source data: the stories the ingest step finds"),
  Command.withExamples([{ command: "polaris data split examples/anthologies", description: "List the stories of the bundled corpus" }]),
  Command.withSubcommands([splitCommand])
)
