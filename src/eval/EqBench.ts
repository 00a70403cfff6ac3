/**
 * EQ-Bench Creative Writing v3 (github.com/EQ-bench/creative-writing-bench, its `data/` folder),
 * read from the benchmark's own files at a path the user gives (the files are not ours to ship):
 *
 *   creative_writing_prompts_v3.json   {id: {category, title, writing_prompt, seed_modifiers[]}}
 *   creative_writing_criteria.txt      the rubric's criteria, one per line, scored 0-20
 *   negative_criteria.txt              the criteria where lower is better
 *   creative_writing_judging_prompt.txt  the rubric judge's prompt template
 *   pairwise_prompt.txt                the pairwise judge's prompt template
 *   slop_list.json, slop_list_bigrams.json, slop_list_trigrams.json   [[phrase], ...]
 *
 * As the benchmark does (its core/conversation.py, core/scoring.py, utils of the slop index):
 * iteration i of a prompt replaces `<SEED>` with seed modifier (i-1) mod n; the judge reads the
 * base prompt, the response, the criteria as "- name" lines and the lower-is-better criteria
 * joined by ", "; scores are read as `Metric: 12` lines (above 20 dropped), negative criteria
 * inverted as 20 - score, an item's score is the mean of its criteria (0-20) and the benchmark's
 * score the mean over items times 5 (0-100). The slop index counts word hits once, bigram hits
 * twice and trigram hits eight times per thousand words (`\b\w+\b` tokens, lowercased).
 */
import { readFile } from "node:fs/promises"
import { join } from "node:path"
import { Data, Effect, Schema } from "effect"
import type { EqItem } from "../records/EqBench.ts"

export class EqBenchError extends Data.TaggedError("EqBenchError")<{ readonly message: string }> {}

const Prompts = Schema.Record(Schema.String, Schema.Struct({
  category: Schema.String,
  title: Schema.String,
  writing_prompt: Schema.String,
  seed_modifiers: Schema.Array(Schema.String)
}))
const SlopList = Schema.Array(Schema.Array(Schema.String))

/** The benchmark's files, read. */
export interface EqBenchData {
  readonly prompts: typeof Prompts.Type
  readonly criteria: ReadonlyArray<string>
  readonly negative: ReadonlyArray<string>
  readonly judgeTemplate: string
  readonly pairwiseTemplate: string
  readonly slop: { readonly words: ReadonlySet<string>; readonly bigrams: ReadonlySet<string>; readonly trigrams: ReadonlySet<string> }
}

export const FILES = {
  prompts: "creative_writing_prompts_v3.json",
  criteria: "creative_writing_criteria.txt",
  negative: "negative_criteria.txt",
  judge: "creative_writing_judging_prompt.txt",
  pairwise: "pairwise_prompt.txt",
  words: "slop_list.json",
  bigrams: "slop_list_bigrams.json",
  trigrams: "slop_list_trigrams.json"
} as const

const lines = (text: string) => text.split("\n").map((l) => l.trim()).filter((l) => l !== "")
const slopSet = (list: ReadonlyArray<ReadonlyArray<string>>) => new Set(list.flatMap((x) => (x[0] === undefined ? [] : [x[0].toLowerCase()])))

/** The benchmark's files in `dir` (a copy of the repository's `data/` folder). */
export const load = (dir: string): Effect.Effect<EqBenchData, EqBenchError> =>
  Effect.gen(function*() {
    const read = (name: string) => Effect.tryPromise({ try: () => readFile(join(dir, name), "utf8"), catch: () => new EqBenchError({ message: `${join(dir, name)}: cannot read it (point eqbench.dir at a copy of the benchmark's data/ folder)` }) })
    const json = <A>(name: string, schema: Schema.Codec<A, any>) =>
      Effect.flatMap(read(name), (text) =>
        Effect.mapError(Schema.decodeUnknownEffect(Schema.fromJsonString(schema))(text), (e) => new EqBenchError({ message: `${join(dir, name)}: ${e.message}` })))
    const [prompts, criteria, negative, judgeTemplate, pairwiseTemplate, words, bigrams, trigrams] = yield* Effect.all([
      json(FILES.prompts, Prompts), read(FILES.criteria), read(FILES.negative), read(FILES.judge), read(FILES.pairwise),
      json(FILES.words, SlopList), json(FILES.bigrams, SlopList), json(FILES.trigrams, SlopList)
    ])
    return { prompts, criteria: lines(criteria), negative: lines(negative), judgeTemplate, pairwiseTemplate, slop: { words: slopSet(words), bigrams: slopSet(bigrams), trigrams: slopSet(trigrams) } }
  })

