/**
 * Pipelines: DAGs of stage nodes with typed edges, written in TypeScript.
 *
 * A node's inputs are references to other nodes' outputs; wiring an output into an input of
 * another type does not compile. The graph is acyclic by construction (a reference exists only
 * after its node). Training steps use {@link Builder.loop}, which unrolls into one sub-DAG per
 * step, carrying state from step to step, so every step's nodes cache on their own.
 *
 * An input whose schema is an array may instead be wired to a list of references (fan-in): the
 * stage gets their outputs in list order, and the key gets their digests in that order, so nodes
 * that run apart (one per group, say) meet again in one node.
 *
 * The pipeline's type records the services its stages need, so running it without providing
 * them (say, a Judge) is a compile error too.
 *
 * @example
 * const pipeline = Pipeline.make("words", (b) => {
 *   const texts = b.node(readTexts, { id: "read", params: { dir: "examples" } })
 *   const counts = b.node(countWords, { id: "count", inputs: { texts }, params: { minLength: 1 } })
 *   return { counts }
 * })
 */
import { Data, type Exit, Schema } from "effect"
import { canonicalJson } from "./Canonical.ts"
import { didYouMean } from "./internal/suggest.ts"
import { type AnyStage, type InputSchemas, NoParams, type Stage } from "./Stage.ts"

declare const OutputType: unique symbol
declare const Requirements: unique symbol
declare const OutputTypes: unique symbol

/** A typed reference to a node's output; `O` is the output type, `R` the services upstream needs. */
export interface NodeRef<out O, out R = never> {
  readonly id: string
  readonly [OutputType]: () => O
  readonly [Requirements]: () => R
}

/** The services a reference (or a record of references) needs. */
export type RequirementsOf<T> = T extends NodeRef<any, infer R> ? R
  : T extends ReadonlyArray<NodeRef<any, infer R>> ? R
  : T extends Readonly<Record<string, NodeRef<any, any> | ReadonlyArray<NodeRef<any, any>>>> ? { [K in keyof T]: RequirementsOf<T[K]> }[keyof T]
  : never

/** One node of a built pipeline. */
export interface PipelineNode {
  readonly id: string
  readonly stage: AnyStage
  readonly params: unknown
  /** input name -> id of the node feeding it, or the ids of the nodes whose outputs it lists (fan-in) */
  readonly inputs: Readonly<Record<string, InputWire>>
  /**
   * The resource class this node runs under when it differs from its stage's (set at wiring time,
   * `b.node(stage, { ..., resource: "trainer" })`). Like the stage's, it is not in the cache key.
   */
  readonly resource?: string
}

/** What feeds one input: a node, or a list of nodes whose outputs the input receives in order. */
export type InputWire = string | ReadonlyArray<string>

/** The ids of the nodes a wire reads, in order. */
export const wireIds = (wire: InputWire): ReadonlyArray<string> => typeof wire === "string" ? [wire] : wire

/** Every node a node reads from, once per wire element. */
export const upstreamOf = (node: PipelineNode): ReadonlyArray<string> => Object.values(node.inputs).flatMap(wireIds)

/** The resource class whose limit a node runs under: its own, else its stage's. */
export const resourceOf = (node: PipelineNode): string => node.resource ?? node.stage.resource

/** The value types of a record of references. */
export type OutputsOf<T> = { readonly [K in keyof T]: T[K] extends NodeRef<infer O, any> ? O : never }

/**
 * A built pipeline: nodes in a topological order, and its named outputs (output name -> node
 * id). `R` is the services its stages need, `O` the types of its outputs.
 */
export interface Pipeline<out R = never, out O = Readonly<Record<string, unknown>>> {
  readonly _tag: "Pipeline"
  readonly name: string
  readonly nodes: ReadonlyArray<PipelineNode>
  readonly outputs: Readonly<Record<string, string>>
  readonly [Requirements]: () => R
  readonly [OutputTypes]: () => O
}

/** A pipeline that could not be built (duplicate id, bad params, unreachable node...). Thrown by `make`. */
export class PipelineError extends Data.TaggedError("PipelineError")<{ readonly message: string }> {}

