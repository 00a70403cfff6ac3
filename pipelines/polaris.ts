/**
 * `polaris`: the POLARIS recipe. GRPO with human-reference injection on length-explicit story
 * prompts, an LLM-judge (or proxy) reward, and a held-out evaluation before and after.
 *
 *   data:  split-stories -> dataset -> derive-prompts -> stratify;  derive-heldout-prompts
 *   init:  sampler-start -> init-train
 *   step k (train/step-k/):  policy, sampler -> batch -> per group (group-i/): prompt -> rollout
 *          + reference-logprobs -> candidates -> judge;  all groups -> groups (rewards,
 *          advantages, datums) -> update (next state). A group's judging starts when its own
 *          samples are done (streaming within a step).
 *   off-policy (`grpo.off_policy_steps: n` ≥ 1): step k's rollouts and reference logprobs use
 *          `sampling-policy`, the state after step k−1−n (the initial one before that), its batch
 *          follows step k−1's batch, and its `update` (off-policy-update) trains the state after
 *          step k−1: step k+1's sampling and judging need no update after step k−n, so they run
 *          while step k trains, with which policy sampled what fixed by the DAG.
 *   eval:  eval-set -> rollout + judge + summary (initial and final policy) -> pairwise -> ratings
 *          -> evaluation (evaluate.ts)
 *
 * Recipe keys: `data.*`, `policy.*`, `sampling.*`, `judge.*`, `reward.*`, `grpo.*`, `eval.*`
 * (buckets, prompts per bucket, samples, pairwise, bootstrap). Engines: the Writer (premises), the
 * Judge, the PolicyEngine (`embedded` here; the remote engines come with their issue).
 *
 * Resources: sampling nodes (rollout, reference) run as `sampler`, updates as `trainer`, assigned
 * here at wiring time so the stages' code (and every cached key) stays as it was; `pools` says
 * whether the two share a slot (the embedded engine) or run side by side (tinker, vllm,
 * simulated), Policies.POOLS. The judge is its own resource (`judge`) either way.
 */
import { Effect, Layer } from "effect"
import { ingestAll } from "../src/data/Ingest.ts"
import { prepareDataset } from "../src/data/Dataset.ts"
import * as Policies from "../src/engines/Policies.ts"
import * as Judges from "../src/engines/judge/Judges.ts"
import type { NodeRef, PipelineNode } from "../src/dag/Pipeline.ts"
import type { Estimate } from "../src/dag/Plan.ts"
import { existsSync, statSync } from "node:fs"
import { join } from "node:path"
import { digest } from "../src/dag/Canonical.ts"
import { codeFingerprint } from "../src/dag/Fingerprint.ts"
import * as Rubric from "../src/engines/judge/Rubric.ts"
import { rubricPath } from "../src/engines/judge/Judges.ts"
import { define, type LayerContext } from "../src/dag/PipelineModule.ts"
import type { Recipe } from "../src/recipe/Recipe.ts"
import { batchPrompts } from "../stages/batchPrompts.ts"
import { hriGroups } from "../stages/hriGroups.ts"
import { rewardAlarms } from "../stages/rewardAlarms.ts"
import { judge } from "../stages/judge.ts"
import { referenceLogprobs } from "../stages/referenceLogprobs.ts"
import { rollout } from "../stages/rollout.ts"
import { samplerStart, sampleBatch } from "../stages/sampleBatch.ts"
import { stepCandidates } from "../stages/stepCandidates.ts"
import { stratify } from "../stages/stratify.ts"
import { batchOf, initTrain, policyOf } from "../stages/trainState.ts"
import { type TrainState } from "../src/records/TrainState.ts"
import { update } from "../stages/update.ts"
import { offPolicyUpdate } from "../stages/offPolicyUpdate.ts"
import type { Batch } from "../src/records/Batch.ts"
import type { TrainBatch } from "../src/records/TrainBatch.ts"
import { evalSamples, evalSet, evaluateSystems, judgeParams, type SystemNode } from "./evaluate.ts"
import { anthologiesOf, datasetNode, datasetParams, DEFAULT_EDGES, layer as dataLayer, promptsNode } from "./polarisData.ts"
import * as Location from "../src/dag/Location.ts"

