/**
 * Sampling and teacher forcing off the main thread: one worker thread per core, each a StoryModel
 * on one onnxruntime thread (SamplerWorker.ts). A job goes to the worker with the least work in
 * flight, at once: a worker decodes every generation it holds together (KvDecoder.ts).
 *
 * Why workers: onnxruntime-node runs a session on the calling thread, so in-process sampling
 * blocks the event loop and uses the cores only through intra-op threads, which the small
 * matrices of a decoding step barely split (measured: 2 threads 1.1× as fast as 1 at 5 rows);
 * a worker per core decodes requests side by side instead, and the main thread stays free.
 *
 * A job runs whole on one worker: a request's tokens and logprobs depend only on the request and
 * the weights (one thread and the same graphs everywhere), never on which worker ran it or what
 * ran beside it. The pool is one per process, shared by every engine (a sweep's variants too), so
 * the machine's cores are what limits it.
 *
 * Weights are read once, when a Map is first used, into shared memory; later changes to that
 * Map are not seen (pass snapshots, as the engine's published weights are). Each worker keeps the
 * sessions of the few versions it used last.
 *
 * @example
 * const pool = SamplerPool.shared()
 * const rows = await pool.generate(config, weights, [promptIds], params, [endId])
 */
import { availableParallelism } from "node:os"
import { createRequire } from "node:module"
import { pathToFileURL } from "node:url"
import { Worker } from "node:worker_threads"
import type { Generated, RowParams } from "./Generate.ts"
import type { SamplingParams } from "./Sampling.ts"
import type { Scored } from "./StoryModel.ts"
import { paramShapes, type ModelConfig } from "./Transformer.ts"
import { workerScript } from "./WorkerScript.ts"

/** Versions whose sessions a worker keeps (the sampler's current weights, and off-policy older ones). */
const KEEP = 3

/** One set of weights, in shared memory in `paramShapes` order. */
export interface WeightsVersion {
  readonly version: number
  readonly config: ModelConfig
  readonly buffer: SharedArrayBuffer
}

/** Each weight's name, offset and length (in floats) in a version's buffer: `paramShapes` order. */
const layout = (config: ModelConfig): Array<readonly [string, number, number]> => {
  let offset = 0
  return paramShapes(config).map(([name, shape]) => {
    const n = shape.reduce((p, q) => p * q, 1)
    offset += n
    return [name, offset - n, n] as const
  })
}

const pack = (config: ModelConfig, weights: ReadonlyMap<string, Float32Array>): SharedArrayBuffer => {
  const at = layout(config)
  for (const [name, , n] of at) {
    const w = weights.get(name)
    if (w === undefined) throw new Error(`weights: missing ${name}`)
    if (w.length !== n) throw new Error(`weights: ${name} has ${w.length} values, expected ${n}`)
  }
  const buffer = new SharedArrayBuffer(at.reduce((a, [, , n]) => a + n, 0) * 4)
  for (const [name, offset, n] of at) new Float32Array(buffer, offset * 4, n).set(weights.get(name)!)
  return buffer
}

/** A version's weights as views of its shared buffer (what a worker builds its sampler from). */
export const unpack = (w: WeightsVersion): Map<string, Float32Array> =>
  new Map(layout(w.config).map(([name, offset, n]) => [name, new Float32Array(w.buffer, offset * 4, n)]))

/** What the pool sends a worker. `weights` comes with the first job of a version on that worker. */
export type Job = {
  readonly id: number
  readonly version: number
  readonly weights?: WeightsVersion
  /** Versions the worker should free first. */
  readonly drop: ReadonlyArray<number>
} & (
  | {
    readonly kind: "generate"
    readonly prompts: ReadonlyArray<ReadonlyArray<number>>
    readonly params: SamplingParams | ReadonlyArray<RowParams>
    readonly stop: ReadonlyArray<number>
  }
  | { readonly kind: "score"; readonly items: ReadonlyArray<Scored> }
  | { readonly kind: "load" }
)

/** Asks a worker to exit when it is between calls (SamplerPool.close). */
export type Stop = { readonly kind: "stop" }

/** A worker's answer to job `id`. */
export type Reply =
  | { readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly id: number; readonly ok: false; readonly message: string }

type JobBody = Job extends infer J ? (J extends Job ? Omit<J, "id" | "version" | "weights" | "drop"> : never) : never

