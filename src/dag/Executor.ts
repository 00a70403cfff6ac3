/**
 * The executor: runs a pipeline's nodes in topological order, independent nodes in parallel
 * within per-resource-class limits, consulting the node cache before running anything.
 *
 * For each node:
 *   1. wait for its inputs; compute its key from (stage, version, source fingerprint, params,
 *      input digests, engine fingerprints)
 *   2. a verified hit in the node index -> reuse the output (a corrupt object is quarantined
 *      and the node recomputed)
 *   3. otherwise take the key's lock (one computation per key across processes), look again,
 *      run the stage under its resource limit and retry Schedule, hand the encoded output to
 *      the node's dependents, then (still holding the lock) store its bytes atomically and
 *      index them
 *
 * Dependents start before their input is durable: the wait for a node's fsyncs is off the
 * critical path. A node is indexed only after its inputs are (`committed`), so the index grows in
 * topological order as before, and a crash loses only nodes that had not finished.
 *
 * Descendants see inputs by content digest, so a node that re-ran with byte-identical output
 * leaves them cached (early cutoff). A failed node fails its descendants (skipped) while
 * independent branches finish, unless `failFast`.
 *
 * The whole run holds its run lock (`locks/runs/<run-id>.lock`, KeyLock.holdRun), so `cache gc`
 * refuses to delete while it writes; a run starting while gc deletes waits, saying so on stderr.
 */
import { availableParallelism } from "node:os"
import { join } from "node:path"
import { Cause, Context, Data, Deferred, Effect, Exit, Option, References, type Schedule, Schema, Semaphore } from "effect"
import { ArtifactStore, type BlobRef, type KeyComponents, type NodeEntry, StoreError } from "./ArtifactStore.ts"
import * as Budget from "./Budget.ts"
import * as CacheKey from "./CacheKey.ts"
import { fingerprintStage } from "./Fingerprint.ts"
import { seeded } from "../internal/random.ts"
import * as KeyLock from "./KeyLock.ts"
import * as Memo from "./Memo.ts"
import { type InputWire, type Pipeline, type PipelineNode, resourceOf, wireIds } from "./Pipeline.ts"
import { digest, sha256 } from "./Canonical.ts"
import * as Retry from "./Retry.ts"
import * as RunLog from "./RunLog.ts"
import { MissingSecret } from "./Secret.ts"
import type { StageContext } from "./Stage.ts"
import * as Tree from "./Tree.ts"
import * as StoredValue from "./StoredValue.ts"

/** How a run goes. All optional. */
export interface RunOptions {
  /** Continue this run (its directory is reused) instead of starting a new one. */
  readonly runId?: string
  /** The resolved config to freeze in the run directory (secrets are masked). */
  readonly config?: unknown
  /**
   * Max nodes in flight per resource pool (a class that shares no pool is its own). Defaults: cpu =
   * cores, policy = sampler = 16 (engines that batch concurrent requests), trainer = 1, judge = 8, others 4.
   */
  readonly concurrency?: Readonly<Record<string, number>>
  /**
   * Shared pools: resource class -> the pool whose slots it takes ({@link PoolOf}). Classes mapped
   * to one pool never hold more than that pool's limit together. Defaults to {@link DEFAULT_POOLS}
   * (samplers take one `policy` slot each, a trainer all of them: one device); an entry mapping
   * a class to itself gives it its own pool. Not in any cache key.
   *
   * @example
   * // a remote sampler beside a remote trainer: one in flight on each, at the same time
   * Executor.run(pipeline, { pools: { sampler: "sampler", trainer: "trainer" } })
   */
  readonly pools?: Pools
  /** Retry Schedule per resource class, replacing the stages' own (a recipe's `retries:`). */
  readonly retries?: Readonly<Record<string, Schedule.Schedule<unknown, unknown>>>
  /** Stop everything at the first failure instead of letting independent branches finish. */
  readonly failFast?: boolean
  /** Node ids to re-execute even when cached. */
  readonly force?: ReadonlyArray<string>
  /** Called with the open run log before anything runs (to attach a progress view). */
  readonly onStart?: (log: RunLog.RunLog) => Effect.Effect<void>
  /**
   * Resource slots shared with other runs in this process ({@link makeSlots}): the runs of a
   * sweep take their nodes' permits from one set, so together they stay within the limits. When
   * given, it replaces `concurrency` and `pools` for admission (`pools` still picks retries).
   */
  readonly slots?: Slots
  /**
   * A cap in USD on what the run's paid calls cost (`StageContext.charge`), every process that
   * worked on the run counted (its ledger, `runs/<id>/spend.jsonl`). A call that would pass it
   * stops the run cleanly (`BudgetExceeded`); resuming with a higher cap continues.
   */
  readonly budgetUsd?: number
}

