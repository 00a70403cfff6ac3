/**
 * A run's spending cap: paid calls (judge verdicts, ...) go through `charge`, which refuses a
 * call whose expected cost would take the run past its cap, counting what the run spent before
 * (in every process that worked on it) and what calls in flight are expected to cost. Every
 * charged call is appended to the run's ledger (`runs/<id>/spend.jsonl`), so a resumed run
 * starts from what was really spent. A refused call fails with `BudgetExceeded`, and from then
 * on every call is refused: the executor starts no further node, lets the running ones finish
 * (calls in flight complete and are memoized; `forEachPaid` keeps one item's refusal from
 * interrupting its siblings), and `polaris resume --budget-usd N` continues under a raised cap.
 *
 * @example
 * const verdict = yield* ctx.charge({ engine: "judge", expectedUsd: judge.estimateUsd(item) }, judge.score(item), (v) => v.cost_usd)
 */
import { appendFile, readFile } from "node:fs/promises"
import { Data, Effect, Exit } from "effect"

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
                return appendFile(ledger, JSON.stringify({ at: new Date().toISOString(), node, engine, usd }) + "\n")
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