/** A node's output for each input, or for an array input a list of nodes' outputs, one per element. */
type RefsFor<Inputs extends InputSchemas> = {
  readonly [K in keyof Inputs]: Inputs[K]["Type"] extends ReadonlyArray<infer X> ? NodeRef<Inputs[K]["Type"], any> | ReadonlyArray<NodeRef<X, any>>
    : NodeRef<Inputs[K]["Type"], any>
}

type ParamsField<P> = ({} extends P ? { readonly params?: P } : { readonly params: P }) & {
  /** Runs the node under this resource class instead of its stage's (not in the cache key). */
  readonly resource?: string
}

const ID = /^[A-Za-z0-9][A-Za-z0-9._-]*$/

// One decoder per stage, and each distinct params decoded once: a paper-scale pipeline checks
// the params of thousands of nodes.
const checkers = new WeakMap<AnyStage, { readonly decode: (u: unknown) => Exit.Exit<unknown, Schema.SchemaError>; readonly seen: Map<string, unknown> }>()

const checkParams = (stage: AnyStage, id: string, params: unknown): unknown => {
  // Unknown keys are errors: a typo must not silently change a key or vanish. (An empty Struct
  // does not report excess keys itself, hence the first check.)
  if (stage.params === NoParams && typeof params === "object" && params !== null && Object.keys(params).length > 0) {
    throw new PipelineError({ message: `node "${id}" (stage ${stage.name}): bad params: it takes none, got ${Object.keys(params).join(", ")}` })
  }
  let checker = checkers.get(stage)
  if (checker === undefined) {
    checkers.set(stage, (checker = { decode: Schema.decodeUnknownExit(Schema.toType(stage.params), { onExcessProperty: "error" }), seen: new Map() }))
  }
  // Nodes of one stage often share their params (every group of every step): decoded once. Only
  // plain data is remembered, by its canonical form (what the node's key hashes anyway).
  let text: string | undefined
  try {
    text = canonicalJson(params ?? {}, "reject")
  } catch {
    text = undefined
  }
  const known = text === undefined ? undefined : checker.seen.get(text)
  if (known !== undefined) return known
  const exit = checker.decode(params ?? {})
  if (exit._tag === "Failure") {
    const cause = exit.cause.reasons[0]
    const message = cause && cause._tag === "Fail" ? (cause.error as { message: string }).message : "invalid"
    throw new PipelineError({ message: `node "${id}" (stage ${stage.name}): bad params: ${message}` })
  }
  if (text !== undefined) checker.seen.set(text, exit.value)
  return exit.value
}

/**
 * A stage inserted after a node of a pipeline (a recipe's `stages:` entry): it takes that node's
 * output as its only input, and that node's consumers get its output instead.
 */
export interface Insertion {
  /** The node it follows: a full id (`train/step-003/judge`) or a local one (`judge`, every step). */
  readonly after: string
  readonly stage: AnyStage
  /** Its node id, local to the scope of the node it follows. */
  readonly id: string
  readonly params?: unknown
}

/** Adds nodes to a pipeline under construction. Ids are prefixed inside loops and scopes. */
export class Builder {
  /** @internal */
  constructor(
    private readonly prefix: string,
    private readonly nodes: Array<PipelineNode>,
    private readonly ids: Set<string>,
    private readonly insertions: ReadonlyArray<Insertion> = [],
    private readonly used: Set<Insertion> = new Set(),
    /** The first node of each stage name (a second stage of that name is an error). */
    private readonly byStageName: Map<string, PipelineNode> = new Map()
  ) {}

