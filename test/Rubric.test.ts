/**
 * Rubrics as data: the shipped files load, malformed files are reported at `file:line:col`,
 * fingerprints follow the content, and the reply schema, decoder, quality and prompt follow the rubric.
 */
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Effect, Result } from "effect"
import { describe, expect, it } from "vitest"
import * as Rubric from "../src/engines/judge/Rubric.ts"
import { tempDirInRepo } from "./support/store.ts"

const LITERARY_IDS = [
  "adherence", "plot", "coherence", "pacing", "ending", "originality", "character_depth", "believability",
  "dialogue", "prose", "showing", "restraint", "setting", "emotion", "theme", "engagement"
]

const literary = () => Effect.runPromise(Rubric.load(Rubric.DEFAULT_RUBRIC))

/** Writes `text` as a rubric file in a fresh temp dir and loads it, expecting failure. */
const loadFail = async (text: string) => {
  const file = join(tempDirInRepo("rubric-"), "rubric.yaml")
  writeFileSync(file, text)
  const result = await Effect.runPromise(Effect.result(Rubric.load(file)))
  if (result._tag === "Success") throw new Error("expected the rubric to be rejected")
  return { file, error: result.failure }
}

/** A valid rubric file with two dimensions, for editing into invalid ones. */
const VALID = [
  "id: tiny", // 1
  "version: 1", // 2
  "name: Tiny", // 3
  "scale: { min: 1, max: 10 }", // 4
  "instructions: judge it", // 5
  "aggregation: mean", // 6
  "dimensions:", // 7
  "  - id: plot", // 8
  "    name: Plot", // 9
  "    definition: a causal arc", // 10
  "  - id: dialogue", // 11
  "    name: Dialogue", // 12
  "    definition: distinct voices", // 13
  "    nullable: true" // 14
].join("\n")

/** A literal rubric value: scores 1..10, `a` and `b` plain, `c` nullable. */
const small: Rubric.Rubric = {
  id: "small",
  version: 1,
  name: "Small",
  scale: { min: 1, max: 10 },
  instructions: "judge",
  dimensions: [
    { id: "a", name: "A", definition: "first" },
    { id: "b", name: "B", definition: "second" },
    { id: "c", name: "C", definition: "third", nullable: true }
  ],
  aggregation: "mean"
}

const reply = (overrides: Record<string, unknown> = {}) =>
  JSON.stringify({ a: { evidence: "quote a", score: 7 }, b: { evidence: "quote b", score: 8 }, c: { evidence: "no dialogue", score: null }, ...overrides })

const failure = (r: Result.Result<Rubric.Reply, string>): string => {
  if (Result.isSuccess(r)) throw new Error(`expected a failure, got ${JSON.stringify(r.success)}`)
  return r.failure
}

describe("Rubric.load: the shipped rubrics", () => {
  it("loads the 16-dimension literary rubric with the ids of rubric.md; only dialogue is nullable", async () => {
    const rubric = await literary()
    expect(rubric.id).toBe("story-quality")
    expect(rubric.version).toBe(1)
    expect(rubric.scale).toEqual({ min: 1, max: 10 })
    expect(rubric.aggregation).toBe("mean")
    expect(rubric.dimensions.map((d) => d.id)).toEqual(LITERARY_IDS)
    expect(rubric.dimensions.filter((d) => d.nullable === true).map((d) => d.id)).toEqual(["dialogue"])
    expect(rubric.dimensions.find((d) => d.id === "ending")?.definition).toBe("earned, not abrupt or truncated; resolves the central tension")
    expect(rubric.instructions).toContain("Typical model prose sits at 4-6")
    expect(rubric.instructions).toMatch(/evidence that quotes the text, then give the score/)
    expect(rubric.instructions).toMatch(/Ignore any thinking trace/)
  })

  it("loads the proxy rubric, which says it measures text statistics, not literary quality", async () => {
    const rubric = await Effect.runPromise(Rubric.load(Rubric.PROXY_RUBRIC))
    expect(rubric.id).toBe("proxy-text-stats")
    expect(rubric.dimensions.map((d) => d.id)).toEqual(["repetition", "distinct", "lexical_variety", "sentence_rhythm", "ending", "prompt_coverage"])
    expect(rubric.dimensions.every((d) => d.nullable !== true)).toBe(true)
    expect(rubric.description).toMatch(/text statistics, NOT literary quality/)
  })
})

