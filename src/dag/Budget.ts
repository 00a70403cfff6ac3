/**
 * A run's spending cap: paid calls (judge verdicts, ...) go through `charge`, which refuses a
 * call whose expected cost would take the run past its cap, counting what the run spent before
 * (in every process that worked on it) and what calls in flight are expected to cost. Every
 * charged call that cost anything is appended to the run's ledger (`runs/<id>/spend.jsonl`), so a resumed run
 * starts from what was really spent. A refused call fails with `BudgetExceeded`, and from then
 * on every call is refused: the executor starts no further node, lets the running ones finish
 * (calls in flight complete and are memoized; `forEachPaid` keeps one item's refusal from
 * interrupting its siblings), and `polaris resume --budget-usd N` continues under a raised cap.
 *
 * @example
 * const verdict = yield* ctx.charge({ engine: "judge", expectedUsd: judge.estimateUsd(item) }, judge.score(item), (v) => v.cost_usd)
 */
import { appendFile, readFile } from "node:fs/promises"
import { Context, Data, Effect, Exit, Option } from "effect"

/** A call refused because it would take the run past its cap. Not retryable. */
export class BudgetExceeded extends Data.TaggedError("BudgetExceeded")<{
  readonly capUsd: number
  readonly spentUsd: number
  /** Expected cost of the calls in flight, the refused one included. */
  readonly pendingUsd: number
  readonly engine: string
}> {
  override get message() {
    return `budget: a ${this.engine} call would take the run past its cap of $${this.capUsd.toFixed(2)} ($${this.spentUsd.toFixed(4)} spent, $${this.pendingUsd.toFixed(4)} more expected); raise it with \`polaris resume --budget-usd N\``
  }
}

export interface Budget {
  /** The cap in USD (Infinity without one). */
  readonly capUsd: number
  /** Spent so far by the run, every process counted. */
  readonly spentUsd: () => number
  /** The first refusal, once a call was refused: the run is stopping. */
  readonly refusal: () => BudgetExceeded | undefined
  /**
   * Runs `call` if `expectedUsd` more keeps the run within its cap (with the calls in flight),
   * then records what it cost (`actualUsd` of its result) in the ledger.
   */
  readonly charge: <A, E, R>(
    charged: { readonly node: string; readonly engine: string; readonly expectedUsd: number },
    call: Effect.Effect<A, E, R>,
    actualUsd: (a: A) => number
  ) => Effect.Effect<A, E | BudgetExceeded, R>
}

/** No cap, no ledger: every call runs. */
export const unlimited: Budget = {
  capUsd: Infinity,
  spentUsd: () => 0,
  refusal: () => undefined,
  charge: (_charged, call) => call
}

/**
 * The budget of the run whose ledger is `ledger`, capped at `capUsd` (Infinity: uncapped, the
 * ledger is still kept). What the ledger already holds counts as spent.
 */
export const open = (ledger: string, capUsd: number): Effect.Effect<Budget> =>
  Effect.promise(async () => {
    const text = await readFile(ledger, "utf8").catch(() => "")
    let spent = 0
    for (const line of text.split("\n")) {
      try {
        const usd = (JSON.parse(line) as { usd?: unknown }).usd
        if (typeof usd === "number" && Number.isFinite(usd)) spent += usd
      } catch {
        // a line a crash cut short
      }
    }
    let pending = 0
    let refusal: BudgetExceeded | undefined
    return {
      capUsd,
      spentUsd: () => spent,
      refusal: () => refusal,
      charge: <A, E, R>({ node, engine, expectedUsd }: { readonly node: string; readonly engine: string; readonly expectedUsd: number }, call: Effect.Effect<A, E, R>, actualUsd: (a: A) => number) =>
        Effect.suspend((): Effect.Effect<A, E | BudgetExceeded, R> => {
          const expected = Math.max(0, expectedUsd)
          // Check and reserve in one synchronous step: calls in flight cannot pass the cap together.
          if (refusal !== undefined || spent + pending + expected > capUsd) {
            refusal ??= new BudgetExceeded({ capUsd, spentUsd: spent, pendingUsd: pending + expected, engine })
            return Effect.fail(refusal)
          }
          pending += expected
          return call.pipe(
            Effect.tap((a) =>
              Effect.promise(() => {
                const usd = actualUsd(a)
                spent += usd
                // The ledger lists paid calls: a free one (the proxy judge, the extractive writer) is not written.
                return usd === 0 ? Promise.resolve() : appendFile(ledger, JSON.stringify({ at: new Date().toISOString(), node, engine, usd }) + "\n")
              })
            ),
            Effect.ensuring(Effect.sync(() => void (pending -= expected)))
          )
        })
    } satisfies Budget
  })

/**
 * `Effect.forEach` over items that make paid calls: a failing item (a refusal, a judge error)
 * interrupts none of the others, whose calls in flight are paid for and must be memoized. Every
 * item finishes or fails, then the first failure in item order is the result.
 */
export const forEachPaid = <A, B, E, R>(
  items: Iterable<A>,
  f: (item: A, index: number) => Effect.Effect<B, E, R>,
  options: { readonly concurrency: number | "unbounded" }
): Effect.Effect<Array<B>, E, R> =>
  Effect.flatMap(Effect.forEach(items, (item, i) => Effect.exit(f(item, i)), options), (exits) => {
    const failed = exits.find(Exit.isFailure)
    return failed !== undefined ? Effect.failCause(failed.cause) : Effect.succeed(exits.map((e) => (e as Exit.Success<B>).value))
  })

/**
 * The charge of the node being executed, for engines that price their own calls (a remote
 * policy engine with its recipe's `price_per_million`): the executor provides it around each
 * stage's run, so such calls count against the budget and enter the ledger under the node that
 * made them, with no change to the stages. Outside a node (a test driving an engine) calls are
 * not charged.
 */
export class Charge extends Context.Service<Charge, {
  readonly charge: <A, E, R>(
    charged: { readonly engine: string; readonly expectedUsd: number },
    call: Effect.Effect<A, E, R>,
    actualUsd: (a: A) => number
  ) => Effect.Effect<A, E | BudgetExceeded, R>
}>()("polaris/Charge") {}

/**
 * `call`, charged to the current node when there is one. A refusal is raised as a defect carrying
 * the `BudgetExceeded` (the engine's error channel stays its own); the executor reads it there too.
 */
export const charged = <A, E, R>(engine: string, expectedUsd: number, call: Effect.Effect<A, E, R>, actualUsd: (a: A) => number): Effect.Effect<A, E, R> =>
  Effect.flatMap(Effect.serviceOption(Charge), Option.match({
    onNone: () => call,
    onSome: (c) => c.charge({ engine, expectedUsd }, call, actualUsd).pipe(
      Effect.catchIf((e): e is BudgetExceeded => e instanceof BudgetExceeded, (e) => Effect.die(e))
    ) as Effect.Effect<A, E, R>
  }))

/** The refusal behind a failed node, as an error or as a defect (an engine's charge). */
export const refusalIn = (reason: { readonly _tag: string; readonly error?: unknown; readonly defect?: unknown } | undefined): BudgetExceeded | undefined => {
  const value = reason?._tag === "Fail" ? reason.error : reason?._tag === "Die" ? reason.defect : undefined
  return value instanceof BudgetExceeded ? value : undefined
}