  /**
   * Adds a node running `stage` on the outputs of other nodes. `id` must be unique in its
   * scope; it names the node in logs, `status` and `explain`.
   */
  node<Out, Params, E, R>(
    stage: Stage<{}, Out, Params, E, R>,
    spec: { readonly id: string; readonly inputs?: {} } & ParamsField<Params>
  ): NodeRef<Out, R>
  node<Inputs extends InputSchemas, Out, Params, E, R, Refs extends RefsFor<Inputs>>(
    stage: Stage<Inputs, Out, Params, E, R>,
    spec: { readonly id: string; readonly inputs: Refs } & ParamsField<Params>
  ): NodeRef<Out, R | RequirementsOf<Refs>>
  node(stage: AnyStage, spec: { readonly id: string; readonly inputs?: Record<string, NodeRef<any, any> | ReadonlyArray<NodeRef<any, any>>>; readonly params?: unknown; readonly resource?: string }): NodeRef<any, any> {
    if (!ID.test(spec.id)) throw new PipelineError({ message: `node id "${spec.id}" must be letters, digits, '.', '_' or '-'` })
    const id = this.prefix + spec.id
    if (this.ids.has(id)) throw new PipelineError({ message: `duplicate node id "${id}"` })
    // Loops without a temporary array or closure per input: a short command runs this for every
    // node of a paper-scale pipeline (7,387) before V8 has optimized it.
    const inputs: Record<string, InputWire> = {}
    const wiring = spec.inputs ?? {}
    for (const name in stage.inputs) {
      const wired = wiring[name]
      if (wired === undefined) throw new PipelineError({ message: `node "${id}" (stage ${stage.name}): input "${name}" is not wired` })
      if (!Array.isArray(wired)) inputs[name] = this.wiredId(id, name, wired as NodeRef<any, any>)
      else {
        const ids: Array<string> = []
        for (const ref of wired as ReadonlyArray<NodeRef<any, any>>) ids.push(this.wiredId(id, name, ref))
        inputs[name] = ids
      }
    }
    for (const name in wiring) {
      if (!(name in stage.inputs)) {
        throw new PipelineError({ message: `node "${id}" (stage ${stage.name}): unknown input "${name}"; it takes ${Object.keys(stage.inputs).join(", ") || "no inputs"}` })
      }
    }
    const namesake = this.byStageName.get(stage.name)
    if (namesake !== undefined && namesake.stage !== stage) {
      throw new PipelineError({ message: `node "${id}": another stage is also named "${stage.name}" (node "${namesake.id}"); stage names must be unique, they key the cache` })
    }
    const params = checkParams(stage, id, spec.params)
    const node: PipelineNode = spec.resource !== undefined && spec.resource !== stage.resource
      ? { id, stage, params, inputs, resource: spec.resource }
      : { id, stage, params, inputs }
    this.nodes.push(node)
    if (namesake === undefined) this.byStageName.set(stage.name, node)
    this.ids.add(id)
    let ref = { id } as NodeRef<any, any>
    for (const insertion of this.insertions) {
      if (insertion.after !== id && insertion.after !== spec.id) continue
      const names = Object.keys(insertion.stage.inputs)
      if (names.length !== 1) {
        throw new PipelineError({ message: `stage ${insertion.stage.name} inserted after "${id}" must take exactly one input; it takes ${names.length}` })
      }
      this.used.add(insertion)
      ref = this.node(insertion.stage as Stage<any, any, any, any, any>, { id: insertion.id, inputs: { [names[0]!]: ref }, params: insertion.params } as any)
    }
    return ref
  }

  /** The id of a node wired into `id`'s input `name`, which must exist already. */
  private wiredId(id: string, name: string, ref: NodeRef<any, any>): string {
    if (!this.ids.has(ref.id)) throw new PipelineError({ message: `node "${id}": input "${name}" refers to unknown node "${ref.id}"` })
    return ref.id
  }

  /** A builder whose node ids are prefixed with `id/`. */
  scope(id: string): Builder {
    if (!ID.test(id)) throw new PipelineError({ message: `scope id "${id}" must be letters, digits, '.', '_' or '-'` })
    return new Builder(`${this.prefix}${id}/`, this.nodes, this.ids, this.insertions, this.used, this.byStageName)
  }