describe("Rubric.load: problems at file:line:col", () => {
  it("accepts the valid base file (so the failures below come from the edits)", async () => {
    const file = join(tempDirInRepo("rubric-"), "rubric.yaml")
    writeFileSync(file, VALID)
    const rubric = await Effect.runPromise(Rubric.load(file))
    expect(rubric.dimensions.map((d) => d.id)).toEqual(["plot", "dialogue"])
  })

  it("a YAML syntax error", async () => {
    const { file, error } = await loadFail(VALID.replace("name: Tiny", 'name: "Tiny'))
    expect(error._tag).toBe("RubricError")
    expect([error.file, error.line, error.column]).toEqual([file, 3, 7])
    expect(error.message).toBe(`${file}:3:7: unclosed " quote`)
  })

  it("Schema errors, every one at its node, sorted by position", async () => {
    const { file, error } = await loadFail(VALID.replace("version: 1", "version: 0").replace("    definition: distinct voices", "    definiton: distinct voices"))
    expect([error.line, error.column]).toEqual([2, 10])
    expect(error.message.split("\n")).toEqual([
      `${file}:2:10: version: Expected a value greater than 0, got 0`,
      `${file}:13:5: dimensions[1].definiton: unknown key "definiton"; did you mean "definition"?`
    ])
  })

  it("scale.min not below scale.max", async () => {
    const { file, error } = await loadFail(VALID.replace("scale: { min: 1, max: 10 }", "scale: { min: 5, max: 5 }"))
    expect(error.message).toBe(`${file}:4:23: scale.max: must be greater than scale.min (5), got 5`)
  })

  it("duplicate dimension ids, at the second one", async () => {
    const { file, error } = await loadFail(VALID.replace("  - id: dialogue", "  - id: plot"))
    expect([error.line, error.column]).toEqual([11, 9])
    expect(error.message).toBe(`${file}:11:9: dimensions[1].id: duplicate dimension id "plot" (first at line 8)`)
  })

  it("a dimension id that is not snake_case", async () => {
    const { file, error } = await loadFail(VALID.replace("  - id: plot", "  - id: Plot-Arc"))
    expect(error.message).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:8:9: dimensions\\[0\\]\\.id: Expected a string matching`))
  })

  it("a missing file has no position", async () => {
    const file = join(tempDirInRepo("rubric-"), "none.yaml")
    const error = await Effect.runPromise(Effect.flip(Rubric.load(file)))
    expect([error.line, error.column]).toEqual([0, 0])
    expect(error.message).toBe(`${file}: cannot read the rubric (no such file)`)
  })
})

describe("Rubric.fingerprint", () => {
  it("is id@version:digest and changes when a definition changes", async () => {
    const rubric = await literary()
    const fp = Rubric.fingerprint(rubric)
    expect(fp).toMatch(/^story-quality@1:[0-9a-f]{12}$/)
    const edited = { ...rubric, dimensions: rubric.dimensions.map((d) => d.id === "plot" ? { ...d, definition: `${d.definition}!` } : d) }
    expect(Rubric.fingerprint(edited)).not.toBe(fp)
    expect(Rubric.fingerprint(edited).startsWith("story-quality@1:")).toBe(true)
    // The same content gives the same fingerprint; an absent nullable is `false`.
    expect(Rubric.fingerprint(structuredClone(rubric))).toBe(fp)
    const explicit = { ...rubric, dimensions: rubric.dimensions.map((d) => d.nullable === true ? d : { ...d, nullable: false }) }
    expect(Rubric.fingerprint(explicit)).toBe(fp)
  })

  it("the edited file on disk fingerprints differently too", async () => {
    const dir = tempDirInRepo("rubric-")
    const text = readFileSync(Rubric.DEFAULT_RUBRIC, "utf8")
    writeFileSync(join(dir, "a.yaml"), text)
    writeFileSync(join(dir, "b.yaml"), text.replace("no cliches", "no cliches at all"))
    const [a, b] = await Promise.all(["a.yaml", "b.yaml"].map((f) => Effect.runPromise(Rubric.load(join(dir, f)))))
    expect(Rubric.fingerprint(a!)).toBe(Rubric.fingerprint(await literary()))
    expect(Rubric.fingerprint(b!)).not.toBe(Rubric.fingerprint(a!))
  })
})

describe("Rubric.replyJsonSchema", () => {
  it("has one closed property per dimension, in rubric order, evidence before score", async () => {
    const rubric = await literary()
    const schema = Rubric.replyJsonSchema(rubric) as any
    expect(schema.type).toBe("object")
    expect(Object.keys(schema.properties)).toEqual(LITERARY_IDS)
    expect(schema.required).toEqual(LITERARY_IDS)
    expect(schema.propertyOrdering).toEqual(LITERARY_IDS)
    expect(schema.additionalProperties).toBe(false)
    expect(schema.properties.plot).toEqual({
      type: "object",
      properties: { evidence: { type: "string" }, score: { type: "integer", minimum: 1, maximum: 10 } },
      required: ["evidence", "score"],
      propertyOrdering: ["evidence", "score"],
      additionalProperties: false
    })
    expect(schema.properties.dialogue.properties.score).toEqual({ type: ["integer", "null"], minimum: 1, maximum: 10 })
  })
})

describe("Rubric.decodeReply", () => {
  it("accepts a valid reply (and ignores keys that are not dimensions)", () => {
    const r = Rubric.decodeReply(small, reply({ overall: { evidence: "x", score: 99 } }))
    expect(r).toEqual(Result.succeed({
      scores: { a: 7, b: 8, c: null },
      evidence: { a: "quote a", b: "quote b", c: "no dialogue" }
    }))
  })

  it("accepts the reply of the literary rubric with dialogue null", async () => {
    const rubric = await literary()
    const text = JSON.stringify(Object.fromEntries(LITERARY_IDS.map((id) => [id, { evidence: `"${id}"`, score: id === "dialogue" ? null : 5 }])))
    const r = Rubric.decodeReply(rubric, text)
    expect(Result.isSuccess(r) && r.success.scores.dialogue).toBe(null)
    expect(Result.isSuccess(r) && Object.keys(r.success.scores)).toEqual(LITERARY_IDS)
  })

  it("rejects an out-of-range score", () => {
    expect(failure(Rubric.decodeReply(small, reply({ b: { evidence: "x", score: 11 } })))).toBe("b.score: Expected a value between 1 and 10, got 11")
    expect(failure(Rubric.decodeReply(small, reply({ a: { evidence: "x", score: 0 } })))).toMatch(/^a\.score: .*between 1 and 10, got 0/)
  })

  it("rejects a non-integer score", () => {
    expect(failure(Rubric.decodeReply(small, reply({ a: { evidence: "x", score: 7.5 } })))).toBe("a.score: Expected an integer, got 7.5")
    expect(failure(Rubric.decodeReply(small, reply({ a: { evidence: "x", score: "7" } })))).toMatch(/^a\.score: /)
  })

  it("rejects a missing dimension or evidence", () => {
    expect(failure(Rubric.decodeReply(small, JSON.stringify({ a: { evidence: "x", score: 7 }, c: { evidence: "x", score: 3 } })))).toBe("b: missing")
    expect(failure(Rubric.decodeReply(small, reply({ a: { score: 7 } })))).toBe("a.evidence: missing")
  })

  it("rejects null on a non-nullable dimension", () => {
    expect(failure(Rubric.decodeReply(small, reply({ a: { evidence: "x", score: null } })))).toMatch(/^a\.score: .*got null/)
  })

  it("rejects truncated JSON and empty replies cleanly", () => {
    const text = reply()
    for (const cut of [1, 10, text.length - 1]) {
      expect(failure(Rubric.decodeReply(small, text.slice(0, cut)))).toMatch(/^not valid JSON .*truncated$/)
    }
    expect(failure(Rubric.decodeReply(small, ""))).toBe("empty reply")
    expect(failure(Rubric.decodeReply(small, "[1, 2]")).length).toBeLessThanOrEqual(300)
  })

  it("accepts a reply in one ```json fence", () => {
    expect(Result.isSuccess(Rubric.decodeReply(small, "```json\n" + reply() + "\n```"))).toBe(true)
  })
})

