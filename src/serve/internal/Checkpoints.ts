/**
 * The checkpoints a `polaris serve` knows, and the engine that samples each.
 *
 * - Training checkpoints (`save_weights`) are `tinker://<model>/weights/<name>`, in the engine's
 *   checkpoint folder as `<name>/`; sampler checkpoints (`save_weights_for_sampler`) are
 *   `tinker://<model>/sampler_weights/<name>`, as `sampler.<name>/`. SkyRL's `tinker://<model>/<name>`
 *   is read as either. A name saved by an earlier run is found on disk.
 * - The newest sampler checkpoint is the engine itself (its published weights); any other
 *   checkpoint, or a checkpoint folder given as a path, is opened as its own sampling engine
 *   (cached; a failed open is not).
 * - Each checkpoint keeps the LoRA settings its training client was created with, for
 *   `weights_info` (the server trains all weights whatever they say).
 */
import { Deferred, Effect, Exit } from "effect"
import { existsSync } from "node:fs"
import { join, resolve } from "node:path"
import type { PolicyEngineShape, PolicyError } from "../../engines/PolicyEngine.ts"
import { badRequest, notFound, type RequestError, runEngine } from "./RequestError.ts"

/** What `create_model`'s lora_config asked for (defaults as the SDK's LoraConfig). */
export interface LoraSettings {
  readonly rank: number
  readonly trainUnembed: boolean
  readonly trainMlp: boolean
  readonly trainAttn: boolean
}

export const DEFAULT_LORA: LoraSettings = { rank: 32, trainUnembed: true, trainMlp: true, trainAttn: true }

export interface Saved {
  readonly folder: string
  readonly lora: LoraSettings
}

export interface CheckpointOptions {
  /** The base model's name: sampling it (or no path) is the engine itself. */
  readonly modelName: string
  /** Where the engine's `save(name)` writes `name/` (to find checkpoints saved by earlier runs). */
  readonly checkpointDir?: string
  readonly openEngine: (path: string) => Effect.Effect<PolicyEngineShape, PolicyError>
}

export const SAMPLER_PREFIX = "sampler."
const TINKER_PATH = /^tinker:\/\/([^/]+)\/(?:(weights|sampler_weights)\/)?([^/]+)$/

export const make = (engine: PolicyEngineShape, options: CheckpointOptions) => {
  const weights = new Map<string, Saved>()
  const samplers = new Map<string, Saved & { readonly version: number }>()
  /** Bumped whenever the engine's published weights change (publish, load). */
  let publishedVersion = 0
  const opened = new Map<string, Deferred.Deferred<PolicyEngineShape, RequestError>>()

  const onDisk = (diskName: string): string | undefined => {
    if (options.checkpointDir === undefined) return undefined
    const folder = join(options.checkpointDir, diskName)
    return existsSync(folder) ? folder : undefined
  }

  /** A training or sampler checkpoint by name, from this run or on disk. */
  const find = (kind: "weights" | "sampler_weights" | undefined, name: string): Saved | undefined => {
    if (kind !== "weights") {
      const sampler = samplers.get(name)
      if (sampler !== undefined) return sampler
      const folder = onDisk(SAMPLER_PREFIX + name)
      if (folder !== undefined) return { folder, lora: DEFAULT_LORA }
      if (kind === "sampler_weights") return undefined
    }
    const saved = weights.get(name)
    if (saved !== undefined) return saved
    const folder = onDisk(name)
    return folder !== undefined ? { folder, lora: DEFAULT_LORA } : undefined
  }

  /** The checkpoint a path names: a `tinker://` path of this server, or a folder. */
  const resolvePath = (path: string): Effect.Effect<Saved & { readonly current: boolean }, RequestError> =>
    Effect.suspend(() => {
      const m = TINKER_PATH.exec(path)
      if (m !== null) {
        const kind = m[2] as "weights" | "sampler_weights" | undefined
        const name = m[3]!
        const saved = find(kind, name)
        if (saved === undefined) return Effect.fail(notFound(`no checkpoint ${JSON.stringify(path)}`))
        const sampler = kind !== "weights" ? samplers.get(name) : undefined
        return Effect.succeed({ ...saved, current: sampler !== undefined && sampler === saved && sampler.version === publishedVersion })
      }
      if (path.startsWith("tinker://")) return Effect.fail(badRequest(`not a checkpoint path: ${JSON.stringify(path)}`))
      if (!existsSync(path)) return Effect.fail(notFound(`no checkpoint folder ${JSON.stringify(path)}`))
      return Effect.succeed({ folder: path, lora: DEFAULT_LORA, current: false })
    })

  const openFolder = (path: string): Effect.Effect<PolicyEngineShape, RequestError> =>
    Effect.suspend(() => {
      const key = resolve(path)
      const existing = opened.get(key)
      if (existing !== undefined) return Deferred.await(existing)
      const result = Deferred.makeUnsafe<PolicyEngineShape, RequestError>()
      opened.set(key, result)
      return runEngine(options.openEngine(key)).pipe(
        Effect.exit,
        Effect.tap((exit) => Effect.sync(() => Exit.isFailure(exit) && opened.delete(key))),
        Effect.tap((exit) => Deferred.done(result, exit)),
        Effect.flatten,
        Effect.uninterruptible
      )
    })

  return {
    tinkerPath: (modelId: string | undefined, kind: "weights" | "sampler_weights", name: string) => `tinker://${modelId ?? "base"}/${kind}/${name}`,

    /** Whether `name` is taken for a training checkpoint (this run or on disk). */
    weightsTaken: (name: string) => weights.has(name) || onDisk(name) !== undefined,

    recordWeights: (name: string, saved: Saved) => void weights.set(name, saved),

    /** A new sampler checkpoint of the engine's newly published weights. */
    recordSampler: (name: string, saved: Saved) => {
      opened.delete(resolve(saved.folder))
      samplers.set(name, { ...saved, version: publishedVersion })
    },

    /** The engine's published weights changed. */
    published: () => void publishedVersion++,

    /** The folder `load_weights` reads. */
    folderOf: (path: string) => Effect.map(resolvePath(path), (c) => c.folder),

    /** The checkpoint's training-client settings (weights_info). */
    infoOf: (path: string) => resolvePath(path),

    /** The engine that samples `path`: undefined or the base model's name is the engine itself. */
    engineFor: (path: string | undefined): Effect.Effect<PolicyEngineShape, RequestError> =>
      path === undefined || path === options.modelName
        ? Effect.succeed(engine)
        : Effect.flatMap(resolvePath(path), (c) => (c.current ? Effect.succeed(engine) : openFolder(c.folder)))
  }
}

export type Checkpoints = ReturnType<typeof make>