/**
 * Where a resource class's nodes take their slots: a pool's name (one slot each), or
 * `{ pool, whole: true }` for nodes that each need the whole pool, e.g. a trainer on the CPU
 * whose cores the samplers share, one each.
 */
export type PoolOf = string | { readonly pool: string; readonly whole: true }

/** Resource class -> {@link PoolOf}. */
export type Pools = Readonly<Record<string, PoolOf>>

const poolName = (p: PoolOf): string => (typeof p === "string" ? p : p.pool)

/** Per-pool semaphores: the permits a node of a resource class takes, and from which pool. */
export interface Slots {
  readonly semaphoreOf: (resource: string) => Semaphore.Semaphore
  readonly permitsOf: (resource: string) => number
}

/**
 * Slots for `concurrency` limits over `pools` (defaults as for a run), to share between runs.
 *
 * @example
 * const slots = Executor.makeSlots({ concurrency: recipe.concurrency, pools })
 * yield* Effect.all([Executor.run(a, { slots }), Executor.run(b, { slots })], { concurrency: "unbounded" })
 */
export const makeSlots = (options: { readonly concurrency?: Readonly<Record<string, number>>; readonly pools?: Pools } = {}): Slots => {
  const limits = { ...DEFAULT_LIMITS, ...options.concurrency }
  const pools: Pools = { ...DEFAULT_POOLS, ...options.pools }
  const limitOf = (pool: string) => Math.max(1, limits[pool] ?? 4)
  const semaphores = new Map<string, Semaphore.Semaphore>()
  return {
    semaphoreOf: (resource) => {
      const pool = poolName(pools[resource] ?? resource)
      let s = semaphores.get(pool)
      if (s === undefined) {
        s = Semaphore.makeUnsafe(limitOf(pool))
        semaphores.set(pool, s)
      }
      return s
    },
    permitsOf: (resource) => {
      const p = pools[resource] ?? resource
      return typeof p === "string" ? 1 : limitOf(p.pool)
    }
  }
}

/** What happened to a node in this run. */
export type NodeStatus = "executed" | "cached" | "failed" | "skipped"

/** A finished run; `O` is the pipeline's output types. */
export interface RunResult<O = Readonly<Record<string, unknown>>> {
  readonly runId: string
  readonly dir: string
  readonly outputs: O
  readonly nodes: Readonly<Record<string, { readonly status: NodeStatus; readonly key?: string; readonly object?: string }>>
  readonly executed: number
  readonly cached: number
}

/** One node's failure. */
export interface NodeFailure {
  readonly node: string
  readonly stage: string
  readonly error: string
}

/** A run that did not succeed: which nodes failed, why, and where the log is. */
export class RunFailed extends Data.TaggedError("RunFailed")<{
  readonly runId: string
  readonly failures: ReadonlyArray<NodeFailure>
  readonly skipped: number
  readonly logFile: string
}> {
  override get message() {
    const lines = this.failures.map((f) => `  node "${f.node}" (stage ${f.stage}) failed: ${f.error}`)
    const skipped = this.skipped > 0 ? `\n  ${this.skipped} downstream node(s) skipped` : ""
    return `run ${this.runId} failed:\n${lines.join("\n")}${skipped}\n  log: ${this.logFile}`
  }
}

/** A stage produced an output that cannot be stored (a secret in it, a schema mismatch). */
export class OutputError extends Data.TaggedError("OutputError")<{ readonly node: string; readonly reason: string }> {
  override get message() {
    return `output of node "${this.node}": ${this.reason}`
  }
}

