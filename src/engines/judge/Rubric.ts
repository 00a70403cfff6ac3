/**
 * Rubrics are data (ARCHITECTURE.md §6, shared/design/rubric.md): a YAML file names the
 * dimensions a judge scores, what each means, the scale and the guidance the judge reads. This
 * module loads and validates them (every problem at `file:line:col`), fingerprints them by
 * content, and turns them into what a judge needs: the prompt, the JSON Schema of the reply, the
 * reply's decoder and the aggregate quality.
 *
 * Shipped rubrics: `DEFAULT_RUBRIC` (`story-quality`, the 16-dimension literary rubric) and
 * `PROXY_RUBRIC` (`proxy-text-stats`, text statistics only, for the embedded proxy judge).
 *
 * @example
 * ```ts
 * const rubric = yield* Rubric.load(Rubric.DEFAULT_RUBRIC)
 * const { system, user } = Rubric.judgePrompt(rubric, { prompt, story })
 * // ... call a model with Rubric.replyJsonSchema(rubric) as its response schema ...
 * const reply = Rubric.decodeReply(rubric, text)          // Result<{ scores, evidence }, string>
 * if (Result.isSuccess(reply)) Rubric.quality(rubric, reply.success.scores) // 0..1
 * ```
 */
import { resolve } from "node:path"
import { Data, Effect, Result, Schema } from "effect"
import { digest, sha256 } from "../../dag/Canonical.ts"
import { toProblems } from "../../recipe/internal/issues.ts"
import { formatPath, type Location, originAt, type Path, type Problem, valueAt } from "../../recipe/internal/tree.ts"
import { readYamlFile } from "../../recipe/internal/yamlFile.ts"

// ---------------------------------------------------------------------------------------------
// The data

const RubricId = Schema.String.check(Schema.isPattern(/^[a-z0-9]+(?:[-_][a-z0-9]+)*$/)).annotate({
  description: "lower-case words joined by - or _, e.g. story-quality"
})
const DimensionId = Schema.String.check(Schema.isPattern(/^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$/)).annotate({
  description: "snake_case, e.g. character_depth"
})
const Text = Schema.String.check(Schema.isNonEmpty())

/** One scored dimension. */
export const Dimension = Schema.Struct({
  /** snake_case, unique in its rubric; the key of the dimension in replies and verdicts. */
  id: DimensionId,
  name: Text,
  /** What is judged, or what a 10 means (the rubric's instructions say which). */
  definition: Text,
  /** May the judge answer null (the dimension does not apply)? Default false. */
  nullable: Schema.optionalKey(Schema.Boolean)
})
export type Dimension = typeof Dimension.Type

/** A rubric: what a judge scores and how the scores aggregate. */
export const Rubric = Schema.Struct({
  id: RubricId,
  version: Schema.Int.check(Schema.isGreaterThan(0)),
  name: Text,
  description: Schema.optionalKey(Schema.String),
  /** Score bounds, inclusive; min < max (checked after the Schema). */
  scale: Schema.Struct({ min: Schema.Finite, max: Schema.Finite }),
  /** The guidance the judge reads before the dimensions (bands, evidence first, what to ignore). */
  instructions: Text,
  dimensions: Schema.Array(Dimension).check(Schema.isMinLength(1)),
  /** `mean`: mean of the non-null dimensions, normalised to 0..1 by the scale. */
  aggregation: Schema.Literal("mean")
})
export type Rubric = typeof Rubric.Type

/** The default literary rubric (16 dimensions, shared/design/rubric.md). */
export const DEFAULT_RUBRIC: string = resolve(import.meta.dirname, "../../../recipes/rubrics/story-quality.yaml")

/** The proxy judge's rubric: measurable text statistics, not literary quality. */
export const PROXY_RUBRIC: string = resolve(import.meta.dirname, "../../../recipes/rubrics/proxy-text-stats.yaml")

// ---------------------------------------------------------------------------------------------
// Loading

/**
 * A rubric file that cannot be used. `file`, `line` and `column` (1-based) place the first
 * problem; `line` and `column` are 0 when the problem is the whole file (unreadable, say).
 * `message` lists every problem found, one per line, as `file:line:col: path: what`.
 */
