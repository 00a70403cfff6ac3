import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { gutenbergBody } from "../src/data/Gutenberg.ts"
import {
  BYTES_TO_UNICODE,
  GPT2_PRETOKENIZE,
  SPECIAL_TOKENS,
  serializeTokenizerJson,
  trainBpe,
  type TokenizerJson
} from "../src/model/tokenizer/BpeTrainer.ts"
import { completionIds, promptIds, renderChat } from "../src/model/tokenizer/ChatTemplate.ts"
import { Tokenizer } from "../src/model/tokenizer/Tokenizer.ts"
import { writeTokenizerFiles } from "../src/model/tokenizer/TokenizerFiles.ts"

const book = (name: string) => gutenbergBody(readFileSync(join("examples/anthologies", name)))
// A fast training slice: the first 150k characters of two books; held-out text comes from a third.
const trainTexts = [
  book("pg2776-ohenry-the-four-million.txt").slice(0, 150_000),
  book("pg2814-joyce-dubliners.txt").slice(0, 150_000)
]
const heldOut = book("pg1661-doyle-the-adventures-of-sherlock-holmes.txt").slice(20_000, 60_000)

const STORIES = [
  "“Well,” said she, “it’s—I don’t know—perhaps the café on the corner?”\n\nHe didn't answer.",
  "The lamp went out.  Three   spaces, a tab\there, and a trailing newline\n",
  "Naïve façade, Zürich, São Paulo, 東京, emoji 🙂 and a soft\u00adhyphen; £5 — or €7.50!",
  "She said: 'I'll go; you're staying, aren't you?' -- 1899, 42nd Street.\r\nEnd.",
  " leading space and ending with spaces   "
]

// Independent reference encoder: GPT-2's bpe() (repeatedly merge all occurrences of the
// lowest-rank pair, left to right), written from the merges list alone.
const referenceEncode = (json: TokenizerJson, text: string): Array<number> => {
  const rank = new Map(json.model.merges.map((m, i) => [m, i]))
  const out: Array<number> = []
  for (const m of text.matchAll(GPT2_PRETOKENIZE)) {
    let word = Array.from(new TextEncoder().encode(m[0]), (b) => BYTES_TO_UNICODE[b]!)
    for (;;) {
      let best = -1
      let bestRank = Infinity
      for (let i = 0; i + 1 < word.length; i++) {
        const r = rank.get(`${word[i]} ${word[i + 1]}`)
        if (r !== undefined && r < bestRank) { bestRank = r; best = i }
      }
      if (best < 0) break
      const [a, b] = [word[best]!, word[best + 1]!]
      const next: Array<string> = []
      for (let i = 0; i < word.length; i++) {
        if (i + 1 < word.length && word[i] === a && word[i + 1] === b) { next.push(a + b); i++ } else next.push(word[i]!)
      }
      word = next
    }
    for (const t of word) out.push(json.model.vocab[t]!)
  }
  return out
}

// Independent reference trainer: count every adjacent pair over all pre-tokens at every step,
// merge the most frequent (ties: smaller left id, then smaller right id). Quadratic; small inputs only.
const naiveMerges = (texts: ReadonlyArray<string>, nMerges: number): Array<string> => {
  const words: Array<Array<number>> = []
  for (const t of texts) for (const m of t.matchAll(GPT2_PRETOKENIZE)) words.push(Array.from(new TextEncoder().encode(m[0])))
  const names = [...BYTES_TO_UNICODE]
  const merges: Array<string> = []
  for (let step = 0; step < nMerges; step++) {
    const counts = new Map<string, number>()
    for (const w of words) for (let i = 0; i + 1 < w.length; i++) counts.set(`${w[i]},${w[i + 1]}`, (counts.get(`${w[i]},${w[i + 1]}`) ?? 0) + 1)
    let best: [number, number, number] = [0, 0, 0]
    for (const [k, c] of counts) {
      const [a, b] = k.split(",").map(Number) as [number, number]
      if (c > best[0] || (c === best[0] && (a < best[1] || (a === best[1] && b < best[2])))) best = [c, a, b]
    }
    const [, a, b] = best
    const id = names.length
    names.push(names[a]! + names[b]!)
    merges.push(`${names[a]} ${names[b]}`)
    for (let j = 0; j < words.length; j++) {
      const w = words[j]!
      const next: Array<number> = []
      for (let i = 0; i < w.length; i++) {
        if (i + 1 < w.length && w[i] === a && w[i + 1] === b) { next.push(id); i++ } else next.push(w[i]!)
      }
      words[j] = next
    }
  }
  return merges
}

