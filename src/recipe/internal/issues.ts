/**
 * Schema issues turned into recipe problems: placed at the YAML node that caused them and said
 * for people. Unknown keys get a did-you-mean from the keys the Schema allows at that level;
 * type errors name the value found; missing keys point at the mapping that lacks them.
 */
import { Redacted, SchemaAST } from "effect"
import { didYouMean } from "../../dag/internal/suggest.ts"
import { originAt, type Path, pathKey, type Problem, type Tree, valueAt } from "./tree.ts"

/** A Standard Schema issue, as `~standard.validate` reports it. */
export interface Issue {
  readonly message: string
  readonly path?: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }> | undefined
}

/** The Schema node that validates `path`, through structs, records and lists. */
export const astAt = (ast: SchemaAST.AST | undefined, path: Path): SchemaAST.AST | undefined =>
  path.reduce<SchemaAST.AST | undefined>((node, key) => {
    if (node === undefined) return undefined
    if (SchemaAST.isObjects(node)) return node.propertySignatures.find((p) => p.name === key)?.type ?? node.indexSignatures[0]?.type
    if (SchemaAST.isArrays(node)) return typeof key === "number" ? node.elements[key] ?? node.rest[0] : undefined
    return undefined
  }, ast)

/** The keys a struct node allows (empty for records, which allow any). */
export const allowedKeys = (ast: SchemaAST.AST | undefined): ReadonlyArray<string> =>
  ast !== undefined && SchemaAST.isObjects(ast) && ast.indexSignatures.length === 0
    ? ast.propertySignatures.map((p) => String(p.name))
    : []

type Loose = { readonly [key: string]: unknown } | undefined

/** A node's description: on the node, or on its last check (where `.annotate` puts it). */
export const descriptionOf = (ast: SchemaAST.AST | undefined): string | undefined => {
  const own = (ast?.annotations as Loose)?.description
  const check = (ast?.checks?.at(-1)?.annotations as Loose)?.description
  return typeof own === "string" ? own : typeof check === "string" ? check : undefined
}

const isInt = (ast: SchemaAST.AST | undefined) =>
  ast?.checks?.some((c) => ((c.annotations as Loose)?.representation as Loose)?.id === "effect/schema/isInt") === true

const literalsOf = (ast: SchemaAST.AST | undefined): ReadonlyArray<string> =>
  ast !== undefined && SchemaAST.isUnion(ast) && ast.types.every(SchemaAST.isLiteral)
    ? ast.types.map((t) => String((t as SchemaAST.Literal).literal))
    : []

/** A value as messages show it: strings quoted and cut short, secrets by their variable only. */
export const show = (u: unknown): string => {
  if (Redacted.isRedacted(u)) return `a secret (\${${u.label ?? "?"}})`
  if (typeof u === "string") return JSON.stringify(u.length > 60 ? `${u.slice(0, 57)}...` : u)
  if (u === null || u === undefined) return "nothing"
  if (Array.isArray(u)) return "a list"
  if (typeof u === "object") return "a mapping"
  return String(u)
}

const BASE_TYPES: Readonly<Record<string, string>> = {
  string: "a string",
  number: "a number",
  boolean: "true or false",
  array: "a list",
  object: "a mapping"
}

const NO_EXCESS = "Expected no excess property"
const MISSING = "Missing key"

/**
 * The issues found validating `value` (`tree`'s value, secrets resolved) against `root`, as
 * problems at their YAML nodes: one per path, and no "missing key" where an unknown key at the
 * same level was suggested in its place.
 */
export const toProblems = (issues: ReadonlyArray<Issue>, tree: Tree, value: unknown, root: SchemaAST.AST): ReadonlyArray<Problem> => {
  const problems = issues.map((issue) => toProblem(issue, tree, value, root))
  const suggested = new Set(problems.flatMap((p) => p.suggested === undefined ? [] : [pathKey([...p.path.slice(0, -1), p.suggested])]))
  const seen = new Set<string>()
  return problems.filter((p) => {
    const key = pathKey(p.path)
    if (seen.has(key) || (p.missing && suggested.has(key))) return false
    seen.add(key)
    return true
  }).map(({ where, path, message }) => ({ where, path, message }))
}

type Found = Problem & { readonly suggested?: string | undefined; readonly missing?: boolean }

const toProblem = (issue: Issue, tree: Tree, value: unknown, root: SchemaAST.AST): Found => {
  const path: Path = (issue.path ?? []).map((p) => {
    const key = typeof p === "object" && p !== null ? p.key : p
    return typeof key === "number" ? key : String(key)
  })
  const parent = path.slice(0, -1)
  const last = path.at(-1)
  const ast = astAt(root, path)

  if (issue.message === NO_EXCESS && last !== undefined) {
    const allowed = allowedKeys(astAt(root, parent))
    const guess = didYouMean(String(last), allowed)
    const hint = guess !== undefined ? `; did you mean "${guess}"?` : allowed.length > 0 ? `; expected one of: ${allowed.join(", ")}` : ""
    return { where: originAt(tree, path)!.key, path, message: `unknown key "${String(last)}"${hint}`, suggested: guess }
  }
  if (issue.message === MISSING) {
    const literals = literalsOf(ast)
    const what = literals.length > 0 ? `one of ${literals.map((l) => JSON.stringify(l)).join(", ")}` : descriptionOf(ast)
    return { where: originAt(tree, parent)!.value, path, message: `required key is missing${what === undefined ? "" : ` (${what})`}`, missing: true }
  }
  return { where: originAt(tree, path)!.value, path, message: explain(issue.message, valueAt(value, path), ast) }
}

/** `Expected number` -> `Expected an integer, got "abc"`; literals get a did-you-mean. */
const explain = (raw: string, value: unknown, ast: SchemaAST.AST | undefined): string => {
  if (raw === "Expected Redacted") {
    const got = typeof value === "string" ? "a plain string (secrets are never written in recipes)" : show(value)
    return `Expected a secret written as "\${ENV_VAR}", got ${got}`
  }
  if (!raw.startsWith("Expected ")) return raw
  const expected = raw.slice("Expected ".length)
  const base = expected === "number" && isInt(ast) ? "an integer" : BASE_TYPES[expected] ?? expected
  if (Redacted.isRedacted(value)) return `Expected ${base}, got ${show(value)}; only secrets are read from the environment`
  const guess = typeof value === "string" ? didYouMean(value, literalsOf(ast)) : undefined
  return `Expected ${base}, got ${show(value)}${guess !== undefined ? `; did you mean "${guess}"?` : ""}`
}
