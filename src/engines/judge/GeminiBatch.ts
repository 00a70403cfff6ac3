/**
 * The `gemini` judge in batch mode, for evaluation (not the online reward): judgements are
 * collected and submitted through the Gemini Batch API (`batches.create` with inline requests,
 * half the price, hours not seconds), polled until the job ends, and each result read exactly as
 * a generateContent reply. It is a Judge like any other: the judge stage memoizes each verdict
 * under the same key, so a rerun submits only what no earlier job answered.
 *
 * `score` and `compare` calls arriving within `collectFor` of each other (up to `batchSize`) share one job;
 * `preferredConcurrency` tells the judge stage to ask for every story at once.
 *
 * @example
 * ```ts
 * const layer = geminiBatch({ apiKey, model: "gemini-3-flash-preview", rubric, pollEvery: "60 seconds" })
 * ```
 */
import type { InlinedRequest } from "@google/genai"
import { Deferred, Duration, Effect, Layer, type Result } from "effect"
import { LlmError, readGeminiReply } from "../llm/Remote.ts"
import { fromSdk, geminiClient, type GeminiJudgeOptions } from "./Gemini.ts"
import { Judge, type JudgeError, type JudgeShape } from "./Judge.ts"
import { cost } from "../llm/Remote.ts"
import { type Answered, type Ask, judgeFingerprint, judgeMethods, toJudgeError } from "./RemoteJudge.ts"
import * as Rubric from "./Rubric.ts"

export interface GeminiBatchOptions extends Omit<GeminiJudgeOptions, "limits" | "attempts" | "backoff" | "timeout"> {
  /** Most judgements per job (default 500). */
  readonly batchSize?: number
  /** How long to wait for more judgements before submitting a job (default 2 seconds). */
  readonly collectFor?: Duration.Input
  /** Poll interval of a running job (default 30 seconds). */
  readonly pollEvery?: Duration.Input
  /** Give up on a job after this long (default 26 hours; the service's target is 24). */
  readonly maxWait?: Duration.Input
}

const TERMINAL = new Set(["JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"])

/** A judgement waiting for its job: the request, and how its result settles the caller. */
interface Pending {
  readonly request: InlinedRequest
  readonly settle: (result: InlineResult | undefined) => Effect.Effect<void>
  readonly fail: (e: LlmError) => Effect.Effect<void>
}

type InlineResult = { response?: unknown; error?: { message?: string } }