/** The recipe's sampling settings, never left to engine defaults. */
export const samplingOf = (recipe: Recipe) => {
  const s = recipe.sampling ?? {}
  return {
    temperature: s.temperature ?? 1,
    top_p: s.top_p ?? 1,
    top_k: s.top_k ?? -1,
    repetition_penalty: s.repetition_penalty ?? 1,
    presence_penalty: s.presence_penalty ?? 0,
    max_tokens: s.max_tokens ?? 1024,
    // 1.7 tokens per word on the bundled corpus; room for twice the requested length.
    tokens_per_word: 3.5,
    thinking: s.thinking ?? false
  }
}

export default define("polaris", (b, recipe) => {
  const g = recipe.grpo ?? {}
  const seed = recipe.seed ?? 0
  const model = recipe.policy?.model
  if (model === undefined) throw new Error("policy.model is required: the model to train (a folder for the embedded engine)")
  const sampling = samplingOf(recipe)
  const groupSize = g.group_size ?? 6
  const groupsPerStep = g.groups_per_step ?? 8
  const groupWidth = String(groupsPerStep - 1).length

  const split = datasetNode(b, recipe)
  const prompts = promptsNode(b, recipe, split, "train")
  const heldout = promptsNode(b, recipe, split, "heldout")
  const buckets = recipe.data?.buckets ?? { edges: DEFAULT_EDGES }
  const strata = b.node(stratify, { id: "stratify", inputs: { prompts }, params: { edges: buckets.edges, ...(buckets.weights !== undefined ? { weights: buckets.weights } : {}) } })
  const start = b.node(samplerStart, { id: "sampler-start", inputs: { strata } })
  const init = b.node(initTrain, { id: "init-train", inputs: { start }, params: { model: recipe.policy?.backend === "embedded" ? { folder: Location.of(model) } : { name: model } } })

  // Intermediate checkpoints to evaluate besides the initial and the final policy (eval.checkpoints).
  const steps = g.steps ?? 10
  const evalAt = new Set(recipe.eval?.checkpoints ?? [])
  for (const k of evalAt) if (!Number.isInteger(k) || k < 1 || k >= steps) throw new Error(`eval.checkpoints: ${k} is not a step between 1 and ${steps - 1} (grpo.steps = ${steps})`)
  const checkpoints: Array<{ readonly step: number; readonly state: NodeRef<TrainState, any> }> = []
  // Off-policy lag n: step k samples with the state after step k-1-n. With n = 0 the DAG (ids,
  // edges, keys) is the synchronous one, where a step's batch follows the sampler state its
  // previous update handed on; with n ≥ 1 it follows the previous batch directly (the same bytes),
  // so sampling never waits for an update.
  const lag = g.off_policy_steps ?? 0
  let previousBatch: NodeRef<Batch, any> = start
  let firstBatch: NodeRef<TrainBatch, any> | undefined
  const final = b.loop("train", {
    steps,
    init,
    body: (s, state, index, states) => {
      const policy = s.node(policyOf, { id: "policy", inputs: { state } })
      const sampler = lag === 0 ? policy : s.node(policyOf, { id: "sampling-policy", inputs: { state: states[Math.max(0, index - lag)]! } })
      const previous = lag === 0 ? s.node(batchOf, { id: "sampler", inputs: { state } }) : previousBatch
      const batch = s.node(sampleBatch, { id: "batch", inputs: { strata, previous }, params: { seed, groups_per_step: groupsPerStep } })
      previousBatch = batch
      // One scope per group: its rollouts and reference logprobs start with the batch, and its
      // judging as soon as they are done, not when the step's slowest group is.
      const perGroup = Array.from({ length: groupsPerStep }, (_, i) => {
        const gs = s.scope(`group-${String(i).padStart(groupWidth, "0")}`)
        const chosen = gs.node(batchPrompts, { id: "prompt", inputs: { prompts, batch }, params: { group: i } })
        const groups = gs.node(rollout, { id: "rollout", inputs: { prompts: chosen, policy: sampler }, params: { group_size: groupSize, seed, sampling }, resource: "sampler" })
        const references = gs.node(referenceLogprobs, { id: "reference", inputs: { prompts: chosen, policy: sampler }, params: { sampling }, resource: "sampler" })
        const judged = gs.node(judge, { id: "judge", inputs: { stories: gs.node(stepCandidates, { id: "candidates", inputs: { groups, references } }) }, params: judgeParams(recipe) })
        return { groups, references, judged }
      })
      const reference = recipe.reward?.reference ?? { mode: "judge" as const }
      const trainBatch = s.node(hriGroups, {
        id: "groups",
        inputs: { groups: perGroup.map((x) => x.groups), references: perGroup.map((x) => x.references), judged: perGroup.map((x) => x.judged) },
        params: {
          reference_reward: reference.mode === "fixed" ? { mode: "fixed" as const, value: reference.value ?? 1 }
            : reference.mode === "max_of_group_plus" ? { mode: "max_of_group_plus" as const, margin: reference.value ?? 0 }
            : { mode: "judge" as const },
          scale_rewards: g.scale_rewards ?? "group",
          reference_in_stats: g.reference_in_stats ?? true,
          loss_type: g.loss_type ?? "dapo",
          reference_loss: g.reference_loss ?? "luffy",
          luffy_gamma: g.luffy_gamma ?? 0.1,
          max_completion_length: sampling.max_tokens,
          truncated: g.truncated ?? "keep"
        }
      })
      const params = {
        learning_rate: g.learning_rate ?? 1e-5,
        weight_decay: g.weight_decay ?? 0,
        max_grad_norm: g.max_grad_norm ?? 1,
        inner_iterations: g.inner_iterations ?? 1,
        epsilon_low: g.epsilon_low ?? 0.2,
        epsilon_high: g.epsilon_high ?? 0.28,
        mismatch_correction: g.mismatch_correction ?? "none",
        // C of src/grpo/MismatchCorrection.ts (TRL's vllm_importance_sampling_clip_max, default 3 there).
        mismatch_cap: 2,
        beta: g.beta ?? 0
      }
      // With `alarms:`, the batch passes through the step's alarms on its way to the update (same bytes, same key).
      firstBatch ??= trainBatch
      const alarms = recipe.alarms
      const checked = alarms === undefined ? trainBatch : s.node(rewardAlarms, {
        id: "alarms",
        inputs: { batch: trainBatch, first: firstBatch, judged: perGroup.map((x) => x.judged) },
        params: { ...alarms, stop: alarms.stop ?? false }
      })
      const next = lag === 0
        ? s.node(update, { id: "update", inputs: { batch: checked, policy, next: batch }, params, resource: "trainer" })
        : s.node(offPolicyUpdate, { id: "update", inputs: { batch: checked, policy, next: batch, sampler }, params, resource: "trainer" })
      if (evalAt.has(index + 1)) checkpoints.push({ step: index + 1, state: next })
      return next
    }
  })

  // Held-out evaluation of the initial and the final policy on the same prompts (evaluate.ts).
  const evaluation = evalSet(b, recipe, heldout)
  const system = (name: string, state: NodeRef<TrainState, any>): SystemNode => {
    const scope = b.scope(`eval-${name}`)
    const policy = b.node(policyOf, { id: `${name}-policy`, inputs: { state } })
    const groups = scope.node(rollout, { id: "rollout", inputs: { prompts: evaluation.chosen, policy }, params: { group_size: evalSamples(recipe) + 1, seed: seed + 1, sampling }, resource: "sampler" })
    return { name, scope, groups }
  }
  const systems = [system("initial", init), ...checkpoints.map(({ step, state }) => system(`step-${step}`, state)), system("final", final)]
  return { final, evaluation: evaluateSystems(b, recipe, evaluation.prompts, systems, "initial") }
})

