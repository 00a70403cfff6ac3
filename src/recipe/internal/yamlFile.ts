/**
 * One recipe file read into a {@link Tree}: every YAML syntax error at its `line:col`, the top
 * level checked to be a mapping, and its `extends` value taken out for the loader to follow.
 */
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { isDeepStrictEqual } from "node:util"
import { isAlias, isCollection, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, Scalar } from "yaml"
import type { Document, Node, YAMLError } from "yaml"
import { codeFingerprint, libraryVersion } from "../../dag/Fingerprint.ts"
import { keep, lookup } from "../../dag/internal/contentCache.ts"
import { kindOf, type Location, type Mapping, type Origin, type Path, pathKey, type Problem, setKey, type Tree } from "./tree.ts"

/** A file read: its tree and `extends` reference, or the problems that stopped reading it. */
export interface YamlFile {
  readonly tree: Tree | undefined
  readonly extends: { readonly value: unknown; readonly origin: Origin } | undefined
  readonly problems: ReadonlyArray<Problem>
}

const failed = (problems: ReadonlyArray<Problem>): YamlFile => ({ tree: undefined, extends: undefined, problems })

/** A {@link YamlFile} as JSON holds it: its origins as entries, no undefined fields. */
interface Stored {
  readonly tree?: { readonly value: Mapping; readonly origins: ReadonlyArray<readonly [string, Origin]> }
  readonly extends?: NonNullable<YamlFile["extends"]>
  readonly problems: YamlFile["problems"]
}

const toStored = (read: YamlFile): Stored => ({
  ...(read.tree !== undefined ? { tree: { value: read.tree.value, origins: [...read.tree.origins] } } : {}),
  ...(read.extends !== undefined ? { extends: read.extends } : {}),
  problems: read.problems
})

const fromStored = (stored: Stored): YamlFile => ({
  tree: stored.tree === undefined ? undefined : { value: stored.tree.value, origins: new Map(stored.tree.origins) },
  extends: stored.extends,
  problems: stored.problems
})

// What a parse is a function of besides the text and the file's name: this module's code and the
// YAML library's version.
let parser: string | undefined
const parserId = () => (parser ??= `${codeFingerprint(import.meta.url)} ${libraryVersion(fileURLToPath(import.meta.url), "yaml")}`)

/**
 * Reads and parses `file` (absolute). The result is remembered by the bytes read (contentCache.ts):
 * every command reads its recipe, and the YAML library's first parse in a process, before V8 has
 * optimized it, took 10-17 ms of a 300 ms `plan` (the rubric file it names 2-7 ms more).
 */
export const readYamlFile = (file: string): YamlFile => {
  let text: string
  try {
    text = readFileSync(file, "utf8")
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code
    return failed([{ where: { file }, path: [], message: `cannot read the recipe (${code === "ENOENT" ? "no such file" : String(code ?? cause)})` }])
  }
  const key = [parserId(), file, text]
  const known = lookup<Stored>("recipe-yaml", key)
  if (known !== undefined) return fromStored(known.value)
  const read = parseYaml(text, file)
  const stored = toStored(read)
  // JSON holds no infinity, NaN or -0 (`.inf`, `.nan`, `-0` in YAML): such a file is parsed every time.
  if (isDeepStrictEqual(JSON.parse(JSON.stringify(stored)), stored)) keep("recipe-yaml", key, stored)
  return read
}

