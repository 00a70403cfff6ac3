/**
 * What the remote judges (gemini, openai) share: the rubric prompt (a verdict) and the pairwise
 * prompt (a preference), a rate-limited attempt per HTTP call, reading the reply against its schema (a malformed or truncated verdict fails its
 * attempt as retryable), cost from the reported tokens, and running totals. A backend only says
 * how one call is made.
 *
 * @example
 * const judge = yield* makeRemoteJudge({ backend: "gemini", model, rubric, settings, call, ... })
 */
import { Effect, Result } from "effect"
import { digest } from "../../dag/Canonical.ts"
import { attempts, cost, type LlmError, malformed, type Price, type RemoteOptions, type Reply, type TokenUsage } from "../llm/Remote.ts"
import * as RateLimiter from "../llm/RateLimiter.ts"
import { JudgeError, type JudgeItem, type JudgeShape, type JudgeTotals, type PairItem, type Preference, type Usage, type Verdict } from "./Judge.ts"
import * as Rubric from "./Rubric.ts"


export interface RemoteJudgeOptions extends RemoteOptions {
  readonly rubric: Rubric.Rubric
  /** Client-side limits (requests/min, tokens/min, calls in flight). */
  readonly limits?: RateLimiter.RateLimits
  readonly price?: Price
  /** Tokens a verdict is expected to produce, for the tokens/min bucket before the real count is known (default 2,000). */
  readonly expectedOutputTokens?: number
}

export interface Backend {
  readonly name: "gemini" | "openai"
  readonly model: string
  /** Everything besides the model that shapes a verdict (temperature, thinking, endpoint): fingerprinted. */
  readonly settings: Readonly<Record<string, unknown>>
  /** Where calls go, for error messages (never the key). */
  readonly origin: string
  /** One HTTP call with a prompt and its reply schema (none: plain text), named by what it asks (`verdict`, `preference`, `completion`). */
  readonly call: (prompt: { readonly system: string; readonly user: string }, schema: unknown, name: string) => Effect.Effect<Reply, unknown>
}

/** A decoded answer with what every judgement records (verdicts and preferences alike). */
export interface Answered<A> {
  readonly value: A
  readonly rubric: string
  readonly judge: string
  readonly usage: Usage
  readonly cost_usd: number
  readonly calls: number
}

/** One way of asking the judge model (online attempts, or an item of a batch job). */
export type Ask = <A>(
  prompt: { readonly system: string; readonly user: string },
  schema: unknown,
  decode: (text: string) => Result.Result<A, string>,
  what: string
) => Effect.Effect<Answered<A>, JudgeError>

/** `score` (the rubric's verdict) and `compare` (a pairwise preference) over one way of asking. */
export const judgeMethods = (rubric: Rubric.Rubric, ask: Ask): Pick<JudgeShape, "score" | "compare"> => {
  const verdictSchema = Rubric.replyJsonSchema(rubric)
  const pairSchema = Rubric.pairReplyJsonSchema()
  return {
    score: (item: JudgeItem): Effect.Effect<Verdict, JudgeError> =>
      Effect.map(ask(Rubric.judgePrompt(rubric, item), verdictSchema, (text) => Rubric.decodeReply(rubric, text), "verdict"), ({ value, ...rest }) => ({
        ...rest,
        scores: value.scores,
        evidence: value.evidence,
        quality: Rubric.quality(rubric, value.scores)
      })),
    compare: (item: PairItem): Effect.Effect<Preference, JudgeError> =>
      Effect.map(ask(Rubric.pairPrompt(rubric, item), pairSchema, Rubric.decodePairReply, "preference"), ({ value, ...rest }) => ({ ...rest, ...value }))
  }
}


const add = (a: TokenUsage, b: TokenUsage): TokenUsage => ({ input: a.input + b.input, output: a.output + b.output, thought: a.thought + b.thought })
const ZERO: TokenUsage = { input: 0, output: 0, thought: 0 }

/** `backend:model@digest`: the settings that shape a verdict, the rubric and the prompts' wording, never a key. */
export const judgeFingerprint = (name: string, model: string, settings: Readonly<Record<string, unknown>>, rubric: Rubric.Rubric): string =>
  `${name}:${model}@${digest({ ...settings, rubric: Rubric.fingerprint(rubric), prompts: Rubric.promptsFingerprint(rubric) }).slice(0, 12)}`