export const makeGeminiBatch = (options: GeminiBatchOptions): Effect.Effect<JudgeShape> =>
  Effect.sync(() => {
    const { rubric } = options
    const client = geminiClient(options)
    const { model, ai } = client
    const origin = client.origin("batchGenerateContent")
    const rubricId = Rubric.fingerprint(rubric)
    // The online judge's fingerprint: a verdict from either serves both.
    const fingerprint = judgeFingerprint("gemini", model, client.settings, rubric)
    const batchSize = options.batchSize ?? 500
    const collectFor = options.collectFor ?? "2 seconds"
    const pollEvery = options.pollEvery ?? "30 seconds"
    const maxWait = Duration.toMillis(Duration.fromInputUnsafe(options.maxWait ?? "26 hours"))
    const totals = { calls: 0, failedCalls: 0, verdicts: 0, usage: { input: 0, output: 0, thought: 0 }, costUsd: 0 }
    let pending: Array<Pending> = []

    const sdk = <A>(f: () => Promise<A>) =>
      Effect.tryPromise({ try: f, catch: (e) => fromSdk(origin, e) }).pipe(
        Effect.tap(() => Effect.sync(() => void totals.calls++)),
        Effect.tapError(() => Effect.sync(() => { totals.calls++; totals.failedCalls++ }))
      )

    /** Reads one inline result (the same reading as a generateContent reply) and decodes it. */
    const answerOf = <A>(result: InlineResult | undefined, decode: (text: string) => Result.Result<A, string>, what: string) =>
      Effect.gen(function*() {
        if (result === undefined) return yield* new LlmError({ reason: "Malformed", origin, message: "the job returned no result for this request", retryable: true })
        if (result.error !== undefined) return yield* new LlmError({ reason: "Unavailable", origin, message: `batch item failed: ${result.error.message ?? "unknown error"}`, retryable: true })
        const reply = yield* readGeminiReply(origin, result.response)
        const usage = reply.usage
        totals.usage = { input: totals.usage.input + usage.input, output: totals.usage.output + usage.output, thought: totals.usage.thought + usage.thought }
        totals.costUsd += cost(usage, options.price)
        const decoded = decode(reply.text)
        if (decoded._tag === "Failure") return yield* new LlmError({ reason: "Malformed", origin, message: `the ${what} does not fit rubric ${rubricId}: ${decoded.failure}`, retryable: true })
        totals.verdicts++
        return {
          value: decoded.success,
          rubric: rubricId,
          judge: fingerprint,
          usage: { input_tokens: usage.input, output_tokens: usage.output, thought_tokens: usage.thought },
          cost_usd: cost(usage, options.price),
          calls: 1
        } satisfies Answered<A>
      })

    /** Submits the collected judgements as one job, polls it, and settles every waiting caller. */
    const flush = Effect.gen(function*() {
      const jobItems = pending.slice(0, batchSize)
      pending = pending.slice(batchSize)
      if (jobItems.length === 0) return
      const settleAll = (e: LlmError) => Effect.forEach(jobItems, (p) => p.fail(e), { discard: true })
      const run = Effect.gen(function*() {
        let job = yield* sdk(() => ai.batches.create({ model, src: jobItems.map((p) => p.request), config: { displayName: `polaris-judge-${Date.now()}` } }))
        const started = Date.now()
        while (!TERMINAL.has(String(job.state))) {
          if (Date.now() - started > maxWait) return yield* new LlmError({ reason: "Timeout", origin, message: `batch ${job.name} still ${job.state} after ${Duration.format(Duration.millis(maxWait))}`, retryable: true })
          yield* Effect.sleep(pollEvery)
          job = yield* sdk(() => ai.batches.get({ name: job.name! }))
        }
        if (job.state !== "JOB_STATE_SUCCEEDED") {
          return yield* new LlmError({ reason: "Unavailable", origin, message: `batch ${job.name} ended ${job.state}${job.error?.message !== undefined ? `: ${job.error.message}` : ""}`, retryable: true })
        }
        const results = job.dest?.inlinedResponses ?? []
        yield* Effect.forEach(jobItems, (p, i) => p.settle(results[i] as InlineResult | undefined), { discard: true })
      })
      yield* Effect.catch(run, settleAll)
    })

    /** Queues one judgement for the next job and waits for its answer. */
    const submit: Ask = <A>(prompt: { readonly system: string; readonly user: string }, replySchema: unknown, decode: (text: string) => Result.Result<A, string>, what: string) =>
      Effect.gen(function*() {
        const done = yield* Deferred.make<Answered<A>, JudgeError>()
        pending.push({
          request: client.request(prompt, replySchema),
          settle: (result) =>
            answerOf(result, decode, what).pipe(
              Effect.matchEffect({ onSuccess: (a) => Deferred.succeed(done, a), onFailure: (e) => Deferred.fail(done, toJudgeError(e, 1)) }),
              Effect.asVoid
            ),
          fail: (e) => Effect.asVoid(Deferred.fail(done, toJudgeError(e, 1)))
        })
        // The first caller of a job waits `collectFor` for company; a full job goes at once.
        if (pending.length >= batchSize) yield* Effect.forkDetach(flush)
        else if (pending.length === 1) yield* Effect.forkDetach(Effect.andThen(Effect.sleep(collectFor), flush))
        return yield* Deferred.await(done)
      })

    return {
      fingerprint,
      rubric,
      ...judgeMethods(rubric, submit),
      preferredConcurrency: Number.POSITIVE_INFINITY,
      totals: () => ({
        ...totals,
        usage: { input_tokens: totals.usage.input, output_tokens: totals.usage.output, thought_tokens: totals.usage.thought }
      })
    }
  })

/** The batch judge as a Judge layer. */
export const geminiBatch = (options: GeminiBatchOptions): Layer.Layer<Judge> => Layer.effect(Judge, makeGeminiBatch(options))
