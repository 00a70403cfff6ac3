/**
 * A stage is a named, versioned, typed unit of work. It is defined once, with Schemas for its
 * inputs, output and params, the engines whose identity shapes its output, a retry Schedule
 * and a resource class. Its `run` is an Effect. Stage authors never touch the cache: the
 * executor keys, stores, memoizes, retries and logs around `run`.
 *
 * @example
 * import { Effect, Schema } from "effect"
 * import { Stage } from "polaris"
 *
 * export const countWords = Stage.make({
 *   name: "count-words",
 *   version: "1",
 *   inputs: { texts: Schema.Array(Schema.String) },
 *   output: Schema.Array(Schema.Number),
 *   params: Schema.Struct({ minLength: Schema.Number }),
 *   run: ({ texts }, { minLength }) =>
 *     Effect.succeed(texts.map((t) => t.split(/\s+/).filter((w) => w.length >= minLength).length))
 * })
 */
import { fileURLToPath } from "node:url"
import type { Effect, Schedule } from "effect"
import { Schema } from "effect"
import type { BlobRef } from "./ArtifactStore.ts"
import type { BudgetExceeded } from "./Budget.ts"
import type { EngineKey } from "./Engine.ts"
import { callerFile, toPath } from "./Fingerprint.ts"
import * as Retry from "./Retry.ts"
import type { PutOptions as TreePutOptions, TreeRef } from "./Tree.ts"

/** Options of one memoized item. */
export interface MemoOptions<A> {
  /** Store the result only when this holds (e.g. not for an unscorable judge reply). */
  readonly persistIf?: (value: A) => boolean
}

/**
 * What a running stage may ask of the executor. Everything here is scoped to one node.
 */
export interface StageContext {
  /** Node id in the pipeline, e.g. `train/step-003/judge`. */
  readonly nodeId: string
  /** The node's cache key (hex). */
  readonly key: string
  /**
   * Memoizes one expensive item (a judge call, a rollout group) under its own key, so a crash
   * halfway through the stage loses nothing finished. The key is `(stage name, stage version,
   * namespace, key)`: the same item is reused by any node of this stage, in any run. Failures
   * are never stored; neither are values rejected by `persistIf`.
   */
  readonly memo: <A, I, E, R>(
    namespace: string,
    key: unknown,
    schema: Schema.Codec<A, I>,
    compute: Effect.Effect<A, E, R>,
    options?: MemoOptions<A>
  ) => Effect.Effect<A, E, R>
  /** Reports item progress (`done` of `total`) to the event log and the live view. */
  readonly progress: (done: number, total: number) => Effect.Effect<void>
  /** Appends a metrics record (numbers, strings) for this node to the run's metrics. */
  readonly metric: (values: Readonly<Record<string, number | string | boolean | null>>) => Effect.Effect<void>
  /** Deterministic uniform [0, 1) generator for item `index`, seeded by (node key, index). */
  readonly random: (index: number) => () => number
  /** Stores raw bytes (weights, tensors) and returns a reference to put in the output. */
  readonly putBlob: (bytes: Uint8Array) => Effect.Effect<BlobRef>
  /** Reads bytes stored by `putBlob`, checksum verified. */
  readonly getBlob: (ref: BlobRef) => Effect.Effect<Uint8Array>
  /** Stores a folder (a checkpoint) by content (Tree.ts) and returns a reference to put in the output. */
  readonly putTree: (dir: string, options?: TreePutOptions) => Effect.Effect<TreeRef>
  /** The path of a folder stored by `putTree`, laid out for this process; never put it in an output. */
  readonly getTree: (ref: TreeRef) => Effect.Effect<string>
  /** A log line in the run's event log. */
  readonly log: (message: string) => Effect.Effect<void>
  /**
   * Runs a paid call within the run's budget (`RunOptions.budgetUsd`, a recipe's `budget.usd`):
   * refused with `BudgetExceeded` when its expected cost would take the run past the cap; what
   * it really cost (`actualUsd` of its result) goes to the run's spend ledger.
   */
  readonly charge: <A, E, R>(
    charged: { readonly engine: string; readonly expectedUsd: number },
    call: Effect.Effect<A, E, R>,
    actualUsd: (a: A) => number
  ) => Effect.Effect<A, E | BudgetExceeded, R>
}

