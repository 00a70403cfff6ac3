/**
 * The report's verdicts of a judge run outside training and evaluation (a judge-only pipeline
 * such as `judge-references`): per judge node, each story's length score, quality, reward and
 * rubric scores, or why it has none, and the means. Training steps' and evaluations' judges are
 * summarized by their own sections.
 *
 * @example
 * const judged = await Judged.ofNodes(nodes, output) // nodes: [{ id: "judge", stage: "judge" }]
 * const html = Judged.toHtml(judged)
 */
import { Option, Schema } from "effect"
import { Judgement } from "../records/Judgement.ts"
import { escapeXml } from "./Svg.ts"

type Num = number | null

/** One story's verdict, as the report shows it. */
export interface StoryVerdict {
  readonly id: string
  readonly words: number
  readonly length_score: number
  readonly quality: Num
  readonly reward: Num
  /** Mean score per rubric dimension over the story's verdicts (null where none scored it). */
  readonly scores: Readonly<Record<string, Num>>
  readonly unscorable: { readonly reason: string; readonly message: string } | null
}

/** One judge node's stories. */
export interface JudgedJson {
  readonly node: string
  readonly rubric: string | null
  readonly stories: number
  readonly scored: number
  readonly quality_mean: Num
  readonly length_score_mean: Num
  readonly reward_mean: Num
  /** Mean per rubric dimension over the scored stories. */
  readonly dimensions: Readonly<Record<string, Num>>
  readonly verdicts: ReadonlyArray<StoryVerdict>
}

const decode = Schema.decodeUnknownOption(Schema.Array(Judgement))
const mean = (xs: ReadonlyArray<number>): Num => (xs.length === 0 ? null : xs.reduce((a, b) => a + b, 0) / xs.length)
const STEP = /(^|\/)step-\d+\//

/** Judge nodes this section covers: stage `judge`, outside loop steps and `eval-<system>/` scopes. */
export const covers = (node: { readonly id: string; readonly stage: string }): boolean =>
  node.stage === "judge" && !STEP.test(node.id) && !/^eval-[^/]+\//.test(node.id)

/** The section's numbers for one node's output (undefined: not a list of judged stories). */
export const ofOutput = (node: string, output: unknown): JudgedJson | undefined => {
  const judged = decode(output)
  if (Option.isNone(judged)) return undefined
  const verdicts: Array<StoryVerdict> = judged.value.map((j) => {
    const dims = [...new Set(j.verdicts.flatMap((v) => Object.keys(v.scores)))]
    const scores = Object.fromEntries(dims.map((d) => [d, mean(j.verdicts.flatMap((v) => (typeof v.scores[d] === "number" ? [v.scores[d]!] : [])))]))
    return {
      id: j.id,
      words: j.words,
      length_score: j.length_score,
      quality: j.quality,
      reward: j.reward,
      scores,
      unscorable: j.unscorable === null ? null : { reason: j.unscorable.reason, message: j.unscorable.message }
    }
  }).sort((a, b) => a.id.localeCompare(b.id))
  const scored = verdicts.filter((v) => v.unscorable === null && v.quality !== null)
  const dimensions = [...new Set(scored.flatMap((v) => Object.keys(v.scores)))]
  return {
    node,
    rubric: judged.value.flatMap((j) => j.verdicts.map((v) => v.rubric))[0] ?? null,
    stories: verdicts.length,
    scored: scored.length,
    quality_mean: mean(scored.map((v) => v.quality!)),
    length_score_mean: mean(verdicts.map((v) => v.length_score)),
    reward_mean: mean(scored.flatMap((v) => (v.reward === null ? [] : [v.reward]))),
    dimensions: Object.fromEntries(dimensions.map((d) => [d, mean(scored.flatMap((v) => (v.scores[d] === null || v.scores[d] === undefined ? [] : [v.scores[d]!])))])),
    verdicts
  }
}

/** Every covered judge node's section, in the order given. */
export const ofNodes = async (
  nodes: ReadonlyArray<{ readonly id: string; readonly stage: string }>,
  output: (node: string) => Promise<unknown>
): Promise<Array<JudgedJson>> => {
  const out: Array<JudgedJson> = []
  for (const n of nodes.filter(covers)) {
    const judged = ofOutput(n.id, await output(n.id))
    if (judged !== undefined) out.push(judged)
  }
  return out
}

const fmt = (v: Num, digits: number) => (v === null ? "–" : v.toFixed(digits))
const td = (v: Num, digits: number) => `<td class="num"${v === null ? "" : ` data-value="${escapeXml(String(v))}"`}>${fmt(v, digits)}</td>`

/** The HTML of the sections: per node, the means, then one row per story. */
export const toHtml = (judged: ReadonlyArray<JudgedJson>): string =>
  judged.map((j) => {
    const dims = Object.keys(j.dimensions)
    const head = `<tr><th>Story</th><th>Words</th><th>S<sub>l</sub></th><th>Quality</th><th>Reward</th>${dims.map((d) => `<th>${escapeXml(d)}</th>`).join("")}<th>Verdict</th></tr>`
    const means = `<tr class="mean"><th>mean (${j.scored} scored)</th><td></td>${td(j.length_score_mean, 1)}${td(j.quality_mean, 3)}${td(j.reward_mean, 3)}${dims.map((d) => td(j.dimensions[d] ?? null, 2)).join("")}<td></td></tr>`
    const rows = j.verdicts.map((v) =>
      `<tr data-story="${escapeXml(v.id)}"><th>${escapeXml(v.id)}</th><td class="num">${v.words}</td>${td(v.length_score, 1)}${td(v.quality, 3)}${td(v.reward, 3)}` +
      `${dims.map((d) => td(v.scores[d] ?? null, 0)).join("")}` +
      `<td>${v.unscorable === null ? "scored" : `<span class="unscorable" title="${escapeXml(v.unscorable.message)}">unscorable: ${escapeXml(v.unscorable.reason)}</span>`}</td></tr>`)
    return `<h3>${escapeXml(j.node)}: ${j.stories} stories, ${j.scored} scored${j.rubric === null ? "" : ` <small>(rubric ${escapeXml(j.rubric)})</small>`}</h3>` +
      `<div class="wide"><table class="verdicts" data-node="${escapeXml(j.node)}">${head}${means}${rows.join("")}</table></div>`
  }).join("")