/** A node's inputs or engines are not what its stage declares. */
export class InputError extends Data.TaggedError("InputError")<{ readonly node: string; readonly reason: string }> {
  override get message() {
    return this.reason
  }
}

/** An upstream node failed, so this one cannot run. */
class UpstreamFailed extends Data.TaggedError("UpstreamFailed")<{ readonly node: string }> {}

interface NodeValue {
  readonly digest: string
  /**
   * The value. A cached node's is decoded on first use (its bytes verified when it was found):
   * in a run that executes little, most values are never needed, only their digests.
   */
  readonly value: Effect.Effect<unknown, InputError>
  /** Done when the node is indexed (at once for a cached one); fails when its storing failed. */
  readonly committed: Effect.Effect<void, UpstreamFailed>
}

/** A node's value, decoded from its verified bytes once, when first asked for. */
const decodedOnce = (node: PipelineNode, digest: string, bytes: Uint8Array): NodeValue["value"] => {
  let decoded: unknown
  let done = false
  return Effect.suspend(() =>
    done ? Effect.succeed(decoded) : StoredValue.decodeBytes(node.stage.output, bytes).pipe(
      Effect.flatMap(Option.match({
        // Its key is unchanged, so its stage's code and schema are: only a changed library decodes differently.
        onNone: () => Effect.fail(new InputError({ node: node.id, reason: `its stored output (object ${digest}) no longer decodes under its schema; \`polaris run --force ${node.id}\` recomputes it` })),
        onSome: (value) => Effect.sync(() => {
          decoded = value
          done = true
          return value
        })
      }))
    ))
}

// A sampler, with its own pool or in the `policy` pool (the embedded engine, one device), is an engine
// that batches concurrent requests: 16 in flight lets every group of a step (and the next step's,
// off-policy) sample at once.
const DEFAULT_LIMITS: Readonly<Record<string, number>> = { cpu: availableParallelism(), policy: 16, sampler: 16, trainer: 1, judge: 8 }

/**
 * The safe default pools, for an engine that is one device (the embedded one: the machine's
 * CPU): sampling (`sampler`) nodes take one `policy` slot each, side by side; a training
 * (`trainer`) node, or one that just says `policy`, takes them all, so it never runs beside
 * another. Engines that sample and train apart give each its own pool (`RunOptions.pools`).
 */
export const DEFAULT_POOLS: Pools = { sampler: "policy", trainer: { pool: "policy", whole: true }, policy: { pool: "policy", whole: true } }

const describe = (error: unknown): string => {
  if (error instanceof Error || (typeof error === "object" && error !== null && "message" in error)) {
    const e = error as { _tag?: string; message?: unknown }
    const message = String(e.message ?? "")
    return e._tag !== undefined && !message.includes(e._tag) ? `${e._tag}: ${message}` : message
  }
  return typeof error === "string" ? error : JSON.stringify(error)
}

const describeCause = (cause: Cause.Cause<unknown>): string => {
  const reason = cause.reasons[0]
  if (reason === undefined) return "unknown failure"
  if (reason._tag === "Fail") return describe(reason.error)
  if (reason._tag === "Die") return `defect: ${describe(reason.defect)}`
  return "interrupted"
}

/**
 * Runs a pipeline against the ArtifactStore in context. Fails with RunFailed naming every failed
 * node, its cause and the log file.
 *
 * @example
 * const result = yield* Executor.run(pipeline, { config: recipe })
 * console.log(result.outputs.report, result.executed, result.cached)
 */
