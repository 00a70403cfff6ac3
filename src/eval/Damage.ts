/**
 * Damaged versions of a story for the judge audit (docs/evaluation.md, "Judge audit"): each
 * should score lower than the story, except `padded`, which is as good and only longer (a story
 * against its own padded version measures the judge's preference for length at equal quality).
 * Paragraphs are blank-line separated blocks; a story of one paragraph is split into sentences.
 * Deterministic: `shuffled` draws its order from the seed.
 */
import { seeded } from "../internal/random.ts"

export const DAMAGES = ["truncated_50", "truncated_75", "shuffled", "repeated", "ending_cut"] as const
export type Damage = (typeof DAMAGES)[number]
export const VARIANTS = ["original", ...DAMAGES, "padded"] as const
export type Variant = (typeof VARIANTS)[number]

/** What each damage does, for people. */
export const DAMAGE_DESCRIPTIONS: Readonly<Record<Damage, string>> = {
  truncated_50: "cut to its first 50% of words",
  truncated_75: "cut to its first 75% of words",
  shuffled: "paragraphs in a random order",
  repeated: "a middle paragraph repeated after itself",
  ending_cut: "its last paragraph removed"
}

const paragraphsOf = (story: string): Array<string> => {
  const blocks = story.split(/\n\s*\n/).map((p) => p.trim()).filter((p) => p !== "")
  if (blocks.length > 1) return blocks
  return (story.match(/[^.!?]+[.!?]+["'”’)]*\s*|[^.!?]+$/g) ?? [story]).map((s) => s.trim()).filter((s) => s !== "")
}
const join = (ps: ReadonlyArray<string>) => ps.join("\n\n")

/** The first `fraction` of the story's words (whitespace kept as single spaces within paragraphs). */
export const truncated = (story: string, fraction: number): string => {
  const words = story.split(/(\s+)/)
  let kept = 0
  const total = words.filter((w) => w.trim() !== "").length
  const limit = Math.max(1, Math.round(total * fraction))
  const out: Array<string> = []
  for (const w of words) {
    if (w.trim() !== "") {
      if (kept === limit) break
      kept++
    }
    out.push(w)
  }
  return out.join("").trimEnd()
}

// Sentences that add words and nothing else: what "padded" appends, one per paragraph in turn.
const FILLER = [
  "It was, in many ways, a day much like any other.",
  "The hours passed in their usual order.",
  "There was not much more to be said about it.",
  "Things went on for a while in this manner.",
  "Nothing in particular happened for some time."
]

/** The story in each version of the audit. */
export const variants = (story: string, seed: string): Readonly<Record<Variant, string>> => {
  const ps = paragraphsOf(story)
  const order = ps.map((_, i) => i)
  const rng = seeded(`${seed}:shuffle`)
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1))
    ;[order[i], order[j]] = [order[j]!, order[i]!]
  }
  // A permutation equal to the original order would damage nothing: rotate it by one instead.
  const shuffledOrder = order.every((x, i) => x === i) && order.length > 1 ? order.map((_, i) => (i + 1) % order.length) : order
  const middle = Math.floor(ps.length / 2)
  return {
    original: story,
    truncated_50: truncated(story, 0.5),
    truncated_75: truncated(story, 0.75),
    shuffled: join(shuffledOrder.map((i) => ps[i]!)),
    repeated: join([...ps.slice(0, middle + 1), ps[middle]!, ...ps.slice(middle + 1)]),
    ending_cut: ps.length > 1 ? join(ps.slice(0, -1)) : truncated(story, 0.8),
    padded: join(ps.map((p, i) => `${p} ${FILLER[i % FILLER.length]}`))
  }
}
