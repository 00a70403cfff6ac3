/**
 * A refused paid call stops its siblings from starting new ones but interrupts none in flight:
 * with `Budget.forEachPaid` the call that was already running finishes, is written to the
 * ledger and returned; with a plain `Effect.forEach` the refusal would have interrupted it,
 * throwing away a call the provider had been paid for. After the first refusal every call is
 * refused, so a stopping run spends nothing more.
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber } from "effect"
import * as Budget from "../src/dag/Budget.ts"
import { tempDir } from "./support/store.ts"

const ledgerOf = (file: string) => readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l))

describe("budget stop", () => {
  it.effect("the call in flight finishes and is recorded; the refused one and every later one are refused", () =>
    Effect.gen(function*() {
      const ledger = join(tempDir("budget-stop-"), "spend.jsonl")
      const budget = yield* Budget.open(ledger, 1)
      const gate = yield* Deferred.make<void>()
      const finished: Array<string> = []
      const charged = (id: string, usd: number, call: Effect.Effect<void>) =>
        budget.charge({ node: "n", engine: "judge", expectedUsd: usd }, Effect.as(call, id).pipe(Effect.tap(() => Effect.sync(() => finished.push(id)))), () => usd)
      // "a" (0.6) is admitted and waits on the gate; "b" (0.6 more) would pass the cap of 1.
      const fiber = yield* Effect.forkChild(Budget.forEachPaid(["a", "b"], (id) => charged(id, 0.6, id === "a" ? Deferred.await(gate) : Effect.void), { concurrency: 2 }))
      yield* Effect.yieldNow
      expect(budget.refusal()).toBeInstanceOf(Budget.BudgetExceeded)
      yield* Deferred.succeed(gate, undefined)
      const exit = yield* Fiber.await(fiber)
      expect(Exit.isFailure(exit) && String(exit.cause)).toContain("BudgetExceeded")
      expect(finished).toEqual(["a"])
      expect(ledgerOf(ledger).map((l) => l.usd)).toEqual([0.6])
      // Sticky: even a free call is refused once the run is stopping.
      const later = yield* Effect.exit(charged("c", 0, Effect.void))
      expect(Exit.isFailure(later)).toBe(true)
      expect(budget.spentUsd()).toBe(0.6)
    }))

  it.effect("forEachPaid returns every value in item order when nothing fails", () =>
    Effect.gen(function*() {
      const values = yield* Budget.forEachPaid([3, 1, 2], (n) => Effect.succeed(n * 10), { concurrency: 3 })
      expect(values).toEqual([30, 10, 20])
    }))
})
