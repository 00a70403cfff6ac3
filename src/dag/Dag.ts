/**
 * Pictures of a pipeline: a plain-text listing for the terminal, Mermaid for Markdown, and
 * Graphviz DOT. Pure functions of the built {@link Pipeline}; nothing runs.
 *
 * The text listing folds training loops: step 000 is shown node by node, and the later steps
 * that repeat its shape (same nodes, stages and wiring, the state coming from the step
 * before) become one line, so a 160-step loop takes a few lines.
 *
 * @example
 * import { Dag } from "polaris"
 * console.log(Dag.render(pipeline, "text"))
 * // pipeline "toy": 323 nodes
 * //   data                     [source v1, cpu]
 * //   init                     [init v1, cpu]
 * //     train/step-000/batch   [sample v2, cpu]     <- data: data
 * //     train/step-000/update  [update v1, policy]  <- policy: init, batch: train/step-000/batch
 * //     ... train: steps 001-159 repeat this shape (update.policy <- previous step's update)
 * //   report                   [report v1, cpu]     <- policy: train/step-159/update
 * //   outputs: report <- report
 */
import { type InputWire, type Pipeline, type PipelineNode, resourceOf, wireIds } from "./Pipeline.ts"

/** The formats {@link render} writes. */
export type Format = "text" | "mermaid" | "dot"

/**
 * Renders `pipeline` in `format`: `text` for a terminal, `mermaid` (a `flowchart TD`, one
 * subgraph per scope) for Markdown, `dot` (a `digraph`, one cluster per scope) for Graphviz.
 * The output ends with a newline.
 */
export const render = (pipeline: Pipeline<any, any>, format: Format): string => renderers[format](pipeline)

// ---------------------------------------------------------------------------------------------
// Scopes and loop steps

/** The scope of a node id: everything before its last `/` ("" at the top level). */
const scopeOf = (id: string): string => {
  const i = id.lastIndexOf("/")
  return i < 0 ? "" : id.slice(0, i)
}

/** The outermost loop step in `rest`: `train/step-003/judge` -> loop `train/`, step `003`. */
const LOOP_STEP = /^((?:[^/]+\/)*?)step-(\d+)\/(.+)$/

const versionLabel = (version: string) => (/^\d/.test(version) ? `v${version}` : version)

// ---------------------------------------------------------------------------------------------
// text

type Row =
  | { readonly _tag: "node"; readonly depth: number; readonly node: PipelineNode }
  | { readonly _tag: "note"; readonly depth: number; readonly text: string }

/** A run of consecutive nodes in one loop step. */
interface StepBlock {
  readonly loop: string // the loop's scope with its slash, `train/`
  readonly step: string // `003`
  readonly scope: string // `train/step-003/`
  readonly nodes: Array<PipelineNode>
}

type Segment = { readonly _tag: "node"; readonly node: PipelineNode } | { readonly _tag: "loop"; readonly steps: Array<StepBlock> }

/** Splits nodes (all under `base`) into plain nodes and runs of loop steps of one loop. */
const segments = (nodes: ReadonlyArray<PipelineNode>, base: string): Array<Segment> => {
  const out: Array<Segment> = []
  for (const node of nodes) {
    const m = LOOP_STEP.exec(node.id.slice(base.length))
    if (m === null) {
      out.push({ _tag: "node", node })
      continue
    }
    const loop = base + m[1]!
    const step = m[2]!
    const last = out[out.length - 1]
    const block = last?._tag === "loop" ? last.steps[last.steps.length - 1] : undefined
    if (last?._tag === "loop" && block !== undefined && block.loop === loop) {
      if (block.step === step) block.nodes.push(node)
      else last.steps.push({ loop, step, scope: `${loop}step-${step}/`, nodes: [node] })
    } else {
      out.push({ _tag: "loop", steps: [{ loop, step, scope: `${loop}step-${step}/`, nodes: [node] }] })
    }
  }
  return out
}