/** Which resource classes share a slot: the policy backend's (Policies.POOLS); embedded when unset. */
export const pools = (recipe: Recipe) => recipe.policy === undefined ? Policies.POOLS.embedded : Policies.poolsOf(recipe.policy)

/** The Writer (premises), the Judge, and the recipe's policy engine (checkpoints of the embedded one in the store). */
export const layer = (recipe: Recipe, context: LayerContext) => {
  const policy = recipe.policy
  if (policy === undefined) throw new Error("policy is required (backend: embedded, model: a model folder)")
  return Layer.mergeAll(dataLayer(recipe), Judges.fromRecipe(recipe.judge ?? { backend: "proxy" }), Policies.fromRecipe(policy, context))
}

// -- estimates for `polaris plan` ------------------------------------------------------------

/** English prose: about 0.75 words per token in BPE tokenizers of GPT / Gemini / Qwen class (OpenAI's rule of thumb). */
const TOKENS_PER_WORD = 1.33
/** Output tokens of one rubric verdict with its evidence, and of one pairwise analysis (RemoteJudge's default expectation). */
const VERDICT_OUTPUT_TOKENS = 2_000
const PREFERENCE_OUTPUT_TOKENS = 1_000

const midpoint = (lo: number, hi: number) => (lo + hi) / 2