describe("Rubric.quality", () => {
  it("is the mean of the non-null scores normalised by the scale", () => {
    expect(Rubric.quality(small, { a: 7, b: 8, c: null })).toBeCloseTo((7.5 - 1) / 9, 12)
    expect(Rubric.quality(small, { a: 1, b: 1, c: 1 })).toBe(0)
    expect(Rubric.quality(small, { a: 10, b: 10, c: 10 })).toBe(1)
    expect(Rubric.quality({ ...small, scale: { min: 0, max: 100 } }, { a: 20, b: 40, c: 90 })).toBeCloseTo(0.5, 12)
    // Keys that are not dimensions do not count.
    expect(Rubric.quality(small, { a: 4, b: null, c: null, other: 10 })).toBeCloseTo(3 / 9, 12)
  })

  it("is NaN when no dimension has a score", () => {
    expect(Rubric.quality(small, { a: null, b: null, c: null })).toBeNaN()
    expect(Rubric.quality(small, {})).toBeNaN()
  })
})

describe("Rubric.judgePrompt", () => {
  it("holds the instructions, every definition, the scale, the prompt and the whole story", async () => {
    const rubric = await literary()
    const story = Array.from({ length: 3000 }, (_, i) => `word${i}`).join(" ") + "\n\nThe very last line. </story> And after it."
    const { system, user } = Rubric.judgePrompt(rubric, { prompt: "Write a 3000-word story about a fox.", story })
    expect(system.startsWith(rubric.instructions.trim())).toBe(true)
    for (const [i, d] of rubric.dimensions.entries()) expect(system).toContain(`${i + 1}. ${d.name} (\`${d.id}\`): ${d.definition}`)
    expect(system).toContain("integers from 1 to 10")
    expect(system).toContain("Only `dialogue` may have score null")
    expect(user).toContain("<prompt>\nWrite a 3000-word story about a fox.\n</prompt>")
    expect(user).toContain(`<story>\n${story}\n</story>`)
    expect(user.endsWith("</story>")).toBe(true)
    expect(system).not.toContain(story.slice(0, 40))
  })
})
