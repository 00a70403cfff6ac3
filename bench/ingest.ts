/**
 * Ingest: the whole bundled corpus (examples/anthologies, 12 Project Gutenberg books) read,
 * stripped of PG boilerplate, split into stories, cleaned and given ids, by `ingest(folder)`
 * in a fresh process started as `polaris` starts (`node --import effect --import tsx`). Wall
 * time is spawn to exit; a second fixture mode does the same work step by step and times each
 * step, so the table says where the time goes. Target: under 3 s from spawn to exit.
 *
 *   npm run bench -- ingest        (or: npx tsx bench/ingest.ts)
 */
import { readdirSync, statSync } from "node:fs"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { type ChildTiming, fmt, fmtSummary, ROOT, summarize, timeChild } from "./measure.ts"
import { markdownTable } from "./table.ts"

const TARGET_MS = 3000
const EXPECTED_STORIES = 231

/** Options of the ingest benchmark. */
export interface IngestOptions {
  /** Measured repetitions (after one warm-up). */
  readonly repeats: number
  /** Progress lines. */
  readonly log: (line: string) => void
}

/** The measured numbers and their markdown section. */
export interface IngestResult {
  readonly repeats: number
  readonly stories: number
  readonly markdown: string
}

const child = async (mode: "ingest" | "phases"): Promise<ChildTiming> => {
  const t = await timeChild("bench/fixtures/ingest.ts", [mode], { preloadEffect: true })
  if (t.report.stories !== EXPECTED_STORIES) throw new Error(`ingest (${mode}): expected ${EXPECTED_STORIES} stories, got ${t.report.stories}`)
  return t
}

/** Runs the benchmark: one warm-up (tsx's transform cache, page cache), then `repeats` of each mode. */
export const run = async (options: IngestOptions): Promise<IngestResult> => {
  const corpus = join(ROOT, "examples", "anthologies")
  const books = readdirSync(corpus).filter((f) => f.endsWith(".txt"))
  const bytes = books.reduce((n, f) => n + statSync(join(corpus, f)).size, 0)
  options.log(`ingest: warm-up (${books.length} books, ${fmt(bytes / 1e6, 1)} MB)`)
  await child("ingest")
  await child("phases")
  const runs: Array<ChildTiming> = []
  const phases: Array<ChildTiming> = []
  for (let i = 0; i < options.repeats; i++) {
    const r = await child("ingest")
    const p = await child("phases")
    options.log(`ingest: run ${i + 1}/${options.repeats}: ${fmt(r.wallMs)} ms spawn to exit (${fmt(r.report.finished! - r.report.imported!)} ms ingesting)`)
    runs.push(r)
    phases.push(p)
  }
  const wall = summarize(runs.map((r) => r.wallMs))
  const importedMs = summarize(runs.map((r) => r.report.imported!))
  const work = summarize(runs.map((r) => r.report.finished! - r.report.imported!))
  const phase = (k: string) => summarize(phases.map((p) => p.report[k]!))
  const table = markdownTable(
    ["ingest of the bundled corpus (ms)", "median (min–max)"],
    [
      ["spawn to exit, `ingest(examples/anthologies)`", fmtSummary(wall)],
      ["… of which startup (imports done)", fmtSummary(importedMs)],
      ["… of which ingesting (imports done → 231 stories)", fmtSummary(work)],
      ["step by step (second fixture mode): read 12 files", fmtSummary(phase("read"), 1)],
      ["… strip PG header and footer, decode", fmtSummary(phase("strip"), 1)],
      ["… split into stories and clean", fmtSummary(phase("split"), 1)],
      ["… Story records (sha256 ids, word counts)", fmtSummary(phase("ids"), 1)]
    ]
  )
  const verdict = wall.median < TARGET_MS ? "met" : "missed"
  const markdown = [
    `All ${books.length} books of \`examples/anthologies\` (${fmt(bytes / 1e6, 1)} MB of Project Gutenberg text, ${EXPECTED_STORIES} stories)`,
    "read, stripped, split, cleaned and turned into Story records with ids, by `bench/fixtures/ingest.ts`",
    "in a fresh process started as `polaris` starts (`node --import effect --import tsx`). Wall time is",
    "spawn to exit; \"startup\" is the process's own mark when its imports were done. The step-by-step",
    "rows come from the same fixture in its `phases` mode, which does the same work without the",
    `\`ingest\` wrapper and times each step. Median (min–max) of ${options.repeats} runs of each mode, after one warm-up.`,
    "",
    table,
    "",
    `**Target (< 3 s from spawn to exit): ${verdict}** (median ${fmt(wall.median)} ms).`
  ].join("\n")
  return { repeats: options.repeats, stories: EXPECTED_STORIES, markdown }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await run({ repeats: 5, log: (l) => console.log(l) })
  console.log(`\n${result.markdown}`)
}