interface Pending {
  readonly weights: WeightsVersion
  readonly body: JobBody
  readonly work: number
  readonly resolve: (value: unknown) => void
  readonly reject: (error: Error) => void
}

interface Slot {
  readonly worker: Worker
  /** Versions this worker holds, least recently used first. */
  readonly held: Array<number>
  /** Jobs in flight, by id. */
  readonly jobs: Map<number, Pending>
  /** Their estimated work (see `workOf`). */
  load: number
  /** Asked to stop (`close`): kept referenced until it exits. */
  stopping: boolean
}

/**
 * A job's work in decoded tokens, to balance the workers: a generation decodes up to `maxTokens`
 * per row; teacher forcing runs all of an item's tokens in one pass, counted as an eighth of a
 * decoded token each (a rough weight, not measured: it only decides which worker gets a job).
 */
const workOf = (body: JobBody): number => {
  if (body.kind === "load") return 0
  if (body.kind === "score") return body.items.reduce((n, it) => n + it.input.length, 0) / 8
  const params = body.params
  return isRowParams(params) ? params.reduce((n, p) => n + p.params.maxTokens, 0) : body.prompts.length * params.maxTokens
}

const isRowParams = (p: SamplingParams | ReadonlyArray<RowParams>): p is ReadonlyArray<RowParams> => Array.isArray(p)

/** The worker entry through tsx, when no prebuilt worker script is set (WorkerScript.ts). */
const bootstrap = (): string => {
  // tsx's ESM entry, found from this file (the worker's own resolution starts at the working directory).
  const pkg = createRequire(import.meta.url).resolve("tsx/package.json")
  const tsx = new URL("./dist/esm/api/index.mjs", pathToFileURL(pkg)).href
  const entry = new URL("./SamplerWorker.ts", import.meta.url).href
  return `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}) })`
}

export class SamplerPool {
  private readonly slots: Array<Slot> = []
  private readonly versions = new WeakMap<ReadonlyMap<string, Float32Array>, WeightsVersion>()
  private nextVersion = 0
  private nextId = 0
  private source: string | undefined

  constructor(readonly size: number = availableParallelism()) {}

  private static instance: SamplerPool | undefined
  /** The process's pool: one worker per core. */
  static shared(): SamplerPool {
    return (SamplerPool.instance ??= new SamplerPool())
  }

  /** `StoryModel.sampler(weights).generate(...)` on a worker. */
  generate(
    config: ModelConfig,
    weights: ReadonlyMap<string, Float32Array>,
    prompts: ReadonlyArray<ReadonlyArray<number>>,
    params: SamplingParams | ReadonlyArray<RowParams>,
    stop: ReadonlyArray<number>
  ): Promise<Array<Generated>> {
    return this.submit(config, weights, { kind: "generate", prompts, params, stop }) as Promise<Array<Generated>>
  }

  /** `StoryModel.sampler(weights).score(items)`'s logprobs on a worker. */
  score(config: ModelConfig, weights: ReadonlyMap<string, Float32Array>, items: ReadonlyArray<Scored>): Promise<Array<Float32Array>> {
    return this.submit(config, weights, { kind: "score", items }) as Promise<Array<Float32Array>>
  }

  /**
   * A frozen copy of `weights` (views of the shared memory the workers read), which every running
   * worker starts loading now, before any job asks for it: a policy update publishes its new
   * weights this way, and the workers build their sessions while the checkpoint is written, so
   * the next step's first sampling call finds them ready. Sample with the returned Map.
   */
  prepare(config: ModelConfig, weights: ReadonlyMap<string, Float32Array>): ReadonlyMap<string, Float32Array> {
    const version = this.newVersion(config, weights)
    const frozen = unpack(version)
    this.versions.set(frozen, version)
    for (const slot of this.slots) {
      // Nothing waits on this: a load that fails is retried by the worker for the next job that
      // uses the version, and that job reports the error.
      this.start(slot, { weights: version, body: { kind: "load" }, work: 0, resolve: () => {}, reject: () => {} })
    }
    return frozen
  }

