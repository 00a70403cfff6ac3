/**
 * polaris: GRPO with an LLM-judge reward and human-reference injection, as a cached,
 * resumable Effect DAG. This module is the public API; see docs/ for guides and examples.
 */
export * as ArtifactStore from "./ArtifactStore.ts"
export * as CacheKey from "./CacheKey.ts"
export * as Canonical from "./Canonical.ts"
export type { EngineKey, Fingerprinted } from "./Engine.ts"
export * as Dag from "./Dag.ts"
export * as Executor from "./Executor.ts"
export * as Explain from "./Explain.ts"
export * as Pipeline from "./Pipeline.ts"
export * as PipelineModule from "./PipelineModule.ts"
export * as Progress from "./Progress.ts"
export * as Recipe from "./recipe/Recipe.ts"
export * as RecipeLoader from "./recipe/RecipeLoader.ts"
export * as Retry from "./Retry.ts"
export * as RunLog from "./RunLog.ts"
export * as Stage from "./Stage.ts"
export * as StoreMaintenance from "./StoreMaintenance.ts"
