/** Unscorable items per node: counted by reason from a judge's output, and merged across steps for the summary. */
import { describe, expect, it } from "vitest"
import * as Unscorables from "../src/report/Unscorables.ts"

const item = (reason?: string, message = `${reason} happened`) => ({ id: "x", unscorable: reason === undefined ? null : { reason, message, calls: 2 } })

describe("Unscorables", () => {
  it("counts a judged list's unscorable items by reason, most frequent first, with the first message", () => {
    const judged = [item(), item("Malformed", "not JSON (1)"), item("Unavailable"), item("Malformed", "not JSON (2)"), item()]
    expect(Unscorables.count("judge", judged)).toEqual({
      node: "judge",
      items: 5,
      unscorable: 3,
      reasons: [{ reason: "Malformed", count: 2, message: "not JSON (1)" }, { reason: "Unavailable", count: 1, message: "Unavailable happened" }]
    })
    // Anything but a list of judged items (a TrainBatch, a list of groups) is not counted.
    expect(Unscorables.count("groups", { ppo: [] })).toBeUndefined()
    expect(Unscorables.count("rollout", [{ prompt_id: "p", samples: [] }])).toBeUndefined()
  })

  it("merges nodes alike across steps and groups into one line; a node alone keeps its id", () => {
    const node = (id: string, items: number, reasons: Array<[string, number]>) =>
      ({ node: id, items, unscorable: reasons.reduce((n, [, c]) => n + c, 0), reasons: reasons.map(([reason, count]) => ({ reason, count, message: `${id}: ${reason}` })) })
    const found = [
      node("train/step-000/group-0/judge", 6, [["RateLimited", 2]]),
      node("train/step-001/group-3/judge", 6, [["Malformed", 1], ["RateLimited", 1]]),
      node("eval-final/judge", 12, [["Malformed", 1]])
    ]
    expect(Unscorables.lines(found, { messages: true })).toEqual([
      "train/step-*/group-*/judge (2 nodes): 4 of 12 unscorable (RateLimited 3, Malformed 1)",
      "  RateLimited: train/step-000/group-0/judge: RateLimited",
      "  Malformed: train/step-001/group-3/judge: Malformed",
      "eval-final/judge: 1 of 12 unscorable (Malformed 1)",
      "  Malformed: eval-final/judge: Malformed"
    ])
    expect(Unscorables.total(found)).toBe("5 of 24 judged items unscorable in 3 nodes")
    expect(Unscorables.total([])).toBeUndefined()
  })
})