/** What an input of a step's node reads: a node of the same step, of the step before, or another. */
const inputShape = (from: string, block: StepBlock, previous: StepBlock | undefined): string =>
  from.startsWith(block.scope) ? `in:${from.slice(block.scope.length)}`
    : previous !== undefined && from.startsWith(previous.scope) ? `prev:${from.slice(previous.scope.length)}`
    : `ext:${from}`

/** The shape of a wire: a list's elements' shapes, in order. */
const wireShape = (wire: InputWire, block: StepBlock, previous: StepBlock | undefined): string =>
  typeof wire === "string" ? inputShape(wire, block, previous) : `[${wire.map((from) => inputShape(from, block, previous)).join(",")}]`

/**
 * A step's shape, worked out once per step (comparing steps then only compares strings): per
 * node its local id, stage, version and resource; per input of each node, in order, the input
 * (`local.name`) and what its wire reads.
 */
interface StepShape {
  readonly nodes: ReadonlyArray<string>
  readonly inputs: ReadonlyArray<string>
  readonly wires: ReadonlyArray<string>
}

const shapeOf = (block: StepBlock, previous: StepBlock | undefined): StepShape => {
  const nodes: Array<string> = []
  const inputs: Array<string> = []
  const wires: Array<string> = []
  for (const node of block.nodes) {
    const local = node.id.slice(block.scope.length)
    const names = Object.keys(node.inputs)
    nodes.push(`${local}\u0000${node.stage.name}\u0000${node.stage.version}\u0000${resourceOf(node)}\u0000${names.length}`)
    for (const name of names) {
      inputs.push(`${local}.${name}`)
      wires.push(wireShape(node.inputs[name]!, block, previous))
    }
  }
  return { nodes, inputs, wires }
}

/**
 * Whether a step of shape `shape` repeats `ref`: the same nodes (local ids, stages, versions,
 * resources) wired the same way. An input `ref` takes from outside the loop may come from the
 * previous step (the loop's carried state); those are collected in `carried`.
 */
const sameShape = (ref: StepShape, shape: StepShape, carried: Set<string>): boolean => {
  if (ref.nodes.length !== shape.nodes.length || ref.inputs.length !== shape.inputs.length) return false
  for (let i = 0; i < shape.nodes.length; i++) if (ref.nodes[i] !== shape.nodes[i]) return false
  const found: Array<string> = []
  for (let i = 0; i < shape.inputs.length; i++) {
    if (ref.inputs[i] !== shape.inputs[i]) return false
    const a = ref.wires[i]!
    const b = shape.wires[i]!
    if (a === b) continue
    if (!b.startsWith("prev:") || !a.startsWith("ext:")) return false
    found.push(`${shape.inputs[i]} <- previous step's ${b.slice("prev:".length)}`)
  }
  for (const f of found) carried.add(f)
  return true
}

const stepRange = (steps: ReadonlyArray<StepBlock>) =>
  steps.length === 1 ? `step ${steps[0]!.step} repeats` : `steps ${steps[0]!.step}-${steps[steps.length - 1]!.step} repeat`

const textRows = (nodes: ReadonlyArray<PipelineNode>, base: string, depth: number, rows: Array<Row>): void => {
  for (const segment of segments(nodes, base)) {
    if (segment._tag === "node") {
      rows.push({ _tag: "node", depth, node: segment.node })
      continue
    }
    const { steps } = segment
    // Steps shown in full; a later step that repeats one of them (the latest first) is folded.
    const shown: Array<{ readonly block: StepBlock; readonly shape: StepShape }> = []
    let run: { ref: (typeof shown)[number]; blocks: Array<StepBlock>; carried: Set<string> } | undefined
    const flush = () => {
      if (run === undefined) return
      const loopName = run.ref.block.loop.slice(0, -1)
      const shape = run.ref === shown[shown.length - 1] ? "this shape" : `the shape of step ${run.ref.block.step}`
      const note = run.carried.size > 0 ? ` (${[...run.carried].join(", ")})` : ""
      rows.push({ _tag: "note", depth: depth + 1, text: `... ${loopName}: ${stepRange(run.blocks)} ${shape}${note}` })
      run = undefined
    }
    steps.forEach((block, k) => {
      const previous = steps[k - 1]
      const shape = shapeOf(block, previous)
      if (previous !== undefined) {
        const repeats = (ref: StepShape): Set<string> | undefined => {
          const carried = new Set<string>()
          return sameShape(ref, shape, carried) ? carried : undefined
        }
        const same = run === undefined ? undefined : repeats(run.ref.shape)
        if (run !== undefined && same !== undefined) {
          run.blocks.push(block)
          for (const c of same) run.carried.add(c)
          return
        }
        for (let i = shown.length - 1; i >= 0; i--) {
          const carried = repeats(shown[i]!.shape)
          if (carried === undefined) continue
          flush()
          run = { ref: shown[i]!, blocks: [block], carried }
          return
        }
      }
      flush()
      textRows(block.nodes, block.scope, depth + 1, rows)
      shown.push({ block, shape })
    })
    flush()
  }
}