export class RubricError extends Data.TaggedError("RubricError")<{
  readonly file: string
  readonly line: number
  readonly column: number
  readonly message: string
}> {}

const standard = Schema.toStandardSchemaV1(Rubric, { parseOptions: { errors: "all", onExcessProperty: "error" } })["~standard"]

/**
 * Loads and validates a rubric file: YAML syntax, the Rubric Schema (unknown keys rejected with a
 * did-you-mean), `scale.min < scale.max`, and unique dimension ids.
 *
 * @example
 * const rubric = yield* Rubric.load(Rubric.DEFAULT_RUBRIC)
 * rubric.dimensions.length // 16
 */
export const load = (path: string): Effect.Effect<Rubric, RubricError> =>
  Effect.suspend(() => {
    const file = resolve(path)
    const result = loadNow(file)
    return "problems" in result ? Effect.fail(toError(file, result.problems)) : Effect.succeed(result.rubric)
  })

const loadNow = (file: string): { readonly rubric: Rubric } | { readonly problems: ReadonlyArray<Problem> } => {
  const read = readYamlFile(file)
  // The reader is shared with recipes; its file-level messages say "recipe".
  if (read.tree === undefined) return { problems: read.problems.map((p) => ({ ...p, message: p.message.replace(/\b(a|the) recipe\b/, "$1 rubric") })) }
  const tree = read.tree
  const problems: Array<Problem> = []
  // The recipe reader takes `extends` out; rubrics have no such key.
  if (read.extends !== undefined) problems.push({ where: read.extends.origin.key, path: ["extends"], message: `unknown key "extends"` })

  const result = standard.validate(tree.value)
  if (result instanceof Promise) throw new Error("the Rubric Schema must validate synchronously")
  problems.push(...toProblems(result.issues ?? [], tree, tree.value, Rubric.ast))
  if (result.issues !== undefined || problems.length > 0) return { problems }

  const rubric = result.value
  const at = (path: Path): Location => originAt(tree, path)?.value ?? { file }
  if (!(rubric.scale.min < rubric.scale.max)) {
    problems.push({ where: at(["scale", "max"]), path: ["scale", "max"], message: `must be greater than scale.min (${rubric.scale.min}), got ${rubric.scale.max}` })
  }
  const first = new Map<string, number>()
  rubric.dimensions.forEach((d, i) => {
    const seen = first.get(d.id)
    if (seen === undefined) first.set(d.id, i)
    else {
      const before = originAt(tree, ["dimensions", seen, "id"])?.value
      const where = before !== undefined && "line" in before ? ` (first at line ${before.line})` : ""
      problems.push({ where: at(["dimensions", i, "id"]), path: ["dimensions", i, "id"], message: `duplicate dimension id "${d.id}"${where}` })
    }
  })
  return problems.length > 0 ? { problems } : { rubric }
}

const position = (where: Location): { readonly line: number; readonly column: number } =>
  "line" in where ? { line: where.line, column: where.col } : { line: 0, column: 0 }

const toError = (file: string, problems: ReadonlyArray<Problem>): RubricError => {
  const placed = problems.map((p) => ({ ...p, ...position(p.where) }))
    .sort((a, b) => (a.line === 0 ? -1 : 0) - (b.line === 0 ? -1 : 0) || a.line - b.line || a.column - b.column)
  const lines = placed.map((p) => {
    const where = p.line === 0 ? file : `${file}:${p.line}:${p.column}`
    return `${where}: ${p.path.length === 0 ? "" : `${formatPath(p.path)}: `}${p.message}`
  })
  const head = placed[0]
  return new RubricError({ file, line: head?.line ?? 0, column: head?.column ?? 0, message: lines.join("\n") })
}

// ---------------------------------------------------------------------------------------------
// Identity

/**
 * `id@version:digest12`: content-addressed (editing a definition, the instructions or the scale
 * changes it). An absent `nullable` and `nullable: false` fingerprint the same.
 *
 * @example
 * Rubric.fingerprint(rubric) // "story-quality@1:3f2a9c0b1d4e"
 */
