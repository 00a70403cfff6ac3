/**
 * The extractive premise: what a prompt's story is "about", built from the story itself with no
 * model and no network (the embedded default of the Writer, ARCHITECTURE.md §1, §6).
 *
 * The premise joins four cues, each taken from the text by fixed rules:
 *
 * 1. the title, in title case and quotes;
 * 2. the main characters: capitalised words that recur in the text away from the start of a
 *    sentence, are rarely written lower-case (so not "Heaven" or "Will"), are not titles or
 *    interjections ("Mr", "Oh") and mostly do not follow a place preposition ("in Paris");
 *    the top one or two by frequency (the second only when it is not just the first one's
 *    other half, as "Sherlock" is to "Holmes");
 * 3. the setting: the first capitalised place after in/at/on/near/from in the opening, and/or
 *    the first time phrase there ("one gusty evening", "in the autumn of 1883");
 * 4. the opening situation: the first sentence (two, if the first is very short), trimmed at a
 *    clause boundary to about 24 words.
 *
 * Deterministic and pure.
 *
 * @example
 * ```ts
 * premise({ title: "THE GIFT OF THE MAGI", text: "One dollar and eighty-seven cents. ..." })
 * // "\"The Gift of the Magi\": Della and Jim, where one dollar and eighty-seven cents ..."
 * ```
 */
import { countWords, firstWords, wordSpans } from "../text/WordCount.ts"
import { sentences } from "./Prompts.ts"

/** The story fields a premise is built from. */
export interface PremiseSource {
  readonly title: string
  readonly text: string
}

const SMALL = new Set(["a", "an", "the", "of", "in", "on", "at", "to", "and", "but", "or", "for", "with", "by", "from", "as", "nor"])

/** "THE GIFT OF THE MAGI" -> "The Gift of the Magi"; mixed-case titles are kept as written. */
export const titleCase = (title: string): string => {
  const t = title.trim().replace(/\s+/g, " ")
  if (/\p{Ll}/u.test(t)) return t
  let first = true
  return t.replace(/[\p{L}\p{N}]+/gu, (word, offset: number) => {
    const lower = word.toLowerCase()
    const prev = t[offset - 1]
    const inner = prev === "'" || prev === "’" // the s of TOBIN'S
    const out = inner ? lower : first || !SMALL.has(lower) ? lower.charAt(0).toUpperCase() + lower.slice(1) : lower
    first = false
    return out
  })
}

/** Capitalised words that are not character names. */
const NOT_NAMES = new Set([
  "I", "Mr", "Mrs", "Miss", "Ms", "Dr", "Sir", "Madam", "Madame", "Mme", "Mlle", "Monsieur", "Mademoiselle", "Lady",
  "Lord", "Captain", "Colonel", "Major", "General", "Professor", "Doctor", "Uncle", "Aunt", "Mother", "Father", "St",
  "Saint", "Herr", "Frau", "Signor", "Don", "Rev", "Reverend", "King", "Queen", "Prince", "Princess", "Count",
  "Countess", "Baron", "Baroness", "God", "Heaven", "Lord's", "Christ", "Oh", "Ah", "Yes", "No", "Well", "Why",
  "What", "The", "A", "An", "And", "But", "Then", "Now", "So", "Monday", "Tuesday", "Wednesday", "Thursday",
  "Friday", "Saturday", "Sunday", "January", "February", "March", "April", "May", "June", "July", "August",
  "September", "October", "November", "December", "Christmas", "Easter", "English", "French", "German", "American",
  "Englishman", "Englishwoman", "Frenchman", "Street", "Road", "Avenue", "Square", "Hall", "House", "Church",
  "Chapter", "Part", "Book", "Majesty", "Highness", "Excellency", "Lordship", "Ladyship", "New", "Old", "Great",
  "Little", "North", "South", "East", "West", "Upper", "Lower"
])
/** Abbreviations whose period does not end a sentence. */
const ABBREVIATIONS = new Set(["Mr", "Mrs", "Ms", "Dr", "St", "Mme", "Mlle", "Messrs", "Rev", "Prof", "Capt", "Col", "Gen", "Jr", "Sr", "No", "vs"])
/** Words before a place (or a role like "the Prefect") far more often than before a person's name. */
const PLACE_PREPOSITIONS = new Set(["in", "at", "on", "near", "from", "to", "into", "of", "across", "through", "the"])

/** One word of the text with the facts the rules need. */
interface Token {
  readonly word: string
  readonly index: number
  /** First word of a sentence, paragraph or quotation. */
  readonly initial: boolean
  readonly prev: string | undefined
  readonly next: string | undefined
}

