/**
 * A second judge beside the recipe's `judge:` (the judge audit's `audit.second_judge:`), for
 * stages that compare two judges on the same stories. Same shape as `Judge`.
 *
 * @example
 * Layer.effect(SecondJudge, Effect.service(Judge)).pipe(Layer.provide(Judges.fromRecipe(section)))
 */
import { Context } from "effect"
import type { JudgeShape } from "./Judge.ts"

export class SecondJudge extends Context.Service<SecondJudge, JudgeShape>()("polaris/SecondJudge") {}
