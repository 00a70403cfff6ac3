/**
 * Project Gutenberg plain-text files -> the book's own text.
 *
 * A PG file is the book wrapped in boilerplate: a header (title, licence pointer, "Produced by"
 * credits) ending with a start marker, and a footer (an "End of the Project Gutenberg EBook of
 * ..." line, an end marker and the full licence). The marker spelling changed over the years,
 * so markers are matched by pattern, not by exact text:
 *
 * - start: `*** START OF THIS PROJECT GUTENBERG EBOOK X ***`, `***START OF THE PROJECT
 *   GUTENBERG EBOOK X***`, old `*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*...*END*`;
 * - end: `*** END OF THIS PROJECT GUTENBERG EBOOK X ***`, `***END OF THE PROJECT GUTENBERG
 *   EBOOK***`, `End of the Project Gutenberg EBook of ...`, `End of Project Gutenberg's ...`,
 *   `End of this Project Gutenberg Etext ...`.
 *
 * @example
 * ```ts
 * import { readFileSync } from "node:fs"
 * const body = gutenbergBody(readFileSync("examples/anthologies/pg2776-ohenry-the-four-million.txt"))
 * ```
 */

/** Bytes -> string: UTF-8 (a BOM is dropped); bytes that are not valid UTF-8 are read as
 *  windows-1252 (the WHATWG "latin1" decoder, a superset of ISO-8859-1 for printable text). */
export const decodeText = (bytes: Uint8Array): string => {
  const hasBom = bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf
  const body = hasBom ? bytes.subarray(3) : bytes
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(body)
  } catch {
    return decodeWindows1252(body)
  }
}

/** windows-1252 characters for bytes 0x80-0x9F (latin-1 has C1 controls there). */
const CP1252_HIGH = "€\u0081‚ƒ„…†‡ˆ‰Š‹Œ\u008DŽ\u008F\u0090‘’“”•–—˜™š›œ\u009DžŸ"

/** Bytes -> string as windows-1252 (ISO-8859-1 plus printable characters at 0x80-0x9F).
 *  Done by table, since Node builds without full ICU decode the label as plain latin-1. */
const decodeWindows1252 = (bytes: Uint8Array): string => {
  let out = ""
  for (const b of bytes) out += b >= 0x80 && b <= 0x9f ? (CP1252_HIGH[b - 0x80] ?? "") : String.fromCharCode(b)
  return out
}

/** CRLF and lone CR -> LF; a leading U+FEFF (a BOM that survived decoding) is dropped. */
export const normalizeNewlines = (text: string): string =>
  text.replace(/^\uFEFF/, "").replace(/\r\n?/g, "\n")

const START_MARKERS: ReadonlyArray<RegExp> = [
  /^\W*\*+\s*START\s+OF\s+(?:THIS|THE)\s+PROJECT\s+GUTENBERG/i,
  /^\W*START\s+OF\s+(?:THIS|THE)\s+PROJECT\s+GUTENBERG/i,
  /\*?END\*?\s*THE\s+SMALL\s+PRINT/i
]

const END_MARKERS: ReadonlyArray<RegExp> = [
  /^\W*\*+\s*END\s+OF\s+(?:THIS|THE)\s+PROJECT\s+GUTENBERG/i,
  /^\W*END\s+OF\s+(?:THE\s+|THIS\s+)?PROJECT\s+GUTENBERG/i,
  /^\W*END\s+OF\s+(?:THE\s+|THIS\s+)?(?:PG\s+)?E-?TEXT\s+OF\b/i
]

/** Credit lines PG puts right after the start marker; they are not the book. */
const CREDIT = /^\s*(?:produced|prepared|transcribed|scanned|proofread|e-?text\s+(?:prepared|produced|scanned)|this\s+e-?(?:text|book)\s+was)\b/i

const matchesAny = (line: string, patterns: ReadonlyArray<RegExp>): boolean =>
  patterns.some((re) => re.test(line))

/**
 * Strips the PG header and footer from already-decoded text (newlines are normalised first).
 * The body starts after the last start marker found before the first end marker, and stops
 * at the first end marker after it. Without markers the text is returned whole. Leading
 * "Produced by ..." credit paragraphs are dropped.
 */
export const stripGutenberg = (raw: string): string => {
  const lines = normalizeNewlines(raw).split("\n")
  let start = 0
  let end = lines.length
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? ""
    if (matchesAny(line, START_MARKERS)) start = i + 1
    else if (start > 0 && matchesAny(line, END_MARKERS)) {
      end = i
      break
    }
  }
  if (start === 0) {
    // No start marker: still cut a footer if one is present in the second half.
    for (let i = Math.floor(lines.length / 2); i < lines.length; i++) {
      if (matchesAny(lines[i] ?? "", END_MARKERS)) {
        end = i
        break
      }
    }
  }
  const body = lines.slice(start, end)
  // Drop credit paragraphs at the top (a credit may run on over several lines).
  let i = 0
  for (;;) {
    while (i < body.length && (body[i] ?? "").trim() === "") i++
    if (i >= body.length || !CREDIT.test(body[i] ?? "")) break
    while (i < body.length && (body[i] ?? "").trim() !== "") i++
  }
  return body.slice(i).join("\n").replace(/\s+$/, "") + "\n"
}

/** Bytes of a PG file -> the book's text with LF newlines and no PG boilerplate. */
export const gutenbergBody = (bytes: Uint8Array): string => stripGutenberg(decodeText(bytes))
