/**
 * Head to head (`polaris compare --head-to-head`): the final policies of the compared groups
 * judged against each other on one Elo scale. Every pair of groups meets on the held-out prompts
 * their runs were all asked, in both orders (a win only when both orders agree), and
 * Bradley-Terry ratings anchored on the first group follow, with bootstrap intervals over
 * prompts. Seeds pair by position: the i-th run of each group meets the i-th run of the others
 * (the runs of a sweep share their seeds), so each pairing compares policies trained on the same
 * data order.
 *
 * It is a pipeline like any other, run in the runs' store with the first run's judge: the
 * stories are read back by digest, each comparison is a memoized judge call, so asking again
 * costs nothing and a crash loses nothing.
 *
 * @example
 * const h2h = yield* HeadToHead.run(".polaris", [{ name: "reference_loss=luffy", runs: [a1, a2] }, { name: "reference_loss=sft", runs: [b1, b2] }])
 */
import { readFile } from "node:fs/promises"
import { join } from "node:path"
import { Effect, Layer } from "effect"
import { pathsOf } from "../dag/ArtifactStore.ts"
import * as ArtifactStore from "../dag/ArtifactStore.ts"
import * as Executor from "../dag/Executor.ts"
import * as Pipeline from "../dag/Pipeline.ts"
import * as Judges from "../engines/judge/Judges.ts"
import { resolveTarget } from "../cli/target.ts"
import type { SystemRating } from "../records/Comparison.ts"
import { pairwise, rateSystems } from "../../stages/pairwise.ts"
import { poolComparisons, storedGroups, storedPrompts } from "../../stages/headToHead.ts"
import { CompareError } from "./Compare.ts"

/** One group's rating on the shared scale. */
export interface Rated {
  readonly name: string
  readonly rating: number
  readonly rating_ci: { readonly low: number; readonly high: number }
  /** Wins, ties and losses against the anchor, and the win rate (ties count half) with its interval. */
  readonly vs_anchor: SystemRating["vs_baseline"]
}

export interface HeadToHead {
  /** The run (in the store) that judged the pairs. */
  readonly run: string
  /** The judge that did: the first run's `judge:` section, its backend and model. */
  readonly judge: string
  readonly anchor: string
  readonly pairings: number
  readonly comparisons: number
  readonly unscorable: number
  readonly position_consistency: number | null
  readonly groups: ReadonlyArray<Rated>
}

const readJson = async (path: string): Promise<any> => JSON.parse(await readFile(path, "utf8"))

/** What head to head needs of a run: its recipe, and the digests of its prompts and final stories. */
const runInputs = (store: string, run: string) =>
  Effect.tryPromise({
    try: async () => {
      const dir = join(pathsOf(store).runs, run)
      const config = await readJson(join(dir, "config.json"))
      const manifest = await readJson(join(dir, "manifest.json"))
      const object = (node: string): string | undefined => manifest.nodes?.[node]?.object
      return { config, prompts: object("eval-chosen"), stories: object("eval-final/rollout") }
    },
    catch: (e) => new CompareError({ message: `run ${run} in ${store}: ${e instanceof Error ? e.message : String(e)}` })
  }).pipe(Effect.flatMap((r) =>
    r.prompts === undefined || r.stories === undefined || typeof r.config.recipeFile !== "string"
      ? Effect.fail(new CompareError({ message: `run ${run} has no evaluation of a final policy from a recipe (eval-chosen, eval-final/rollout): head to head compares runs of the polaris pipeline` }))
      : Effect.succeed({ recipeFile: r.config.recipeFile as string, sets: (r.config.sets ?? []) as ReadonlyArray<string>, prompts: r.prompts, stories: r.stories })))

/** Judges the groups' final policies against each other (at least two groups); see the module doc. */
export const run = (store: string, groups: ReadonlyArray<{ readonly name: string; readonly runs: ReadonlyArray<string> }>) =>
  Effect.gen(function*() {
    if (groups.length < 2) return yield* new CompareError({ message: "head to head needs at least two variants (runs whose recipes differ beyond the seed)" })
    const inputs = yield* Effect.forEach(groups, (g) => Effect.forEach(g.runs, (r) => runInputs(store, r)))
    const prompts = new Set(inputs.flat().map((r) => r.prompts))
    if (prompts.size > 1) {
      return yield* new CompareError({ message: "the runs were evaluated on different held-out prompts (eval settings or data differ): head to head needs the same prompts" })
    }
    const pairings = Math.min(...inputs.map((runs) => runs.length))
    // The first run's recipe, re-read with this environment's secrets, gives the judge and the eval settings.
    const first = inputs[0]![0]!
    const target = yield* resolveTarget(first.recipeFile, { sets: first.sets, store }).pipe(
      Effect.mapError((e) => new CompareError({ message: `the first run's recipe ${first.recipeFile}: ${e.message}` }))
    )
    const recipe = target.recipe!
    const judgeSection = recipe.judge ?? { backend: "proxy" as const }
    const systems = groups.map((_, i) => `v${i + 1}`)
    const pipeline = Pipeline.make("head-to-head", (b) => {
      const asked = b.node(storedPrompts, { id: "prompts", params: { object: [...prompts][0]! } })
      const compare = pairwise(systems)
      const lists = Array.from({ length: pairings }, (_, i) => {
        const scope = b.scope(`seed-${i + 1}`)
        const stories = Object.fromEntries(systems.map((s, g) => [s, scope.node(storedGroups, { id: s, params: { object: inputs[g]![i]!.stories } })]))
        return scope.node(compare, {
          id: "pairwise",
          inputs: { prompts: asked, ...stories },
          params: { baseline: systems[0]!, pairs: "all" as const, samples: recipe.eval?.samples ?? 2, concurrency: recipe.judge?.max_in_flight ?? 16 }
        })
      })
      const comparisons = b.node(poolComparisons, { id: "comparisons", inputs: { lists } })
      return { ratings: b.node(rateSystems, { id: "ratings", inputs: { comparisons }, params: { baseline: systems[0]!, seed: recipe.seed ?? 0, resamples: recipe.eval?.bootstrap ?? 1000 } }) }
    })
    const result = yield* Executor.run(pipeline, { config: { head_to_head: groups.map((g) => ({ name: g.name, runs: g.runs })) } }).pipe(
      Effect.provide(Layer.merge(ArtifactStore.layer(store), Judges.fromRecipe(judgeSection))),
      Effect.mapError((e) => new CompareError({ message: `head to head: ${e.message}` }))
    )
    const ratings = result.outputs.ratings
    const nameOf = (system: string) => groups[systems.indexOf(system)]!.name
    return {
      run: result.runId,
      judge: [judgeSection.backend, judgeSection.model].filter((x) => x !== undefined).join(" "),
      anchor: groups[0]!.name,
      pairings,
      comparisons: ratings.comparisons,
      unscorable: ratings.unscorable,
      position_consistency: ratings.position_consistency,
      groups: ratings.systems.map((s) => ({ name: nameOf(s.name), rating: s.rating, rating_ci: s.rating_ci, vs_anchor: s.vs_baseline }))
    } satisfies HeadToHead
  })