/** Words of a story a remote writer reads (Writer.ts `maxStoryWords` default), and the tokens of its instruction and of one premise. */
const WRITER_STORY_WORDS = 3_000
const WRITER_INSTRUCTION_TOKENS = 100
const PREMISE_OUTPUT_TOKENS = 80

/** The words of each train and held-out story, as the data nodes would split the corpus. */
interface StoryWords {
  readonly train: ReadonlyArray<number>
  readonly heldout: ReadonlyArray<number>
}

/** The writer's calls on the train or held-out stories: the corpus read and split once, as the data nodes do. */
const premiseEstimates = (recipe: Recipe, writer: NonNullable<NonNullable<Recipe["data"]>["writer"]>) => {
  const data = recipe.data ?? {}
  // Read when a derive-prompts node would run, then kept (a corpus that cannot be read: no
  // estimate). Splitting a corpus takes about a second (the paper's 12 anthologies): the stories'
  // lengths are remembered by the identities of its files, the dataset's parameters and this
  // module's code fingerprint, so a second plan reads nothing.
  const read = Effect.runSync(Effect.cached(Effect.suspend(() => {
    const sources = anthologiesOf(recipe)
    const files = sources.flatMap((s) => (statSync(s).isDirectory() ? Location.filesUnder(s).map((f) => join(s, f)) : [s]))
    const memo = Location.remembered<StoryWords>("premise-story-words", files, { also: [digest(datasetParams(recipe)), codeFingerprint(import.meta.url)] })
    if (memo.known !== undefined) return Effect.succeed(memo.known.value)
    return ingestAll(sources).pipe(
      Effect.map((stories): StoryWords => {
        const dataset = prepareDataset(stories, datasetParams(recipe))
        return { train: dataset.train.map((s) => s.words), heldout: dataset.heldout.map((s) => s.words) }
      }),
      Effect.tap((words) => Effect.sync(() => memo.keep(words)))
    )
  }).pipe(Effect.catchDefect(() => Effect.succeed(undefined)), Effect.orElseSucceed(() => undefined))))
  const excerptWords = data.prompt?.mode === "excerpt" ? data.prompt.max_words ?? Infinity : Infinity
  const price = writer.price_per_million
  return (which: "train" | "heldout"): Effect.Effect<ReadonlyArray<Estimate>> =>
    Effect.map(read, (words): ReadonlyArray<Estimate> => {
      if (words === undefined) return []
      const stories = words[which]
      const input = Math.round(stories.reduce((s, storyWords) => s + WRITER_INSTRUCTION_TOKENS + Math.min(storyWords, excerptWords, WRITER_STORY_WORDS) * TOKENS_PER_WORD, 0))
      const output = stories.length * PREMISE_OUTPUT_TOKENS
      return [{
        engine: `writer (${writer.backend} ${writer.model ?? ""})`.trim(),
        calls: stories.length,
        input_tokens: input,
        output_tokens: output,
        usd: price === undefined ? 0 : (input * price.input + output * price.output) / 1e6
      }]
    })
}

/**
 * What each node costs if it runs, from the recipe alone (no data read, no engine asked): judge
 * calls and tokens per story (the rubric's own length counted), remote sampling and training
 * tokens, dollars at the recipe's `price_per_million`. Requested lengths are taken at the middle
 * of the recipe's buckets and stories at their requested length. An LLM writer's premises are
 * estimated from the corpus itself (split as the data nodes split it, read only when a
 * derive-prompts node would run): one call per story, its text up to the writer's 3,000 words.
 */