export const fingerprint = (rubric: Rubric): string => {
  const canonical = { ...rubric, dimensions: rubric.dimensions.map((d) => ({ ...d, nullable: d.nullable === true })) }
  return `${rubric.id}@${rubric.version}:${digest(canonical).slice(0, 12)}`
}

// ---------------------------------------------------------------------------------------------
// The reply

/**
 * The JSON Schema a judge must answer with: one property per dimension (rubric order), each
 * `{ evidence: string, score: integer in [min, max] }` (score also null for nullable dimensions),
 * evidence first so the model writes it before the score. Every object is closed and lists all
 * its keys as required; `propertyOrdering` (Gemini) is given at both levels.
 *
 * Usable as Gemini `responseJsonSchema` and as OpenAI
 * `response_format: { type: "json_schema", json_schema: { name: rubric.id, schema, strict: true } }`.
 */
export const replyJsonSchema = (rubric: Rubric): Record<string, unknown> => {
  const ids = rubric.dimensions.map((d) => d.id)
  const dimension = (d: Dimension) => ({
    type: "object",
    properties: {
      evidence: { type: "string" },
      score: { type: d.nullable === true ? ["integer", "null"] : "integer", minimum: rubric.scale.min, maximum: rubric.scale.max }
    },
    required: ["evidence", "score"],
    propertyOrdering: ["evidence", "score"],
    additionalProperties: false
  })
  return {
    type: "object",
    properties: Object.fromEntries(rubric.dimensions.map((d) => [d.id, dimension(d)])),
    required: ids,
    propertyOrdering: ids,
    additionalProperties: false
  }
}

/** A decoded reply: score and evidence per dimension id. */
export interface Reply {
  readonly scores: Record<string, number | null>
  readonly evidence: Record<string, string>
}

const replySchemas = new WeakMap<Rubric, (text: string) => Result.Result<Record<string, { evidence: string; score: number | null }>, Schema.SchemaError>>()

const replyDecoder = (rubric: Rubric) => {
  const cached = replySchemas.get(rubric)
  if (cached !== undefined) return cached
  const score = Schema.Int.check(Schema.isBetween({ minimum: rubric.scale.min, maximum: rubric.scale.max }))
  const fields = Object.fromEntries(rubric.dimensions.map((d) => [
    d.id,
    Schema.Struct({ evidence: Schema.String, score: d.nullable === true ? Schema.NullOr(score) : score })
  ]))
  const schema = Schema.fromJsonString(Schema.Struct(fields)) as unknown as Schema.Codec<Record<string, { evidence: string; score: number | null }>, string>
  const decode = Schema.decodeUnknownResult(schema)
  replySchemas.set(rubric, decode)
  return decode
}

/** A reply wrapped in a Markdown code fence (some OpenAI-compatible servers add one). */
const FENCE = /^\s*```(?:json)?\s*\n([\s\S]*?)\n?```\s*$/

/**
 * Validates a judge's reply against the rubric: valid JSON, every dimension present as
 * `{ evidence: string, score }` with an integer score in the scale, null only on nullable
 * dimensions. Keys that are not dimensions (an "overall" a model adds, say) are IGNORED, at
 * both levels: strict structured output already forbids them, and they carry nothing we use.
 * A reply wrapped in one ```json fence is accepted. Failures are one short line for people
 * (at most 300 characters), e.g. `plot.score: Expected a value between 1 and 10, got 11`.
 */
export const decodeReply = (rubric: Rubric, text: string): Result.Result<Reply, string> => {
  const body = FENCE.exec(text)?.[1] ?? text
  const decoded = replyDecoder(rubric)(body)
  if (Result.isFailure(decoded)) return Result.fail(shorten(describe(decoded.failure, body)))
  const scores: Record<string, number | null> = {}
  const evidence: Record<string, string> = {}
  for (const d of rubric.dimensions) {
    const answer = decoded.success[d.id]!
    scores[d.id] = answer.score
    evidence[d.id] = answer.evidence
  }
  return Result.succeed({ scores, evidence })
}