describe("byte-level BPE tokenizer", () => {
  let dir: string
  let json: TokenizerJson
  let tok: Tokenizer

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "polaris-tok-"))
    json = trainBpe(trainTexts, { vocabSize: 512 })
    tok = Tokenizer.fromFile(writeTokenizerFiles(dir, json))
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it("has the configured vocabulary: 256 bytes, merges, then the specials", () => {
    expect(tok.vocabSize).toBe(512)
    expect(json.model.merges.length).toBe(512 - 256 - SPECIAL_TOKENS.length)
    expect(Object.keys(json.model.vocab).length).toBe(512)
    expect(tok.tokenId("Ġ")).toBe(32) // the space byte, in GPT-2's printable form
    expect([...tok.specialIds]).toEqual([
      ["<|user|>", 508],
      ["<|assistant|>", 509],
      ["<|end|>", 510],
      ["<|pad|>", 511]
    ])
    expect(json.model.merges[0]).toBe("h e") // most frequent byte pair of the slice, see below
  })

  it("round-trips text exactly, including quotes, dashes, non-ASCII and newlines", () => {
    for (const s of [...STORIES, heldOut]) expect(tok.decode(tok.encode(s))).toBe(s)
    expect(tok.encode("")).toEqual([])
    expect(tok.decode([])).toBe("")
  })

  it("agrees with an independent reference encoder", () => {
    for (const s of [...STORIES, heldOut]) expect(tok.encode(s)).toEqual(referenceEncode(json, s))
  })

  it("matches a naive trainer that recounts every pair at every step", () => {
    const texts = [trainTexts[0]!.slice(0, 20_000)]
    const fast = trainBpe(texts, { vocabSize: 256 + 60 + SPECIAL_TOKENS.length })
    expect(fast.model.merges).toEqual(naiveMerges(texts, 60))
    expect(naiveMerges(trainTexts, 1)).toEqual(["h e"])
  })

  it("compresses held-out prose (about 2 characters per token at 512)", () => {
    const ids = tok.encode(heldOut)
    const charsPerToken = heldOut.length / ids.length
    expect(charsPerToken).toBeGreaterThan(1.9)
    expect(charsPerToken).toBeLessThan(2.2)
    expect(ids.every((id) => id < 508)).toBe(true)
  })

  it("encodes each special token to one id; normal text never yields one", () => {
    for (const [s, id] of tok.specialIds) {
      expect(tok.encode(s)).toEqual([id])
      expect(tok.decode([id])).toBe(s)
    }
    const specialIdSet = new Set(tok.specialIds.values())
    for (const s of [...STORIES, heldOut, "<| user |>", "<|user", "user|>", "< |end|>", "<|end |>"]) {
      expect(tok.encode(s).some((id) => specialIdSet.has(id))).toBe(false)
    }
    expect(tok.decode(tok.encode("a<|end|>b"), { skipSpecial: true })).toBe("ab")
  })

  it("is deterministic: the same corpus gives the same file bytes", () => {
    const again = serializeTokenizerJson(trainBpe(trainTexts, { vocabSize: 512 }))
    expect(again).toBe(readFileSync(join(dir, "tokenizer.json"), "utf8"))
  })

  it("chat layout: promptIds ++ completionIds equals the whole rendered conversation", () => {
    const [user, assistant, end] = ["<|user|>", "<|assistant|>", "<|end|>"].map((s) => tok.tokenId(s))
    const cases: Array<[string, string]> = [
      ["Write a story about a lighthouse.", "The keeper had not slept in three nights.\n\nThen the fog came."],
      ["  spaces ", " leading space"],
      ["café", "“Quoted”—dash"],
      ["", ""]
    ]
    for (const [prompt, completion] of cases) {
      const p = promptIds(tok, prompt)
      const c = completionIds(tok, completion)
      expect(p).toEqual([user!, ...tok.encode(prompt), end!, assistant!])
      expect(c).toEqual([...tok.encode(completion), end!])
      const full = renderChat(tok, [{ role: "user", content: prompt }, { role: "assistant", content: completion }], false)
      expect(full).toBe(`<|user|>${prompt}<|end|><|assistant|>${completion}<|end|>`)
      expect(tok.encode(full)).toEqual([...p, ...c])
      expect(tok.decode([...p, ...c])).toBe(full)
    }
  })
})