const textOf = (pipeline: Pipeline<any, any>): string => {
  const rows: Array<Row> = []
  textRows(pipeline.nodes, "", 1, rows)
  const indent = (depth: number) => "  ".repeat(depth)
  const stageCol = (n: PipelineNode) => `[${n.stage.name} ${versionLabel(n.stage.version)}, ${resourceOf(n)}]`
  let idWidth = 0
  let stageWidth = 0
  for (const row of rows) {
    if (row._tag !== "node") continue
    idWidth = Math.max(idWidth, indent(row.depth).length + row.node.id.length)
    stageWidth = Math.max(stageWidth, stageCol(row.node).length)
  }
  const lines = [`pipeline "${pipeline.name}": ${pipeline.nodes.length} node${pipeline.nodes.length === 1 ? "" : "s"}`]
  for (const row of rows) {
    if (row._tag === "note") {
      lines.push(indent(row.depth) + row.text)
      continue
    }
    const { node } = row
    const inputs = Object.entries(node.inputs).map(([name, wire]) => `${name}: ${typeof wire === "string" ? wire : `[${wire.join(", ")}]`}`)
    const line = `${(indent(row.depth) + node.id).padEnd(idWidth)}  ${stageCol(node).padEnd(stageWidth)}` +
      (inputs.length > 0 ? `  <- ${inputs.join(", ")}` : "")
    lines.push(line.trimEnd())
  }
  const outputs = Object.entries(pipeline.outputs).map(([name, id]) => `${name} <- ${id}`)
  if (outputs.length > 0) lines.push(`  outputs: ${outputs.join(", ")}`)
  return lines.join("\n") + "\n"
}

// ---------------------------------------------------------------------------------------------
// Graphs: a tree of scopes shared by Mermaid and DOT

/** A scope holding nodes directly, with the scopes nested in it; children in order of first appearance. */
interface ScopeTree {
  readonly scope: string
  readonly children: Array<{ readonly _tag: "node"; readonly node: PipelineNode } | { readonly _tag: "scope"; readonly tree: ScopeTree }>
}

/**
 * Groups nodes by scope. Only scopes that hold nodes directly get a group; a group nests in the
 * nearest enclosing scope that has one (`train/step-000` sits at the top level, as `train`
 * holds no node itself).
 */
const scopeTree = (nodes: ReadonlyArray<PipelineNode>): ScopeTree => {
  const scopes = new Set(nodes.map((n) => scopeOf(n.id)))
  const parentOf = (scope: string): string => {
    let s = scopeOf(scope)
    while (s !== "" && !scopes.has(s)) s = scopeOf(s)
    return s
  }
  const root: ScopeTree = { scope: "", children: [] }
  const trees = new Map<string, ScopeTree>([["", root]])
  const treeOf = (scope: string): ScopeTree => {
    let tree = trees.get(scope)
    if (tree === undefined) {
      tree = { scope, children: [] }
      trees.set(scope, tree)
      treeOf(parentOf(scope)).children.push({ _tag: "scope", tree })
    }
    return tree
  }
  for (const node of nodes) treeOf(scopeOf(node.id)).children.push({ _tag: "node", node })
  return root
}

