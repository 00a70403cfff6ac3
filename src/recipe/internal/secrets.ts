/**
 * Secrets from the environment: a string that is exactly `${NAME}` becomes
 * `Redacted.make(process.env.NAME, { label: NAME })`. Secrets are whole values: `${NAME}` inside
 * longer text is an error, at its YAML node. An unset or empty variable is a warning, not an
 * error: its secret is `Secret.unset(NAME)`, and only a node that needs it fails (src/dag/Secret.ts).
 */
import { Redacted } from "effect"
import * as Secret from "../../dag/Secret.ts"
import { isMapping, type Mapping, originAt, type Path, type Problem, setKey, type Tree } from "./tree.ts"

/** `${NAME}` with an environment-variable name: upper-case letters, digits and `_`. */
export const REFERENCE = /^\$\{[A-Z_][A-Z0-9_]*\}$/

/** The value of `tree` with every `${NAME}` resolved, and the problems met on the way. */
export const resolveSecrets = (
  tree: Tree,
  env: Readonly<Record<string, string | undefined>>
): { readonly value: Mapping; readonly problems: ReadonlyArray<Problem>; readonly warnings: ReadonlyArray<Problem> } => {
  const problems: Array<Problem> = []
  const warnings: Array<Problem> = []
  const fail = (path: Path, message: string) => problems.push({ where: originAt(tree, path)!.value, path, message })

  const resolve = (u: unknown, path: Path): unknown => {
    if (Array.isArray(u)) return u.map((item, i) => resolve(item, [...path, i]))
    if (isMapping(u)) {
      const out: Mapping = {}
      for (const [k, v] of Object.entries(u)) setKey(out, k, resolve(v, [...path, k]))
      return out
    }
    if (typeof u !== "string" || !u.includes("${")) return u
    const name = REFERENCE.test(u) ? u.slice(2, -1) : undefined
    if (name === undefined) {
      fail(path, /^\$\{[^}]*\}$/.test(u)
        ? `"${u}" is not an environment variable reference; names are upper-case letters, digits and _`
        : `"${/\$\{[^}]*\}?/.exec(u)![0]}" must be the whole value; secrets are never part of a text`)
      return u
    }
    const secret = env[name]
    if (secret === undefined || secret === "") {
      warnings.push({ where: originAt(tree, path)!.value, path, message: `environment variable ${name} is ${secret === undefined ? "not set" : "empty"}; nodes that need it fail until it is set` })
      return Secret.unset(name)
    }
    return Redacted.make(secret, { label: name })
  }
  return { value: resolve(tree.value, []) as Mapping, problems, warnings }
}