/** Every prompt (in id order) at iterations 1..n; iteration i takes seed modifier (i-1) mod count. */
export const items = (data: EqBenchData, iterations: number): Array<EqItem> =>
  Object.keys(data.prompts).sort((a, b) => Number(a) - Number(b) || a.localeCompare(b)).flatMap((id) => {
    const p = data.prompts[id]!
    return Array.from({ length: iterations }, (_, k) => {
      const seed = p.seed_modifiers.length === 0 ? "" : p.seed_modifiers[k % p.seed_modifiers.length]!
      return { id: `${id}#${k + 1}`, prompt_id: id, iteration: k + 1, prompt: p.writing_prompt.replace("<SEED>", seed), base_prompt: p.writing_prompt }
    })
  })

// Python's str.format for the templates' named fields; `{{`/`}}` are literal braces.
const format = (template: string, fields: Readonly<Record<string, string>>) =>
  template.replace(/\{\{|\}\}|\{(\w+)\}/g, (m, name: string | undefined) => (m === "{{" ? "{" : m === "}}" ? "}" : fields[name!] ?? m))

/** The rubric judge's prompt for one response. */
export const judgePrompt = (data: EqBenchData, item: Pick<EqItem, "base_prompt">, response: string): string =>
  format(data.judgeTemplate, {
    writing_prompt: item.base_prompt,
    test_model_response: response,
    creative_writing_criteria: data.criteria.map((c) => `- ${c}`).join("\n"),
    lower_is_better_criteria: data.negative.join(", ")
  })

/** The pairwise judge's prompt: response `a` as writer A0493, `b` as A0488 (the template's own labels). */
export const pairwisePrompt = (data: EqBenchData, item: Pick<EqItem, "base_prompt">, a: string, b: string): string =>
  format(data.pairwiseTemplate, { writing_prompt: item.base_prompt, model_a_analysis: a, model_b_analysis: b })

/** `Metric: 12` or `Metric: [12]` lines, as the benchmark reads them; scores above 20 are dropped. */
export const parseScores = (text: string): Record<string, number> => {
  const scores: Record<string, number> = {}
  for (const pattern of [/(.*?):\s*(?:Score\s+)?(-?\d+(?:\.\d+)?)/g, /(.*?):\s*\[(-?\d+(?:\.\d+)?)\]/g]) {
    for (const m of text.matchAll(pattern)) {
      const score = Number(m[2])
      if (score <= 20) scores[m[1]!.trim()] = score
    }
  }
  return scores
}

/** An item's score (0-20): the mean of its criteria's scores, lower-is-better ones as 20 - score; NaN without scores. */
export const itemScore = (scores: Readonly<Record<string, number>>, negative: ReadonlyArray<string>): number => {
  const values = Object.entries(scores).map(([metric, s]) => (negative.includes(metric) ? 20 - s : s)).filter((s) => s <= 20)
  return values.length === 0 ? NaN : values.reduce((a, b) => a + b, 0) / values.length
}

/** The slop index of a text: (word hits + 2 bigram hits + 8 trigram hits) per thousand words. */
export const slopIndex = (text: string, slop: EqBenchData["slop"]): number => {
  const tokens = text.toLowerCase().match(/\b\w+\b/g) ?? []
  if (tokens.length === 0) return 0
  let words = 0, bigrams = 0, trigrams = 0
  tokens.forEach((t, i) => {
    if (slop.words.has(t)) words++
    if (i + 1 < tokens.length && slop.bigrams.has(`${t} ${tokens[i + 1]}`)) bigrams++
    if (i + 2 < tokens.length && slop.trigrams.has(`${t} ${tokens[i + 1]} ${tokens[i + 2]}`)) trigrams++
  })
  return ((words + 2 * bigrams + 8 * trigrams) / tokens.length) * 1000
}

/**
 * A pairwise answer as the benchmark's judge gives it (`"writing_quality": "A0493+++"` per
 * criterion): each criterion's winner and margin (the number of `+`), summed per writer.
 */
export const parsePairwise = (text: string): { readonly a: number; readonly b: number } => {
  let a = 0, b = 0
  for (const m of text.matchAll(/"\w+"\s*:\s*"(A0493|A0488)(\++)"/g)) {
    if (m[1] === "A0493") a += m[2]!.length
    else b += m[2]!.length
  }
  return { a, b }
}