const describe = (error: Schema.SchemaError, body: string): string => {
  if (body.trim() === "") return "empty reply"
  let json: unknown
  // A JSON syntax error (truncated output, usually) is reported without Schema wording.
  try {
    json = JSON.parse(body)
  } catch (cause) {
    return `not valid JSON (${cause instanceof Error ? cause.message : String(cause)}); the reply may be truncated`
  }
  const message = String(error.message).replace(/\s+/g, " ").trim()
  const at = /^(.*?) at (\[.*\])$/.exec(message)
  let path: Array<string | number> = []
  try {
    if (at !== null) path = JSON.parse(`[${at[2]!.slice(1, -1).replace(/\]\[/g, ",")}]`) as Array<string | number>
  } catch {
    return message
  }
  const what = at === null ? message : at[1]!
  const where = path.length === 0 ? "" : `${formatPath(path)}: `
  if (what === "Missing key") return `${where}missing`
  const value = valueAt(json, path)
  const got = value === undefined ? "" : `, got ${JSON.stringify(value)?.slice(0, 40)}`
  const hint = value === null ? " (null only where a dimension may be null)" : ""
  return `${where}${what}${got}${hint}`
}

const shorten = (s: string): string => (s.length > 300 ? `${s.slice(0, 297)}...` : s)

// ---------------------------------------------------------------------------------------------
// Aggregation and the prompt

/**
 * Mean of the non-null scores of the rubric's dimensions, normalised to 0..1 as
 * `(mean - min) / (max - min)`. NaN when no dimension has a score. Keys that are not
 * dimensions are ignored.
 *
 * @example
 * quality(rubric, { a: 7, b: 8, c: null }) // scale 1..10: (7.5 - 1) / 9
 */
export const quality = (rubric: Rubric, scores: Readonly<Record<string, number | null | undefined>>): number => {
  let sum = 0
  let n = 0
  for (const d of rubric.dimensions) {
    const s = scores[d.id]
    if (typeof s === "number" && !Number.isNaN(s)) {
      sum += s
      n++
    }
  }
  if (n === 0) return Number.NaN
  return (sum / n - rubric.scale.min) / (rubric.scale.max - rubric.scale.min)
}

/**
 * The judge's messages: `system` holds the rubric's instructions, the scale, the numbered
 * dimensions with their definitions and the answer format; `user` holds the writing prompt and
 * the whole story (never truncated), each between its own tags. The story is everything between
 * `<story>` and the LAST `</story>`, so a story that writes the tag itself cannot end early.
 */
export const judgePrompt = (rubric: Rubric, item: { readonly prompt: string; readonly story: string }): { readonly system: string; readonly user: string } => {
  const { min, max } = rubric.scale
  const dimensions = rubric.dimensions.map((d, i) =>
    `${i + 1}. ${d.name} (\`${d.id}\`): ${d.definition}${d.nullable === true ? ` [may be null when it does not apply]` : ""}`
  )
  const nullable = rubric.dimensions.filter((d) => d.nullable === true).map((d) => `\`${d.id}\``)
  const system = [
    rubric.instructions.trim(),
    "",
    `Scale: integers from ${min} to ${max}; higher is always better.`,
    "",
    `Dimensions (${rubric.dimensions.length}):`,
    ...dimensions,
    "",
    "Answer with one JSON object and nothing else: for each dimension id above, in this order, an object " +
    `{"evidence": string, "score": integer ${min}..${max}}, writing the evidence before the score. ` +
    (nullable.length > 0
      ? `Only ${nullable.join(", ")} may have score null, and only when the dimension does not apply.`
      : "No score may be null.")
  ].join("\n")
  const user = [
    "The writing prompt is between <prompt> and </prompt>; the story written for it is everything between <story> and the last </story>.",
    "",
    "<prompt>",
    item.prompt,
    "</prompt>",
    "",
    "<story>",
    item.story,
    "</story>"
  ].join("\n")
  return { system, user }
}

// ---------------------------------------------------------------------------------------------
// Pairwise comparison

/** A decoded pairwise reply: the judge's analysis and the story it prefers, by position. */
export interface PairReply {
  readonly analysis: string
  readonly winner: "first" | "second" | "tie"
}