  /**
   * Stops every worker; jobs in flight fail. The next job starts new ones.
   *
   * A worker is asked to exit, not terminated: `worker.terminate()` during an onnxruntime call
   * (a session being built, a run) aborts the whole process, as the call's result is thrown into
   * a terminating thread (seen: a `prepare` load in flight at close). The worker handles the
   * message between calls.
   */
  async close(): Promise<void> {
    const slots = this.slots.splice(0)
    await Promise.all(slots.map((s) =>
      new Promise<void>((resolve) => {
        s.worker.once("exit", () => resolve())
        s.stopping = true
        s.worker.ref() // the exit is awaited
        s.worker.postMessage({ kind: "stop" } satisfies Stop)
      })))
  }

  private submit(config: ModelConfig, weights: ReadonlyMap<string, Float32Array>, body: JobBody): Promise<unknown> {
    let version: WeightsVersion
    try {
      version = this.versionOf(config, weights)
    } catch (e) {
      return Promise.reject(e)
    }
    return new Promise((resolve, reject) => this.start(this.pick(), { weights: version, body, work: workOf(body), resolve, reject }))
  }

  private versionOf(config: ModelConfig, weights: ReadonlyMap<string, Float32Array>): WeightsVersion {
    const known = this.versions.get(weights)
    if (known !== undefined) return known
    const version = this.newVersion(config, weights)
    this.versions.set(weights, version)
    return version
  }

  /** The weights copied into shared memory as the next version. */
  private newVersion(config: ModelConfig, weights: ReadonlyMap<string, Float32Array>): WeightsVersion {
    return { version: this.nextVersion++, config, buffer: pack(config, weights) }
  }

  /**
   * The worker with the least work in flight (a new one while none is idle and there are fewer
   * than `size`): a worker decodes all of its jobs together (KvDecoder.ts).
   */
  private pick(): Slot {
    const least = this.slots.reduce<Slot | undefined>((a, s) => (a === undefined || s.load < a.load ? s : a), undefined)
    return least === undefined || (least.load > 0 && this.slots.length < this.size) ? this.spawn() : least
  }

  private start(slot: Slot, pending: Pending): void {
    const v = pending.weights.version
    const has = slot.held.includes(v)
    const drop: Array<number> = []
    if (has) slot.held.splice(slot.held.indexOf(v), 1)
    else {
      // Free the least recently used versions no job in flight on this worker uses.
      const busy = new Set([...slot.jobs.values()].map((j) => j.weights.version))
      for (const old of [...slot.held]) {
        if (slot.held.length < KEEP) break
        if (busy.has(old)) continue
        slot.held.splice(slot.held.indexOf(old), 1)
        drop.push(old)
      }
    }
    slot.held.push(v)
    const job = { ...pending.body, id: this.nextId++, version: v, drop, ...(has ? {} : { weights: pending.weights }) } as Job
    slot.jobs.set(job.id, pending)
    slot.load += pending.work
    slot.worker.ref() // jobs in flight keep the process alive; an idle worker does not
    slot.worker.postMessage(job)
  }

  private spawn(): Slot {
    const script = workerScript()
    // POLARIS_DEBUG=loader: which code the workers run (as bin/polaris.js says for the command's own).
    if (process.env.POLARIS_DEBUG === "loader") process.stderr.write(`polaris: sampling worker ${script !== undefined ? "bundle" : "sources"}\n`)
    const worker = script !== undefined ? new Worker(script) : new Worker((this.source ??= bootstrap()), { eval: true })
    const slot: Slot = { worker, held: [], jobs: new Map(), load: 0, stopping: false }
    worker.on("message", (reply: Reply) => {
      const job = slot.jobs.get(reply.id)
      if (job === undefined) return
      slot.jobs.delete(reply.id)
      slot.load -= job.work
      if (slot.jobs.size === 0) {
        slot.load = 0 // no rounding drift
        if (!slot.stopping) worker.unref()
      }
      if (reply.ok) job.resolve(reply.value)
      else job.reject(new Error(reply.message))
    })
    const fail = (error: Error) => {
      const i = this.slots.indexOf(slot)
      if (i >= 0) this.slots.splice(i, 1)
      for (const job of slot.jobs.values()) job.reject(error)
      slot.jobs.clear()
    }
    worker.on("error", (e) => fail(e instanceof Error ? e : new Error(String(e))))
    worker.on("exit", (code) => fail(new Error(`a sampling worker exited (code ${code})`)))
    worker.unref()
    this.slots.push(slot)
    return slot
  }
}
