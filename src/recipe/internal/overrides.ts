/**
 * `--set path.to.key=value` overrides, applied to a merged recipe tree after `extends`. The
 * value is YAML (`20` is a number, `proxy` a string, `[a,b]` a list); list items are addressed
 * by index (`stages.0.id=x`). Everything a `--set` writes has the `--set` as its origin.
 */
import { parseDocument } from "yaml"
import { isMapping, kindOf, type Location, type Mapping, type Path, pathKey, type Problem, setKey, type Tree, walk } from "./tree.ts"

/** Applies one `--set` to `tree` in place; returns the problem that stopped it, if any. */
export const applySet = (tree: Tree, text: string): Problem | undefined => {
  const where: Location = { set: text }
  const fail = (path: Path, message: string): Problem => ({ where, path, message })
  const eq = text.indexOf("=")
  if (eq < 0) return fail([], "expected PATH=VALUE, e.g. --set grpo.steps=20")
  const segments = text.slice(0, eq).trim().split(".")
  if (segments.some((s) => s.trim() === "")) return fail([], `expected PATH=VALUE with a dotted path such as grpo.steps, got "${text.slice(0, eq)}"`)
  const parsed = parseDocument(text.slice(eq + 1), { prettyErrors: false })
  const path: Path = segments.map((s) => s.trim())
  if (parsed.errors.length > 0) return fail(path, `the value is not valid YAML: ${parsed.errors[0]!.message}`)
  const value = parsed.toJS() as unknown

  let node: unknown = tree.value
  const at: Array<string | number> = []
  for (const [i, segment] of path.entries()) {
    const last = i === path.length - 1
    if (isMapping(node)) {
      at.push(segment)
      if (last) setKey(node, String(segment), value)
      else if (!Object.hasOwn(node, segment)) {
        const created: Mapping = {}
        setKey(node, String(segment), created)
        tree.origins.set(pathKey(at), { key: where, value: where })
      }
    } else if (Array.isArray(node) && /^\d+$/.test(String(segment)) && Number(segment) < node.length) {
      at.push(Number(segment))
      if (last) node[Number(segment)] = value
    } else {
      return fail(at, `cannot set "${String(segment)}" inside ${kindOf(node)}`)
    }
    node = last ? undefined : (node as Record<string | number, unknown>)[at.at(-1)!]
  }
  const prefix = pathKey(at)
  for (const key of [...tree.origins.keys()]) if (key === prefix || key.startsWith(`${prefix}\u0000`)) tree.origins.delete(key)
  walk(value, (_, sub) => tree.origins.set(pathKey([...at, ...sub]), { key: where, value: where }))
  return undefined
}
