/**
 * Story text normalisation, applied to every split story.
 *
 * - Quotes: curly quotes become straight ASCII quotes (`“ ” „` -> `"`, `‘ ’ ‚` -> `'`). Most
 *   Project Gutenberg files are ASCII already, so straight quotes make all books agree, and
 *   the tokenizer sees one form. Em dashes (`—`) and `--` are kept as printed.
 * - Whitespace: tabs and no-break spaces become spaces; runs of spaces collapse to one;
 *   lines are trimmed.
 * - Paragraphs: paragraphs are separated by one blank line. Lines within a prose paragraph
 *   are re-flowed into one line. A paragraph whose lines are all indented (verse, a letter,
 *   an inscription) keeps its line breaks, without the indentation.
 * - Markup: `_italic_` underscores are removed, keeping the words.
 *
 * @example
 * ```ts
 * cleanText("“Well,”  said _he_,\nsmiling.\n\n\n\nNext.") // "\"Well,\" said he, smiling.\n\nNext."
 * ```
 */

const QUOTES: ReadonlyArray<readonly [RegExp, string]> = [
  [/[“”„‟″]/g, '"'],
  [/[‘’‚‛′]/g, "'"]
]

/** Curly quotes -> straight quotes. */
export const straightenQuotes = (text: string): string =>
  QUOTES.reduce((t, [re, to]) => t.replace(re, to), text)

/** `_italic_` -> `italic` (an underscore pair within one paragraph). */
export const removeItalics = (text: string): string => text.replace(/_([^_\n]+(?:\n[^_\n]+)*?)_/g, "$1")

const isIndented = (line: string): boolean => /^(?: {2,}|\t)/.test(line)

/** Normalises whitespace, quotes and italics; re-flows prose paragraphs (see module doc). */
export const cleanText = (text: string): string => {
  const paragraphs = text
    .replace(/\r\n?/g, "\n")
    .replace(/[\t\u00a0\u2000-\u200a\u202f\u3000]/g, (c) => (c === "\t" ? "    " : " "))
    .split(/\n[ ]*\n+/)
    .map((p) => p.split("\n").filter((l) => l.trim() !== ""))
    .filter((lines) => lines.length > 0)
    .map((lines) => {
      const verse = lines.length > 1 && lines.every(isIndented)
      const trimmed = lines.map((l) => l.replace(/ {2,}/g, " ").trim())
      return verse ? trimmed.join("\n") : trimmed.join(" ")
    })
  return removeItalics(straightenQuotes(paragraphs.join("\n\n")))
}