export const estimate = (recipe: Recipe) => {
  const g = recipe.grpo ?? {}
  const sampling = samplingOf(recipe)
  const groupSize = g.group_size ?? 6
  const judge = recipe.judge ?? { backend: "proxy" as const }
  const price = judge.price_per_million
  const usd = (input: number, output: number, p: { readonly input: number; readonly output: number } | undefined) => (p === undefined ? 0 : (input * p.input + output * p.output) / 1e6)
  const rubric = rubricPath(judge.rubric, judge.backend === "proxy" ? Rubric.PROXY_RUBRIC : Rubric.DEFAULT_RUBRIC)
  const rubricTokens = existsSync(rubric) ? Math.round(statSync(rubric).size / 4) : 0
  const edges = recipe.data?.buckets?.edges ?? DEFAULT_EDGES
  const trainWords = midpoint(edges[0]!, edges.at(-1)!)
  const evalBuckets = recipe.eval?.buckets ?? [{ name: "all", min_words: edges[0]!, max_words: edges.at(-1)! }]
  const evalWords = evalBuckets.reduce((s, b) => s + midpoint(b.min_words, b.max_words), 0) / evalBuckets.length
  const evalPrompts = (recipe.eval?.prompts_per_bucket ?? 16) * evalBuckets.length
  const judgeName = judge.backend === "proxy" ? "judge (proxy, free)" : `judge (${judge.backend} ${judge.model ?? ""})`.trim()
  const verdicts = (stories: number, words: number): Estimate => {
    const calls = stories * (judge.samples ?? 1)
    const input = calls * (rubricTokens + words * TOKENS_PER_WORD + 40)
    const output = judge.backend === "proxy" ? 0 : calls * VERDICT_OUTPUT_TOKENS
    return { engine: judgeName, calls, input_tokens: Math.round(input), output_tokens: output, usd: usd(input, output, price) }
  }
  const policy = recipe.policy
  const remote = policy !== undefined && policy.backend !== "embedded" && policy.backend !== "simulated"
  const policyPrice = policy?.price_per_million
  const engineName = (role: string) => `${role} (${policy?.backend ?? "embedded"}${remote ? ` ${policy?.model}` : ", local"})`
  const sampled = (prompts: number, n: number, words: number): ReadonlyArray<Estimate> => {
    const completion = prompts * n * Math.min(sampling.max_tokens, words * TOKENS_PER_WORD)
    const prefill = prompts * n * 40
    return [{ engine: engineName("sampler"), calls: prompts, input_tokens: Math.round(prefill), output_tokens: Math.round(completion), usd: policyPrice === undefined ? 0 : (prefill * policyPrice.prefill + completion * policyPrice.sample) / 1e6 }]
  }
  const writer = recipe.data?.writer
  const premises = writer === undefined || writer.backend === "extractive" ? undefined : premiseEstimates(recipe, writer)
  return (node: PipelineNode): ReadonlyArray<Estimate> | Effect.Effect<ReadonlyArray<Estimate>> => {
    const training = node.id.startsWith("train/")
    switch (node.stage.name) {
      case "derive-prompts":
        return premises === undefined ? [] : premises(node.id.endsWith("derive-heldout-prompts") ? "heldout" : "train")
      case "judge":
        return [training ? verdicts(groupSize, trainWords) : verdicts(evalPrompts * evalSamples(recipe), evalWords)]
      case "pairwise": {
        const calls = evalPrompts * evalSamples(recipe) * 2
        const input = calls * (rubricTokens + 2 * evalWords * TOKENS_PER_WORD + 40)
        const output = judge.backend === "proxy" ? 0 : calls * PREFERENCE_OUTPUT_TOKENS
        return [{ engine: judgeName, calls, input_tokens: Math.round(input), output_tokens: output, usd: usd(input, output, price) }]
      }
      case "rollout":
        return training ? sampled(1, groupSize - 1, trainWords) : sampled(evalPrompts, evalSamples(recipe), evalWords)
      case "reference-logprobs": {
        const tokens = trainWords * TOKENS_PER_WORD + 40
        return [{ engine: engineName("sampler"), calls: 1, input_tokens: Math.round(tokens), output_tokens: 0, usd: policyPrice === undefined ? 0 : tokens * policyPrice.prefill / 1e6 }]
      }
      case "update":
      case "off-policy-update": {
        const tokens = (g.groups_per_step ?? 8) * groupSize * (trainWords * TOKENS_PER_WORD + 40) * (g.inner_iterations ?? 1)
        return [{ engine: engineName("trainer"), calls: 1, input_tokens: Math.round(tokens), output_tokens: 0, usd: policyPrice === undefined ? 0 : tokens * policyPrice.train / 1e6 }]
      }
      default:
        return []
    }
  }
}