  /**
   * Unrolls `steps` training steps. Step k's nodes live under `id/step-<k>/`, receive the state
   * produced by step k-1 (or `init`) and return the next state. Returns the final state.
   *
   * `states` is every state so far: `states[0]` is `init`, `states[j]` the state after step j-1,
   * and `states[k]` (the last) the one step k receives. A body that lags, say sampling with the
   * policy of `states[k - 2]` while training `states[k]`, wires the older state in: which state a
   * node uses is then fixed by the DAG, never by timing.
   *
   * @example
   * const final = b.loop("train", { steps: 160, init: policy0, body: (s, policy, k) => {
   *   const batch = s.node(sample, { id: "batch", inputs: { sampler }, params: { step: k } })
   *   return s.node(update, { id: "update", inputs: { policy, batch } })
   * } })
   */
  loop<S, R0, R1>(
    id: string,
    options: {
      readonly steps: number
      readonly init: NodeRef<S, R0>
      readonly body: (step: Builder, state: NodeRef<S, R0>, index: number, states: ReadonlyArray<NodeRef<S, R0>>) => NodeRef<S, R1>
    }
  ): NodeRef<S, R0 | R1> {
    const scope = this.scope(id)
    const width = Math.max(3, String(Math.max(0, options.steps - 1)).length)
    const states: Array<NodeRef<S, R0 | R1>> = [options.init]
    let state: NodeRef<S, R0 | R1> = options.init
    for (let k = 0; k < options.steps; k++) {
      // Each step's state carries the requirements of all steps before it; the return type says so.
      state = options.body(scope.scope(`step-${String(k).padStart(width, "0")}`), state as NodeRef<S, R0>, k, [...states] as Array<NodeRef<S, R0>>)
      states.push(state)
    }
    return state
  }
}

/**
 * Builds a pipeline. `build` adds nodes and returns the named outputs; every node must be an
 * ancestor of an output (so the pipeline's type knows every service it needs).
 */
export const make = <const Outputs extends Readonly<Record<string, NodeRef<any, any>>>>(
  name: string,
  build: (b: Builder) => Outputs,
  options: { readonly insertions?: ReadonlyArray<Insertion> } = {}
): Pipeline<RequirementsOf<Outputs>, OutputsOf<Outputs>> => {
  const nodes: Array<PipelineNode> = []
  const used = new Set<Insertion>()
  const b = new Builder("", nodes, new Set(), options.insertions ?? [], used)
  const outputs = build(b)
  const unused = (options.insertions ?? []).filter((i) => !used.has(i))
  if (unused.length > 0) {
    const ids = nodes.map((n) => n.id)
    const hint = (after: string) => {
      const close = didYouMean(after, ids) ?? didYouMean(after, ids.map((id) => id.split("/").at(-1)!))
      return close !== undefined ? ` (did you mean "${close}"?)` : ""
    }
    throw new PipelineError({
      message: unused.map((i) => `pipeline "${name}" has no node "${i.after}"${hint(i.after)} to insert ${i.stage.name} after`).join("; ")
    })
  }
  const byId = new Map(nodes.map((n) => [n.id, n]))
  // Everything upstream of an output, walked with a stack: a 160-step pipeline has 7,000 nodes.
  const needed = new Set<string>()
  const pending = Object.values(outputs).map((ref) => ref.id)
  for (let id = pending.pop(); id !== undefined; id = pending.pop()) {
    if (needed.has(id)) continue
    needed.add(id)
    const node = byId.get(id)
    if (node === undefined) continue
    for (const wire of Object.values(node.inputs)) {
      if (typeof wire === "string") pending.push(wire)
      else for (const from of wire) pending.push(from)
    }
  }
  const orphans = nodes.filter((n) => !needed.has(n.id)).map((n) => n.id)
  if (orphans.length > 0) {
    throw new PipelineError({ message: `pipeline "${name}": nodes ${orphans.join(", ")} feed no output; return them from the builder` })
  }
  return {
    _tag: "Pipeline",
    name,
    nodes,
    outputs: Object.fromEntries(Object.entries(outputs).map(([k, ref]) => [k, ref.id]))
  } as unknown as Pipeline<RequirementsOf<Outputs>, OutputsOf<Outputs>>
}