export const run = <R, O>(
  pipeline: Pipeline<R, O>,
  options: RunOptions = {}
): Effect.Effect<RunResult<O>, RunFailed | StoreError, R | ArtifactStore> =>
  Effect.scoped(Effect.gen(function*() {
    const store = yield* ArtifactStore
    const config = options.config ?? { pipeline: pipeline.name }
    const runId = options.runId ?? RunLog.newRunId()
    // Before the run directory exists, so a gc deleting right now cannot take it for a removed run's.
    yield* KeyLock.holdRun(store.paths.locks, runId, {
      onWait: (why) => Effect.logWarning(`run ${runId} waits: ${why}`).pipe(Effect.provideService(References.LogToStderr, true))
    }).pipe(Effect.mapError((e) => new StoreError({ op: "lock", path: e.path, cause: e.cause })))
    const log = yield* RunLog.open(store.paths, runId, config)
    if (options.onStart) yield* options.onStart(log)
    const started = Date.now()
    yield* log.emit({ type: "run_started", pipeline: pipeline.name, nodes: pipeline.nodes.length, resumed: log.resumed })

    const pools: Pools = { ...DEFAULT_POOLS, ...options.pools }
    const { semaphoreOf, permitsOf } = options.slots ?? makeSlots(options)
    const budget = yield* Budget.open(join(log.dir, "spend.jsonl"), options.budgetUsd ?? Infinity)
    const fingerprints = new Map<string, string>()
    const force = new Set(options.force ?? [])
    const producers = new Map(pipeline.nodes.map((n) => [n.id, n]))
    const deferreds = new Map<string, Deferred.Deferred<NodeValue, UpstreamFailed>>()
    for (const node of pipeline.nodes) deferreds.set(node.id, Deferred.makeUnsafe())
    const statuses: Record<string, { status: NodeStatus; key?: string; object?: string }> = {}
    const failures: Array<NodeFailure> = []
    const startedNodes = new Set<string>()
    const manifestNodes: Record<string, RunLog.ManifestNode> = Object.fromEntries(
      pipeline.nodes.map((n) => [n.id, { stage: n.stage.name, status: "pending" as const }])
    )
    let lastManifest = 0
    const writeManifest = (status: RunLog.Manifest["status"], always: boolean) =>
      Effect.suspend(() => {
        if (!always && Date.now() - lastManifest < 1000) return Effect.void
        lastManifest = Date.now()
        return log.writeManifest({ runId, pipeline: pipeline.name, status, nodes: manifestNodes, outputs: pipeline.outputs })
      })

    const contextFor = (
      node: PipelineNode,
      key: string,
      engines: Readonly<Record<string, string>>,
      memoKeys: Set<string>,
      metrics: Array<Record<string, any>>
    ): StageContext => ({
      nodeId: node.id,
      key,
      memo: Memo.make({ log, node: node.id, stage: node.stage.name, version: node.stage.version, engines, used: memoKeys }, store),
      progress: (done, total) => log.emit({ type: "progress", node: node.id, done, total }),
      metric: (values) =>
        Effect.andThen(Effect.sync(() => metrics.push({ ...values })), log.metric(node.id, key, values)),
      random: (index) => seeded(`${key}:${index}`),
      putBlob: (bytes) => Effect.orDie(Effect.map(store.put(bytes), (digest): BlobRef => ({ $blob: digest, bytes: bytes.byteLength }))),
      getBlob: (ref) => Effect.orDie(store.get(ref.$blob)),
      putTree: (dir, options) => Effect.orDie(Tree.put(store, dir, options)),
      getTree: (ref) => Effect.orDie(Tree.materialize(store, ref)),
      log: (message) => log.emit({ type: "log", node: node.id, message }),
      charge: (charged, call, actualUsd) => budget.charge({ node: node.id, ...charged }, call, actualUsd)
    })

    /**
     * Executes the stage body, hands its output to `release` (the dependents), then stores and
     * indexes it. Called holding the key's lock.
     */
    const execute = (
      node: PipelineNode,
      key: string,
      components: KeyComponents,
      inputValues: Effect.Effect<Record<string, unknown>, InputError>,
      missing: ReadonlyArray<{ readonly engine: string; readonly variables: ReadonlyArray<string> }>,
      release: (value: NodeValue) => Effect.Effect<void>,
      inputsCommitted: Effect.Effect<void, UpstreamFailed>
    ) =>
      Effect.gen(function*() {
        // An engine built without its secrets (Secret.ts) can key a cached result, never run one.
        if (missing.length > 0) {
          return yield* new MissingSecret({ variables: [...new Set(missing.flatMap((m) => m.variables))], needs: `engine ${missing.map((m) => m.engine).join(", ")}` })
        }
        // Once a paid call was refused the run is stopping: running nodes finish, none starts.
        const refused = budget.refusal()
        if (refused !== undefined) return yield* refused
        const inputs = yield* inputValues
        startedNodes.add(node.id)
        const memoKeys = new Set<string>()
        const metrics: Array<Record<string, any>> = []
        const ctx = contextFor(node, key, components.engines, memoKeys, metrics)
        yield* log.emit({ type: "node_started", node: node.id, stage: node.stage.name, key })
        const t0 = Date.now()
        // The permit is held per attempt, not across back-off sleeps. A node's duration is the
        // time it held its resource's slot; the time it queued for it (behind other nodes on the
        // same engine) or slept between attempts is `waitedMs`.
        let ranMs = 0
        const resource = resourceOf(node)
        const attempt = semaphoreOf(resource).withPermits(permitsOf(resource))(
          Effect.suspend(() => {
            const started = Date.now()
            // The cache entry keeps the records of the attempt that succeeded: a failed attempt's
            // would be replayed into every run that reuses the node (metrics.jsonl keeps them all).
            metrics.length = 0
            // Engines that price their own calls charge them to this node (Budget.Charge), and
            // what they cost is the node's `<engine>_cost_usd` metric (a judge stage reports its own).
            const spent = new Map<string, number>()
            const charge: Budget.Charge["Service"]["charge"] = (charged, call, actualUsd) =>
              ctx.charge(charged, call, (a) => {
                const usd = actualUsd(a)
                spent.set(charged.engine, (spent.get(charged.engine) ?? 0) + usd)
                return usd
              })
            return Effect.provideService(node.stage.run(inputs, node.params, ctx) as Effect.Effect<unknown, unknown>, Budget.Charge, { charge }).pipe(
              Effect.tap(() => (spent.size === 0 ? Effect.void : ctx.metric(Object.fromEntries([...spent].map(([engine, usd]) => [`${engine}_cost_usd`, usd]))))),
              Effect.ensuring(Effect.sync(() => void (ranMs += Date.now() - started)))
            )
          })
        )
        // A recipe's retries name the class, or the pool it shares (`policy` covers sampler and trainer).
        const schedule = options.retries?.[resource] ?? options.retries?.[poolName(pools[resource] ?? resource)] ?? node.stage.retry
        const produced = yield* Retry.transient(attempt, schedule, (error, failed) =>
          log.emit({ type: "node_retry", node: node.id, attempt: failed, error: describe(error) }))
        const { bytes, value } = yield* StoredValue.encode(node.stage.output, produced).pipe(
          Effect.mapError((e) => new OutputError({ node: node.id, reason: e.reason }))
        )
        const durationMs = ranMs
        const waitedMs = Date.now() - t0 - ranMs
        const committed = Deferred.makeUnsafe<void, UpstreamFailed>()
        const result: NodeValue = { digest: sha256(bytes), value: Effect.succeed(value), committed: Deferred.await(committed) }
        yield* release(result)
        yield* Effect.gen(function*() {
          const object = yield* store.put(bytes)
          yield* inputsCommitted
          if (node.stage.cacheIf === undefined || node.stage.cacheIf(produced)) {
            yield* store.writeNode({ key, object, bytes: bytes.byteLength, components, metrics, memo: [...memoKeys], durationMs, createdAt: new Date().toISOString() })
          }
          yield* log.emit({ type: "node_finished", node: node.id, key, object, durationMs, waitedMs })
        }).pipe(Effect.onExit((exit) =>
          Exit.isSuccess(exit) ? Deferred.succeed(committed, undefined) : Deferred.fail(committed, new UpstreamFailed({ node: node.id }))
        ))
        return result
      })

    const runNode = (node: PipelineNode, release: (value: NodeValue) => Effect.Effect<void>) =>
      Effect.gen(function*() {
        const wired: Array<{ readonly name: string; readonly wire: InputWire; readonly upstream: ReadonlyArray<NodeValue> }> = []
        const inputDigests: Record<string, string> = {}
        for (const [name, wire] of Object.entries(node.inputs)) {
          const upstream: Array<NodeValue> = []
          for (const from of wireIds(wire)) {
            upstream.push(yield* Deferred.await(deferreds.get(from)!).pipe(Effect.mapError(() => new UpstreamFailed({ node: from }))))
          }
          wired.push({ name, wire, upstream })
          inputDigests[name] = typeof wire === "string" ? upstream[0]!.digest : CacheKey.listDigest(upstream.map((u) => u.digest))
        }
        // The input values, wanted only when the node executes (the key needs the digests alone).
        const inputValues = Effect.gen(function*() {
          const inputs: Record<string, unknown> = {}
          for (const { name, wire, upstream } of wired) {
            const expected = (node.stage.inputs as Record<string, Schema.Codec<any, any>>)[name]!
            const values: Array<unknown> = []
            for (const u of upstream) values.push(yield* u.value)
            const value = typeof wire === "string" ? values[0] : values
            // Where producer and consumer declare different schemas (a custom stage meeting a built-in
            // one), check the value at the junction, so a mismatch names both ends. A list checks
            // against the array's element schema.
            const declared = typeof wire === "string" ? expected : (expected as unknown as Partial<Schema.$Array<any>>).value
            const sources = wireIds(wire)
            if (sources.some((from) => declared !== producers.get(from)?.stage.output)) {
              const checked = Schema.decodeUnknownExit(Schema.toType(expected))(value)
              if (checked._tag === "Failure") {
                const from = typeof wire === "string" ? `node "${wire}"` : `nodes ${sources.map((id) => `"${id}"`).join(", ")}`
                return yield* new InputError({ node: node.id, reason: `input "${name}" from ${from} does not match its schema: ${describeCause(checked.cause)}` })
              }
            }
            inputs[name] = value
          }
          return inputs
        })
        const inputsCommitted = Effect.forEach(wired, ({ upstream }) => Effect.forEach(upstream, (u) => u.committed, { discard: true }), { discard: true })
        const services = yield* Effect.context<never>()
        const engines: Record<string, string> = {}
        const missing: Array<{ readonly engine: string; readonly variables: ReadonlyArray<string> }> = []
        for (const engine of node.stage.engines) {
          const service = Context.getOrUndefined(services, engine)
          if (service === undefined) return yield* new InputError({ node: node.id, reason: `stage ${node.stage.name} needs engine "${engine.key}", which was not provided` })
          engines[engine.key] = service.fingerprint
          if (service.missingSecrets !== undefined && service.missingSecrets.length > 0) missing.push({ engine: engine.key, variables: service.missingSecrets })
        }
        const components = CacheKey.components({
          stage: node.stage.name,
          version: node.stage.version,
          source: fingerprintStage(node.stage.source, fingerprints),
          params: node.params,
          inputs: inputDigests,
          engines
        })
        const key = CacheKey.nodeKey(components)
        const quarantined = new Set<string>()
        const cachedValue = Effect.gen(function*() {
          if (force.has(node.id)) return undefined
          const entry = yield* store.readNode(key)
          if (entry === undefined) return undefined
          const bytes = yield* StoredValue.readBytes(log, node.id, entry.object, quarantined)
          return Option.isSome(bytes) ? { digest: entry.object, value: decodedOnce(node, entry.object, bytes.value), committed: Effect.void, entry } : undefined
        })
        const reuse = (found: NodeValue & { readonly entry: NodeEntry }) =>
          Effect.gen(function*() {
            // A resumed run already holds the metrics of the nodes it finished before. Written before
            // node_cached, as an executed node's are before node_finished: a view that sees a node
            // settle has seen its metrics.
            if (log.doneBefore.get(node.id) !== key) for (const m of found.entry.metrics) yield* log.metric(node.id, key, m)
            yield* log.emit({ type: "node_cached", node: node.id, key, object: found.digest })
            return { digest: found.digest, value: found.value, committed: found.committed, status: "cached" as NodeStatus }
          })
        const hit = yield* cachedValue
        const result = hit !== undefined
          ? yield* reuse(hit)
          : yield* store.withLock(
            key,
            Effect.flatMap(cachedValue, (again) =>
              again !== undefined ? reuse(again) : Effect.map(execute(node, key, components, inputValues, missing, release, inputsCommitted), (v) => ({ ...v, status: "executed" as NodeStatus }))),
            {
              onWait: (holder) => log.emit({ type: "lock_wait", node: node.id, key, holder }),
              onBreak: (holder) => log.emit({ type: "lock_broken", node: node.id, key, holder })
            }
          )
        return { key, ...result }
      })

    const settle = (node: PipelineNode) =>
      Effect.gen(function*() {
        const deferred = deferreds.get(node.id)!
        const exit = yield* Effect.exit(runNode(node, (value) => Effect.asVoid(Deferred.succeed(deferred, value))))
        if (Exit.isSuccess(exit)) {
          const { key, digest, value, committed, status } = exit.value
          statuses[node.id] = { status, key, object: digest }
          manifestNodes[node.id] = { stage: node.stage.name, key, object: digest, status }
          yield* Deferred.succeed(deferred, { digest, value, committed })
          yield* writeManifest("running", false)
          return
        }
        const reason = exit.cause.reasons[0]
        const overBudget = Budget.refusalIn(reason) !== undefined
        if (reason?._tag === "Fail" && reason.error instanceof UpstreamFailed) {
          statuses[node.id] = { status: "skipped" }
          manifestNodes[node.id] = { stage: node.stage.name, status: "skipped" }
          yield* log.emit({ type: "node_skipped", node: node.id, because: reason.error.node })
        } else if (overBudget && !startedNodes.has(node.id)) {
          statuses[node.id] = { status: "skipped" }
          manifestNodes[node.id] = { stage: node.stage.name, status: "skipped" }
          yield* log.emit({ type: "node_skipped", node: node.id, because: "budget" })
        } else {
          const error = describeCause(exit.cause)
          statuses[node.id] = { status: "failed" }
          manifestNodes[node.id] = { stage: node.stage.name, status: "failed" }
          failures.push({ node: node.id, stage: node.stage.name, error })
          yield* log.emit({ type: "node_failed", node: node.id, error })
        }
        yield* Deferred.fail(deferred, new UpstreamFailed({ node: node.id }))
        // Over budget the run stops without interrupting anyone: no node starts after the refusal
        // (`execute`), and the running ones finish, their calls in flight memoized.
        if (options.failFast && !overBudget && !(reason?._tag === "Fail" && reason.error instanceof UpstreamFailed)) {
          return yield* Effect.fail(new UpstreamFailed({ node: node.id }))
        }
      })

    yield* Effect.forEach(pipeline.nodes, settle, { concurrency: "unbounded", discard: true }).pipe(Effect.ignore)

    const executed = Object.values(statuses).filter((s) => s.status === "executed").length
    const cached = Object.values(statuses).filter((s) => s.status === "cached").length
    const ok = failures.length === 0 && Object.keys(statuses).length === pipeline.nodes.length
    yield* log.emit({ type: "run_finished", status: ok ? "succeeded" : "failed", executed, cached, failed: failures.length, durationMs: Date.now() - started })
    yield* writeManifest(ok ? "succeeded" : "failed", true)
    yield* log.close
    if (!ok) {
      const skipped = pipeline.nodes.length - executed - cached - failures.length
      return yield* new RunFailed({ runId, failures, skipped, logFile: log.eventsFile })
    }
    const outputs: Record<string, unknown> = {}
    for (const [name, id] of Object.entries(pipeline.outputs)) outputs[name] = yield* Effect.orDie((yield* Deferred.await(deferreds.get(id)!)).value)
    // In the pipeline's order, which is topological (nodes settle in whatever order they finish).
    const nodes = Object.fromEntries(pipeline.nodes.map((n) => [n.id, statuses[n.id]!]))
    return { runId, dir: log.dir, outputs: outputs as O, nodes, executed, cached }
  })) as Effect.Effect<RunResult<O>, RunFailed | StoreError, R | ArtifactStore>