/** The typed inputs of a stage: one value per named input. */
export type InputValues<Inputs extends InputSchemas> = { readonly [K in keyof Inputs]: Inputs[K]["Type"] }

/** Named input Schemas. */
export type InputSchemas = Readonly<Record<string, Schema.Codec<any, any>>>

/** A stage definition. Build it with {@link make}. */
export interface Stage<Inputs extends InputSchemas, Out, Params, E, R> {
  readonly _tag: "Stage"
  readonly name: string
  readonly version: string
  readonly inputs: Inputs
  readonly output: Schema.Codec<Out, any>
  readonly params: Schema.Codec<Params, any>
  /** Resource class whose concurrency limit applies (`cpu`, `policy`, `judge`...). */
  readonly resource: string
  /** Retry Schedule for transient failures of the whole stage body. */
  readonly retry: Schedule.Schedule<unknown, unknown>
  /** Engines whose fingerprint enters the key. */
  readonly engines: ReadonlyArray<EngineKey>
  /** Absolute path of the defining module: its code and what it imports at run time are the stage's source fingerprint (Fingerprint.ts). */
  readonly source: string
  /**
   * Whether an output may be reused by later runs (default: always). A rejected output still
   * feeds this run's downstream nodes, but a later run or `resume` executes the node again, where
   * its memoized items make that cheap: a judge step with unscorable stories retries only those.
   */
  readonly cacheIf?: ((output: Out) => boolean) | undefined
  readonly run: (input: InputValues<Inputs>, params: Params, ctx: StageContext) => Effect.Effect<Out, E, R>
}

/** Any stage, for code that handles stages generically. */
export type AnyStage = Stage<any, any, any, any, any>

/** The output type of a stage. */
export type OutputOf<S> = S extends Stage<any, infer O, any, any, any> ? O : never

/** The params Schema of a stage that takes none. */
export const NoParams = Schema.Struct({})
const THIS_FILE = fileURLToPath(import.meta.url)

/**
 * Defines a stage. `source` defaults to the file that calls `make` (its code fingerprints
 * the stage); `resource` defaults to `"cpu"`; `retry` to no retry.
 */
export const make = <
  Out,
  E = never,
  R = never,
  const Inputs extends InputSchemas = {},
  Params = {}
>(definition: {
  readonly name: string
  readonly version: string
  readonly inputs?: Inputs
  readonly output: Schema.Codec<Out, any>
  readonly params?: Schema.Codec<Params, any>
  readonly resource?: string
  readonly retry?: Schedule.Schedule<unknown, unknown>
  readonly engines?: ReadonlyArray<EngineKey>
  readonly source?: string
  readonly cacheIf?: (output: Out) => boolean
  readonly run: (input: InputValues<Inputs>, params: Params, ctx: StageContext) => Effect.Effect<Out, E, R>
}): Stage<Inputs, Out, Params, E, R> => {
  if (!/^[a-z0-9][a-z0-9._-]*$/.test(definition.name)) {
    throw new Error(`stage name "${definition.name}" must be lower-case letters, digits, '.', '_' or '-'`)
  }
  const source = definition.source !== undefined ? toPath(definition.source) : callerFile([THIS_FILE])
  if (source === undefined) throw new Error(`stage "${definition.name}": cannot tell its source file; pass source: import.meta.url`)
  return {
    _tag: "Stage",
    name: definition.name,
    version: definition.version,
    inputs: (definition.inputs ?? {}) as Inputs,
    output: definition.output,
    params: (definition.params ?? NoParams) as unknown as Schema.Codec<Params, any>,
    resource: definition.resource ?? "cpu",
    retry: definition.retry ?? Retry.never,
    engines: definition.engines ?? [],
    source,
    cacheIf: definition.cacheIf,
    run: definition.run
  }
}