const MERMAID_RESERVED = new Set(["end", "graph", "flowchart", "subgraph", "direction", "style", "class", "classdef", "click", "linkstyle", "default"])

/** Mermaid ids: the id with every other character turned into `_`, made unique. */
const mermaidIds = (names: ReadonlyArray<readonly [key: string, name: string]>): Map<string, string> => {
  const ids = new Map<string, string>()
  const taken = new Set<string>()
  for (const [key, name] of names) {
    if (ids.has(key)) continue
    let base = name.replace(/[^A-Za-z0-9_]/g, "_")
    if (MERMAID_RESERVED.has(base.toLowerCase()) || /^\d/.test(base)) base = `n_${base}`
    let id = base
    for (let i = 2; taken.has(id); i++) id = `${base}_${i}`
    taken.add(id)
    ids.set(key, id)
  }
  return ids
}

const mermaidText = (s: string) => s.replace(/"/g, "#quot;").replace(/\|/g, "#124;")

const mermaidOf = (pipeline: Pipeline<any, any>): string => {
  const tree = scopeTree(pipeline.nodes)
  const scopes = pipeline.nodes.map((n) => scopeOf(n.id)).filter((s) => s !== "")
  const ids = mermaidIds([...pipeline.nodes.map((n) => [n.id, n.id] as const), ...scopes.map((s) => [`scope:${s}`, s] as const)])
  const lines = ["flowchart TD"]
  const walk = (t: ScopeTree, depth: number) => {
    const pad = "  ".repeat(depth)
    for (const child of t.children) {
      if (child._tag === "node") {
        lines.push(`${pad}${ids.get(child.node.id)}["${mermaidText(child.node.id)}<br/>${mermaidText(child.node.stage.name)}"]`)
      } else {
        lines.push(`${pad}subgraph ${ids.get(`scope:${child.tree.scope}`)} ["${mermaidText(child.tree.scope)}"]`)
        walk(child.tree, depth + 1)
        lines.push(`${pad}end`)
      }
    }
  }
  walk(tree, 1)
  for (const node of pipeline.nodes) {
    for (const [name, wire] of Object.entries(node.inputs)) for (const from of wireIds(wire)) lines.push(`  ${ids.get(from)} -->|${mermaidText(name)}| ${ids.get(node.id)}`)
  }
  return lines.join("\n") + "\n"
}

const dotString = (s: string) => `"${s.replace(/\\/g, "\\\\").replace(/"/g, "\\\"")}"`

const dotOf = (pipeline: Pipeline<any, any>): string => {
  const tree = scopeTree(pipeline.nodes)
  const lines = [
    `digraph ${dotString(pipeline.name)} {`,
    "  rankdir=TB;",
    "  node [shape=box];"
  ]
  const walk = (t: ScopeTree, depth: number) => {
    const pad = "  ".repeat(depth)
    for (const child of t.children) {
      if (child._tag === "node") {
        lines.push(`${pad}${dotString(child.node.id)} [label=${dotString(`${child.node.id}\n${child.node.stage.name}`).replace(/\n/g, "\\n")}];`)
      } else {
        lines.push(`${pad}subgraph ${dotString(`cluster_${child.tree.scope}`)} {`)
        lines.push(`${pad}  label=${dotString(child.tree.scope)};`)
        walk(child.tree, depth + 1)
        lines.push(`${pad}}`)
      }
    }
  }
  walk(tree, 1)
  for (const node of pipeline.nodes) {
    for (const [name, wire] of Object.entries(node.inputs)) for (const from of wireIds(wire)) lines.push(`  ${dotString(from)} -> ${dotString(node.id)} [label=${dotString(name)}];`)
  }
  lines.push("}")
  return lines.join("\n") + "\n"
}

const renderers: Record<Format, (pipeline: Pipeline<any, any>) => string> = {
  text: textOf,
  mermaid: mermaidOf,
  dot: dotOf
}
