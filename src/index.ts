/**
 * polaris: GRPO with an LLM-judge reward and human-reference injection, as a cached,
 * resumable Effect DAG. This module is the public API; see docs/ for guides and examples.
 * The POLARIS stages and pipelines are importable as `polaris/stages/<file>.ts` and
 * `polaris/pipelines/<file>.ts`.
 */
// The DAG framework (src/dag): stages, pipelines, the executor, the cache.
export * as ArtifactStore from "./dag/ArtifactStore.ts"
export * as Budget from "./dag/Budget.ts"
export * as CacheKey from "./dag/CacheKey.ts"
export * as Canonical from "./dag/Canonical.ts"
export type { EngineKey, Fingerprinted } from "./dag/Engine.ts"
export * as Dag from "./dag/Dag.ts"
export * as Executor from "./dag/Executor.ts"
export * as Explain from "./dag/Explain.ts"
export * as Location from "./dag/Location.ts"
export * as Pipeline from "./dag/Pipeline.ts"
export * as Plan from "./dag/Plan.ts"
export * as PipelineModule from "./dag/PipelineModule.ts"
export * as Progress from "./dag/Progress.ts"
export * as Recipe from "./recipe/Recipe.ts"
export * as RecipeLoader from "./recipe/RecipeLoader.ts"
export * as Retry from "./dag/Retry.ts"
export * as RunLog from "./dag/RunLog.ts"
export * as Secret from "./dag/Secret.ts"
export * as Stage from "./dag/Stage.ts"
export * as StepMetrics from "./dag/StepMetrics.ts"
export * as StoreMaintenance from "./dag/StoreMaintenance.ts"
export * as Tree from "./dag/Tree.ts"
export { memoBatch } from "./dag/MemoBatch.ts"
export { memoCall } from "./dag/MemoCall.ts"

// Experiments: sweeps and comparisons of runs (docs/experiments.md).
export * as Sweep from "./experiment/Sweep.ts"
export * as Compare from "./experiment/Compare.ts"

// Trackers: a run's metrics as TensorBoard event files (docs/tracking.md).
export * as TensorBoard from "./tracking/TensorBoard.ts"
export * as Trackers from "./tracking/Trackers.ts"

// The records POLARIS stages exchange (src/records), Schemas only.
export * as Records from "./records/index.ts"

// Engines and the embedded model (docs/model.md).
export { datumOf, LossFn, PolicyEngine, PolicyError } from "./engines/PolicyEngine.ts"
export type { CheckpointRef, Datum, ForwardBackwardOptions, ForwardBackwardResult, OptimStepResult, PolicyEngineShape, SampledSequence, SamplingWeights } from "./engines/PolicyEngine.ts"
export * as EmbeddedPolicy from "./engines/EmbeddedPolicy.ts"
export { Writer } from "./engines/Writer.ts"
export { AdamW, defaultAdamParams } from "./model/AdamW.ts"
export type { AdamParams } from "./model/AdamW.ts"
export * as Checkpoint from "./model/Checkpoint.ts"
export * as ChatTemplate from "./model/tokenizer/ChatTemplate.ts"
export { ExternalModel } from "./model/ExternalModel.ts"
export * as LrSchedule from "./model/LrSchedule.ts"
export * as Safetensors from "./model/Safetensors.ts"
export * as Sampling from "./model/Sampling.ts"
export { StoryModel } from "./model/StoryModel.ts"
export { Tokenizer } from "./model/tokenizer/Tokenizer.ts"
export * as Transformer from "./model/Transformer.ts"
export { Judge, JudgeError, Preference, Verdict } from "./engines/judge/Judge.ts"
export type { JudgeItem, JudgeShape, JudgeTotals, PairItem } from "./engines/judge/Judge.ts"
export * as Judges from "./engines/judge/Judges.ts"
export * as JudgeClients from "./engines/judge/Clients.ts"
export * as Rubric from "./engines/judge/Rubric.ts"
export * as Reward from "./grpo/Reward.ts"
export * as Advantages from "./grpo/Advantages.ts"
export * as TokenLoss from "./grpo/TokenLoss.ts"
export * as MismatchCorrection from "./grpo/MismatchCorrection.ts"
export * as TinkerPolicy from "./engines/TinkerPolicy.ts"
export * as VllmSampler from "./engines/VllmSampler.ts"
export * as Policies from "./engines/Policies.ts"
export { serve } from "./serve/Server.ts"
export * as EvalStats from "./eval/Stats.ts"
export * as Alarms from "./eval/Alarms.ts"
export * as Damage from "./eval/Damage.ts"
export * as JudgeAudit from "./eval/JudgeAudit.ts"
export * as HumanEval from "./eval/HumanEval.ts"
export * as EqBench from "./eval/EqBench.ts"
export * as Report from "./report/Report.ts"
