/**
 * The remote judge clients as Layers, for programs that build a judge by hand rather than from a
 * recipe's `judge:` section (which `Judges.fromRecipe` does, importing these only when needed).
 *
 * @example
 * ```ts
 * Effect.provide(program, JudgeClients.openai({ rubric, model: "gpt-5-mini", baseUrl: "http://localhost:8000/v1" }))
 * ```
 */
export { gemini } from "./Gemini.ts"
export { geminiBatch } from "./GeminiBatch.ts"
export { openai } from "./OpenAI.ts"