/**
 * The JSON Schema of a pairwise reply: `{ analysis: string, winner: "1" | "2" | "tie" }`, the
 * analysis first so the model reasons before it chooses. Usable as Gemini `responseJsonSchema`
 * and OpenAI strict `json_schema`, as the verdict schema.
 */
export const pairReplyJsonSchema = (): Record<string, unknown> => ({
  type: "object",
  properties: { analysis: { type: "string" }, winner: { type: "string", enum: ["1", "2", "tie"] } },
  required: ["analysis", "winner"],
  propertyOrdering: ["analysis", "winner"],
  additionalProperties: false
})

const PairReplyJson = Schema.fromJsonString(Schema.Struct({ analysis: Schema.String, winner: Schema.Literals(["1", "2", "tie"]) }))
const decodePairJson = Schema.decodeUnknownResult(PairReplyJson)

/** Validates a pairwise reply (one ```json fence accepted); failures are one short line, as decodeReply's. */
export const decodePairReply = (text: string): Result.Result<PairReply, string> => {
  const body = FENCE.exec(text)?.[1] ?? text
  const decoded = decodePairJson(body)
  if (Result.isFailure(decoded)) return Result.fail(shorten(describe(decoded.failure, body)))
  const { analysis, winner } = decoded.success
  return Result.succeed({ analysis, winner: winner === "1" ? "first" : winner === "2" ? "second" : "tie" })
}

/**
 * The tag suffix of a pair: 6 hex digits of the texts' hash that occur in neither story, so each
 * story's closing tag appears exactly once and neither text can end the other's early.
 */
const pairNonce = (first: string, second: string): string => {
  for (let k = 0; ; k++) {
    const nonce = sha256(`${k}\0${first}\0${second}`).slice(0, 6)
    if (!first.includes(nonce) && !second.includes(nonce)) return nonce
  }
}

/**
 * The pairwise judge's messages: the rubric's dimensions as the criteria taken together, both
 * stories in full under neutral labels (Story 1, Story 2: no system names, so the judge sees
 * only the texts), each between tags that occur nowhere in either text (`<story_1_NONCE>`), and
 * the instruction not to let position or length alone decide. The caller asks both orders
 * (position bias is measured, not assumed away).
 */
export const pairPrompt = (rubric: Rubric, item: { readonly prompt: string; readonly first: string; readonly second: string }): { readonly system: string; readonly user: string } => {
  const dimensions = rubric.dimensions.map((d, i) => `${i + 1}. ${d.name}: ${d.definition}`)
  const system = [
    "You are comparing two stories written for the same writing prompt. Read both in full, then decide which is the better story under the criteria below taken together.",
    "",
    `Criteria (${rubric.dimensions.length}):`,
    ...dimensions,
    "",
    "The order in which the stories appear says nothing about their quality, and a longer story is not better for being longer; judge how well each answers the prompt, its requested length included.",
    "Answer with one JSON object and nothing else: " +
    `{"analysis": string, "winner": "1" | "2" | "tie"}, writing the analysis before the winner; "tie" only when neither is better.`
  ].join("\n")
  const n = pairNonce(item.first, item.second)
  const [one, two] = [`story_1_${n}`, `story_2_${n}`]
  const user = [
    `The writing prompt is between <prompt> and the first </prompt>. Story 1 is between <${one}> and </${one}>, Story 2 between <${two}> and </${two}>; these tags occur nowhere else.`,
    "",
    "<prompt>",
    item.prompt,
    "</prompt>",
    "",
    `<${one}>`,
    item.first,
    `</${one}>`,
    "",
    `<${two}>`,
    item.second,
    `</${two}>`
  ].join("\n")
  return { system, user }
}

/**
 * The digest of both prompts rendered on a fixed probe: part of every remote judge's fingerprint,
 * so rewording a template (or the rubric) makes new memo keys instead of reusing answers given to
 * the old words.
 */
export const promptsFingerprint = (rubric: Rubric): string =>
  digest([judgePrompt(rubric, { prompt: "P", story: "S" }), pairPrompt(rubric, { prompt: "P", first: "A", second: "B" })]).slice(0, 12)
