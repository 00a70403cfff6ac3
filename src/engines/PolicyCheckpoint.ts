/**
 * A policy's checkpoint as stages hold it (records/TrainState.ts `PolicyCheckpoint`): a local
 * engine's checkpoint folder goes into the artifact store by content, a remote engine's keeps
 * the name its engine gave it. These three functions are the only way stages move between that
 * identity and what an engine's `save` / `load` / `sample` speak.
 *
 * @example
 * yield* loadPolicy(engine, ctx, policy.checkpoint)
 * const groups = yield* engine.sample(requests, yield* samplingWeights(ctx, policy))
 * const next = yield* savePolicy(engine, ctx, "step-0004")   // { $tree: "…" } on the embedded engine
 */
import { stat } from "node:fs/promises"
import { Effect } from "effect"
import type { StageContext } from "../dag/Stage.ts"
import type { PolicyCheckpoint, PolicyState } from "../records/TrainState.ts"
import type { PolicyEngineShape, PolicyError, SamplingWeights } from "./PolicyEngine.ts"

/** What a checkpoint is, as a string fit for a memo key: the stored folder's digest, or the remote name. */
export const identity = (checkpoint: PolicyCheckpoint): string =>
  typeof checkpoint === "string" ? checkpoint : `tree:${checkpoint.$tree}`

/** Makes `checkpoint` the engine's current weights (a stored folder is laid out for it first). */
export const loadPolicy = (engine: PolicyEngineShape, ctx: StageContext, checkpoint: PolicyCheckpoint): Effect.Effect<void, PolicyError> =>
  Effect.flatMap(typeof checkpoint === "string" ? Effect.succeed(checkpoint) : ctx.getTree(checkpoint), (path) => engine.load({ path }))

/**
 * The weights a policy state samples with, for `sample` and `logprobs`: never loaded into the
 * trainer, so sampling an older policy while a newer one trains is safe (a stored folder is laid out).
 */
export const samplingWeights = (ctx: StageContext, policy: Pick<PolicyState, "checkpoint" | "sampler">): Effect.Effect<SamplingWeights> =>
  Effect.map(typeof policy.checkpoint === "string" ? Effect.succeed(policy.checkpoint) : ctx.getTree(policy.checkpoint), (checkpoint) =>
    policy.sampler !== undefined ? { checkpoint, sampler: policy.sampler } : { checkpoint })

// A URI (`tinker://…`) names a checkpoint on a remote engine; anything else an engine saves is a local folder.
const REMOTE = /^[a-z][a-z0-9+.-]*:\/\//i

/**
 * Saves the engine's weights and optimizer state under `name`. A local folder is moved into
 * the store, as the stored tree's laid-out copy that every later step loads (`ctx.getTree`), so
 * the result depends on the checkpoint's bytes only, never on its name or where it was written;
 * the engine is told where its folder went (`moved`), so it reads nothing back.
 */
export const savePolicy = (engine: PolicyEngineShape, ctx: StageContext, name: string): Effect.Effect<PolicyCheckpoint, PolicyError> =>
  Effect.gen(function*() {
    const saved = yield* engine.save(name)
    if (REMOTE.test(saved.path)) return saved.path
    const isFolder = yield* Effect.promise(() => stat(saved.path).then((s) => s.isDirectory(), () => false))
    if (!isFolder) return saved.path
    const ref = yield* ctx.putTree(saved.path, { move: true })
    if (engine.moved !== undefined) yield* engine.moved(saved.path, yield* ctx.getTree(ref))
    return ref
  })