const tokenize = (text: string): Array<Token> => {
  const raw: Array<{ word: string; index: number; initial: boolean }> = []
  let last = 0
  let prevWord: string | undefined
  for (const m of wordSpans(text)) {
    const gap = text.slice(last, m.index)
    const ended = /[.!?:;]/.test(gap) && !(gap.trimStart().startsWith(".") && prevWord !== undefined && ABBREVIATIONS.has(prevWord))
    const initial = prevWord === undefined || ended || /\n\s*\n/.test(gap) || /["“‘(—]\s*$/.test(gap) || /--\s*$/.test(gap)
    raw.push({ word: m.word, index: m.index, initial })
    prevWord = m.word
    last = m.index + m.word.length
  }
  return raw.map((t, i) => ({ ...t, prev: raw[i - 1]?.word, next: raw[i + 1]?.word }))
}

const isCapitalised = (word: string): boolean => /^\p{Lu}\p{Ll}+(?:['’\-]\p{L}+)*$/u.test(word)
const stripPossessive = (word: string): string => word.replace(/['’]s$/u, "")

/** The main characters, most frequent first (at most two). */
export const mainCharacters = (text: string): Array<string> => {
  const tokens = tokenize(text)
  const lower = new Map<string, number>()
  for (const t of tokens) if (/^\p{Ll}/u.test(t.word)) lower.set(t.word, (lower.get(t.word) ?? 0) + 1)
  const stats = new Map<string, { n: number; afterPlace: number; first: number }>()
  const midSentence = new Set(tokens.filter((t) => !t.initial && isCapitalised(t.word)).map((t) => stripPossessive(t.word)))
  for (const t of tokens) {
    if (!isCapitalised(t.word)) continue
    const name = stripPossessive(t.word)
    // A word seen capitalised mid-sentence is a name; its sentence-initial uses count too.
    if (name.length < 2 || NOT_NAMES.has(name) || !midSentence.has(name)) continue
    const s = stats.get(name) ?? { n: 0, afterPlace: 0, first: t.index }
    s.n++
    if (t.prev !== undefined && PLACE_PREPOSITIONS.has(t.prev)) s.afterPlace++
    stats.set(name, s)
  }
  const candidates = [...stats.entries()]
    .filter(([name, s]) => s.n >= 2 && (lower.get(name.toLowerCase()) ?? 0) * 4 <= s.n && s.afterPlace * 3 <= s.n)
    .sort((a, b) => b[1].n - a[1].n || a[1].first - b[1].first || (a[0] < b[0] ? -1 : 1))
  const top = candidates[0]
  if (top === undefined) return []
  const [first, firstStats] = top
  // The second: frequent enough, and not mostly the other half of the first's full name.
  const second = candidates.slice(1).find(([name, s]) => {
    if (s.n * 4 < firstStats.n) return false
    const adjacent = tokens.filter(
      (t) => stripPossessive(t.word) === name && (t.next === first || stripPossessive(t.prev ?? "") === first)
    ).length
    return adjacent * 2 < s.n
  })
  return second === undefined ? [first] : [first, second[0]]
}

const OPENING_WORDS = 250
const TIME_WORDS = 120
const TIME =
  /\b(?:(?:one|an?)\s+(?:[\w-]+,?\s+){1,2}(?:morning|afternoon|evening|night)|(?:in|at)\s+(?:the\s+)?(?:(?:spring|summer|autumn|fall|winter)(?:\s+of\s+(?:the\s+year\s+)?(?:\d{4}|\d{2}-))?|midnight|dawn|dusk|noon)|in\s+(?:January|February|March|April|May|June|July|August|September|October|November|December)(?:\s+of\s+(?:the\s+year\s+)?\d{4})?|very early morning|one day)\b/i

/** The opening's first place ("in Paris", "at Yalta") and first time phrase, joined. */
export const setting = (text: string, characters: ReadonlyArray<string> = []): string | undefined => {
  const opening = firstWords(text, OPENING_WORDS)
  const tokens = tokenize(opening)
  let place: string | undefined
  for (let i = 0; i < tokens.length && place === undefined; i++) {
    const prep = tokens[i]!.word.toLowerCase()
    if (!["in", "at", "on", "near", "from"].includes(prep)) continue
    const parts: Array<string> = []
    for (let j = i + 1; j < tokens.length; j++) {
      const t = tokens[j]!
      if (!isCapitalised(t.word) || (parts.length === 0 && NOT_NAMES.has(t.word) && !["St", "Saint"].includes(t.word))) break
      if (j > i + 1 && opening.slice(tokens[j - 1]!.index + tokens[j - 1]!.word.length, t.index).trim() !== "") break
      parts.push(t.word)
    }
    const name = parts.join(" ")
    if (parts.length > 0 && !characters.includes(stripPossessive(parts[0]!)) && !NOT_NAMES.has(name)) place = `${prep} ${name}`
  }
  const time = TIME.exec(firstWords(text, TIME_WORDS))?.[0].replace(/\s+/g, " ")
  const when = time === undefined ? undefined : lowerFirst(time)
  const cues = [place, when].filter((c): c is string => c !== undefined)
  return cues.length > 0 ? cues.join(", ") : undefined
}

const lowerFirst = (s: string): string => s.charAt(0).toLowerCase() + s.slice(1)

const SITUATION_WORDS = 24

/** The opening situation: the first sentence(s), quotes dropped, trimmed at a clause boundary. */
export const openingSituation = (text: string, characters: ReadonlyArray<string> = []): string | undefined => {
  const paragraphs = text.trim().split(/\n[ \t]*\n+/).map((p) => p.replace(/\s+/g, " ").trim())
  // Skip an epigraph or a verse (short lines) and prefer narration over an opening quotation.
  const prose = paragraphs.find((p) => !/^["“‘']/.test(p) && countTokens(p) >= 8) ?? paragraphs.find((p) => p.length > 0)
  if (prose === undefined) return undefined
  const ss = sentences(prose)
  let situation = ss[0] ?? ""
  if (countTokens(situation) < 6 && ss[1] !== undefined) {
    situation = `${situation.replace(/[.!?]+$/, "")}; ${uncapitalise(dropCaps(ss[1]), text, characters)}`
  }
  situation = situation.replace(/["“”‘’]|(?<!\p{L})'|'(?!\p{L})/gu, "").trim()
  situation = trimToClause(situation, SITUATION_WORDS)
  situation = situation.replace(/[\s.,;:!?—–-]+$/u, "")
  if (situation === "") return undefined
  return uncapitalise(dropCaps(situation), text, characters)
}

/** A drop-cap opening ("IT was said", "MASHENKA PAVLETSKY, a young girl") in normal case. */
const dropCaps = (s: string): string =>
  s.replace(/^(?:\p{Lu}{2,}(?:['’]\p{Lu}+)?\b[\s,]*)+/u, (run) =>
    run.replace(/\p{Lu}+/gu, (w) => w.charAt(0) + w.slice(1).toLowerCase())
  )

const ARTICLES = new Set(["The", "A", "An", "It", "This", "That", "There", "Some", "All", "One"])

/** Lower-cases a sentence's first word unless it is a proper noun ("I", a character, "St Bertrand"). */
const uncapitalise = (s: string, text: string, characters: ReadonlyArray<string>): string => {
  const [, first = "", next = ""] = /^([\p{L}']+)\s*([\p{L}']*)/u.exec(s) ?? []
  const common = ARTICLES.has(first) || new RegExp(`\\b${first.toLowerCase()}\\b`, "u").test(text)
  const properPair = !common && isCapitalised(next) && !NOT_NAMES.has(next)
  const neverLower = isCapitalised(first) && !common && !NOT_NAMES.has(first)
  const keep = first === "I" || characters.includes(first) || properPair || neverLower || ABBREVIATIONS.has(first) || isProperInText(first, text)
  return keep ? s : lowerFirst(s)
}

const countTokens = countWords

/** At most `max` words: cut at the last clause boundary (, ; : —) that keeps >= 12 words, else at a word. */
const trimToClause = (s: string, max: number): string => {
  if (countTokens(s) <= max) return s
  const head = firstWords(s, max)
  const boundary = Math.max(head.lastIndexOf(","), head.lastIndexOf(";"), head.lastIndexOf(":"), head.lastIndexOf("—"), head.lastIndexOf(" --"))
  if (boundary > 0 && countTokens(head.slice(0, boundary)) >= 12) return head.slice(0, boundary)
  return head.replace(/(?:\s+(?:a|an|the|of|in|on|at|to|and|but|or|for|with|by|from|that|which|who))+\s*$/iu, "")
}

/** Is this capitalised word a proper noun of the text (capitalised mid-sentence, never lower-case)? */
const isProperInText = (word: string, text: string): boolean => {
  if (word === "" || NOT_NAMES.has(word)) return false
  const tokens = tokenize(text)
  const midCap = tokens.filter((t) => !t.initial && stripPossessive(t.word) === word).length
  const lower = tokens.filter((t) => t.word === word.toLowerCase()).length
  return midCap > 0 && lower === 0
}

/**
 * The extractive premise of a story: `"<Title>": <characters>, <setting>, where <situation>`,
 * leaving out the parts the text does not yield.
 *
 * @example
 * premise({ title: "THE LADY WITH THE DOG", text }) // "\"The Lady with the Dog\": Gurov and Anna, at Yalta, where it was said ..."
 */
export const premise = (story: PremiseSource): string => {
  const characters = mainCharacters(story.text)
  const situation = openingSituation(story.text, characters)
  const cues = (setting(story.text, characters) ?? "")
    .split(", ")
    .filter((c) => c !== "" && !(situation ?? "").toLowerCase().includes(c.toLowerCase()))
  const where = cues.length > 0 ? cues.join(", ") : undefined
  const parts: Array<string> = []
  if (characters.length > 0) parts.push(characters.join(" and "))
  if (where !== undefined) parts.push(where)
  if (situation !== undefined) parts.push(`where ${situation}`)
  // A title that is itself a quotation ("Ministers of Grace") is quoted once, not twice.
  const title = titleCase(story.title).replace(/^["“”'‘’]+|["“”'‘’]+$/g, "").trim()
  const head = title === "" ? "" : `"${title}"`
  if (parts.length === 0) return head === "" ? "an untitled story" : head
  return head === "" ? parts.join(", ") : `${head}: ${parts.join(", ")}`
}