/** Parses recipe text; `file` names it in locations. */
export const parseYaml = (text: string, file: string): YamlFile => {
  const lines = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false })
  const at = (offset: number): Location => ({ file, ...lines.linePos(offset) })
  const start = (node: unknown): number => (node as Partial<Node> | null)?.range?.[0] ?? 0
  if (doc.errors.length > 0) return failed(syntaxProblems(doc, doc.errors, at))

  const root = doc.contents
  if (!isMap(root)) {
    const got = root === null ? "an empty file" : isSeq(root) ? "a list" : kindOf(isScalar(root) ? root.value : root)
    return failed([{ where: at(start(root)), path: [], message: `a recipe must be a mapping of keys to values, got ${got}` }])
  }
  const problems: Array<Problem> = []
  const origins = new Map<string, Origin>()

  // Nodes being converted (an alias to one of them never ends), and aliases left to expand.
  const open = new Set<unknown>()
  let aliases = 1000
  const convert = (node: unknown, path: Path): unknown => {
    if (isAlias(node)) {
      const target = node.resolve(doc as Document)
      const problem = target === undefined ? `unknown alias *${node.source}`
        : open.has(target) ? `alias *${node.source} refers to a node that contains it`
        : --aliases === -1 ? "too many aliases to expand" : undefined
      if (problem !== undefined) problems.push({ where: at(start(node)), path, message: problem })
      return problem !== undefined || aliases < 0 ? null : convert(target, path)
    }
    if (isScalar(node)) return node.value
    open.add(node)
    try {
      if (isSeq(node)) {
        return node.items.map((item, i) => {
          const where = at(start(isPair(item) ? item.key : item))
          origins.set(pathKey([...path, i]), { key: where, value: where })
          return isPair(item) ? convertPairs([item], [...path, i]) : convert(item, [...path, i])
        })
      }
      return isMap(node) ? convertPairs(node.items, path) : null
    } finally {
      open.delete(node)
    }
  }

  const convertPairs = (pairs: ReadonlyArray<unknown>, path: Path): Mapping => {
    const out: Mapping = {}
    for (const pair of pairs) {
      if (!isPair(pair)) continue
      const key = pair.key
      if (!isScalar(key) || isCollection(key.value)) {
        problems.push({ where: at(start(key)), path, message: "mapping keys must be plain scalars" })
        continue
      }
      const name = String(key.value)
      const keyAt = at(start(key))
      const value = pair.value as Node | null
      // An empty value (`beta:`) is reported at its key, not after the colon.
      const empty = value === null || (isScalar(value) && value.value === null && value.range![0] === value.range![1])
      origins.set(pathKey([...path, name]), { key: keyAt, value: empty ? keyAt : at(start(value)) })
      setKey(out, name, convert(value, [...path, name]))
    }
    return out
  }

  origins.set(pathKey([]), { key: at(start(root)), value: at(start(root)) })
  const value = convertPairs(root.items, [])
  if (problems.length > 0) return failed(problems)

  const ref = Object.hasOwn(value, "extends") ? { value: value.extends, origin: origins.get(pathKey(["extends"]))! } : undefined
  if (ref !== undefined) {
    delete value.extends
    for (const key of [...origins.keys()]) if (key === "extends" || key.startsWith("extends\u0000")) origins.delete(key)
  }
  return { tree: { value, origins }, extends: ref, problems: [] }
}

/** YAML errors, one per position, said plainly and placed where the trouble starts. */
const syntaxProblems = (doc: Document.Parsed, errors: ReadonlyArray<YAMLError>, at: (offset: number) => Location): Array<Problem> => {
  const nodes = allNodes(doc.contents)
  const seen = new Set<number>()
  const out: Array<Problem> = []
  for (const error of errors) {
    const { offset, message } = explain(error, nodes)
    if (seen.has(offset)) continue
    seen.add(offset)
    out.push({ where: at(offset), path: [], message })
  }
  return out
}

const explain = (error: YAMLError, nodes: ReadonlyArray<Node>): { offset: number; message: string } => {
  const pos = error.pos[0]
  // The innermost node that is still open at the error: an unclosed quote or bracket starts there.
  const open = (test: (n: Node) => boolean) =>
    nodes.filter((n) => n.range !== undefined && n.range !== null && n.range[0] < pos && pos <= n.range[2] && test(n)).at(-1)
  switch (error.code) {
    case "MISSING_CHAR": {
      const quote = error.message.includes("\"") ? "\"" : error.message.includes("'") ? "'" : undefined
      const type = quote === "\"" ? Scalar.QUOTE_DOUBLE : Scalar.QUOTE_SINGLE
      const node = quote === undefined ? undefined : open((n) => isScalar(n) && n.type === type)
      return node === undefined ? { offset: pos, message: error.message } : { offset: node.range![0], message: `unclosed ${quote} quote` }
    }
    case "BAD_INDENT": {
      const flow = /Flow (sequence|map) .* end with a (\]|\})/.exec(error.message)
      const node = flow === null ? undefined : open((n) => isCollection(n) && n.flow === true)
      return node === undefined || flow === null
        ? { offset: pos, message: error.message }
        : { offset: node.range![0], message: `unclosed flow ${flow[1]} (no closing ${flow[2]})` }
    }
    case "DUPLICATE_KEY": {
      const key = nodes.find((n) => isScalar(n) && n.range?.[0] === pos)
      return { offset: pos, message: key === undefined ? error.message : `duplicate key "${String((key as Scalar).value)}"` }
    }
    case "BLOCK_AS_IMPLICIT_KEY":
      return error.message.startsWith("Nested mappings")
        ? { offset: pos, message: "a mapping cannot start inside this value; put each key on its own line, indented like its siblings" }
        : { offset: pos, message: error.message }
    case "MULTIPLE_DOCS":
      return { offset: pos, message: "a recipe is one YAML document; remove the `---` separator" }
    default:
      return { offset: pos, message: error.message }
  }
}

const allNodes = (root: unknown): Array<Node> => {
  const out: Array<Node> = []
  const visit = (node: unknown) => {
    if (isPair(node)) {
      visit(node.key)
      visit(node.value)
    } else if (isCollection(node)) {
      out.push(node)
      for (const item of node.items) visit(item)
    } else if (isScalar(node) || isAlias(node)) out.push(node)
  }
  visit(root)
  return out
}