/** A remote call's failure as a judgement's, with the calls it took. */
export const toJudgeError = (e: LlmError, calls: number): JudgeError =>
  new JudgeError({ reason: e.reason, message: e.message, origin: e.origin, status: e.status, retryable: e.retryable, retryAfter: e.retryAfter, calls, cause: e.cause })

export const makeRemoteJudge = (backend: Backend, options: RemoteJudgeOptions): Effect.Effect<JudgeShape> =>
  Effect.gen(function*() {
    const { rubric } = options
    const limiter = options.limits === undefined ? RateLimiter.unlimited : yield* RateLimiter.make(options.limits)
    const rubricId = Rubric.fingerprint(rubric)
    const fingerprint = judgeFingerprint(backend.name, backend.model, backend.settings, rubric)
    const totals = { calls: 0, failedCalls: 0, verdicts: 0, usage: ZERO, costUsd: 0 }
    const expected = options.expectedOutputTokens ?? 2000

    /** One judgement: attempts (each rate-limited and counted) until the reply decodes. */
    const ask: Ask = (prompt, schema, decode, what) =>
      Effect.gen(function*() {
        const estimate = Math.ceil((prompt.system.length + prompt.user.length) / 4) + expected
        let calls = 0
        let usage = ZERO
        const once = Effect.flatMap(backend.call(prompt, schema, what), (reply) => {
          usage = add(usage, reply.usage)
          const spent = reply.usage.input + reply.usage.output + reply.usage.thought
          const decoded = decode(reply.text)
          const note = reply.finishReason !== undefined && !/^stop$/i.test(reply.finishReason) ? ` (finish ${reply.finishReason})` : ""
          return Effect.andThen(
            limiter.settle(spent - estimate),
            decoded._tag === "Success"
              ? Effect.succeed(decoded.success)
              : Effect.fail(malformed(backend.origin, `the ${what} does not fit rubric ${rubricId}${note}: ${decoded.failure}`))
          )
        })
        // Each attempt takes a rate-limit permit and is counted, failed or not.
        const counted = <A>(attempt: Effect.Effect<A, LlmError>) =>
          limiter.withPermit(estimate, Effect.suspend(() => {
            calls++
            return Effect.tapError(attempt, () => Effect.sync(() => void totals.failedCalls++))
          }))
        const value = yield* attempts(options, backend.origin, once, counted).pipe(
          Effect.ensuring(Effect.sync(() => {
            totals.calls += calls
            totals.usage = add(totals.usage, usage)
            totals.costUsd += cost(usage, options.price)
          })),
          Effect.mapError((e) => toJudgeError(e, calls))
        )
        totals.verdicts++
        return {
          value,
          rubric: rubricId,
          judge: fingerprint,
          usage: { input_tokens: usage.input, output_tokens: usage.output, thought_tokens: usage.thought },
          cost_usd: cost(usage, options.price),
          calls
        }
      })

    // One attempt's prompt at ~4 characters per token, the expected output, at the judge's prices.
    const expectedUsd: NonNullable<JudgeShape["expectedUsd"]> = (request) => {
      const prompt = "verdict" in request ? Rubric.judgePrompt(rubric, request.verdict) : Rubric.pairPrompt(rubric, request.preference)
      return cost({ input: Math.ceil((prompt.system.length + prompt.user.length) / 4), output: expected, thought: 0 }, options.price)
    }
    return {
      fingerprint,
      rubric,
      expectedUsd,
      ...judgeMethods(rubric, ask),
      // No reply schema: the caller's prompt says how to answer, and its own parser reads it.
      complete: (prompt) =>
        Effect.map(ask({ system: "", user: prompt }, undefined, (text) => Result.succeed(text), "completion"), ({ value, judge, usage, cost_usd, calls }) => ({ judge, text: value, usage, cost_usd, calls })),
      totals: (): JudgeTotals => ({
        ...totals,
        usage: { input_tokens: totals.usage.input, output_tokens: totals.usage.output, thought_tokens: totals.usage.thought }
      })
    }
  })
