/**
 * The Story record (ARCHITECTURE.md §4): one human-written story of an anthology, the unit the
 * dataset, prompts and human-reference injection are built from.
 *
 * `id` is content-derived, so it is stable across runs, machines and input order: the first 16
 * hex digits of sha256(anthology + "\n" + title + "\n" + text). `words` is counted with the
 * project's one word counter (src/text/WordCount.ts).
 *
 * @example
 * ```ts
 * const story = makeStory({ anthology: "pg2776-ohenry-the-four-million", title: "THE GIFT OF THE MAGI", text: "One dollar and eighty-seven cents." })
 * story.id    // 16 hex digits, the same on every run
 * story.words // 5
 * Schema.decodeUnknownSync(Story)(JSON.parse(line)) // a record read back from JSONL
 * ```
 */
import { Schema } from "effect"
import { sha256 } from "../dag/Canonical.ts"
import { countWords } from "../text/WordCount.ts"

/** A story record as it crosses boundaries (JSONL artifacts, stage outputs). */
export const Story = Schema.Struct({
  id: Schema.String.check(Schema.isPattern(/^[0-9a-f]{16}$/)),
  anthology: Schema.String,
  title: Schema.String,
  text: Schema.String,
  words: Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
})
export type Story = typeof Story.Type

/** The stable id of a story: sha256(anthology + "\n" + title + "\n" + text), first 16 hex digits. */
export const storyId = (anthology: string, title: string, text: string): string =>
  sha256(`${anthology}\n${title}\n${text}`).slice(0, 16)

/** A Story from its parts: the id is hashed and the words counted here. */
export const makeStory = (parts: { readonly anthology: string; readonly title: string; readonly text: string }): Story => ({
  id: storyId(parts.anthology, parts.title, parts.text),
  anthology: parts.anthology,
  title: parts.title,
  text: parts.text,
  words: countWords(parts.text)
})
