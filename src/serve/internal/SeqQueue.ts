/**
 * One training model's request order (protocols.md §1.3): requests carrying `seq_id` run one at a
 * time in `seq_id` order, a later one waiting for every earlier one. The first may be 0 or 1.
 * A seq_id the server rejected is `skip`ped: the client counted it as used (the SDK allocates
 * seq_ids before it submits), so nothing after it may wait for it.
 */
import { Effect } from "effect"

export interface SeqQueue {
  /** The next seq_id to run; null before the first. */
  readonly next: () => number | null
  /** Runs `work` once every earlier seq_id has run or been skipped. */
  readonly inTurn: <A, E>(seq: number, work: Effect.Effect<A, E>) => Effect.Effect<A, E>
  /** Marks `seq` as used without work. */
  readonly skip: (seq: number) => void
}

const SKIPPED = Symbol("skipped")

export const make = (): SeqQueue => {
  let nextSeq: number | null = null
  let busy = false
  /** seq_id -> what starts it (resumes its fiber), or SKIPPED. */
  const waiting = new Map<number, (() => void) | typeof SKIPPED>()

  const pump = () => {
    while (!busy) {
      let seq = nextSeq
      if (seq === null) {
        if (waiting.size === 0) return
        const first = Math.min(...waiting.keys())
        if (first > 1) return
        seq = first
      }
      const start = waiting.get(seq)
      if (start === undefined) return
      waiting.delete(seq)
      nextSeq = seq + 1
      if (start === SKIPPED) continue
      busy = true
      start()
    }
  }

  const inTurn = <A, E>(seq: number, work: Effect.Effect<A, E>): Effect.Effect<A, E> =>
    Effect.suspend(() => {
      let started = false
      const turn = Effect.callback<void>((resume) => {
        waiting.set(seq, () => {
          started = true
          resume(Effect.void)
        })
        pump()
        // Interrupted while waiting: give the slot up.
        return Effect.sync(() => {
          if (!started) waiting.delete(seq)
        })
      })
      return turn.pipe(
        Effect.andThen(work),
        Effect.ensuring(Effect.sync(() => {
          if (started) {
            busy = false
            pump()
          }
        }))
      )
    })

  const skip = (seq: number) => {
    waiting.set(seq, SKIPPED)
    pump()
  }

  return { next: () => nextSeq, inTurn, skip }
}
